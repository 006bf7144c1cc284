"""Access tokens: JWTs (RFC 9068 profile, ``typ: at+jwt``) signed ES256 by the node,
with a row per token so that revocation (RFC 7009) and introspection (RFC 7662) work,
and the :class:`~hie.principal.Principal` a verified token stands for.

Verification rejects: a missing or malformed token, ``alg`` other than the node's own
(ES256/RS256; never ``none`` or HMAC), an unknown ``kid``, a bad signature, a ``typ``
other than ``at+jwt`` (an id_token is not an access token), expiry, a wrong audience
(the token must name this FHIR base), and tokens revoked, or whose client or user has
been deactivated. Signature checks are cached per token string (the same bytes verify
the same way, while their key is not retired); expiry and audience are checked on every
request; revocation and deactivation through the process's token status
(:mod:`hie.auth.revocation`): in force on every process within the token check interval,
without a database round trip in the steady state (ADR 0008).

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
from sqlalchemy import Connection, Engine, and_, insert, or_, select, update

from hie.auth import revocation
from hie.auth.keys import KeyStore
from hie.auth.tables import auth_token as T
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
    def __init__(self, keys: KeyStore, *, check_interval_s: float = 1.0) -> None:
        self.keys = keys
        #: What this process knows about issued tokens (revocation, deactivation).
        self.status = revocation.TokenStatus(keys, check_interval_s)
        self._cache: OrderedDict[str, tuple[dict[str, Any], str]] = OrderedDict()  # token -> (claims, kid)
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
            if hit is not None and self.keys.known(hit[1]):
                self._cache.move_to_end(token)
                return hit[0]
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
            self._cache[token] = (claims, key.kid)
            if len(self._cache) > 4096:
                self._cache.popitem(last=False)
        return claims

    def verify(
        self, source: Engine | Connection, token: str, *, audiences: tuple[str, ...], now: float | None = None,
    ) -> dict[str, Any]:
        """The claims of a valid access token, else :class:`Unauthenticated`. ``source`` is
        where to look when the process's token status must (an engine: a connection is
        opened only then)."""
        with revocation.lazy(source) as conn:
            self.status.refresh(conn)  # first: a retired key must not verify from the cache
            claims = self._signature_checked(token)
            now = time.time() if now is None else now
            exp = claims.get("exp")
            if not isinstance(exp, int) or exp <= now:
                raise Unauthenticated("The access token has expired", headers=_challenge("invalid_token"))
            if claims.get("aud") not in audiences:
                raise Unauthenticated("The access token is not meant for this server (aud)",
                                      headers=_challenge("invalid_token"))
            if not self.status.valid(conn, claims):
                raise Unauthenticated("The access token has been revoked", headers=_challenge("invalid_token"))
        return claims

    # -- revoking ------------------------------------------------------------------------

    @staticmethod
    def revoke(conn: Connection, token_key: str) -> None:
        """Revoke a token; revoking a refresh token also revokes the access tokens it issued."""
        conn.execute(update(T).where(or_(T.c.token_key == token_key, T.c.parent == token_key)).values(revoked=True))
        revocation.record(conn, ("token", token_key), by="revoke")

    @staticmethod
    def revoke_all(conn: Connection, *, user_id: str | None = None, client_id: str | None = None,
                   now_us: int | None = None) -> int:
        """Revoke every unexpired token (access and refresh) of a user or of a client; the count."""
        if (user_id is None) == (client_id is None):
            raise ValueError("revoke the tokens of one user or of one client")
        now_us = int(time.time() * 1_000_000) if now_us is None else now_us
        who = T.c.user_id == user_id if user_id is not None else T.c.client_id == client_id
        n = conn.execute(update(T).where(who, T.c.revoked.is_(False), T.c.expires > now_us)
                         .values(revoked=True)).rowcount
        revocation.record(conn, ("user", user_id) if user_id is not None else ("client", str(client_id)),
                          by="revoke", now_us=now_us)
        return n

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
