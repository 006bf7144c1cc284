"""Break-the-glass, disaster mode and $consent-explain (repository, operation and HTTP level).

Break-the-glass has one specification, :class:`consent.policy.BreakGlassRule` (emergency
role, purpose of use ETREAT, duration); the token endpoint, ``$break-glass``, the SQL access
predicate and the reference decision each follow it, and each is tested here."""

from __future__ import annotations

import re
import time
from datetime import timedelta
from html import unescape
from urllib.parse import parse_qs, urlsplit

import pytest
from authlib.common.security import generate_token
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from authlib.oauth2.rfc7636 import create_s256_code_challenge
from fastapi.testclient import TestClient

from consent.policy import DEFAULT_POLICY, EMERGENCY_ROLE, BreakGlassRule
from hie.api.app import create_app
from hie.clock import FixedClock
from hie.errors import Forbidden, InvalidRequest
from hie.interactions import operations as ops
from hie.principal import SYSTEM, Principal
from tests.auth import helpers as h
from tests.enforcement.scenario import ORGS, consents, region
from tests.enforcement.test_sql_matches_reference import NOW_US, visible_ids, write_all

ADMIN = {"Organization/org-a", "Organization/org-b", "Organization/org-c"}
ER = Principal(kind="user", name="er", user_id="er-doc", organization_id=ORGS["org-c"],
               roles=frozenset({"emergency-clinician"}), purpose_of_use="ETREAT")
#: the same clinician acting for ordinary treatment (a token without the ETREAT purpose)
ER_TREAT = Principal(kind="user", name="er", user_id="er-doc", organization_id=ORGS["org-c"],
                     roles=frozenset({"emergency-clinician"}), purpose_of_use="TREAT")
DISASTER = Principal(kind="user", name="dmat", user_id="dmat", organization_id=ORGS["org-c"],
                     roles=frozenset({"disaster-response"}))
OPERATOR = Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"}))
#: p1's emergency dataset at NOW (2026-11-21): demographics, active problems (not PSY),
#: medications of the last 90 days, labs of the last 30 days; sensitive data excluded.
P1_EMERGENCY = {"Patient/p1", "Condition/cond-a", "Condition/cond-a-uninformed", "MedicationRequest/med-a",
                "Observation/lab-b-2026"}


def call(node, principal, name, level, res_type=None, res_id=None, params=(), method="POST", body=None):
    op = ops.find(name, level, res_type)
    with node.context(principal, write=op.write) as ctx:
        return op.fn(ctx, ops.OperationCall(name, level, res_type, res_id, list(params), body, method))


@pytest.fixture
def region_node(node):
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    write_all(node, region())
    return node


def test_break_glass_opens_the_emergency_dataset_for_that_patient_only(region_node):
    node = region_node
    assert visible_ids(node, ER) == ADMIN
    res = call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "意識障害で救急搬送")])
    assert res.status == 200
    seen = visible_ids(node, ER)
    assert seen - ADMIN == P1_EMERGENCY
    assert "Observation/lab-p2-b" not in seen
    log = call(node, SYSTEM, "break-glass-log", "instance", "Patient", "p1", method="GET").body
    assert log["parameter"][0]["part"][3]["valueString"] == "意識障害で救急搬送"


def test_break_glass_expires(region_node):
    node = region_node
    call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    node.clock.t += 24 * 3600 * 1_000_000 + 1
    assert visible_ids(node, ER) == ADMIN


