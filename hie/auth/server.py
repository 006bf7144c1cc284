"""The authorization server, built on authlib's OAuth 2.0 framework.

* authorization code grant with PKCE (S256 only, required for every client), OpenID
  Connect id_token (RS256) carrying ``fhirUser``, the SMART ``patient`` launch context and
  rotating refresh tokens (``offline_access`` / ``online_access``);
* client_credentials for backend services, authenticated by ``private_key_jwt``
  (RFC 7523 client assertions signed RS384 or ES384, keys from the client's JWKS inline
  or by URL; the ``jti`` of each assertion is remembered until it expires and a replay
  is refused);
* token introspection (RFC 7662), revocation (RFC 7009), and client registration
  (RFC 7591) for operators only;
* an optional ``purpose_of_use`` token parameter (v3 PurposeOfUse, carried as the ``pou``
  claim); the break-the-glass purpose ``ETREAT`` is issued only to a facility user holding an
  emergency role (:class:`consent.policy.BreakGlassRule`).

authlib has no Starlette integration for the server side, so this module supplies the
framework half (:class:`HieRequest`, ``handle_response``); :mod:`hie.api.auth_routes`
turns HTTP into :class:`HieRequest` and the (status, body, headers) answers back.

Spec: https://hl7.org/fhir/smart-app-launch/app-launch.html ;
https://hl7.org/fhir/smart-app-launch/backend-services.html ;
https://www.rfc-editor.org/rfc/rfc7523 ; https://www.rfc-editor.org/rfc/rfc7636 ;
https://www.rfc-editor.org/rfc/rfc7662 ; https://www.rfc-editor.org/rfc/rfc7009 ;
https://www.rfc-editor.org/rfc/rfc7591 ; https://openid.net/specs/openid-connect-core-1_0.html
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import Any

import orjson
from authlib.oauth2 import AuthorizationServer
from authlib.oauth2.rfc6749 import OAuth2Payload, OAuth2Request
from authlib.oauth2.rfc6749.errors import (
    InvalidClientError,
    InvalidGrantError,
    InvalidRequestError,
    InvalidScopeError,
)
from authlib.oauth2.rfc6749.grants import (
    AuthorizationCodeGrant,
    ClientCredentialsGrant,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion
from authlib.oauth2.rfc7591 import ClientRegistrationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oidc.core.grants import OpenIDCode
from joserfc import jwt
from joserfc.errors import JoseError
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from hie.auth import scopes as sc
from hie.storage.db import write_tx
from hie.auth.clients import ASSERTION_ALGS, Client, add_client, get_client
from hie.auth.tables import auth_code as AC
from hie.auth.tables import auth_jti as J
from hie.auth.tables import auth_token as TOKENS
from hie.auth.tokens import (
    APP_TTL,
    BACKEND_TTL,
    PURPOSES,
    REFRESH_TTL_OFFLINE,
    REFRESH_TTL_ONLINE,
    TokenService,
    refresh_key,
)
from hie.auth.users import User, get_user

CODE_TTL = 60  # seconds; RFC 6749 recommends at most 10 minutes
TOKEN_AUTH_METHODS = ["private_key_jwt", "client_secret_basic", "client_secret_post", "none"]


# -- the framework half: requests ---------------------------------------------------------


class _Payload(OAuth2Payload):
    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._list: defaultdict[str, list[str]] = defaultdict(list)
        for k, v in pairs:
            self._list[k].append(v)
        self._data = {k: v[0] for k, v in self._list.items()}

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> defaultdict[str, list[str]]:
        return self._list


class HieRequest(OAuth2Request):
    """An HTTP request as authlib wants it, with what the node adds: the FHIR base the
    tokens are for and the caller's address."""

    def __init__(self, method: str, uri: str, headers: dict[str, str], args: list[tuple[str, str]],
                 form: list[tuple[str, str]], *, fhir_base: str, json: Any = None) -> None:
        super().__init__(method, uri, headers=headers)
        self._args = dict(args)
        self._form = dict(form)
        self.payload = _Payload(args + form)
        self.fhir_base = fhir_base
        self.json = json
        self.rotating: str | None = None  # the refresh token (key) this request rotates

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class _JsonPayload:
    def __init__(self, data: Any) -> None:
        self.data = data


