"""FHIR RESTful API over FastAPI: one route under ``/fhir`` hands every request to the
interaction table (:mod:`hie.interactions.table`), which says which interaction it is.

The code here only translates HTTP to interaction calls and back: content negotiation,
``Prefer``, ``If-*`` headers, status and headers of the answer, and the one error
converter (``FhirError`` -> OperationOutcome; anything else -> 500 with a correlation id
and no stack trace in the body).

Spec: https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable
from typing import Any
from urllib.parse import parse_qsl

import orjson
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException

from hie.api.limits import BodyLimit, Limits
from hie.errors import (
    BodyTooLarge,
    FhirError,
    Forbidden,
    InvalidRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    Unauthenticated,
    UnsupportedMediaType,
    internal_error,
)
from hie.fhir.jsonio import check_json, loads, prune_empty
from hie.interactions.result import Result
from hie.interactions.table import METHODS, Call, Parsed, execute, parse
from hie.principal import Principal

log = logging.getLogger("hie.api")

FHIR_JSON = "application/fhir+json"
JSON_TYPES = ("application/fhir+json", "application/json", "application/json-patch+json", "text/json")



def _negotiate(request: Request) -> None:
    fmt = request.query_params.get("_format")
    if fmt and fmt not in ("json", "application/json", "application/fhir+json", "application/json+fhir"):
        raise NotAcceptable(f"_format={fmt!r} is not supported; this server speaks FHIR JSON only")
    accept = request.headers.get("accept", "")
    if not accept or fmt:
        return
    kinds = [a.split(";")[0].strip().lower() for a in accept.split(",")]
    acceptable = ("*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir",
                  "text/json", "text/html")
    if any(k in acceptable for k in kinds):
        return
    raise NotAcceptable(f"Accept {accept!r} cannot be satisfied; this server speaks application/fhir+json")


def _prefer(request: Request) -> tuple[str, bool]:
    ret, strict = "representation", False
    for part in request.headers.get("prefer", "").split(","):
        part = part.strip()
        if part.startswith("return="):
            value = part[7:].strip('"')
            if value in ("minimal", "representation", "OperationOutcome"):
                ret = value
        elif part.startswith("handling="):
            strict = part[9:].strip('"') == "strict"
    return ret, strict


def _base_url(node: Any, request: Request) -> str:
    if node.settings.base_url:
        return node.settings.base_url.rstrip("/")
    return str(request.base_url).rstrip("/") + "/fhir"


async def _body(request: Request, limits: Limits, *, patch: bool = False) -> Any:
    """A resource, Bundle or patch body: JSON within the element limit; FHIR JSON (not JSON
    Patch) without empty arrays or objects."""
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/fhir+json")
    if patch and ctype and ctype not in ("application/json-patch+json", "application/json", "application/fhir+json"):
        raise UnsupportedMediaType(
            "PATCH needs Content-Type application/json-patch+json (JSON Patch) or application/fhir+json "
            "(FHIRPath Patch Parameters)")
    raw = await request.body()  # after the header checks: a refused type is not read
    if not raw:
        raise InvalidRequest("The request has no body")
    value = loads(raw, max_string=limits.max_element, fhir=not patch or ctype == "application/fhir+json")
    if patch:  # nesting bounded as FHIR bodies are, empty values kept (JSON Patch values, merge nulls)
        check_json(value, fhir=True)
    return value


def _render(result: Result, request: Request, base_url: str) -> Response:
    headers = result.http_headers(base_url)
    if request.method == "HEAD":  # the GET's status and headers, no body
        return Response(status_code=result.status, headers=headers, media_type=None)
    if result.status == 304 or result.body is None:
        status = result.status
        if result.body is None and status == 200 and request.method == "DELETE":
            status = 204
        return Response(status_code=status, headers=headers, media_type=None if status in (204, 304) else FHIR_JSON)
    pretty = request.query_params.get("_pretty") == "true"
    if isinstance(result.body, bytes) and not pretty:
        content = result.body
    else:
        opts = orjson.OPT_INDENT_2 if pretty else 0
        body = result.body_fragment() if not pretty else _materialize(result.body)
        # What the node builds (Bundles, outcomes) may hold empty arrays; FHIR JSON has none.
        content = orjson.dumps(prune_empty(body), option=opts)
    return Response(content=content, status_code=result.status, headers=headers,
                    media_type=f"{FHIR_JSON}; charset=utf-8")


def _materialize(body: Any) -> Any:
    if isinstance(body, bytes):
        return orjson.loads(body)
    return orjson.loads(orjson.dumps(body))  # resolves embedded Fragments


def _error_response(err: FhirError) -> Response:
    return Response(
        content=orjson.dumps(err.to_outcome()), status_code=err.status, headers=err.headers,
        media_type=f"{FHIR_JSON}; charset=utf-8",
    )


def create_app(
    node: Any, *, authenticate: Callable[[Request], Principal] | None = None, audit: Any = None,
    limits: Limits | None = None,
) -> FastAPI:
    """``authenticate`` defaults to SMART bearer tokens (:mod:`hie.auth.bearer`); ``audit``
    is an :class:`hie.audit.recorder.AuditRecorder`, None for the node's own, or False
    for none (benchmarks comparing audit off and on); ``limits`` default to the node's
    settings (``HIE_MAX_BODY_BYTES``, ``HIE_MAX_ELEMENT_BYTES``)."""
    from hie.api.docs import add_docs_routes

    app = FastAPI(
        title="Regional HIE node — FHIR R4",
        version="0.1.0",
        docs_url=None,  # served from vendored assets (hie/api/docs.py): no CDN
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.node = node
    from hie.api.auth_routes import auth_router
    from hie.auth.bearer import bearer_authenticator

    limits = limits or Limits.of(node.settings)
    app.add_middleware(BodyLimit, limits=limits)
    auth = authenticate or bearer_authenticator(node)
    if audit is None:
        from hie.audit.recorder import AuditRecorder

        audit = AuditRecorder.for_node(node)
    recorder = audit or None
    app.include_router(auth_router(node, recorder, limits))
    from hie.api.viewer_routes import web_router

    app.include_router(web_router(node, recorder))  # the clinician viewer (/viewer, hie/web)
    _add_error_handlers(app)
    add_docs_routes(app)
    _add_fhir_routes(app, node, auth, recorder, limits)
    return app


_HTTP_ERRORS: dict[int, type[FhirError]] = {
    400: InvalidRequest, 401: Unauthenticated, 403: Forbidden, 406: NotAcceptable, 413: BodyTooLarge,
    415: UnsupportedMediaType,
}
"""The node's error for an HTTP error the web framework raises itself (its status kept)."""


