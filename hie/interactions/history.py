"""History at instance, type and system level, with ``_since``, ``_at``, ``_count`` and paging
(the pager search uses, :mod:`hie.interactions.paging`; ``_count=0`` answers the total only).

History is append-only, so paging is stable: the first page fixes a snapshot time and
every later page counts its offset below that snapshot (new versions written while a
client pages do not shift the pages).

Spec: https://hl7.org/fhir/R4/http.html#history
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.clock import instant, parse_instant_us
from hie.errors import InvalidRequest
from hie.interactions.context import Context
from hie.interactions.paging import Pager, non_negative
from hie.interactions.result import Result
from hie.storage.repository import Stored

def _time_param(params: dict[str, str], name: str) -> int | None:
    raw = params.get(name)
    if not raw:
        return None
    try:
        return parse_instant_us(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be a FHIR instant, got {raw!r}", expression=[name]) from None


def _history(ctx: Context, res_type: str | None, res_id: str | None, params_list: list[tuple[str, str]]) -> Result:
    params = dict(params_list)
    known = {"_count", "_since", "_at", "_offset", "_snapshot", "_format", "_pretty"}
    unknown = [k for k in params if k not in known]
    if unknown and ctx.prefer_strict:
        raise InvalidRequest(f"Unknown history parameter(s): {', '.join(unknown)}", expression=unknown)
    multi: dict[str, list[str]] = {}
    for k, v in params_list:
        multi.setdefault(k, []).append(v)
    pager = Pager.of(multi, error=InvalidRequest)
    count, offset = pager.count, pager.offset
    since = _time_param(params, "_since")
    at = _time_param(params, "_at")
    raw_snapshot = params.get("_snapshot", "")
    snapshot = non_negative(raw_snapshot, "_snapshot", InvalidRequest) if raw_snapshot else ctx.repo.clock.now_us()
    until = snapshot if at is None else min(snapshot, at)
    rows, total = ctx.repo.history(res_type, res_id, since_us=since, until_us=until, count=count, offset=offset)
    path = "/".join(p for p in (res_type, res_id) if p) + ("/_history" if res_type else "_history")
    base = f"{ctx.base_url}/{path}"
    kept = [("_snapshot", str(snapshot))] + [(k, params[k]) for k in ("_since", "_at") if k in params]
    links = pager.links(base, kept, total=total, has_next=offset + count < total)
    bundle = {
        "resourceType": "Bundle",
        "type": "history",
        "total": total,
        "link": links,
        "entry": [_entry(ctx, st) for st in rows],
    }
    return Result(200, bundle)


def _entry(ctx: Context, st: Stored) -> dict[str, Any]:
    method = st.method or "PUT"
    entry: dict[str, Any] = {"fullUrl": ctx.full_url(st.res_type, st.res_id)}
    if not st.deleted and st.content is not None:
        entry["resource"] = orjson.Fragment(st.content)
    url = st.res_type if method == "POST" else f"{st.res_type}/{st.res_id}"
    entry["request"] = {"method": "PUT" if method == "PATCH" else method, "url": url}
    status = "201 Created" if st.version_id == 1 and method != "DELETE" else (
        "204 No Content" if st.deleted else "200 OK")
    entry["response"] = {
        "status": status,
        "etag": st.etag,
        "lastModified": instant(st.last_updated),
    }
    if not st.deleted:
        entry["response"]["location"] = f"{st.res_type}/{st.res_id}/_history/{st.version_id}"
    return entry


def history_instance(ctx: Context, res_type: str, res_id: str, params: list[tuple[str, str]]) -> Result:
    # A resource the principal cannot see has no visible history: answer as if absent.
    if ctx.repo.current(res_type, res_id) is None:
        from hie.errors import NotFound

        raise NotFound(f"Resource {res_type}/{res_id} is not known")
    return _history(ctx, res_type, res_id, params)


def history_type(ctx: Context, res_type: str, params: list[tuple[str, str]]) -> Result:
    return _history(ctx, res_type, None, params)


def history_system(ctx: Context, params: list[tuple[str, str]]) -> Result:
    return _history(ctx, None, None, params)
