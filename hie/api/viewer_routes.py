"""HTTP binding of the clinician viewer (``/viewer``, :mod:`hie.web`): server-rendered Jinja2
pages over the same interactions and repository as the FHIR API (:mod:`hie.web.fhir`), with the
logged-in principal of the session (:mod:`hie.web.session`). This module is the viewer's only
FastAPI code (``hie.api`` is the one package that imports FastAPI); the page handlers are in
:mod:`hie.web.views`.

| path | page |
|---|---|
| ``GET /viewer/`` | patient search (facility patient number, regional id, name + birth date + sex) |
| ``GET /viewer/login`` | starts the authorization-code flow (the node's login page) |
| ``GET /viewer/callback`` | the flow's redirect URI: redeems the code, lands on the search |
| ``POST /viewer/logout`` | ends the session |
| ``GET /viewer/patient/{id}`` | the patient page |
| ``GET /viewer/document/{id}`` | a stored document Bundle (IPS, referral letter, discharge summary) |
| ``GET|POST /viewer/patient/{id}/glass`` | break-the-glass: reason and purpose, then ``$break-glass`` |
| ``GET /viewer/launch`` | SMART EHR launch (``iss``, ``launch``) |
| ``POST /viewer/launch-context`` | for EHRs (bearer token): a launch value for a patient |
| ``GET /viewer/static/{name}`` | the vendored stylesheet and script |

Spec: https://hl7.org/fhir/smart-app-launch/app-launch.html
"""

from __future__ import annotations

import hmac
from typing import Any
from urllib.parse import parse_qsl, urlencode

from fastapi import APIRouter, Request
from fastapi.responses import HTMLResponse, JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from hie.errors import FhirError, Forbidden, NotFound, Unauthenticated
from hie.principal import Principal
from hie.web import views
from hie.web.i18n import catalogue, lang_of
from hie.web.pages import status_text
from hie.web.session import (NotForViewer, Session, ViewerError, authorize_url, finish_login, fhir_base, keep,
                             origin_of, revoke)
from hie.web.templating import STATIC_DIR, TEMPLATES
from hie.web.store import SessionStore

STATIC = {"viewer.css": "text/css; charset=utf-8", "viewer.js": "text/javascript; charset=utf-8"}
COOKIE = "hie_viewer"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; form-action 'self'; "
       "frame-ancestors 'none'; base-uri 'none'")


