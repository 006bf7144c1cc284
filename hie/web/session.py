"""The viewer's session: the node's own SMART client, the authorization-code flow with PKCE
through the node's login page (password + TOTP), and tokens kept on the server.

The browser holds only an opaque session id (cookie ``HttpOnly``, ``SameSite=Lax``,
``Secure`` when the node is reached over https); the access and refresh tokens stay in the
server-side store (:class:`hie.web.store.SessionStore`). Every page turns the session's access token into a
principal exactly as the FHIR API does (:meth:`hie.auth.service.AuthService.authenticate_header`),
so an expired or revoked token is a logged-out session. POST forms carry the session's CSRF
token. The store is the database (:mod:`hie.web.store`, state sealed with the node's secret
box), so every worker process serves every session.

The client is registered on first use per origin (``hie-viewer-<hash of origin>``, public,
PKCE, redirect URI ``<origin>/viewer/callback``): only for the configured ``HIE_BASE_URL``'s
origin, or a loopback origin when none is configured, so a forged ``Host`` header cannot
register a redirect to someone else's site.

Spec: https://hl7.org/fhir/smart-app-launch/app-launch.html ; https://www.rfc-editor.org/rfc/rfc7636 ;
https://owasp.org/www-community/SameSite
"""

from __future__ import annotations

import base64
import hashlib
import secrets
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

import orjson

from hie.auth.clients import add_client, get_client
from hie.auth.server import HieAuthorizationServer, HieRequest
from hie.auth.service import AuthService
from hie.errors import FhirError
from hie.principal import Principal
from hie.storage.db import write_tx

SCOPE = "openid fhirUser online_access user/*.rs"
CLIENT_SCOPE = "openid fhirUser online_access launch launch/patient user/*.rs patient/*.rs"
LOOPBACK = ("127.0.0.1", "localhost", "::1", "[::1]")


class ViewerError(Exception):
    """The login cannot proceed (unknown origin, bad state, refused code): shown as a page."""


class NotForViewer(ViewerError):
    """The account may not use the viewer (the token endpoint grants none of its scopes, e.g.
    a patient's account): shown as a page saying who the viewer is for."""


@dataclass
class Glass:
    """An active break-the-glass declaration of this session. The session's access token is
    then the emergency-purpose one the declaration was made with (a refresh rotates the
    refresh token, which ends the tokens issued under the previous one); when that token is
    replaced by an ordinary one, the glass ends."""

    patient_id: str
    reason: str
    purpose: str
    expires: float


@dataclass
class Session:
    sid_hash: str
    csrf: str
    created: float
    access_token: str | None = None
    refresh_token: str | None = None
    token_expires: float = 0.0
    launch_patient: str | None = None
    glass: Glass | None = None

    @property
    def logged_in(self) -> bool:
        return self.access_token is not None


def origin_of(node: Any, request: Any) -> str:
    """The origin the browser uses: ``HIE_BASE_URL``'s when configured (behind a proxy), else
    the request's."""
    base = node.settings.base_url
    if base:
        return str(base).split("/fhir")[0].rstrip("/")
    return str(request.base_url).rstrip("/")


def client_id_for(origin: str) -> str:
    return "hie-viewer-" + hashlib.sha256(origin.encode()).hexdigest()[:12]


def allowed_origin(node: Any, origin: str) -> bool:
    base = node.settings.base_url
    if base:
        parts = urlsplit(base)
        return origin == f"{parts.scheme}://{parts.netloc}"
    return (urlsplit(origin).hostname or "") in LOOPBACK


def ensure_client(node: Any, origin: str) -> str:
    """The viewer's client for ``origin`` (registered on first use)."""
    if not allowed_origin(node, origin):
        raise ViewerError(f"origin {origin} is not this node's (set HIE_BASE_URL)")
    cid = client_id_for(origin)
    with write_tx(node.engine) as conn:
        if get_client(conn, cid) is None:
            add_client(conn, client_id=cid, name="地域連携ビューア (clinician viewer)", kind="public",
                       auth_method="none", scope=CLIENT_SCOPE, redirect_uris=[f"{origin}/viewer/callback"],
                       now_us=node.clock.now_us())
    return cid


def _pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def authorize_url(node: Any, origin: str, *, next_path: str, launch: str | None = None,
                  lang: str = "ja") -> tuple[str, dict[str, str]]:
    """Where the browser goes to log in, and the pending login (state, PKCE verifier, redirect
    URI, where to go next) the browser carries sealed until the callback: nothing is stored
    for a browser that has not logged in."""
    cid = ensure_client(node, origin)
    verifier, challenge = _pkce()
    state = secrets.token_urlsafe(16)
    redirect = f"{origin}/viewer/callback"
    pending = {"state": state, "verifier": verifier, "redirect_uri": redirect, "next": next_path, "client_id": cid}
    params = {"response_type": "code", "client_id": cid, "redirect_uri": redirect, "scope": SCOPE, "state": state,
              "aud": fhir_base(node, origin), "code_challenge": challenge, "code_challenge_method": "S256"}
    if launch:
        params["launch"] = launch
        params["scope"] = SCOPE + " launch"
    if lang == "en":
        params["lang"] = "en"
    return f"/auth/authorize?{urlencode(params)}", pending


def fhir_base(node: Any, origin: str) -> str:
    return AuthService.for_node(node).fhir_base(origin + "/fhir")