def test_break_glass_needs_role_and_reason(region_node):
    node = region_node
    with pytest.raises(InvalidRequest):
        call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "  ")])
    plain = Principal(kind="user", name="x", user_id="x", organization_id=ORGS["org-c"])
    with pytest.raises(Forbidden):
        call(node, plain, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    assert visible_ids(node, plain) == ADMIN
    # an emergency role without the ETREAT purpose (nor with it, but without the role) may not declare
    with pytest.raises(Forbidden, match="purpose of use must be ETREAT"):
        call(node, ER_TREAT, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    etreat_only = Principal(kind="user", name="y", user_id="y", organization_id=ORGS["org-c"], purpose_of_use="ETREAT")
    with pytest.raises(Forbidden, match="emergency role"):
        call(node, etreat_only, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    assert visible_ids(node, ER) == ADMIN  # nothing was declared


def test_the_sql_predicate_opens_a_declaration_only_to_the_etreat_purpose(region_node):
    node = region_node
    call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    assert visible_ids(node, ER) - ADMIN == P1_EMERGENCY
    # the same user, same declaration, acting for plain treatment: the glass branch is closed
    assert visible_ids(node, ER_TREAT) == ADMIN
    no_purpose = Principal(kind="user", name="er", user_id="er-doc", organization_id=ORGS["org-c"],
                           roles=frozenset({"emergency-clinician"}))
    assert visible_ids(node, no_purpose) == ADMIN
    btg = Principal(kind="user", name="er", user_id="er-doc", organization_id=ORGS["org-c"],
                    roles=frozenset({"emergency-clinician"}), purpose_of_use="BTG")  # a specialization of ETREAT
    assert visible_ids(node, btg) - ADMIN == P1_EMERGENCY


def test_break_glass_duration_comes_from_the_rule(region_node):
    node = region_node
    res = call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    parts = {p["name"]: p for p in res.body["parameter"]}
    from hie.clock import parse_instant_us

    declared = parse_instant_us(parts["declared"]["valueInstant"])
    expires = parse_instant_us(parts["expires"]["valueInstant"])
    assert timedelta(microseconds=expires - declared) == DEFAULT_POLICY.break_glass.duration == timedelta(hours=24)


def test_the_rule_itself():
    rule = BreakGlassRule()
    er = frozenset({EMERGENCY_ROLE})
    assert rule.admits(er, "ETREAT") and rule.admits(er, "BTG") and rule.admits(er, "ERTREAT")
    assert rule.refusals(er, "TREAT") == ["purpose of use must be ETREAT, got TREAT"]
    assert rule.refusals(frozenset(), "ETREAT") == ["the user lacks an emergency role (emergency-clinician)"]
    assert not rule.admits(er, None)
    assert rule.may_claim_purpose(frozenset(), "TREAT") and rule.may_claim_purpose(frozenset(), None)
    assert rule.may_claim_purpose(er, "ETREAT") and not rule.may_claim_purpose(frozenset(), "ETREAT")
    assert not rule.may_claim_purpose(frozenset(), "BTG")
    custom = BreakGlassRule(roles=frozenset({"er-doctor"}), duration=timedelta(hours=2))
    assert custom.admits(frozenset({"er-doctor"}), "ETREAT") and not custom.admits(er, "ETREAT")


def test_patient_sees_break_glass_uses_about_them_and_others_do_not(region_node):
    node = region_node
    call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    p1 = Principal(kind="patient", name="p1", user_id="pp1", patient_id="p1")
    p2 = Principal(kind="patient", name="p2", user_id="pp2", patient_id="p2")
    assert len(call(node, p1, "break-glass-log", "instance", "Patient", "p1", method="GET").body["parameter"]) == 1
    from hie.errors import NotFound

    with pytest.raises(NotFound):
        call(node, p2, "break-glass-log", "instance", "Patient", "p1", method="GET")
    report = call(node, OPERATOR, "break-glass-report", "system", method="GET").body
    assert len(report["parameter"]) == 1


def test_disaster_mode_opens_emergency_data_to_disaster_accounts_only_while_on(region_node):
    node = region_node
    assert visible_ids(node, DISASTER) == ADMIN
    with pytest.raises(Forbidden):
        call(node, DISASTER, "disaster-mode", "system", params=[("mode", "on")])
    switched = call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "on")])
    assert switched.body["parameter"][0]["valueCode"] == "on"
    seen = visible_ids(node, DISASTER)
    assert P1_EMERGENCY <= seen and "Patient/p2" in seen
    assert "Observation/lab-p2-b" not in seen  # 51 days old: outside the 30-day lab window
    assert "Observation/lab-a-hiv" not in seen and "DocumentReference/doc-a" not in seen
    plain = Principal(kind="user", name="x", user_id="x", organization_id=ORGS["org-c"])
    assert visible_ids(node, plain) == ADMIN
    call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "off")])
    assert visible_ids(node, DISASTER) == ADMIN