def _add_error_handlers(app: FastAPI) -> None:
    """Every error leaves as an OperationOutcome, never a traceback."""

    @app.exception_handler(FhirError)
    async def _fhir_error(_request: Request, exc: FhirError) -> Response:
        return _error_response(exc)

    @app.exception_handler(RequestValidationError)
    async def _validation_error(_request: Request, exc: RequestValidationError) -> Response:
        return _error_response(InvalidRequest(f"Invalid request: {exc.errors()[:3]}"))

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(_request: Request, exc: StarletteHTTPException) -> Response:
        if exc.status_code == 404:
            return _error_response(NotFound(f"No such endpoint: {_request.url.path}"))
        if exc.status_code == 405:
            return _error_response(MethodNotAllowed(f"{_request.method} is not allowed on {_request.url.path}"))
        known = _HTTP_ERRORS.get(exc.status_code)
        # Another status from the framework keeps it, with the generic code HIE-0400.
        err = known(str(exc.detail)) if known else FhirError(str(exc.detail), status=exc.status_code)
        return _error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        err = internal_error(uuid.uuid4().hex)
        log.error("unhandled error (correlation id %s)", err.correlation_id, exc_info=exc)
        return _error_response(err)


def _audit(node: Any, recorder: Any, request: Request, principal: Principal | None, *,
           exc: Exception | None = None, result: Result | None = None) -> None:
    """One AuditEvent for a FHIR request, allowed (``result``) or refused (``exc``); none for
    a public endpoint's anonymous principal."""
    if recorder is None or (principal is not None and principal.kind == "anonymous"):
        return
    from hie.audit.http import event_for

    if result is not None:
        recorder.record(event_for(node, request, principal, status=result.status, result=result))
        return
    status = exc.status if isinstance(exc, FhirError) else 500
    diag = exc.diagnostics if isinstance(exc, FhirError) else "internal error"
    recorder.record(event_for(node, request, principal, status=status, diagnostics=diag))


def _run_sync(node: Any, auth: Callable[[Request], Principal], recorder: Any, request: Request, call: Call,
              bundle: Any = None) -> Response:
    """Authorize, execute and render one FHIR call (in the thread pool), auditing it
    allowed or refused."""
    from hie.auth.bearer import authorize

    principal: Principal | None = None
    try:
        _negotiate(request)
        base = _base_url(node, request)
        principal = authorize(node, request, auth, call.parsed, bundle, base)
        ret, strict = _prefer(request)
        with node.context(principal, write=call.parsed.write, base_url=base, prefer_return=ret,
                          prefer_strict=strict) as ctx:
            result = execute(ctx, call)
        response = _render(result, request, base)
    except Exception as exc:
        _audit(node, recorder, request, principal, exc=exc)
        raise
    _audit(node, recorder, request, principal, result=result)
    return response


