"""End to end with authlib's OAuth 2.0 client against the node on a real uvicorn server:
SMART Backend Services (private_key_jwt, RS384 and ES384), authorization code + PKCE with
password + TOTP login, refresh, revocation and introspection (RFC 7009, RFC 7662).

Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html ;
https://hl7.org/fhir/smart-app-launch/app-launch.html
"""

from __future__ import annotations

import re
from html import unescape
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from authlib.common.security import generate_token
from authlib.integrations.httpx_client import OAuth2Client
from authlib.integrations.base_client.errors import OAuthError as OAuth2Error
from joserfc import jwt
from joserfc.jwk import KeySet

from tests.auth import helpers as h


def backend_session(live, b: h.Backend) -> OAuth2Client:
    s = OAuth2Client(b.client_id, b.key, token_endpoint_auth_method="private_key_jwt", scope="system/*.rs")
    s.register_client_auth_method(h.ShortAssertion(live.token_url, alg=b.alg))
    return s


@pytest.mark.parametrize("alg", ["ES384", "RS384"])
def test_backend_services_token_then_fhir_calls(live, alg):
    h.seed(live.node)
    b = h.backend(live.node, alg=alg, scope="system/Patient.rs system/Observation.rs")
    with backend_session(live, b) as s:
        token = s.fetch_token(live.token_url, grant_type="client_credentials",
                              scope="system/Patient.rs system/Observation.cruds")
        assert token["token_type"].lower() == "bearer"
        assert token["scope"] == "system/Patient.rs system/Observation.rs"  # narrowed to what the client may have
        assert 0 < token["expires_in"] <= 300
        assert "refresh_token" not in token
        r = s.get(f"{live.fhir}/Patient/p1")
        assert r.status_code == 200 and r.json()["id"] == "p1"
        bundle = s.get(f"{live.fhir}/Observation", params={"subject": "Patient/p1"}).json()
        assert [e["resource"]["id"] for e in bundle["entry"]] == ["obs-p1"]
        # no create permission was granted
        r = s.post(f"{live.fhir}/Observation", json={"resourceType": "Observation", "status": "final",
                                                      "code": {"text": "x"}},
                   headers={"Content-Type": "application/fhir+json"})
        assert r.status_code == 403
        assert r.json()["issue"][0]["code"] == "forbidden"


def test_backend_assertion_replay_is_rejected(live):
    b = h.backend(live.node, alg="ES384")
    from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
    import time

    assertion = private_key_jwt_sign(b.key, client_id=b.client_id, token_endpoint=live.token_url, alg="ES384",
                                     claims={"exp": int(time.time()) + 200, "jti": generate_token(20)},
                                     header={"kid": b.key.kid})
    form = {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer",
            "client_assertion": assertion}
    first = httpx.post(live.token_url, data=form)
    assert first.status_code == 200, first.text
    again = httpx.post(live.token_url, data=form)
    assert again.status_code in (400, 401)
    assert again.json()["error"] == "invalid_client"
    assert "used" in again.json()["error_description"]


def test_backend_assertion_with_wrong_key_alg_or_audience_is_rejected(live):
    import time

    from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
    from joserfc import jwk

    b = h.backend(live.node, alg="ES384")
    other = jwk.ECKey.generate_key("P-384")
    other.ensure_kid()

    def attempt(key, alg, aud, kid):
        a = private_key_jwt_sign(key, client_id=b.client_id, token_endpoint=aud, alg=alg,
                                 claims={"exp": int(time.time()) + 200}, header={"kid": kid})
        return httpx.post(live.token_url, data={
            "grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer", "client_assertion": a})

    assert attempt(other, "ES384", live.token_url, b.key.kid).json()["error"] == "invalid_client"  # not its key
    assert attempt(b.key, "ES384", "https://elsewhere.example/token", b.key.kid).json()["error"] == "invalid_client"
    p256 = jwk.ECKey.generate_key("P-256")
    assert attempt(p256, "ES256", live.token_url, b.key.kid).json()["error"] == "invalid_client"  # alg not allowed
    assert attempt(b.key, "ES384", live.token_url, b.key.kid).status_code == 200


def test_backend_jwks_by_url(live):
    """The client's keys are fetched from its jwks_uri (here: a second local server)."""
    from fastapi import FastAPI
    from fastapi.responses import JSONResponse
    from joserfc import jwk

    from tests.support import LiveServer

    key = jwk.RSAKey.generate_key(2048)
    key.ensure_kid()
    jwks_app = FastAPI()

    @jwks_app.get("/jwks.json")
    def keys():
        return JSONResponse({"keys": [{**key.as_dict(private=False), "kid": key.kid, "alg": "RS384"}]})

    with LiveServer(jwks_app) as keysrv:
        b = h.backend(live.node, alg="RS384", jwks_uri=f"{keysrv.url}/jwks.json")
        b.key = key
        with backend_session(live, b) as s:
            token = s.fetch_token(live.token_url, grant_type="client_credentials", scope="system/*.rs")
            assert s.get(f"{live.fhir}/Patient").status_code == 200
            assert token["scope"] == "system/*.rs"