# -- models authlib works with ------------------------------------------------------------


@dataclass
class AuthCode:
    code_hash: str
    client_id: str
    user_id: str
    redirect_uri: str
    scope: str
    patient_id: str | None
    nonce: str | None
    code_challenge: str
    code_challenge_method: str
    auth_time: int

    def get_redirect_uri(self) -> str:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope

    def get_nonce(self) -> str | None:
        return self.nonce

    def get_auth_time(self) -> int:
        return self.auth_time // 1_000_000

    def get_acr(self) -> str | None:
        return None

    def get_amr(self) -> list[str]:
        return ["pwd", "otp", "mfa"]


@dataclass
class StoredToken:
    kind: str
    token_key: str
    client_id: str
    user_id: str | None
    scope: str
    patient_id: str | None
    issued: int
    expires: int
    revoked: bool
    claims: dict[str, Any]

    @classmethod
    def of(cls, row: Any) -> StoredToken:
        return cls(row.kind, row.token_key, row.client_id, row.user_id, row.scope, row.patient_id, row.issued,
                   row.expires, bool(row.revoked), orjson.loads(row.claims) if row.claims else {})

    def check_client(self, client: Client) -> bool:
        return client.client_id == self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_expires_in(self) -> int:
        return (self.expires - self.issued) // 1_000_000

    def is_expired(self) -> bool:
        return self.expires <= time.time() * 1_000_000

    def is_revoked(self) -> bool:
        return self.revoked

    def get_user(self) -> Any:
        return self.user_id

    def get_client(self) -> Any:
        return self.client_id


# -- client authentication: private_key_jwt -----------------------------------------------


class PrivateKeyJWT(JWTBearerClientAssertion):
    CLIENT_AUTH_METHOD = "private_key_jwt"

    def __init__(self, server: HieAuthorizationServer) -> None:
        super().__init__(validate_jti=True, leeway=30)
        self.server = server

    def get_audiences(self) -> list[str]:
        # SMART Backend Services: aud is the token endpoint URL.
        req = self.server.current_request()
        return list(dict.fromkeys([f"{self.server.svc.issuer(req.fhir_base)}/token", req.uri.split("?", 1)[0]]))

    def resolve_client_public_key(self, client: Client) -> Any:
        try:
            return client.public_keys()
        except Exception as exc:  # noqa: BLE001 - unreachable JWKS URL, bad key set
            raise InvalidClientError(description=f"The client's keys cannot be loaded: {exc}") from exc

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            token = jwt.decode(assertion, resolve_key, algorithms=list(ASSERTION_ALGS))
        except JoseError as exc:
            raise InvalidClientError(description=f"Client assertion rejected: {exc.description or exc.error}") from exc
        claims = token.claims
        exp, now = claims.get("exp"), time.time()
        if isinstance(exp, int | float) and exp > now + 300 + self.leeway:
            raise InvalidClientError(description="Client assertions may live at most five minutes")
        self.verify_claims(claims)
        return claims

    def validate_jti(self, claims: dict[str, Any], jti: str) -> bool:
        node = self.server.node
        exp = int(claims.get("exp", time.time() + 300))
        now_us = int(time.time() * 1_000_000)
        try:
            with write_tx(node.engine) as conn:
                # Housekeeping on each backend-services token request: expired assertion
                # ids, and access/refresh tokens a day past their expiry.
                conn.execute(J.delete().where(J.c.expires < now_us))
                TokenService.purge_expired(conn, now_us)
                conn.execute(insert(J), {"client_id": claims["sub"], "jti": str(jti)[:256],
                                         "expires": (exp + self.leeway) * 1_000_000})
        except IntegrityError:
            return False
        return True


# -- grants ------------------------------------------------------------------------------


class S256CodeChallenge(CodeChallenge):
    """PKCE for every authorization request, S256 only (SMART App Launch 2.0)."""

    SUPPORTED_CODE_CHALLENGE_METHOD = ["S256"]
    DEFAULT_CODE_CHALLENGE_METHOD = "S256"

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: send code_challenge with code_challenge_method=S256")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("code_challenge_method must be S256")
        super().validate_code_challenge(grant, redirect_uri)


def contexts_for_user(user: User) -> tuple[str, ...]:
    if user.kind == "patient":
        return ("patient",)
    return ("user", "patient") if user.launch_patient else ("user",)


