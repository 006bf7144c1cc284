"""The node's authentication service: keys, token issuing and verification, and the
bearer-token ``authenticate`` the REST layer calls for every FHIR request.

One instance per :class:`hie.app.Node` (:meth:`AuthService.for_node`). Issuer and
audience follow the node's FHIR base: ``HIE_BASE_URL`` when configured, else the base
the request arrived on (``http://host:port/fhir``); the authorization server's
issuer is that origin plus ``/auth``.

Spec: https://www.rfc-editor.org/rfc/rfc6750 (bearer tokens) ;
https://hl7.org/fhir/smart-app-launch/app-launch.html#access-token
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection

from hie.storage.db import write_tx
from hie.auth.clients import Client, add_client, get_client
from hie.auth.keys import KeyStore
from hie.auth.passwords import SecretBox
from hie.auth.scopes import grant
from hie.auth.tokens import BACKEND_TTL, Issued, TokenService, principal_from_claims
from hie.errors import Unauthenticated
from hie.principal import Principal

LOCAL_CLIENT_ID = "hie-local"
"""The node's own client: tokens for operator scripts (``hie admin token``) and tests are
minted for it directly (whoever can do that holds the node's key files and database
anyway); it cannot authenticate at the token endpoint. Its tokens stand for the system
principal, still limited by their scopes."""

DEFAULT_BASE = "http://127.0.0.1:8080/fhir"



class AuthService:
    def __init__(self, node: Any) -> None:
        self.node = node
        key_dir = node.settings.data_dir / "keys"
        self.keys = KeyStore(key_dir)
        self.box = SecretBox(key_dir)
        self.tokens = TokenService(self.keys, check_interval_s=node.settings.token_check_interval_ms / 1000)

    @classmethod
    def for_node(cls, node: Any) -> AuthService:
        return node.service("auth", lambda: cls(node))

    # -- names ---------------------------------------------------------------------------

    def fhir_base(self, request_base: str | None = None) -> str:
        configured = self.node.settings.base_url
        return (configured or request_base or DEFAULT_BASE).rstrip("/")

    @staticmethod
    def issuer(fhir_base: str) -> str:
        base = fhir_base.rstrip("/")
        return (base[: -len("/fhir")] if base.endswith("/fhir") else base) + "/auth"

    def audiences(self, request_base: str | None) -> tuple[str, ...]:
        out = [self.fhir_base(request_base)]
        if request_base:
            out.append(request_base.rstrip("/"))
        return tuple(dict.fromkeys(out))

    # -- bearer authentication -----------------------------------------------------------

    def authenticate_header(self, authorization: str | None, *, request_base: str | None,
                            network_address: str | None) -> Principal:
        if not authorization:
            raise Unauthenticated("This server requires a bearer access token (SMART on FHIR)",
                                  headers={"WWW-Authenticate": 'Bearer realm="hie"'})
        scheme, _, token = authorization.strip().partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthenticated("The Authorization header must be 'Bearer <access token>'",
                                  headers={"WWW-Authenticate": 'Bearer realm="hie", error="invalid_request"'})
        # No connection unless the token status must look (ADR 0008).
        claims = self.tokens.verify(self.node.engine, token, audiences=self.audiences(request_base))
        return principal_from_claims(claims, network_address=network_address)

    # -- tokens for scripts and tests ------------------------------------------------------

    def ensure_local_client(self, conn: Connection) -> Client:
        client = get_client(conn, LOCAL_CLIENT_ID)
        if client is None:
            client, _ = add_client(
                conn, client_id=LOCAL_CLIENT_ID, name="This node (operator scripts)", kind="backend",
                auth_method="internal", jwks={"keys": []}, scope="system/*.cruds", roles=["operator"],
                now_us=self.node.clock.now_us(),
            )
        return client

    def token_for_client(
        self, client_id: str | None, scope: str, *, expires_in: int = BACKEND_TTL, fhir_base: str | None = None,
        purpose: str | None = None,
    ) -> Issued:
        """An access token for a registered backend client (or the node's own), with the
        requested scopes narrowed to what the client may have."""
        with write_tx(self.node.engine) as conn:
            client = (self.ensure_local_client(conn) if client_id in (None, LOCAL_CLIENT_ID)
                      else get_client(conn, client_id))
            if client is None or not client.active:
                raise LookupError(f"no active client {client_id!r}")
            granted = grant(scope, client.scope, contexts=("system",))
            if not granted:
                raise ValueError(f"client {client.client_id} may not have any of: {scope}")
            base = self.fhir_base(fhir_base)
            # The node's own client acts as the system principal (maintenance scripts, as
            # ingest does); registered hospital systems are clients of their facility.
            kind = "system" if client.client_id == LOCAL_CLIENT_ID else "client"
            return self.tokens.issue(
                conn, issuer=self.issuer(base), audience=base, client_id=client.client_id, kind=kind,
                scope=granted, expires_in=expires_in, organization_code=client.organization_code,
                roles=client.roles, purpose=purpose,
            )


def system_token(node: Any, scope: str = "system/*.cruds", **kwargs: Any) -> str:
    """A bearer token of the node's own client (tests, operator scripts)."""
    return AuthService.for_node(node).token_for_client(LOCAL_CLIENT_ID, scope, **kwargs).token