class Pages:
    """What every viewer route shares: the node, the audit recorder and the session store."""

    def __init__(self, node: Any, recorder: Any) -> None:
        self.node = node
        self.recorder = recorder
        self.sessions: SessionStore = node.service("viewer_sessions", lambda: SessionStore(node))

    def session(self, request: Request) -> Session | None:
        return self.sessions.get(request.cookies.get(COOKIE))

    def render(self, request: Request, template: str, *, session: Session | None, status: int = 200,
               **ctx: Any) -> Response:
        lang = lang_of(request.query_params.get("lang"), request.cookies.get("hie_lang"))
        query = [(k, v) for k, v in parse_qsl(request.url.query) if k != "lang"]
        glass = session.glass if session is not None else None
        html = TEMPLATES.get_template(template).render(
            lang=lang, t=catalogue(lang), logged_in=bool(session and session.logged_in),
            csrf=session.csrf if session else "",
            lang_query=urlencode([*query, ("lang", "en" if lang == "ja" else "ja")]),
            glass=glass if glass and ctx.get("patient_id") == glass.patient_id else None,
            glass_until=views.glass_until(glass, lang) if glass else "", code_label=views.code_label,
            when=lambda v: views.when(v, lang), status_text=lambda c: status_text(c, lang), **ctx)
        resp = HTMLResponse(html, status_code=status, headers=self.headers())
        if request.query_params.get("lang") in ("ja", "en"):
            resp.set_cookie("hie_lang", lang, samesite="lax", path="/", secure=self.secure(request))
        return resp

    def message(self, request: Request, session: Session | None, key: str, status: int, detail: str = "",
                glass_link: str | None = None) -> Response:
        t = catalogue(lang_of(request.query_params.get("lang"), request.cookies.get("hie_lang")))
        return self.render(request, "message.html", session=session, status=status, heading=t["error"],
                           message=t.get(key, key) + (f" ({detail})" if detail else ""), glass_link=glass_link)

    @staticmethod
    def headers() -> dict[str, str]:
        return {"Cache-Control": "no-store", "X-Frame-Options": "DENY", "Content-Security-Policy": CSP,
                "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer"}

    def secure(self, request: Request) -> bool:
        return request.url.scheme == "https" or origin_of(self.node, request).startswith("https://")

    def start_login(self, request: Request, *, next_path: str, launch: str | None = None) -> Response:
        origin = origin_of(self.node, request)
        lang = lang_of(request.query_params.get("lang"), request.cookies.get("hie_lang"))
        try:
            url, pending = authorize_url(self.node, origin, next_path=next_path, launch=launch, lang=lang)
        except ViewerError as exc:
            return self.message(request, None, "error", 400, str(exc))
        resp = RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})
        self.set_cookie(resp, request, self.sessions.seal_login(pending))
        return resp

    def set_cookie(self, resp: Response, request: Request, value: str) -> None:
        resp.set_cookie(COOKIE, value, httponly=True, samesite="lax", secure=self.secure(request), path="/viewer")

    @staticmethod
    def redirect(url: str) -> Response:
        return RedirectResponse(url, status_code=303, headers={"Cache-Control": "no-store"})

    @staticmethod
    def json(body: Any, status: int = 200, headers: dict[str, str] | None = None) -> Response:
        return JSONResponse(body, status_code=status, headers={"Cache-Control": "no-store", **(headers or {})})

    def csrf_ok(self, session: Session, form: dict[str, str]) -> bool:
        return hmac.compare_digest(session.csrf, form.get("csrf", ""))

    def address(self, request: Request) -> str | None:
        return request.client.host if request.client else None


async def _form(request: Request) -> dict[str, str]:
    raw = (await request.body()).decode("utf-8", errors="replace")
    return dict(parse_qsl(raw, keep_blank_values=True))


def web_router(node: Any, recorder: Any = None) -> APIRouter:
    pages = Pages(node, recorder)
    router = APIRouter(include_in_schema=False)
    _login_routes(router, pages)
    _patient_routes(router, pages)
    _launch_routes(router, pages)

    @router.get("/viewer/static/{name}")
    def static(name: str) -> Response:
        if name not in STATIC:
            return Response(status_code=404)
        return Response((STATIC_DIR / name).read_bytes(), media_type=STATIC[name],
                        headers={"Cache-Control": "max-age=300", "X-Content-Type-Options": "nosniff"})

    return router


def _login_routes(router: APIRouter, pages: Pages) -> None:
    node = pages.node

    @router.get("/viewer/login")
    def login(request: Request) -> Response:
        return pages.start_login(request, next_path="/viewer/")

    @router.get("/viewer/callback")
    def callback(request: Request) -> Response:
        pending = pages.sessions.open_login(request.cookies.get(COOKIE))
        q = request.query_params
        if pending is None or q.get("error"):
            return pages.message(request, None, "expired", 400, q.get("error", ""))
        try:
            token, target = finish_login(node, origin_of(node, request), pending=pending, code=q.get("code", ""),
                                         state=q.get("state", ""))
        except NotForViewer:
            return pages.message(request, None, "staff_only", 403)
        except ViewerError as exc:
            return pages.message(request, None, "expired", 400, str(exc))
        sid, session = pages.sessions.new()  # the first row of this browser: a new id at login
        keep(session, token)
        pages.sessions.save(session)
        resp = pages.redirect(target)
        pages.set_cookie(resp, request, sid)
        return resp

    @router.post("/viewer/logout")
    async def logout(request: Request) -> Response:
        session = pages.session(request)
        form = await _form(request)
        if session is not None and not pages.csrf_ok(session, form):
            return pages.message(request, session, "expired", 400)
        if session is not None:
            await run_in_threadpool(revoke, node, session, origin_of(node, request))
            pages.sessions.drop(session)
        resp = RedirectResponse("/viewer/login", status_code=303)
        resp.delete_cookie(COOKIE, path="/viewer")
        return resp

    @router.get("/viewer/")
    def search(request: Request) -> Response:
        session = pages.session(request)
        if session is None or not session.logged_in:
            return pages.start_login(request, next_path="/viewer/")
        return _guarded(pages, request, session, lambda p: views.search_page(pages, request, session, p))

    @router.get("/viewer")
    def search_slash() -> Response:
        return RedirectResponse("/viewer/", status_code=307)


