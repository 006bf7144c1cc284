"""HTTP endpoints of the authorization server (SMART App Launch 2.0, Backend Services).

| path | what |
|---|---|
| ``GET /fhir/.well-known/smart-configuration`` | SMART configuration (discovery) |
| ``GET /auth/jwks`` | the node's public signing keys |
| ``GET/POST /auth/authorize`` | authorization request: the login page (password + TOTP) |
| ``POST /auth/login`` | the login form: authenticates, then redirects with a code |
| ``POST /auth/token`` | authorization_code, refresh_token, client_credentials |
| ``POST /auth/introspect`` | RFC 7662 |
| ``POST /auth/revoke`` | RFC 7009 |
| ``POST /auth/register`` | RFC 7591, operators only (bearer token with the operator role) |

The OAuth logic is authlib's (:mod:`hie.auth.server`); this module converts requests
and answers. Login attempts, successful or not, are audited. The login form is
protected by a double-submit CSRF token (a SameSite=Strict cookie).

Spec: https://hl7.org/fhir/smart-app-launch/ ; https://www.rfc-editor.org/rfc/rfc6749
"""

from __future__ import annotations

import functools
import hmac
import secrets
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, urlencode

import orjson
from authlib.oauth2.rfc6749.errors import OAuth2Error
from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from starlette.concurrency import run_in_threadpool

from hie.api.limits import Limits
from hie.errors import BodyTooLarge, ElementTooLong, FhirError, InvalidJson, InvalidRequest
from hie.fhir.jsonio import loads
from hie.storage.db import write_tx
from hie.auth.server import HieAuthorizationServer, HieRequest, smart_configuration
from hie.auth.service import AuthService
from hie.auth.users import LoginFailed, login

_TEMPLATES = Environment(
    loader=FileSystemLoader(str(Path(__file__).resolve().parent.parent / "auth" / "templates")),
    autoescape=select_autoescape(["html"]),
)

TEXT = {
    "ja": {
        "title": "地域医療連携ネットワーク ログイン", "intro": "「%s」があなたの権限でのアクセスを求めています。",
        "scopes": "求められている権限:", "username": "ユーザーID", "password": "パスワード",
        "otp": "確認コード（認証アプリの6桁）",
        "otp_help": "認証アプリを使えない場合は、リカバリーコードを入力してください。",
        "patient": "対象患者ID（任意）", "allow": "ログインして許可", "deny": "拒否",
        "failed": "ユーザーID、パスワードまたは確認コードが正しくありません。"
                  "続けて失敗するとアカウントは一時的にロックされます。",
        "csrf": "画面の有効期限が切れました。もう一度お試しください。",
    },
    "en": {
        "title": "Regional health network sign-in", "intro": "\u201c%s\u201d asks to act on your behalf.",
        "scopes": "Requested permissions:", "username": "User ID", "password": "Password",
        "otp": "Verification code (6 digits from your authenticator app)",
        "otp_help": "If you cannot use your authenticator app, enter a recovery code.",
        "patient": "Patient id (optional)", "allow": "Sign in and allow", "deny": "Deny",
        "failed": "The user ID, password or verification code is not correct. "
                  "Repeated failures lock the account for a while.",
        "csrf": "This page has expired. Please try again.",
    },
}

MAX_FORM_FIELDS = 64
"""Most fields one /auth form may carry (the login form has about 15)."""

AUTHORIZE_PARAMS = ("response_type", "client_id", "redirect_uri", "scope", "state", "aud", "code_challenge",
                    "code_challenge_method", "nonce", "launch", "prompt")


def _fhir_base(node: Any, request: Request) -> str:
    return AuthService.for_node(node).fhir_base(str(request.base_url).rstrip("/") + "/fhir")


def _uri(node: Any, request: Request) -> str:
    """The request URI as the client addressed it (behind a TLS proxy: https)."""
    base = node.settings.base_url
    if base and base.startswith("https://"):
        origin = base.split("/fhir")[0].rstrip("/")
        return origin + request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return str(request.url)


def _answer(result: Any) -> Response:
    status, body, headers = result
    hdrs = {k: v for k, v in headers if k.lower() != "content-type"}
    hdrs.setdefault("Cache-Control", "no-store")
    hdrs.setdefault("Pragma", "no-cache")
    if status in (301, 302, 303, 307):
        return Response(status_code=302, headers=hdrs)
    if isinstance(body, dict | list):
        return Response(orjson.dumps(body), status_code=status, headers=hdrs, media_type="application/json")
    return Response(body or b"", status_code=status, headers=hdrs, media_type="application/json")


def _oauth_errors(route: Callable[[Request], Awaitable[Response]]) -> Callable[[Request], Awaitable[Response]]:
    """A form the route cannot take (not UTF-8, too many fields) answers as an OAuth error
    (RFC 6749 5.2 ``invalid_request``, the node's code in the description), never a 500. The
    request limits (a body or a value too large, 413) answer as on every route (the app's
    OperationOutcome, HIE-1012 / HIE-1013)."""

    @functools.wraps(route)
    async def guarded(request: Request) -> Response:
        try:
            return await route(request)
        except (BodyTooLarge, ElementTooLong):
            raise
        except FhirError as err:
            return JSONResponse({"error": "invalid_request", "error_description": f"{err.hie_code}: {err.diagnostics}"},
                                status_code=err.status, headers={"Cache-Control": "no-store", **err.headers})

    return guarded


