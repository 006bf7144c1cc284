"""Access tokens: JWTs (RFC 9068 profile, ``typ: at+jwt``) signed ES256 by the node,
with a row per token so that revocation (RFC 7009) and introspection (RFC 7662) work,
and the :class:`~hie.principal.Principal` a verified token stands for.

Verification rejects: a missing or malformed token, ``alg`` other than the node's own
(ES256/RS256; never ``none`` or HMAC), an unknown ``kid``, a bad signature, a ``typ``
other than ``at+jwt`` (an id_token is not an access token), expiry, a wrong audience
(the token must name this FHIR base), and tokens revoked, or whose client or user has
been deactivated. Signature checks are cached per token string (the same bytes verify
the same way); expiry and revocation are checked on every request.

Spec: https://www.rfc-editor.org/rfc/rfc9068 ; https://hl7.org/fhir/smart-app-launch/app-launch.html#response-5
"""

from __future__ import annotations

import hashlib
import secrets
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass
from typing import Any

import orjson
from joserfc import jws, jwt
from joserfc.errors import JoseError
from sqlalchemy import Connection, and_, insert, or_, select, update

from hie.auth.keys import KeyStore
from hie.auth.tables import auth_client as C
from hie.auth.tables import auth_token as T
from hie.auth.tables import auth_user as U
from hie.errors import Unauthenticated
from hie.principal import Principal

ACCESS_TOKEN_TYP = "at+jwt"
BACKEND_TTL = 300  # SMART Backend Services: access tokens should live <= 5 minutes
APP_TTL = 3600
REFRESH_TTL_OFFLINE = 30 * 24 * 3600
REFRESH_TTL_ONLINE = 12 * 3600
PURPOSES = ("TREAT", "ETREAT", "PATRQT", "HOPERAT", "HPAYMT", "PUBHLTH")  # v3 PurposeOfUse


@dataclass(frozen=True)
class Issued:
    token: str
    jti: str
    expires_at: int  # epoch seconds
    claims: dict[str, Any]