def _authenticate_first(node: Any, auth: Callable[[Request], Principal], recorder: Any,
                        request: Request) -> Principal:
    """The token of a request that carries a body, checked before the body is read (issue 19
    item 3: no work for an anonymous caller); a refusal is audited as in :func:`_run_sync`."""
    try:
        return auth(request)
    except Exception as exc:
        _audit(node, recorder, request, None, exc=exc)
        if isinstance(exc, FhirError) and _has_body(request):
            exc.headers = {**exc.headers, "Connection": "close"}  # the unread body is not drained
        raise


def _has_body(request: Request) -> bool:
    h = request.headers
    return h.get("content-length", "0") != "0" or "chunked" in h.get("transfer-encoding", "").lower()


def _reads_body(parsed: Parsed) -> bool:
    name = parsed.row.name
    return (name in BODY_ROWS or name.endswith("-post")
            or (parsed.operation is not None and parsed.method == "POST"))


def _add_fhir_routes(app: FastAPI, node: Any, auth: Callable[[Request], Principal], recorder: Any,
                     limits: Limits) -> None:
    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/fhir/metadata")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    async def fhir(request: Request) -> Response:
        """Every FHIR request: the interaction table parses it, the token of one with a body is
        checked, :func:`_call_of` reads what its row needs from the request (within the
        limits), and :func:`execute` runs it."""
        path = request.url.path
        parsed = parse(request.method, path[len("/fhir"):], request.url.query)
        authn = auth
        if _reads_body(parsed):
            principal = await run_in_threadpool(_authenticate_first, node, auth, recorder, request)
            authn = _authenticated(principal)
            try:
                call = await _call_of(request, parsed, limits)
            except FhirError as exc:  # a body refused (type, size, JSON) is audited too
                await run_in_threadpool(_audit, node, recorder, request, principal, exc=exc)
                raise
        else:
            call = await _call_of(request, parsed, limits)
        bundle = call.body if parsed.row.name == "batch-transaction" else None
        return await run_in_threadpool(_run_sync, node, authn, recorder, request, call, bundle)

    app.add_api_route("/fhir", fhir, methods=list(METHODS), include_in_schema=False)
    app.add_api_route("/fhir/{path:path}", fhir, methods=list(METHODS), include_in_schema=False)


def _authenticated(principal: Principal) -> Callable[[Request], Principal]:
    return lambda _request: principal


def _decode_form(raw: bytes, limits: Limits) -> list[tuple[str, str]]:
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError:
        raise InvalidRequest("The form body is not valid UTF-8") from None
    return limits.check_form(parse_qsl(text, keep_blank_values=True))


async def _form(request: Request, limits: Limits) -> list[tuple[str, str]]:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if ctype and ctype != "application/x-www-form-urlencoded":
        raise UnsupportedMediaType("_search by POST needs Content-Type application/x-www-form-urlencoded")
    return _decode_form(await request.body(), limits)


async def _operation_input(request: Request, parsed: Parsed, limits: Limits) -> tuple[Parsed, Any]:
    """A POSTed operation's form parameters (added to the query's) or JSON body."""
    if parsed.method != "POST":
        return parsed, None
    raw = await request.body()
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if raw and ctype == "application/x-www-form-urlencoded":
        return parsed.with_params(_decode_form(raw, limits)), None
    if raw and ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported for ${parsed.operation.name}")
    return parsed, loads(raw, max_string=limits.max_element, fhir=True) if raw else None


def _modified_since(request: Request) -> int | None:
    raw = request.headers.get("if-modified-since")
    if not raw:
        return None
    from email.utils import parsedate_to_datetime

    try:
        return int(parsedate_to_datetime(raw).timestamp() * 1_000_000)
    except (TypeError, ValueError):
        return None


BODY_ROWS = ("create", "update", "conditional-update", "batch-transaction", "patch", "conditional-patch")


async def _call_of(request: Request, parsed: Parsed, limits: Limits) -> Call:
    """What the parsed request's row needs from the HTTP request: its body (resource, JSON
    Patch, Bundle, form parameters, operation input) and its conditional headers."""
    name = parsed.row.name
    body: Any = None
    if name in ("create", "update", "conditional-update", "batch-transaction"):
        body = await _body(request, limits)
    elif name in ("patch", "conditional-patch"):
        body = await _body(request, limits, patch=True)
    elif name.endswith("-post"):
        parsed = parsed.with_params(await _form(request, limits))
    elif parsed.operation is not None:
        parsed, body = await _operation_input(request, parsed, limits)
    h = request.headers
    return Call(
        parsed, body, if_match=h.get("if-match"), if_none_match=h.get("if-none-match"),
        if_none_exist=h.get("if-none-exist") if name == "create" else None,
        if_modified_since=_modified_since(request) if name == "read" else None,
    )