def auth_router(node: Any, recorder: Any = None, limits: Limits | None = None) -> APIRouter:
    """``recorder``: where login attempts are audited (the app's recorder; None: not audited,
    as the app's own requests are not when audit is off). ``limits``: the app's request
    limits (default: the node's settings); form values and JSON strings are held to them."""
    auth = _AuthEndpoints(node, recorder, limits or Limits.of(node.settings))
    router = APIRouter()
    _add_discovery_routes(router, auth)
    _add_login_routes(router, auth)
    _add_token_routes(router, auth)
    _add_register_route(router, auth)
    return router


class _AuthEndpoints:
    """What the authorization server's routes share: the node, its auth service and
    authlib server, and the login audit."""

    def __init__(self, node: Any, recorder: Any, limits: Limits) -> None:
        svc = AuthService.for_node(node)
        self.node = node
        self.recorder = recorder
        self.limits = limits
        self.svc = svc
        self.server = node.service("authz", lambda: HieAuthorizationServer(node, svc))

    async def hie_request(self, request: Request, *, json_body: bool = False) -> HieRequest:
        form: list[tuple[str, str]] = []
        body_json = None
        if request.method == "POST":
            raw = await request.body()
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if json_body:
                try:
                    body_json = loads(raw, max_string=self.limits.max_element) if raw else None
                except InvalidJson:
                    body_json = None
            elif ctype == "application/x-www-form-urlencoded":
                form = self.form(raw)
        return HieRequest(
            request.method, _uri(self.node, request), dict(request.headers),
            parse_qsl(request.url.query, keep_blank_values=True), form,
            fhir_base=_fhir_base(self.node, request), json=body_json,
        )

    def form(self, raw: bytes) -> list[tuple[str, str]]:
        """A urlencoded body: UTF-8, at most :data:`MAX_FORM_FIELDS` fields, each name and
        value within the element limit (400 / 413 otherwise)."""
        try:
            text = raw.decode("utf-8")
        except UnicodeDecodeError:
            raise InvalidRequest("The form body is not valid UTF-8") from None
        try:
            pairs = parse_qsl(text, keep_blank_values=True, max_num_fields=MAX_FORM_FIELDS)
        except ValueError:
            raise InvalidRequest(f"The form has more than {MAX_FORM_FIELDS} fields") from None
        return self.limits.check_form(pairs)

    def audit_login(self, request: Request, username: str, ok: bool, user: Any = None,
                    client_id: str | None = None) -> None:
        from hie.audit.events import login_event

        if self.recorder is None:
            return
        self.recorder.record(login_event(username=username, user=user, ok=ok, client_id=client_id,
                                         address=request.client.host if request.client else None,
                                         recorded_us=self.node.clock.now_us()))


def _render_login(request: Request, params: list[tuple[str, str]], grant: Any, *, error: str | None = None,
                  lang: str = "ja", status: int = 200) -> Response:
    t = TEXT[lang]
    csrf = request.cookies.get("hie_csrf") or secrets.token_urlsafe(24)
    client = grant.request.client
    scopes = (dict(params).get("scope") or "").split()
    ask_patient = "launch/patient" in scopes
    kept = [(k, v) for k, v in params if k in AUTHORIZE_PARAMS]
    html = _TEMPLATES.get_template("login.html").render(
        lang=lang, t=t, client_name=client.name, scopes=scopes, params=kept,
        csrf=csrf, action="/auth/login", error=error, ask_patient=ask_patient,
        lang_query=urlencode([*kept, ("lang", "en" if lang == "ja" else "ja")]),
    )
    resp = HTMLResponse(html, status_code=status, headers={
        "Cache-Control": "no-store", "X-Frame-Options": "DENY",
        "Content-Security-Policy": "default-src 'self'; style-src 'unsafe-inline'; frame-ancestors 'none'"})
    resp.set_cookie("hie_csrf", csrf, httponly=True, samesite="strict", secure=request.url.scheme == "https",
                    path="/auth")
    return resp


def _add_discovery_routes(router: APIRouter, auth: _AuthEndpoints) -> None:
    svc, node = auth.svc, auth.node

    @router.get("/fhir/.well-known/smart-configuration", include_in_schema=False)
    def smart_config(request: Request) -> Response:
        return JSONResponse(smart_configuration(svc, _fhir_base(node, request)))

    @router.get("/auth/jwks", include_in_schema=False)
    def jwks() -> Response:
        return JSONResponse(svc.keys.jwks(), headers={"Cache-Control": "max-age=300"})