def test_consent_explain_names_the_provisions(region_node):
    node = region_node
    write_all(node, consents()["all-except-b"])
    body = call(node, OPERATOR, "consent-explain", "instance", "Patient", "p1",
                [("facility", ORGS["org-b"]), ("resource", "Observation/lab-a-2026")], method="GET").body
    parts = {p["name"]: p for p in body["parameter"]}
    assert parts["decision"]["valueCode"] == "deny"
    assert "org-b" in parts["explanation"]["valueString"]
    body = call(node, OPERATOR, "consent-explain", "instance", "Patient", "p1",
                [("facility", ORGS["org-c"]), ("resource", "Observation/lab-a-2026")], method="GET").body
    assert {p["name"]: p for p in body["parameter"]}["decision"]["valueCode"] == "permit"
    with pytest.raises(Forbidden):
        call(node, ER, "consent-explain", "instance", "Patient", "p1", [("facility", ORGS["org-b"])], method="GET")


def test_revocation_takes_effect_on_the_next_request(region_node):
    node = region_node
    write_all(node, consents()["facility-b-only"])
    b = Principal(kind="user", name="b", user_id="ub", organization_id=ORGS["org-b"])
    assert "Observation/lab-a-2026" in visible_ids(node, b)
    write_all(node, consents()["revoked"])  # same Consent id, status inactive
    assert "Observation/lab-a-2026" not in visible_ids(node, b)


def test_invalid_consent_is_rejected_with_its_path(region_node):
    from hie.errors import InvalidResource
    from hie.storage.repository import Write

    bad = consents()["facility-b-only"][0]
    bad = {**bad, "provision": {**bad["provision"], "actor": [{"reference": {"reference": "Organization/org-b"}}]}}
    with pytest.raises(InvalidResource) as exc:
        with region_node.context(SYSTEM, write=True) as ctx:
            ctx.repo.write_batch([Write("update", "Consent", bad["id"], bad)])
    assert exc.value.issues[0].expression[0].startswith("Consent.provision")


# -- over HTTP: the token endpoint, then $break-glass and reads with the token ------------

FHIR_BASE = "http://testserver/fhir"  # the node's configured base: the tokens' audience
REDIRECT = "http://127.0.0.1:9/cb"


@pytest.fixture
def http(region_node):
    with TestClient(create_app(region_node, audit=False), base_url="https://testserver") as client:
        yield client


def _user_token(node, client, *, username: str, roles: list[str], purpose: str | None):
    """The authorization-code flow (PKCE, password + TOTP) for a clinician of org-c, with
    ``purpose_of_use`` sent to the token endpoint; the token endpoint's raw answer."""
    enrolment = h.user(node, username=username, org=ORGS["org-c"], roles=roles)
    cid = h.app_client(node, redirect=REDIRECT, scope="openid fhirUser user/*.rs")
    verifier = generate_token(48)
    page = client.get("/auth/authorize", params={
        "response_type": "code", "client_id": cid, "redirect_uri": REDIRECT, "scope": "openid fhirUser user/*.rs",
        "state": "s1", "aud": FHIR_BASE, "code_challenge": create_s256_code_challenge(verifier),
        "code_challenge_method": "S256"}, follow_redirects=False)
    assert page.status_code == 200, (page.text, page.headers.get("location"))
    fields = {k: unescape(v) for k, v in re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)"', page.text)}
    fields.update({"username": username, "password": enrolment.password, "otp": h.totp_now(enrolment),
                   "decision": "allow"})
    done = client.post("/auth/login", data=fields, follow_redirects=False)
    assert done.status_code == 302, done.text
    code = parse_qs(urlsplit(done.headers["location"]).query)["code"][0]
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": REDIRECT, "client_id": cid,
            "code_verifier": verifier}
    if purpose is not None:
        form["purpose_of_use"] = purpose
    return client.post("/auth/token", data=form)


