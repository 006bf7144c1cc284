"""FHIR RESTful API over FastAPI: routes map (method, path) to one interaction each.

The routes here only translate HTTP to interaction calls and back: content negotiation,
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

from hie.errors import (
    FhirError,
    InvalidRequest,
    MethodNotAllowed,
    NotAcceptable,
    NotFound,
    UnsupportedMediaType,
    internal_error,
)
from hie.fhir.jsonio import loads
from hie.fhir.validate import is_resource_type
from hie.interactions import bundle, crud, history
from hie.interactions.capabilities import capabilities
from hie.interactions.context import Context
from hie.interactions.result import Result
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
    if any(k in ("*/*", "application/*", "application/fhir+json", "application/json", "application/json+fhir", "text/json", "text/html")
           for k in kinds):
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


async def _body(request: Request, *, patch: bool = False) -> Any:
    ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
    raw = await request.body()
    if ctype and ctype not in JSON_TYPES:
        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported; send application/fhir+json")
    if patch and ctype and ctype not in ("application/json-patch+json", "application/json"):
        raise UnsupportedMediaType("PATCH needs Content-Type application/json-patch+json")
    if not raw:
        raise InvalidRequest("The request has no body")
    return loads(raw)


def _render(result: Result, request: Request, base_url: str) -> Response:
    headers = result.http_headers(base_url)
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
        content = orjson.dumps(result.body_fragment() if not pretty else _materialize(result.body), option=opts)
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
) -> FastAPI:
    """``authenticate`` defaults to SMART bearer tokens (:mod:`hie.auth.bearer`); ``audit``
    is an :class:`hie.audit.recorder.AuditRecorder`, None for the node's own, or False
    for none (benchmarks comparing audit off and on)."""
    app = FastAPI(
        title="Regional HIE node — FHIR R4",
        version="0.1.0",
        docs_url="/docs",
        redoc_url=None,
        openapi_url="/openapi.json",
    )
    app.state.node = node
    from hie.api.auth_routes import auth_router
    from hie.auth.bearer import authorize, bearer_authenticator

    auth = authenticate or bearer_authenticator(node)
    if audit is None:
        from hie.audit.recorder import AuditRecorder

        audit = AuditRecorder.for_node(node)
    recorder = audit or None
    app.include_router(auth_router(node, recorder))

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
        err = FhirError(str(exc.detail), status=exc.status_code)
        return _error_response(err)

    @app.exception_handler(Exception)
    async def _unexpected(_request: Request, exc: Exception) -> Response:
        err = internal_error(uuid.uuid4().hex)
        log.error("unhandled error (correlation id %s)", err.correlation_id, exc_info=exc)  # type: ignore[attr-defined]
        return _error_response(err)

    async def run(request: Request, fn: Callable[[Context], Result], *, write: bool, bundle: Any = None) -> Response:
        return await run_in_threadpool(run_sync, request, fn, write, bundle)

    def run_sync(request: Request, fn: Callable[[Context], Result], write: bool, bundle: Any = None) -> Response:
        principal: Principal | None = None
        try:
            _negotiate(request)
            principal = authorize(node, request, auth, bundle)
            ret, strict = _prefer(request)
            base = _base_url(node, request)
            with node.context(principal, write=write, base_url=base, prefer_return=ret, prefer_strict=strict) as ctx:
                result = fn(ctx)
            response = _render(result, request, base)
        except Exception as exc:
            if recorder is not None and (principal is None or principal.kind != "anonymous"):
                from hie.audit.http import event_for

                status = exc.status if isinstance(exc, FhirError) else 500
                diag = exc.diagnostics if isinstance(exc, FhirError) else "internal error"
                recorder.record(event_for(node, request, principal, status=status, diagnostics=diag))
            raise
        if recorder is not None and principal.kind != "anonymous":
            from hie.audit.http import event_for

            recorder.record(event_for(node, request, principal, status=result.status, result=result))
        return response

    def check_type(res_type: str) -> None:
        if not is_resource_type(res_type):
            raise NotFound(f"Unknown resource type '{res_type}'", expression=[res_type])

    def params_of(request: Request) -> list[tuple[str, str]]:
        return parse_qsl(request.url.query, keep_blank_values=True)

    async def form_params(request: Request) -> list[tuple[str, str]]:
        ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
        if ctype and ctype != "application/x-www-form-urlencoded":
            raise UnsupportedMediaType("_search by POST needs Content-Type application/x-www-form-urlencoded")
        raw = (await request.body()).decode("utf-8")
        return params_of(request) + parse_qsl(raw, keep_blank_values=True)

    def search_fn(res_type: str | None, params: list[tuple[str, str]], compartment: tuple[str, str] | None = None):
        from hie.interactions import search as search_mod

        return lambda ctx: search_mod.search(ctx, res_type, params, compartment=compartment)

    async def invoke(request: Request, name: str, level: str, res_type: str | None, res_id: str | None) -> Response:
        from hie.interactions import operations as ops

        op = ops.find(name, level, res_type)
        ops.check_method(op, request.method)
        body = None
        if request.method == "POST":
            raw = await request.body()
            ctype = request.headers.get("content-type", "").split(";")[0].strip().lower()
            if raw and ctype == "application/x-www-form-urlencoded":
                extra = parse_qsl(raw.decode("utf-8"), keep_blank_values=True)
                call_params = params_of(request) + extra
            else:
                call_params = params_of(request)
                if raw:
                    if ctype and ctype not in JSON_TYPES:
                        raise UnsupportedMediaType(f"Content-Type {ctype!r} is not supported for ${name}")
                    body = loads(raw)
        else:
            call_params = params_of(request)
        call = ops.OperationCall(name, level, res_type, res_id, call_params, body, request.method)
        return await run(request, lambda ctx: op.fn(ctx, call), write=op.write)

    @app.api_route("/fhir/{res_type}/{res_id}/{op_name}", methods=["POST"], include_in_schema=False)
    async def instance_operation_post(res_type: str, res_id: str, op_name: str, request: Request) -> Response:
        if not op_name.startswith("$"):
            raise MethodNotAllowed(f"POST is not allowed on {request.url.path}")
        check_type(res_type)
        return await invoke(request, op_name[1:], "instance", res_type, res_id)

    # -- system level ------------------------------------------------------------------

    @app.get("/", include_in_schema=False)
    def root() -> Response:
        return RedirectResponse("/fhir/metadata")

    @app.get("/healthz", include_in_schema=False)
    def healthz() -> Response:
        return JSONResponse({"status": "ok"})

    @app.get("/fhir/metadata")
    async def metadata(request: Request) -> Response:
        return await run(request, capabilities, write=False)

    @app.post("/fhir")
    @app.post("/fhir/")
    async def system_bundle(request: Request) -> Response:
        body = await _body(request)
        return await run(request, lambda ctx: bundle.process(ctx, body), write=True, bundle=body)

    @app.get("/fhir/_history")
    async def system_history(request: Request) -> Response:
        return await run(request, lambda ctx: history.history_system(ctx, params_of(request)), write=False)

    @app.get("/fhir")
    async def system_search(request: Request) -> Response:
        return await run(request, search_fn(None, params_of(request)), write=False)

    @app.post("/fhir/_search")
    async def system_search_post(request: Request) -> Response:
        params = await form_params(request)
        return await run(request, search_fn(None, params), write=False)

    # -- type level --------------------------------------------------------------------

    @app.get("/fhir/{res_type}/_history")
    async def type_history(res_type: str, request: Request) -> Response:
        check_type(res_type)
        return await run(request, lambda ctx: history.history_type(ctx, res_type, params_of(request)), write=False)

    @app.post("/fhir/{res_type}/_search")
    async def type_search_post(res_type: str, request: Request) -> Response:
        check_type(res_type)
        params = await form_params(request)
        return await run(request, search_fn(res_type, params), write=False)

    @app.get("/fhir/{res_type}")
    async def type_search(res_type: str, request: Request) -> Response:
        if res_type.startswith("$"):
            return await invoke(request, res_type[1:], "system", None, None)
        check_type(res_type)
        return await run(request, search_fn(res_type, params_of(request)), write=False)

    @app.post("/fhir/{res_type}")
    async def create(res_type: str, request: Request) -> Response:
        if res_type.startswith("$"):
            return await invoke(request, res_type[1:], "system", None, None)
        check_type(res_type)
        body = await _body(request)
        ine = request.headers.get("if-none-exist")
        return await run(request, lambda ctx: crud.create(ctx, res_type, body, if_none_exist=ine), write=True)

    @app.put("/fhir/{res_type}")
    async def conditional_update(res_type: str, request: Request) -> Response:
        check_type(res_type)
        if not request.url.query:
            raise MethodNotAllowed("PUT on a type needs search criteria (conditional update) or an id")
        body = await _body(request)
        im = request.headers.get("if-match")
        return await run(request, lambda ctx: crud.conditional_update(ctx, res_type, request.url.query, body, if_match=im),
                   write=True)

    @app.patch("/fhir/{res_type}")
    async def conditional_patch(res_type: str, request: Request) -> Response:
        check_type(res_type)
        if not request.url.query:
            raise MethodNotAllowed("PATCH on a type needs search criteria (conditional patch) or an id")
        ops = await _body(request, patch=True)
        im = request.headers.get("if-match")
        return await run(request, lambda ctx: crud.conditional_patch(ctx, res_type, request.url.query, ops, if_match=im),
                   write=True)

    @app.delete("/fhir/{res_type}")
    async def conditional_delete(res_type: str, request: Request) -> Response:
        check_type(res_type)
        if not request.url.query:
            raise MethodNotAllowed("DELETE on a type needs search criteria (conditional delete) or an id")
        return await run(request, lambda ctx: crud.conditional_delete(ctx, res_type, request.url.query), write=True)

    # -- instance level ----------------------------------------------------------------

    @app.get("/fhir/{res_type}/{res_id}/_history/{version}")
    async def vread(res_type: str, res_id: str, version: str, request: Request) -> Response:
        check_type(res_type)
        return await run(request, lambda ctx: crud.vread(ctx, res_type, res_id, version), write=False)

    @app.get("/fhir/{res_type}/{res_id}/_history")
    async def instance_history(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        return await run(request, lambda ctx: history.history_instance(ctx, res_type, res_id, params_of(request)),
                   write=False)

    @app.get("/fhir/{res_type}/{res_id}/{comp_type}")
    async def compartment_search(res_type: str, res_id: str, comp_type: str, request: Request) -> Response:
        check_type(res_type)
        if comp_type.startswith("$"):
            return await invoke(request, comp_type[1:], "instance", res_type, res_id)
        if res_type != "Patient":
            raise NotFound(f"Compartment search is supported for Patient, not {res_type}")
        if comp_type == "*":
            return await run(request, search_fn(None, params_of(request), ("Patient", res_id)), write=False)
        check_type(comp_type)
        return await run(request, search_fn(comp_type, params_of(request), ("Patient", res_id)), write=False)

    @app.get("/fhir/{res_type}/{res_id}")
    async def read(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        if res_id.startswith("$"):
            return await invoke(request, res_id[1:], "type", res_type, None)
        inm = request.headers.get("if-none-match")
        ims_raw = request.headers.get("if-modified-since")
        ims = None
        if ims_raw:
            from email.utils import parsedate_to_datetime

            try:
                ims = int(parsedate_to_datetime(ims_raw).timestamp() * 1_000_000)
            except (TypeError, ValueError):
                ims = None
        return await run(request, lambda ctx: crud.read(ctx, res_type, res_id, if_none_match=inm, if_modified_since=ims),
                   write=False)

    @app.post("/fhir/{res_type}/{res_id}", include_in_schema=False)
    async def type_operation_post(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        if not res_id.startswith("$"):
            raise MethodNotAllowed(f"POST is not allowed on {request.url.path}; use PUT to update")
        return await invoke(request, res_id[1:], "type", res_type, None)

    @app.put("/fhir/{res_type}/{res_id}")
    async def update(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        body = await _body(request)
        im = request.headers.get("if-match")
        return await run(request, lambda ctx: crud.update(ctx, res_type, res_id, body, if_match=im), write=True)

    @app.patch("/fhir/{res_type}/{res_id}")
    async def patch(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        ops = await _body(request, patch=True)
        im = request.headers.get("if-match")
        return await run(request, lambda ctx: crud.patch(ctx, res_type, res_id, ops, if_match=im), write=True)

    @app.delete("/fhir/{res_type}/{res_id}")
    async def delete(res_type: str, res_id: str, request: Request) -> Response:
        check_type(res_type)
        im = request.headers.get("if-match")
        return await run(request, lambda ctx: crud.delete(ctx, res_type, res_id, if_match=im), write=True)

    return app
