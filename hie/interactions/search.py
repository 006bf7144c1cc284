"""The search interaction: type-level, system-level and Patient-compartment search.

Implements https://hl7.org/fhir/R4/http.html#search and https://hl7.org/fhir/R4/search.html
(result parameters: ``_count``, ``_sort``, ``_include``/``_revinclude`` with
``:iterate``, ``_summary``, ``_elements``, ``_total``; ``search.mode``; paging links;
``Prefer: handling=strict|lenient``). Returns the ``searchset`` Bundle as a dict.

Paging is offset-based over a total order (the requested sort keys, then
``resource.pk``), so ``next``/``previous`` links are stable while the data does not
change. The statements run in the repository (``ctx.repo.search``, ``ctx.repo.include``),
which builds them with :mod:`hie.search.query` and its access predicate.

Statements per search: the page (its rows carry the resource content, read by the same
statement that applies the access predicate); the count only when the page does not
already tell the total (it does when it holds the last match); one per include round.
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.errors import InvalidSearch
from hie.interactions.paging import Pager
from hie.interactions.result import Result
from hie.search.query import split_params
from hie.search.summary import apply_elements, apply_summary

SUMMARY_VALUES = ("true", "text", "data", "count", "false")
TOTAL_VALUES = ("none", "estimate", "accurate")


def _one(control: dict[str, list[str]], name: str) -> str | None:
    vals = control.get(name)
    if not vals:
        return None
    if len(vals) > 1:
        raise InvalidSearch(f"{name} may appear only once", expression=[name])
    return vals[0]


def search(
    ctx: Any,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
) -> Result:
    """The search interaction as a :class:`Result` (200 with the searchset Bundle), as the
    REST routes and Bundle GET entries use it; :func:`search_bundle` gives the dict."""
    return Result(status=200, body=search_bundle(ctx, res_type, params, compartment=compartment))


def search_bundle(
    ctx: Any,
    res_type: str | None,
    params: list[tuple[str, str]],
    *,
    compartment: tuple[str, str] | None = None,
) -> dict[str, Any]:
    """The searchset Bundle for ``params`` (already URL-decoded name/value pairs)."""
    registry = ctx.registry
    parsed = split_params(registry, res_type, params)
    if parsed.ignored and ctx.prefer_strict:
        name, reason = parsed.ignored[0]
        raise InvalidSearch(reason, expression=[name])
    control = parsed.control
    for k in list(control):
        if ":" in k and k.split(":", 1)[0] not in ("_include", "_revinclude"):
            raise InvalidSearch(f"Unknown modifier on {k}", expression=[k])

    pager = Pager.of(control)
    summary = _one(control, "_summary")
    if summary is not None and summary not in SUMMARY_VALUES:
        raise InvalidSearch(f"_summary must be one of {', '.join(SUMMARY_VALUES)}", expression=["_summary"])
    total_mode = _one(control, "_total") or "accurate"
    if total_mode not in TOTAL_VALUES:
        raise InvalidSearch(f"_total must be one of {', '.join(TOTAL_VALUES)}", expression=["_total"])
    elements = [e.strip() for v in control.get("_elements", []) for e in v.split(",") if e.strip()]
    sort = ",".join(control.get("_sort", [])) or None
    for other in ("_contained", "_containedType"):
        if other in control and control[other] != ["false"]:
            raise InvalidSearch(f"{other} is not supported", expression=[other])
    includes: list[tuple[str, bool, bool]] = []
    for key, vals in control.items():
        base, _, mod = key.partition(":")
        if base in ("_include", "_revinclude"):
            if mod not in ("", "iterate", "recurse"):
                raise InvalidSearch(f"Unknown modifier on {key}", expression=[key])
            includes.extend((v, base == "_revinclude", mod in ("iterate", "recurse")) for v in vals)

    if summary == "count":
        pager = Pager(0, pager.offset)
    count, offset = pager.count, pager.offset
    page = ctx.repo.search(res_type, parsed.criteria, sort=sort, count=count, offset=offset,
                           compartment=compartment, base_url=ctx.base_url,
                           total=total_mode != "none" or summary == "count")
    rows, has_next, total = page.rows, page.has_next, page.total
    included = ctx.repo.include(rows, includes, base_url=ctx.base_url)

    base_path = f"{ctx.base_url}/{res_type}" if res_type else ctx.base_url
    if compartment:
        base_path = f"{ctx.base_url}/{compartment[0]}/{compartment[1]}/{res_type or '*'}"
    ignored = _ignored_pairs(params, parsed)
    used = [(n, v) for n, v in params if (n, v) not in ignored
            and n not in ("_count", "_offset")]
    links = pager.links(base_path, used, total=total, has_next=has_next)

    entries: list[dict[str, Any]] = []
    for _pk, t, rid, content in rows:
        entries.append(_entry(ctx, t, rid, content, "match", summary, elements))
    for _pk, t, rid, content in included:
        entries.append(_entry(ctx, t, rid, content, "include", summary, elements))
    if parsed.ignored:
        entries.append({
            "resource": {
                "resourceType": "OperationOutcome",
                "issue": [{"severity": "warning", "code": "not-supported",
                           "diagnostics": f"{reason}; the parameter was ignored",
                           "expression": [name]} for name, reason in parsed.ignored],
            },
            "search": {"mode": "outcome"},
        })
    bundle: dict[str, Any] = {"resourceType": "Bundle", "type": "searchset"}
    if total is not None:
        bundle["total"] = total
    bundle["link"] = links
    bundle["entry"] = entries
    return bundle


def _ignored_pairs(params: list[tuple[str, str]], parsed: Any) -> set[tuple[str, str]]:
    names = {n for n, _ in parsed.ignored}
    return {(n, v) for n, v in params if n in names}


def _entry(ctx: Any, t: str, rid: str, content: bytes, mode: str, summary: str | None,
           elements: list[str]) -> dict[str, Any]:
    entry: dict[str, Any] = {"fullUrl": f"{ctx.base_url}/{t}/{rid}"}
    res = orjson.loads(content)
    if summary not in (None, "false"):
        res = apply_summary(res, summary)
    elif elements:
        res = apply_elements(res, elements)
    entry["resource"] = res
    entry["search"] = {"mode": mode}
    return entry