def _bearer(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


def _p1_ids(client, token: str) -> set[str]:
    ids = set()
    for rtype in ("Observation", "Condition", "MedicationRequest"):
        r = client.get(f"/fhir/{rtype}?patient=Patient/p1&_count=100", headers=_bearer(token))
        assert r.status_code == 200, r.text
        ids |= {f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in r.json().get("entry") or ()}
    return ids


def test_token_endpoint_issues_etreat_to_an_emergency_role_user_only(region_node, http):
    node = region_node
    ok = _user_token(node, http, username="er-doc", roles=[EMERGENCY_ROLE], purpose="ETREAT")
    assert ok.status_code == 200, ok.text
    from hie.auth.service import AuthService

    with node.engine.connect() as conn:
        claims = AuthService.for_node(node).tokens.verify(conn, ok.json()["access_token"], audiences=(FHIR_BASE,))
    assert claims["pou"] == "ETREAT"

    refused = _user_token(node, http, username="plain-doc", roles=[], purpose="ETREAT")
    assert refused.status_code == 400
    assert refused.json()["error"] == "invalid_request"
    assert "emergency role" in refused.json()["error_description"]
    # ordinary purposes stay open to every user
    assert _user_token(node, http, username="plain-doc-2", roles=[], purpose="TREAT").status_code == 200


def test_token_endpoint_refuses_etreat_to_a_backend_client(region_node, http):
    b = h.backend(region_node, scope="system/*.rs", org=ORGS["org-c"], roles=[EMERGENCY_ROLE])
    token_url = "https://testserver/auth/token"

    def assertion() -> str:
        return private_key_jwt_sign(b.key, client_id=b.client_id, token_endpoint=token_url, alg=b.alg,
                                    claims={"exp": int(time.time()) + 240}, header={"kid": b.key.kid})

    form = {"grant_type": "client_credentials", "scope": "system/*.rs",
            "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"}
    refused = http.post("/auth/token", data={**form, "client_assertion": assertion(), "purpose_of_use": "ETREAT"})
    assert refused.status_code == 400 and refused.json()["error"] == "invalid_request", refused.text
    ok = http.post("/auth/token", data={**form, "client_assertion": assertion(), "purpose_of_use": "TREAT"})
    assert ok.status_code == 200, ok.text


def test_break_glass_over_http_needs_the_etreat_token(region_node, http):
    node = region_node
    treat = _user_token(node, http, username="er-doc", roles=[EMERGENCY_ROLE], purpose=None).json()["access_token"]
    params = {"resourceType": "Parameters", "parameter": [{"name": "reason", "valueString": "意識障害で救急搬送"}]}
    # with a plain-treatment token the declaration is refused and nothing opens
    r = http.post("/fhir/Patient/p1/$break-glass", json=params, headers=_bearer(treat))
    assert r.status_code == 403, r.text
    assert _p1_ids(http, treat) == set()

    etreat = _user_token(node, http, username="er-doc-2", roles=[EMERGENCY_ROLE],
                         purpose="ETREAT").json()["access_token"]
    r = http.post("/fhir/Patient/p1/$break-glass", json=params, headers=_bearer(etreat))
    assert r.status_code == 200, r.text
    assert _p1_ids(http, etreat) == P1_EMERGENCY - {"Patient/p1"}
