"""Registered clients: hospital systems (SMART Backend Services, ``private_key_jwt``
with their JWKS inline or by URL) and clinician/patient apps (authorization code with
PKCE; public, or confidential with a key or secret).

:class:`Client` is the model authlib's grants work with (``ClientMixin``).

Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html ;
https://hl7.org/fhir/smart-app-launch/client-confidential-asymmetric.html ;
https://www.rfc-editor.org/rfc/rfc7591 (client metadata)
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import threading
import time
from dataclasses import dataclass, field
from typing import Any, cast

import httpx
import orjson
from joserfc.jwk import KeySet, KeySetSerialization
from sqlalchemy import Connection, insert, select, update

from hie.auth.tables import auth_client as C

KINDS = ("backend", "confidential", "public")
AUTH_METHODS = ("private_key_jwt", "client_secret_basic", "client_secret_post", "none")
ASSERTION_ALGS = ("RS384", "ES384")  # SMART Backend Services: the server must support both


@dataclass
class Client:
    client_id: str
    name: str
    kind: str
    auth_method: str
    secret_hash: str | None
    jwks: str | None
    jwks_uri: str | None
    redirect_uris: list[str]
    scope: str
    organization_code: str | None
    roles: frozenset[str]
    active: bool
    metadata: dict[str, Any] = field(default_factory=dict)

    # -- authlib ClientMixin ----------------------------------------------------------------

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        return self.redirect_uris[0] if len(self.redirect_uris) == 1 else None

    def get_allowed_scope(self, scope: str) -> str:
        from hie.auth.scopes import grant

        return " ".join(grant(scope, self.scope, contexts=("patient", "user", "system")))

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        return redirect_uri in self.redirect_uris  # exact match (RFC 9700 §4.1.3)

    def check_client_secret(self, client_secret: str) -> bool:
        if not self.secret_hash:
            return False
        return hmac.compare_digest(self.secret_hash, secret_hash(client_secret))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        return method == self.auth_method

    def check_grant_type(self, grant_type: str) -> bool:
        if self.kind == "backend":
            return grant_type == "client_credentials"
        if grant_type == "refresh_token":
            return "offline_access" in self.scope.split() or "online_access" in self.scope.split()
        return grant_type == "authorization_code"

    def check_response_type(self, response_type: str) -> bool:
        return self.kind != "backend" and response_type == "code"

    # -- keys --------------------------------------------------------------------------------

    def public_keys(self) -> KeySet:
        if self.jwks:
            data = orjson.loads(self.jwks)
        elif self.jwks_uri:
            data = _fetch_jwks(self.jwks_uri)
        else:
            raise LookupError(f"client {self.client_id} has no registered keys")
        # Only asymmetric signing keys count; a JWKS with "oct" keys must not let a
        # client authenticate with a shared secret through the key set.
        keys = [k for k in data.get("keys", []) if k.get("kty") in ("RSA", "EC")]
        return KeySet.import_key_set({"keys": keys})


def secret_hash(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def new_client_id() -> str:
    return secrets.token_urlsafe(16)


_JWKS_CACHE: dict[str, tuple[float, dict[str, Any]]] = {}
_JWKS_LOCK = threading.Lock()
JWKS_TTL = 300.0


def _fetch_jwks(uri: str) -> dict[str, Any]:
    now = time.monotonic()
    with _JWKS_LOCK:
        hit = _JWKS_CACHE.get(uri)
        if hit and now - hit[0] < JWKS_TTL:
            return hit[1]
    resp = httpx.get(uri, timeout=5.0, follow_redirects=False)
    resp.raise_for_status()
    data = resp.json()
    with _JWKS_LOCK:
        _JWKS_CACHE[uri] = (now, data)
    return data


def _row_to_client(row: Any) -> Client:
    return Client(
        client_id=row.client_id, name=row.name, kind=row.kind, auth_method=row.auth_method,
        secret_hash=row.secret_hash, jwks=row.jwks, jwks_uri=row.jwks_uri,
        redirect_uris=(row.redirect_uris or "").split(), scope=row.scope,
        organization_code=row.organization_code, roles=frozenset((row.roles or "").split()),
        active=bool(row.active), metadata=orjson.loads(row.metadata) if row.metadata else {},
    )


def get_client(conn: Connection, client_id: str) -> Client | None:
    row = conn.execute(select(C).where(C.c.client_id == client_id)).first()
    return _row_to_client(row) if row else None


def add_client(
    conn: Connection, *, name: str, kind: str, scope: str, now_us: int, client_id: str | None = None,
    auth_method: str | None = None, jwks: dict[str, Any] | None = None, jwks_uri: str | None = None,
    redirect_uris: list[str] | None = None, organization_code: str | None = None,
    roles: list[str] | None = None, metadata: dict[str, Any] | None = None, secret: str | None = None,
) -> tuple[Client, str | None]:
    """Register a client; returns it and, for secret-authenticated clients, the secret
    (shown once, stored hashed)."""
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}")
    method = auth_method or ("none" if kind == "public" else "private_key_jwt")
    if method not in AUTH_METHODS + ("internal",):
        raise ValueError(f"auth method must be one of {AUTH_METHODS}")
    if kind == "backend" and method not in ("private_key_jwt", "internal"):
        raise ValueError("backend services clients authenticate with private_key_jwt")
    if method == "private_key_jwt" and not (jwks or jwks_uri):
        raise ValueError("private_key_jwt needs a JWKS (inline or by URL)")
    if jwks_uri and not jwks_uri.startswith(("https://", "http://127.0.0.1", "http://localhost")):
        raise ValueError("jwks_uri must use https")
    if kind != "backend" and not redirect_uris:
        raise ValueError("apps need at least one redirect URI")
    if jwks is not None and method != "internal":
        KeySet.import_key_set(cast(KeySetSerialization, jwks))  # refuse malformed key sets at registration
    if method.startswith("client_secret"):
        secret = secret or secrets.token_urlsafe(32)
    else:
        secret = None
    cid = client_id or new_client_id()
    conn.execute(insert(C), {
        "client_id": cid, "name": name, "kind": kind, "auth_method": method,
        "secret_hash": secret_hash(secret) if secret else None,
        "jwks": orjson.dumps(jwks).decode() if jwks is not None else None, "jwks_uri": jwks_uri,
        "redirect_uris": " ".join(redirect_uris or []), "scope": scope,
        "organization_code": organization_code, "roles": " ".join(roles or []), "active": True,
        "created": now_us, "metadata": orjson.dumps(metadata).decode() if metadata else None,
    })
    client = get_client(conn, cid)
    assert client is not None
    return client, secret


def set_client_active(conn: Connection, client_id: str, active: bool) -> bool:
    """Enable or disable a client; its tokens follow on every process within the token
    check interval (:mod:`hie.auth.revocation`)."""
    from hie.auth.revocation import record

    changed = conn.execute(update(C).where(C.c.client_id == client_id).values(active=active)).rowcount == 1
    if changed:
        record(conn, ("client", client_id), by="client-active")
    return changed


def list_clients(conn: Connection) -> list[Client]:
    return [_row_to_client(r) for r in conn.execute(select(C).order_by(C.c.created))]