def _guarded(pages: Pages, request: Request, session: Session, build: Any,
             *, patient_id: str | None = None) -> Response:
    """Run a page as the session's principal; a logged-out session goes to the login, a
    hidden or unknown patient is the same 404 page, a missing scope 403."""
    from hie.web.session import principal

    p: Principal | None = None
    try:
        p = principal(pages.node, session, origin_of(pages.node, request), pages.address(request))
        try:
            return build(p)
        finally:
            pages.sessions.save(session)  # a refreshed token, an ended break-the-glass
    except Unauthenticated:
        pages.sessions.drop(session)
        return pages.start_login(request, next_path=request.url.path)
    except NotFound:
        may = patient_id is not None and views.may_break_glass(pages.node, p)
        glass_link = f"/viewer/patient/{patient_id}/glass" if may else None
        return pages.message(request, session, "not_found", 404, glass_link=glass_link)
    except Forbidden as exc:
        return pages.message(request, session, "error", 403, exc.diagnostics)
    except FhirError as exc:
        return pages.message(request, session, "error", exc.status, exc.diagnostics)


def _patient_routes(router: APIRouter, pages: Pages) -> None:
    @router.get("/viewer/patient/{patient_id}")
    def patient(request: Request, patient_id: str) -> Response:
        session = pages.session(request)
        if session is None or not session.logged_in:
            return pages.start_login(request, next_path=request.url.path)
        return _guarded(pages, request, session,
                        lambda p: views.patient_page(pages, request, session, p, patient_id), patient_id=patient_id)

    @router.get("/viewer/document/{bundle_id}")
    def document(request: Request, bundle_id: str) -> Response:
        session = pages.session(request)
        if session is None or not session.logged_in:
            return pages.start_login(request, next_path=request.url.path)
        return _guarded(pages, request, session, lambda p: views.document_page(pages, request, session, p, bundle_id))

    @router.get("/viewer/patient/{patient_id}/glass")
    def glass_form(request: Request, patient_id: str) -> Response:
        session = pages.session(request)
        if session is None or not session.logged_in:
            return pages.start_login(request, next_path=request.url.path)
        return pages.render(request, "glass.html", session=session, patient_id=patient_id, reason="",
                            purpose="ETREAT", error=None, reason_error=None)

    @router.post("/viewer/patient/{patient_id}/glass")
    async def glass_post(request: Request, patient_id: str) -> Response:
        session = pages.session(request)
        form = await _form(request)
        if session is None or not session.logged_in:
            return pages.start_login(request, next_path=f"/viewer/patient/{patient_id}/glass")
        if not pages.csrf_ok(session, form):
            return pages.message(request, session, "expired", 400)
        def run() -> Response:
            try:
                return views.declare_glass(pages, request, session, patient_id, form)
            finally:
                pages.sessions.save(session)

        return await run_in_threadpool(run)


def _launch_routes(router: APIRouter, pages: Pages) -> None:
    node = pages.node

    @router.get("/viewer/launch")
    def launch(request: Request) -> Response:
        iss, value = request.query_params.get("iss", ""), request.query_params.get("launch", "")
        if not value or iss.rstrip("/") != fhir_base(node, origin_of(node, request)):
            return pages.message(request, None, "launch_invalid", 400)
        return pages.start_login(request, next_path="/viewer/", launch=value)

    @router.post("/viewer/launch-context")
    async def launch_context(request: Request) -> Response:
        form = await _form(request)
        return await run_in_threadpool(views.launch_context, pages, request, form)


__all__ = ["web_router", "Pages"]