def refresh_key(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


def default_purpose(kind: str) -> str:
    return {"patient": "PATRQT", "operator": "HOPERAT"}.get(kind, "TREAT")


class TokenService:
    def __init__(self, keys: KeyStore) -> None:
        self.keys = keys
        self._cache: OrderedDict[str, dict[str, Any]] = OrderedDict()
        self._lock = threading.Lock()

    # -- issuing -------------------------------------------------------------------------

    def issue(
        self, conn: Connection, *, issuer: str, audience: str, client_id: str, kind: str, scope: list[str],
        expires_in: int, user: Any = None, organization_code: str | None = None,
        roles: frozenset[str] = frozenset(), patient_id: str | None = None, purpose: str | None = None,
        parent: str | None = None, now: int | None = None,
    ) -> Issued:
        """Sign an access token and record its ``jti``. ``kind`` is client, user or patient."""
        now = int(time.time()) if now is None else now
        jti = secrets.token_urlsafe(18)
        claims: dict[str, Any] = {
            "iss": issuer, "aud": audience, "sub": user.user_id if user is not None else client_id,
            "client_id": client_id, "iat": now, "exp": now + expires_in, "jti": jti,
            "scope": " ".join(scope), "hie_kind": kind,
            "pou": purpose or default_purpose(user.kind if user is not None else "client"),
        }
        if organization_code:
            claims["org"] = organization_code
        if roles:
            claims["roles"] = sorted(roles)
        if patient_id:
            claims["patient"] = patient_id
        if user is not None:
            if user.fhir_user:
                claims["fhirUser"] = user.fhir_user
            claims["name"] = user.display_name
        key = self.keys.signing("ES256")
        token = jwt.encode({"alg": "ES256", "kid": key.kid, "typ": ACCESS_TOKEN_TYP}, claims, key.key,
                           algorithms=["ES256"])
        conn.execute(insert(T), {
            "kind": "access", "token_key": jti, "client_id": client_id,
            "user_id": user.user_id if user is not None else None, "scope": claims["scope"],
            "patient_id": patient_id, "issued": now * 1_000_000, "expires": (now + expires_in) * 1_000_000,
            "revoked": False, "parent": parent, "claims": orjson.dumps(claims).decode(),
        })
        return Issued(token, jti, now + expires_in, claims)

    def issue_refresh(
        self, conn: Connection, *, client_id: str, user_id: str, scope: list[str], patient_id: str | None,
        expires_in: int, claims: dict[str, Any], now: int | None = None,
    ) -> str:
        now = int(time.time()) if now is None else now
        token = secrets.token_urlsafe(32)
        conn.execute(insert(T), {
            "kind": "refresh", "token_key": refresh_key(token), "client_id": client_id, "user_id": user_id,
            "scope": " ".join(scope), "patient_id": patient_id, "issued": now * 1_000_000,
            "expires": (now + expires_in) * 1_000_000, "revoked": False, "parent": None,
            "claims": orjson.dumps(claims).decode(),
        })
        return token

    # -- verifying -----------------------------------------------------------------------

    def _signature_checked(self, token: str) -> dict[str, Any]:
        with self._lock:
            hit = self._cache.get(token)
            if hit is not None:
                self._cache.move_to_end(token)
                return hit
        try:
            header = jws.extract_compact(token.encode()).headers()
        except (JoseError, ValueError, UnicodeError) as exc:
            raise Unauthenticated("The access token is malformed", headers=_challenge("invalid_token")) from exc
        alg, kid = header.get("alg"), header.get("kid")
        if alg not in ("ES256", "RS256"):
            raise Unauthenticated(f"Access tokens signed with alg {alg!r} are not accepted",
                                  headers=_challenge("invalid_token"))
        if header.get("typ") != ACCESS_TOKEN_TYP:
            raise Unauthenticated("Not an access token (typ must be at+jwt)", headers=_challenge("invalid_token"))
        key = self.keys.verification(kid) if isinstance(kid, str) else None
        if key is None or key.alg != alg:
            raise Unauthenticated("The access token was not signed by this node", headers=_challenge("invalid_token"))
        try:
            claims = jwt.decode(token, key.key, algorithms=[alg]).claims
        except JoseError as exc:
            raise Unauthenticated("The access token signature is invalid",
                                  headers=_challenge("invalid_token")) from exc
        with self._lock:
            self._cache[token] = claims
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return claims

    def verify(
        self, conn: Connection, token: str, *, audiences: tuple[str, ...], now: float | None = None,
    ) -> dict[str, Any]:
        claims = self._signature_checked(token)
        now = time.time() if now is None else now
        exp = claims.get("exp")
        if not isinstance(exp, int) or exp <= now:
            raise Unauthenticated("The access token has expired", headers=_challenge("invalid_token"))
        if claims.get("aud") not in audiences:
            raise Unauthenticated("The access token is not meant for this server (aud)",
                                  headers=_challenge("invalid_token"))
        row = conn.execute(
            select(T.c.revoked, C.c.active, U.c.active)
            .select_from(T.outerjoin(C, C.c.client_id == T.c.client_id).outerjoin(U, U.c.user_id == T.c.user_id))
            .where(T.c.token_key == claims.get("jti"), T.c.kind == "access")
        ).first()
        if row is None or row[0] or not row[1] or (claims.get("hie_kind") in ("user", "patient") and not row[2]):
            raise Unauthenticated("The access token has been revoked", headers=_challenge("invalid_token"))
        return claims

    # -- revoking ------------------------------------------------------------------------

    @staticmethod
    def revoke(conn: Connection, token_key: str) -> None:
        """Revoke a token; revoking a refresh token also revokes the access tokens it issued."""
        conn.execute(update(T).where(or_(T.c.token_key == token_key, T.c.parent == token_key)).values(revoked=True))

    @staticmethod
    def find(conn: Connection, token_key: str) -> Any:
        return conn.execute(select(T).where(T.c.token_key == token_key)).first()

    @staticmethod
    def purge_expired(conn: Connection, now_us: int) -> int:
        return conn.execute(T.delete().where(and_(T.c.expires < now_us - 86_400_000_000))).rowcount


def principal_from_claims(claims: dict[str, Any], *, network_address: str | None = None) -> Principal:
    kind = claims.get("hie_kind", "client")
    roles = frozenset(claims.get("roles") or ())
    fhir_user = claims.get("fhirUser") or ""
    practitioner = fhir_user.split("/", 1)[1] if fhir_user.startswith("Practitioner/") else None
    return Principal(
        kind=kind,
        name=claims.get("name") or claims.get("client_id") or "?",
        client_id=claims.get("client_id"),
        user_id=claims["sub"] if kind in ("user", "patient") else None,
        organization_id=claims.get("org"),
        practitioner_id=practitioner,
        patient_id=claims.get("patient"),
        roles=roles,
        scopes=frozenset((claims.get("scope") or "").split()),
        purpose_of_use=claims.get("pou"),
        token_id=claims.get("jti"),
        network_address=network_address,
    )


def _challenge(error: str) -> dict[str, str]:
    return {"WWW-Authenticate": f'Bearer realm="hie", error="{error}"'}