def _login(live, url: str, *, username: str, password: str, otp: str, patient: str | None = None) -> httpx.Response:
    with httpx.Client(follow_redirects=False) as browser:
        page = browser.get(url)
        assert page.status_code == 200, page.text
        assert "ログイン" in page.text  # Japanese first
        fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text))
        fields = {k: unescape(v) for k, v in fields.items()}
        fields.update({"username": username, "password": password, "otp": otp, "decision": "allow"})
        if patient:
            fields["patient"] = patient
        return browser.post(f"{live.url}/auth/login", data=fields)


def test_authorization_code_pkce_totp_login_refresh_revoke_introspect(live):
    h.seed(live.node)
    dr = h.user(live.node)
    redirect = "http://127.0.0.1:9/cb"
    cid = h.app_client(live.node, redirect=redirect)
    app = OAuth2Client(cid, redirect_uri=redirect, code_challenge_method="S256",
                       scope="openid fhirUser offline_access launch/patient patient/*.rs user/Observation.rs")
    verifier = generate_token(48)
    url, state = app.create_authorization_url(f"{live.url}/auth/authorize", code_verifier=verifier, aud=live.fhir,
                                              nonce="n-0S6_WzA2Mj")
    # a wrong second factor is refused and nothing is issued
    bad = _login(live, url, username="dr-tanaka", password=dr.password, otp="000000")
    assert bad.status_code == 401 and "正しくありません" in bad.text

    done = _login(live, url, username="dr-tanaka", password=dr.password, otp=h.totp_now(dr), patient="p1")
    assert done.status_code == 302, done.text
    location = done.headers["location"]
    assert location.startswith(redirect) and parse_qs(urlsplit(location).query)["state"] == [state]
    token = app.fetch_token(f"{live.url}/auth/token", authorization_response=location, code_verifier=verifier)
    assert token["patient"] == "p1" and token["need_patient_banner"] is True
    assert sorted(token["scope"].split()) == sorted(["openid", "fhirUser", "offline_access", "launch/patient",
                                                     "patient/*.rs", "user/Observation.rs"])  # each once (issue 13)
    jwks = httpx.get(f"{live.url}/auth/jwks").json()
    id_token = jwt.decode(token["id_token"], KeySet.import_key_set(jwks), algorithms=["RS256"])
    assert id_token.claims["fhirUser"] == f"{live.fhir}/Practitioner/pr1"
    assert id_token.claims["aud"] in (cid, [cid]) and id_token.claims["nonce"] == "n-0S6_WzA2Mj"
    assert id_token.claims["iss"] == f"{live.url}/auth"

    # the code works once
    with pytest.raises(OAuth2Error):
        app.fetch_token(f"{live.url}/auth/token", authorization_response=location, code_verifier=verifier)

    r = app.get(f"{live.fhir}/Observation/obs-p1")
    assert r.status_code == 200
    assert app.get(f"{live.fhir}/Patient/p1").status_code == 200

    # introspection by the client the token was issued to
    info = httpx.post(f"{live.url}/auth/introspect", data={"token": token["access_token"], "client_id": cid}).json()
    assert info["active"] is True and info["patient"] == "p1" and info["client_id"] == cid

    # refresh: a new access token, and the refresh token rotates
    old_refresh = token["refresh_token"]
    new = app.refresh_token(f"{live.url}/auth/token", refresh_token=old_refresh)
    assert new["access_token"] != token["access_token"] and new["refresh_token"] != old_refresh
    assert new["patient"] == "p1" and sorted(new["scope"].split()) == sorted(token["scope"].split())
    assert app.get(f"{live.fhir}/Observation/obs-p1").status_code == 200
    with pytest.raises(OAuth2Error):
        app.refresh_token(f"{live.url}/auth/token", refresh_token=old_refresh)  # rotated away

    # revocation (RFC 7009): the access token stops working at once, and introspects inactive
    rv = httpx.post(f"{live.url}/auth/revoke", data={"token": new["access_token"], "client_id": cid})
    assert rv.status_code == 200
    r = app.get(f"{live.fhir}/Observation/obs-p1")
    assert r.status_code == 401 and r.headers["www-authenticate"].startswith("Bearer")
    info = httpx.post(f"{live.url}/auth/introspect", data={"token": new["access_token"], "client_id": cid}).json()
    assert info == {"active": False}
    # revoking the refresh token also ends the access tokens issued from it
    fresh = app.refresh_token(f"{live.url}/auth/token", refresh_token=new["refresh_token"])
    httpx.post(f"{live.url}/auth/revoke", data={"token": fresh["refresh_token"], "client_id": cid,
                                                "token_type_hint": "refresh_token"})
    auth = {"Authorization": f"Bearer {fresh['access_token']}"}
    assert httpx.get(f"{live.fhir}/Patient/p1", headers=auth).status_code == 401