class CodeGrant(AuthorizationCodeGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def validate_authorization_request(self) -> str:
        redirect_uri = super().validate_authorization_request()
        aud = self.request.payload.data.get("aud")
        if aud is not None and aud.rstrip("/") != self.request.fhir_base:
            raise InvalidRequestError(f"aud must be this server's FHIR base URL {self.request.fhir_base}",
                                      redirect_uri=redirect_uri, state=self.request.payload.state)
        return redirect_uri

    def save_authorization_code(self, code: str, request: Any) -> None:
        user: User = request.user
        client: Client = request.client
        scope = sc.grant(request.payload.scope, client.scope, contexts=contexts_for_user(user))
        data = request.payload.data
        now_us = int(time.time() * 1_000_000)
        with write_tx(self.server.node.engine) as conn:
            conn.execute(insert(AC), {
                "code_hash": hashlib.sha256(code.encode()).hexdigest(), "client_id": client.client_id,
                "user_id": user.user_id, "redirect_uri": request.payload.redirect_uri or "",
                "scope": " ".join(scope), "patient_id": user.launch_patient, "nonce": data.get("nonce"),
                "code_challenge": data["code_challenge"],
                "code_challenge_method": data.get("code_challenge_method", "S256"),
                "auth_time": user.auth_time or now_us, "expires": now_us + CODE_TTL * 1_000_000, "used": False,
            })

    def query_authorization_code(self, code: str, client: Client) -> AuthCode | None:
        h = hashlib.sha256(code.encode()).hexdigest()
        now_us = int(time.time() * 1_000_000)
        with write_tx(self.server.node.engine) as conn:
            # Consume first: a code works once, even under concurrent redemption.
            n = conn.execute(update(AC).where(
                AC.c.code_hash == h, AC.c.client_id == client.client_id, AC.c.used.is_(False), AC.c.expires > now_us,
            ).values(used=True)).rowcount
            if n != 1:
                return None
            row = conn.execute(select(AC).where(AC.c.code_hash == h)).one()
        return AuthCode(row.code_hash, row.client_id, row.user_id, row.redirect_uri, row.scope, row.patient_id,
                        row.nonce, row.code_challenge, row.code_challenge_method, row.auth_time)

    def delete_authorization_code(self, authorization_code: AuthCode) -> None:
        pass  # consumed in query_authorization_code

    def authenticate_user(self, authorization_code: AuthCode) -> User | None:
        with self.server.node.engine.connect() as conn:
            user = get_user(conn, authorization_code.user_id)
        if user is None or not user.active:
            return None
        return user.with_launch(authorization_code.patient_id, authorization_code.auth_time)


class RefreshGrant(RefreshTokenGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = TOKEN_AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True  # rotate on every use

    def authenticate_refresh_token(self, refresh_token: str) -> StoredToken | None:
        with self.server.node.engine.connect() as conn:
            row = TokenService.find(conn, refresh_key(refresh_token))
        if row is None or row.kind != "refresh":
            return None
        tok = StoredToken.of(row)
        return None if tok.is_revoked() or tok.is_expired() else tok

    def authenticate_user(self, refresh_token: StoredToken) -> User | None:
        with self.server.node.engine.connect() as conn:
            user = get_user(conn, refresh_token.user_id or "")
        if user is None or not user.active:
            return None
        return user.with_launch(refresh_token.patient_id, refresh_token.claims.get("auth_time"))

    def issue_token(self, user: User, refresh_token: StoredToken) -> dict[str, Any]:
        # The old token is claimed in the write transaction that issues the new ones
        # (HieAuthorizationServer.generate_token): of concurrent uses exactly one succeeds.
        self.request.rotating = refresh_token.token_key
        return super().issue_token(user, refresh_token)

    def revoke_old_credential(self, refresh_token: StoredToken) -> None:
        with write_tx(self.server.node.engine) as conn:
            TokenService.revoke(conn, refresh_token.token_key)


class BackendGrant(ClientCredentialsGrant):
    TOKEN_ENDPOINT_AUTH_METHODS = ["private_key_jwt"]


class HieOpenIDCode(OpenIDCode):
    def __init__(self, server: HieAuthorizationServer) -> None:
        super().__init__(require_nonce=False)
        self.server = server

    def exists_nonce(self, nonce: str, request: Any) -> bool:
        with self.server.node.engine.connect() as conn:
            return conn.execute(select(AC.c.code_hash).where(
                AC.c.client_id == request.payload.client_id, AC.c.nonce == nonce)).first() is not None

    def resolve_client_private_key(self, client: Client) -> Any:
        return self.server.svc.keys.signing("RS256").key

    def get_client_algorithm(self, client: Client) -> str:
        return "RS256"

    def get_encode_header(self, client: Client) -> dict[str, str]:
        return {"alg": "RS256", "kid": self.server.svc.keys.signing("RS256").kid, "typ": "JWT"}

    def get_client_claims(self, client: Client) -> dict[str, Any]:
        req = self.server.current_request()
        return {"iss": self.server.svc.issuer(req.fhir_base), "aud": [client.client_id]}

    def generate_user_info(self, user: User, scope: str) -> dict[str, Any]:
        info: dict[str, Any] = {"sub": user.user_id}
        if "fhirUser" in scope.split() and user.fhir_user:
            req = self.server.current_request()
            info["fhirUser"] = f"{req.fhir_base}/{user.fhir_user}"
        if "profile" in scope.split() or "fhirUser" in scope.split():
            info["name"] = user.display_name
        return info


# -- endpoints ---------------------------------------------------------------------------


class _TokenLookup:
    server: HieAuthorizationServer

    def query_token(self, token_string: str, token_type_hint: str | None) -> StoredToken | None:
        tokens = self.server.svc.tokens
        key = None
        if token_string.count(".") == 2:
            try:
                key = tokens._signature_checked(token_string).get("jti")
            except Exception:  # noqa: BLE001 - not one of ours
                key = None
        else:
            key = refresh_key(token_string)
        if not key:
            return None
        with self.server.node.engine.connect() as conn:
            row = TokenService.find(conn, key)
        return StoredToken.of(row) if row is not None else None


class Introspection(_TokenLookup, IntrospectionEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def check_permission(self, token: StoredToken, client: Client, request: Any) -> bool:
        # The client the token was issued to, and resource servers the operator trusts.
        return token.client_id == client.client_id or bool({"operator", "resource-server"} & client.roles)

    def introspect_token(self, token: StoredToken) -> dict[str, Any]:
        c = token.claims
        out = {
            "active": True, "scope": token.scope, "client_id": token.client_id,
            "token_type": "Bearer" if token.kind == "access" else "refresh_token",
            "exp": token.expires // 1_000_000, "iat": token.issued // 1_000_000,
        }
        for k in ("sub", "iss", "aud", "patient", "fhirUser", "jti"):
            if k in c:
                out[k] = c[k]
        if token.kind == "refresh":
            out["sub"] = token.user_id
            if token.patient_id:
                out["patient"] = token.patient_id
        return out


class Revocation(_TokenLookup, RevocationEndpoint):
    CLIENT_AUTH_METHODS = TOKEN_AUTH_METHODS

    def revoke_token(self, token: StoredToken, request: Any) -> None:
        with write_tx(self.server.node.engine) as conn:
            TokenService.revoke(conn, token.token_key)


class Registration(ClientRegistrationEndpoint):
    """RFC 7591 for operators: the route checks the operator's bearer token first and
    puts its principal on ``request.credential``."""

    def authenticate_token(self, request: Any) -> Any:
        return getattr(request, "operator", None)

    def get_server_metadata(self) -> dict[str, Any]:
        req = self.server.current_request()
        meta = smart_configuration(self.server.svc, req.fhir_base)
        meta.pop("scopes_supported")  # SMART scopes are open-ended (any type, any letters)
        return meta

    def generate_client_secret(self, request: Any) -> str | None:
        method = (request.payload.data or {}).get("token_endpoint_auth_method", "private_key_jwt")
        if method.startswith("client_secret"):
            import secrets

            return secrets.token_urlsafe(32)
        return None

    def generate_client_info(self, request: Any) -> dict[str, Any]:
        info = super().generate_client_info(request)
        if not info.get("client_secret"):
            info.pop("client_secret", None)
            info.pop("client_secret_expires_at", None)
        return info

    def save_client(self, client_info: dict[str, Any], client_metadata: dict[str, Any], request: Any) -> Client:
        data = request.payload.data or {}
        grants = client_metadata.get("grant_types") or ["authorization_code"]
        method = client_metadata.get("token_endpoint_auth_method", "private_key_jwt")
        kind = "backend" if "client_credentials" in grants else ("public" if method == "none" else "confidential")
        try:
            with write_tx(self.server.node.engine) as conn:
                client, _ = add_client(
                    conn, client_id=client_info["client_id"],
                    name=client_metadata.get("client_name") or client_info["client_id"],
                    kind=kind, auth_method=method, scope=client_metadata.get("scope") or "",
                    jwks=client_metadata.get("jwks"), jwks_uri=client_metadata.get("jwks_uri"),
                    redirect_uris=client_metadata.get("redirect_uris"),
                    organization_code=data.get("organization_code"), metadata=client_metadata,
                    secret=client_info.get("client_secret"), now_us=int(time.time() * 1_000_000),
                )
        except ValueError as exc:
            from authlib.oauth2.rfc7591.errors import InvalidClientMetadataError

            raise InvalidClientMetadataError(str(exc)) from exc
        return client


# -- the server --------------------------------------------------------------------------


class HieAuthorizationServer(AuthorizationServer):
    def __init__(self, node: Any, svc: Any) -> None:
        super().__init__()
        self.node = node
        self.svc = svc
        self._local = threading.local()
        self.register_client_auth_method("private_key_jwt", PrivateKeyJWT(self))
        self.register_grant(CodeGrant, [S256CodeChallenge(required=True), HieOpenIDCode(self)])
        self.register_grant(RefreshGrant)
        self.register_grant(BackendGrant)
        for endpoint in (Introspection, Revocation):
            self.register_endpoint(endpoint)
        self.registration = Registration(self)

    # framework half

    def current_request(self) -> HieRequest:
        return self._local.request

    def create_oauth2_request(self, request: Any) -> HieRequest:
        self._local.request = request
        return request

    def create_json_request(self, request: Any) -> HieRequest:
        self._local.request = request
        request.payload = _JsonPayload(request.json)
        return request

    def handle_response(self, status: int, body: Any, headers: Any) -> tuple[int, Any, list[tuple[str, str]]]:
        return status, body, list(headers)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass

    def query_client(self, client_id: str) -> Client | None:
        with self.node.engine.connect() as conn:
            client = get_client(conn, client_id)
        return client if client is not None and client.active else None

    def save_token(self, token: dict[str, Any], request: Any) -> None:
        pass  # tokens are recorded as they are generated (generate_token)

    # tokens

    def _check_emergency_purpose(self, purpose: str | None, user: User | None) -> None:
        """The break-the-glass purpose (ETREAT) only for a facility user with an emergency role
        (:class:`consent.policy.BreakGlassRule`, which ``$break-glass`` and the access predicate
        follow too); never for a backend client or a patient."""
        from consent.policy import DEFAULT_POLICY

        rule = getattr(self.node.policy, "policy", DEFAULT_POLICY).break_glass
        if not rule.is_emergency_purpose(purpose):
            return
        if (user is None or user.kind == "patient" or not user.organization_code
                or not rule.may_claim_purpose(user.roles, purpose)):
            raise InvalidRequestError(f"Purpose of use {purpose} (break-the-glass) is only for facility users with "
                                      f"an emergency role ({', '.join(sorted(rule.roles))})")

    def generate_token(self, grant_type: str, client: Client, user: User | None = None, scope: str | None = None,
                       expires_in: int | None = None, include_refresh_token: bool = True) -> dict[str, Any]:
        req = self.current_request()
        if grant_type == "client_credentials":
            contexts: tuple[str, ...] = ("system",)
        else:
            assert user is not None
            contexts = contexts_for_user(user)
        granted = sc.grant(scope, client.scope, contexts=contexts)
        if (user is not None and user.launch_patient and "launch/patient" in (scope or "").split()
                and "launch/patient" not in granted):  # granted already when the client may have it
            granted.append("launch/patient")
        if not any(sc.parse_one(s) for s in granted):
            raise InvalidScopeError(f"None of the requested scopes can be granted to this client: {scope!r}")
        purpose = req.payload.data.get("purpose_of_use")
        if purpose is not None and purpose not in PURPOSES:
            raise InvalidRequestError(f"purpose_of_use must be one of {', '.join(PURPOSES)}")
        self._check_emergency_purpose(purpose, user)
        now = int(time.time())
        with write_tx(self.node.engine) as conn:
            if req.rotating is not None:
                _claim_refresh(conn, req.rotating)
            refresh = None
            parent = None
            if user is not None and include_refresh_token and ({"offline_access", "online_access"} & set(granted)):
                ttl = REFRESH_TTL_OFFLINE if "offline_access" in granted else REFRESH_TTL_ONLINE
                refresh = self.svc.tokens.issue_refresh(
                    conn, client_id=client.client_id, user_id=user.user_id, scope=granted,
                    patient_id=user.launch_patient, expires_in=ttl, claims={"auth_time": user.auth_time}, now=now,
                )
                parent = refresh_key(refresh)
            if user is None:
                issued = self.svc.tokens.issue(
                    conn, issuer=self.svc.issuer(req.fhir_base), audience=req.fhir_base, client_id=client.client_id,
                    kind="client", scope=granted, expires_in=BACKEND_TTL, organization_code=client.organization_code,
                    roles=client.roles, purpose=purpose, now=now,
                )
            else:
                issued = self.svc.tokens.issue(
                    conn, issuer=self.svc.issuer(req.fhir_base), audience=req.fhir_base, client_id=client.client_id,
                    kind="patient" if user.kind == "patient" else "user", scope=granted, expires_in=APP_TTL,
                    user=user, organization_code=user.organization_code, roles=user.roles,
                    patient_id=user.launch_patient, purpose=purpose, parent=parent, now=now,
                )
        token: dict[str, Any] = {
            "token_type": "Bearer", "access_token": issued.token, "expires_in": issued.expires_at - now,
            "scope": " ".join(granted),
        }
        if refresh:
            token["refresh_token"] = refresh
        if user is not None and user.launch_patient:
            token["patient"] = user.launch_patient
            token["need_patient_banner"] = user.kind != "patient"
        return token


def _claim_refresh(conn: Any, token_key: str) -> None:
    """Revoke the refresh token being rotated, if no one else has: an atomic compare-and-set
    (a concurrent use waits for the row and finds it revoked). The loser is refused as a reuse
    (``invalid_grant``); the node keeps no refresh-token families, so nothing else is revoked."""
    claimed = conn.execute(update(TOKENS).where(TOKENS.c.token_key == token_key, TOKENS.c.revoked.is_(False))
                           .values(revoked=True)).rowcount
    if claimed != 1:
        raise InvalidGrantError("The refresh token has already been used")


def smart_configuration(svc: Any, fhir_base: str) -> dict[str, Any]:
    """The SMART configuration document (also the RFC 8414 metadata registration uses)."""
    issuer = svc.issuer(fhir_base)
    return {
        "issuer": issuer,
        "jwks_uri": f"{issuer}/jwks",
        "authorization_endpoint": f"{issuer}/authorize",
        "token_endpoint": f"{issuer}/token",
        "introspection_endpoint": f"{issuer}/introspect",
        "revocation_endpoint": f"{issuer}/revoke",
        "registration_endpoint": f"{issuer}/register",
        "grant_types_supported": ["authorization_code", "refresh_token", "client_credentials"],
        "response_types_supported": ["code"],
        "token_endpoint_auth_methods_supported": TOKEN_AUTH_METHODS,
        "token_endpoint_auth_signing_alg_values_supported": list(ASSERTION_ALGS),
        "id_token_signing_alg_values_supported": ["RS256"],
        "scopes_supported": [
            "openid", "fhirUser", "profile", "launch/patient", "offline_access", "online_access",
            "patient/*.cruds", "patient/*.rs", "user/*.cruds", "user/*.rs", "system/*.cruds", "system/*.rs",
        ],
        "code_challenge_methods_supported": ["S256"],
        "capabilities": [
            "launch-standalone", "client-public", "client-confidential-symmetric", "client-confidential-asymmetric",
            "sso-openid-connect", "context-standalone-patient", "permission-offline", "permission-online",
            "permission-patient", "permission-user", "permission-v2", "authorize-post",
        ],
        "subject_types_supported": ["public"],
    }