def _add_login_routes(router: APIRouter, auth: _AuthEndpoints) -> None:
    """The authorization request (login page) and the login form it posts."""
    node, svc, server, hie_request = auth.node, auth.svc, auth.server, auth.hie_request

    async def authorize(request: Request) -> Response:
        req = await hie_request(request)

        def validate() -> Any:
            try:
                return server.get_consent_grant(req)
            except OAuth2Error as err:
                return err

        grant = await run_in_threadpool(validate)
        if isinstance(grant, OAuth2Error):
            if grant.redirect_uri:
                return _answer(server.handle_error_response(req, grant))
            return JSONResponse({"error": grant.error, "error_description": grant.description}, status_code=400)
        params = list(req.payload.data.items())
        lang = "en" if req.payload.data.get("lang") == "en" else "ja"
        return _render_login(request, params, grant, lang=lang)

    router.add_api_route("/auth/authorize", _oauth_errors(authorize), methods=["GET", "POST"], include_in_schema=False)

    @router.post("/auth/login", include_in_schema=False)
    @_oauth_errors
    async def login_post(request: Request) -> Response:
        req = await hie_request(request)
        form = req.form
        lang = "en" if form.get("lang") == "en" else "ja"
        params = [(k, v) for k, v in form.items() if k in AUTHORIZE_PARAMS]
        oauth_req = HieRequest("GET", _uri(node, request).split("?")[0] + "?" + urlencode(params),
                               dict(request.headers), params, [], fhir_base=req.fhir_base)

        def run() -> Response:
            try:
                grant = server.get_consent_grant(oauth_req)
            except OAuth2Error as err:
                return JSONResponse({"error": err.error, "error_description": err.description}, status_code=400)
            cookie = request.cookies.get("hie_csrf", "")
            if not cookie or not hmac.compare_digest(cookie, form.get("csrf", "")):
                return _render_login(request, params, grant, error=TEXT[lang]["csrf"], lang=lang, status=400)
            if form.get("decision") == "deny":
                return _answer(server.create_authorization_response(oauth_req, grant_user=None, grant=grant))
            username = form.get("username", "")
            try:
                with write_tx(node.engine) as conn:
                    try:
                        user = login(conn, svc.box, username=username, password=form.get("password", ""),
                                     code=form.get("otp", ""), now_us=int(time.time() * 1_000_000))
                    except LoginFailed:
                        user = None
            finally:
                pass
            auth.audit_login(request, username, user is not None, user, grant.request.client.client_id)
            if user is None:
                return _render_login(request, params, grant, error=TEXT[lang]["failed"], lang=lang, status=401)
            from hie.web.launch import patient_of as launch_patient  # SMART EHR launch (hie/web/launch.py)

            patient = user.patient_id if user.kind == "patient" else (
                launch_patient(node, form.get("launch"), user) or form.get("patient") or None)
            user = user.with_launch(patient, int(time.time() * 1_000_000))
            return _answer(server.create_authorization_response(oauth_req, grant_user=user, grant=grant))

        return await run_in_threadpool(run)


def _add_token_routes(router: APIRouter, auth: _AuthEndpoints) -> None:
    """Token, introspection (RFC 7662) and revocation (RFC 7009): authlib's answers."""
    server, hie_request = auth.server, auth.hie_request

    @router.post("/auth/token", include_in_schema=False)
    @_oauth_errors
    async def token(request: Request) -> Response:
        req = await hie_request(request)
        return _answer(await run_in_threadpool(server.create_token_response, req))

    @router.post("/auth/introspect", include_in_schema=False)
    @_oauth_errors
    async def introspect(request: Request) -> Response:
        req = await hie_request(request)
        return _answer(await run_in_threadpool(server.create_endpoint_response, "introspection", req))

    @router.post("/auth/revoke", include_in_schema=False)
    @_oauth_errors
    async def revoke(request: Request) -> Response:
        req = await hie_request(request)
        return _answer(await run_in_threadpool(server.create_endpoint_response, "revocation", req))


def _add_register_route(router: APIRouter, auth: _AuthEndpoints) -> None:
    """Dynamic client registration (RFC 7591), for operators only."""
    svc, server, hie_request = auth.svc, auth.server, auth.hie_request

    @router.post("/auth/register", include_in_schema=False)
    @_oauth_errors
    async def register(request: Request) -> Response:
        def authenticate() -> Any:
            try:
                return svc.authenticate_header(
                    request.headers.get("authorization"), request_base=str(request.base_url).rstrip("/") + "/fhir",
                    network_address=request.client.host if request.client else None)
            except FhirError as err:  # answered before the body is read (the connection closes)
                return JSONResponse({"error": "invalid_token", "error_description": err.diagnostics},
                                    status_code=401, headers={**err.headers, "Connection": "close"})

        principal = await run_in_threadpool(authenticate)
        if isinstance(principal, Response):
            return principal
        if "operator" not in principal.roles:
            return JSONResponse({"error": "insufficient_scope", "error_description":
                                 "Client registration is for operators only"}, status_code=403)
        req = await hie_request(request, json_body=True)

        def run() -> Response:
            server.create_json_request(req)
            req.operator = principal
            try:
                return _answer(server.registration(req))
            except OAuth2Error as err:
                return _answer(server.handle_response(*err()))

        return await run_in_threadpool(run)