def test_patient_app_login_is_confined_to_the_patients_own_record(live):
    h.seed(live.node)
    pt = h.user(live.node, kind="patient", username="yamada", patient_id="p1")
    redirect = "http://127.0.0.1:9/cb"
    cid = h.app_client(live.node, redirect=redirect, scope="openid fhirUser launch/patient patient/*.rs")
    app = OAuth2Client(cid, redirect_uri=redirect, code_challenge_method="S256",
                       scope="openid fhirUser launch/patient patient/*.rs user/*.rs")
    verifier = generate_token(48)
    url, _ = app.create_authorization_url(f"{live.url}/auth/authorize", code_verifier=verifier, aud=live.fhir)
    done = _login(live, url, username="yamada", password=pt.password, otp=h.totp_now(pt))
    token = app.fetch_token(f"{live.url}/auth/token", authorization_response=done.headers["location"],
                            code_verifier=verifier)
    assert token["patient"] == "p1" and "user/*.rs" not in token["scope"]
    assert app.get(f"{live.fhir}/Observation/obs-p1").status_code == 200
    assert app.get(f"{live.fhir}/Observation/obs-p2").status_code == 404
    assert app.get(f"{live.fhir}/Patient/p2").status_code == 404
    ids = [e["resource"]["id"] for e in app.get(f"{live.fhir}/Observation").json().get("entry", [])]
    assert ids == ["obs-p1"]


def test_authorization_requires_pkce_s256(live):
    cid = h.app_client(live.node)
    base = f"{live.url}/auth/authorize?response_type=code&client_id={cid}&redirect_uri=http://127.0.0.1:9/cb&scope=patient/*.rs&state=s1&aud={live.fhir}"
    no_pkce = httpx.get(base, follow_redirects=False)
    assert no_pkce.status_code == 302 and "error=invalid_request" in no_pkce.headers["location"]
    plain = httpx.get(base + "&code_challenge=" + "a" * 43 + "&code_challenge_method=plain", follow_redirects=False)
    assert plain.status_code == 302 and "error=invalid_request" in plain.headers["location"]
    wrong_aud = httpx.get(base.replace(live.fhir, "https://other.example/fhir") + "&code_challenge=" + "a" * 43
                          + "&code_challenge_method=S256", follow_redirects=False)
    assert wrong_aud.status_code == 302 and "error=invalid_request" in wrong_aud.headers["location"]
    bad_redirect = httpx.get(base.replace("127.0.0.1:9/cb", "evil.example/cb"), follow_redirects=False)
    assert bad_redirect.status_code == 400  # never redirect to an unregistered URI


def test_smart_configuration_and_jwks(live):
    conf = httpx.get(f"{live.fhir}/.well-known/smart-configuration").json()
    assert conf["token_endpoint"] == f"{live.url}/auth/token"
    assert conf["code_challenge_methods_supported"] == ["S256"]
    assert {"RS384", "ES384"} <= set(conf["token_endpoint_auth_signing_alg_values_supported"])
    assert "permission-v2" in conf["capabilities"]
    keys = httpx.get(conf["jwks_uri"]).json()["keys"]
    assert {k["alg"] for k in keys} == {"ES256", "RS256"} and all("d" not in k for k in keys)


def test_dynamic_registration_is_for_operators_only(live):
    from joserfc import jwk

    from hie.auth.service import AuthService

    key = jwk.ECKey.generate_key("P-384")
    meta = {"client_name": "Lab centre LIS", "grant_types": ["client_credentials"],
            "token_endpoint_auth_method": "private_key_jwt", "scope": "system/Observation.cruds",
            "jwks": {"keys": [{**key.as_dict(private=False), "kid": "k1", "alg": "ES384"}]},
            "organization_code": h.CLINIC}
    assert httpx.post(f"{live.url}/auth/register", json=meta).status_code == 401
    b = h.backend(live.node, scope="system/*.rs")
    svc = AuthService.for_node(live.node)
    plain = svc.token_for_client(b.client_id, "system/*.rs", fhir_base=live.fhir).token
    assert httpx.post(f"{live.url}/auth/register", json=meta,
                      headers={"Authorization": f"Bearer {plain}"}).status_code == 403
    op = h.backend(live.node, scope="system/*.rs", roles=["operator"])
    op_token = svc.token_for_client(op.client_id, "system/*.rs", fhir_base=live.fhir).token
    r = httpx.post(f"{live.url}/auth/register", json=meta, headers={"Authorization": f"Bearer {op_token}"})
    assert r.status_code == 201, r.text
    body = r.json()
    assert body["client_id"] and "client_secret" not in body
    key.ensure_kid()
    new = h.Backend(body["client_id"], key, "ES384")
    new.key = jwk.ECKey.import_key(key.as_dict(private=True), {"kid": "k1"})
    with backend_session(live, new) as s:
        tok = s.fetch_token(live.token_url, grant_type="client_credentials", scope="system/Observation.rs")
        assert tok["scope"] == "system/Observation.rs"