def _token_request(node: Any, origin: str, form: list[tuple[str, str]]) -> dict[str, Any]:
    server = node.service("authz", lambda: HieAuthorizationServer(node, AuthService.for_node(node)))
    req = HieRequest("POST", f"{origin}/auth/token", {"content-type": "application/x-www-form-urlencoded"}, [],
                     form, fhir_base=fhir_base(node, origin))
    status, body, _headers = server.create_token_response(req)
    data = body if isinstance(body, dict) else orjson.loads(body or b"{}")
    if status != 200 and data.get("error") == "invalid_scope":
        raise NotForViewer("the account cannot use the clinician viewer")
    if status != 200:
        raise ViewerError(f"token endpoint: {data.get('error')}: {data.get('error_description', '')}")
    return data


def keep(session: Session, token: dict[str, Any]) -> None:
    session.access_token = token["access_token"]
    session.refresh_token = token.get("refresh_token") or session.refresh_token
    session.token_expires = time.time() + int(token.get("expires_in", 0))
    session.launch_patient = token.get("patient") or session.launch_patient


def finish_login(node: Any, origin: str, *, pending: dict[str, str] | None, code: str,
                 state: str) -> tuple[dict[str, Any], str]:
    """Redeem the authorization code (in process, at the node's own token endpoint) of the
    pending login ``state`` names; returns the token response and where to go next."""
    if not pending or not secrets.compare_digest(pending.get("state", ""), state or ""):
        raise ViewerError("state does not match this browser's login")
    token = _token_request(node, origin, [
        ("grant_type", "authorization_code"), ("code", code), ("redirect_uri", pending["redirect_uri"]),
        ("client_id", pending["client_id"]), ("code_verifier", pending["verifier"])])
    if token.get("patient"):
        return token, f"/viewer/patient/{token['patient']}"
    return token, pending.get("next") or "/viewer/"


def refresh(node: Any, session: Session, origin: str, *, purpose: str | None = None) -> dict[str, Any]:
    """A new access token from the session's refresh token (rotated), optionally for another
    purpose of use (break-the-glass asks for ``ETREAT``; the token endpoint decides)."""
    if not session.refresh_token:
        raise ViewerError("no refresh token")
    form = [("grant_type", "refresh_token"), ("refresh_token", session.refresh_token),
            ("client_id", client_id_for(origin))]
    if purpose:
        form.append(("purpose_of_use", purpose))
    token = _token_request(node, origin, form)
    session.refresh_token = token.get("refresh_token") or session.refresh_token
    return token


def revoke(node: Any, session: Session, origin: str) -> None:
    """Logout: revoke the session's refresh token at the node's revocation endpoint (RFC 7009),
    in process; the access tokens issued under it end with it."""
    if not session.refresh_token:
        return
    server = node.service("authz", lambda: HieAuthorizationServer(node, AuthService.for_node(node)))
    form = [("token", session.refresh_token), ("token_type_hint", "refresh_token"),
            ("client_id", client_id_for(origin))]
    server.create_endpoint_response("revocation", HieRequest(
        "POST", f"{origin}/auth/revoke", {"content-type": "application/x-www-form-urlencoded"}, [], form,
        fhir_base=fhir_base(node, origin)))
    session.refresh_token = session.access_token = None


_ROTATIONS: dict[str, tuple[threading.Lock, list[Any]]] = {}
"""sid hash -> (lock, [refresh token used, token response]): the last refresh of each session."""
_ROTATIONS_GUARD = threading.Lock()
_MAX_ROTATIONS = 4096


def _refresh_once(node: Any, session: Session, origin: str) -> dict[str, Any]:
    """:func:`refresh`, one at a time per session: page requests of one session that load it
    with the same expired access token share one rotation (the refresh token works once; a
    second use is refused as a reuse). In process: a worker serves its requests' sessions."""
    with _ROTATIONS_GUARD:
        entry = _ROTATIONS.get(session.sid_hash)
        if entry is None:
            if len(_ROTATIONS) >= _MAX_ROTATIONS:
                _ROTATIONS.pop(next(iter(_ROTATIONS)))
            entry = _ROTATIONS[session.sid_hash] = (threading.Lock(), [None, None])
    lock, last = entry
    with lock:
        if last[0] is not None and last[0] == session.refresh_token:
            return dict(last[1])  # a concurrent request of this session rotated it already
        used = session.refresh_token
        token = refresh(node, session, origin)
        last[:] = [used, token]
        return token


def principal(node: Any, session: Session, origin: str, address: str | None, *, token: str | None = None) -> Principal:
    """The session's principal, as the FHIR API would make it from the bearer token;
    refreshes an expired access token once. Raises :class:`FhirError` (401) when logged out."""
    svc = AuthService.for_node(node)
    use = token or session.access_token
    if use is None:
        from hie.errors import Unauthenticated

        raise Unauthenticated("not logged in")
    try:
        return svc.authenticate_header(f"Bearer {use}", request_base=origin + "/fhir", network_address=address)
    except FhirError:
        if token is not None or not session.refresh_token:
            raise
    try:
        keep(session, _refresh_once(node, session, origin))
    except ViewerError as exc:
        from hie.errors import Unauthenticated

        raise Unauthenticated("session expired") from exc
    assert session.access_token is not None
    return svc.authenticate_header(f"Bearer {session.access_token}", request_base=origin + "/fhir",
                                   network_address=address)
