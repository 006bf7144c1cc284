"""Write-time extraction of search-index rows, and reindexing.

Implements the indexing half of FHIR R4 search (https://hl7.org/fhir/R4/search.html):
for each supported parameter of a resource's type, evaluate its FHIRPath expression
(:mod:`hie.search.fhirpath`) and turn the values into rows of the index table of the
parameter's type (:mod:`hie.search.tables`), following the value-to-type mapping of
https://hl7.org/fhir/R4/search.html#table (Coding/CodeableConcept/Identifier/ContactPoint
/code/boolean -> token; HumanName/Address/string -> string; Period/date/dateTime/instant/
Timing -> date; Reference/canonical -> reference; ...).

The storage layer calls :func:`write_index` / :func:`write_index_many` inside its write
transaction and :func:`delete_index` on delete; ``hie reindex`` calls :func:`reindex`.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager
from decimal import Decimal
from itertools import product
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, delete, func, select

from hie.search.fhirpath import reference_type
from hie.search.normalize import (
    MAX_US,
    MIN_US,
    UCUM,
    DateFormatError,
    date_range,
    norm_string,
    ucum_canonical,
)
from hie.search.registry import SearchParam, SearchRegistry
from hie.search.tables import ALL_INDEX_TABLES
from hie.storage.tables import resource as resource_table

log = logging.getLogger(__name__)

CONTACT_SYSTEMS = {"phone", "fax", "email", "pager", "url", "sms", "other"}
_STRING_KEYS = (
    "text", "family", "given", "prefix", "suffix",
    "line", "city", "district", "state", "postalCode", "country",
)
_warned: set[tuple[str, str]] = set()

# -- value -> index values ------------------------------------------------------------


def _cut(s: str | None, n: int) -> str | None:
    return s[:n] if isinstance(s, str) else s


def string_values(v: Any) -> list[str]:
    """The strings a string parameter indexes for one extracted value."""
    if isinstance(v, str):
        return [v] if v.strip() else []
    if isinstance(v, dict):
        out: list[str] = []
        for k in _STRING_KEYS:
            x = v.get(k)
            if isinstance(x, str):
                out.append(x)
            elif isinstance(x, list):
                out.extend(s for s in x if isinstance(s, str))
        if not out and isinstance(v.get("value"), str):
            out.append(v["value"])
        return [s for s in out if s.strip()]
    return []


def token_values(v: Any) -> list[tuple[str | None, str | None, str | None, str]]:
    """``(system, code, text_norm, suffix)`` tuples; suffix is '' or ':of-type'."""
    if isinstance(v, bool):
        return [(None, "true" if v else "false", None, "")]
    if isinstance(v, (str, int, Decimal, float)):
        s = str(v)
        return [(None, s, None, "")] if s else []
    if not isinstance(v, dict):
        return []
    if "coding" in v or ("text" in v and "value" not in v and "code" not in v):
        out = [
            (c.get("system"), c.get("code"), _norm_opt(c.get("display")), "")
            for c in v.get("coding") or []
            if isinstance(c, dict) and (c.get("code") or c.get("system") or c.get("display"))
        ]
        if isinstance(v.get("text"), str):
            out.append((None, None, norm_string(v["text"]), ""))
        return out
    if "value" in v and isinstance(v["value"], str):
        if v.get("system") in CONTACT_SYSTEMS:
            return [(None, v["value"], None, "")]
        typ: dict[str, Any] = v["type"] if isinstance(v.get("type"), dict) else {}
        out = [(v.get("system"), v["value"], _norm_opt(typ.get("text")), "")]
        for c in typ.get("coding") or []:
            if isinstance(c, dict) and c.get("code"):
                out.append((c.get("system"), f"{c['code']}|{v['value']}", None, ":of-type"))
        return out
    if "code" in v or "system" in v:  # Coding, or a Quantity used as a token
        return [(v.get("system"), v.get("code"), _norm_opt(v.get("display")), "")]
    return []


def _norm_opt(s: Any) -> str | None:
    return norm_string(s) if isinstance(s, str) and s.strip() else None


def reference_values(v: Any) -> list[tuple[str | None, str | None, str | None]]:
    """``(target_type, target_id, url)`` tuples for one Reference/canonical/resource."""
    if isinstance(v, str):  # canonical / uri used as a reference
        return [(None, None, v.split("|", 1)[0])] if v else []
    if not isinstance(v, dict):
        return []
    if "resourceType" in v:  # an inline resource (Bundle.entry[0].resource)
        return [(v["resourceType"], v["id"], None)] if v.get("id") else []
    ref = v.get("reference")
    if not isinstance(ref, str) or not ref or ref.startswith("#"):
        return []
    return [parse_reference(ref)]


def parse_reference(ref: str) -> tuple[str | None, str | None, str | None]:
    if "://" in ref or ref.startswith("urn:"):
        return (None, None, ref)
    parts = ref.split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        parts = parts[:-2]
    if len(parts) == 2 and reference_type(ref):
        return (parts[0], parts[1], None)
    return (None, None, ref)


def date_values(v: Any) -> list[tuple[int, int]]:
    try:
        if isinstance(v, str):
            return [date_range(v)]
        if isinstance(v, dict):
            if "start" in v or "end" in v:
                low = date_range(v["start"])[0] if v.get("start") else MIN_US
                high = date_range(v["end"])[1] if v.get("end") else MAX_US
                return [(low, high)]
            out = [date_range(e) for e in v.get("event") or [] if isinstance(e, str)]
            rep = v.get("repeat")
            if isinstance(rep, dict) and isinstance(rep.get("boundsPeriod"), dict):
                out.extend(date_values(rep["boundsPeriod"]))
            return out
    except DateFormatError:
        return []
    return []


def _number(x: Any) -> float | None:
    if isinstance(x, bool):
        return None
    if isinstance(x, (int, float, Decimal)):
        return float(x)
    if isinstance(x, str):
        try:
            return float(Decimal(x))
        except Exception:
            return None
    return None


def number_values(v: Any) -> list[float]:
    n = _number(v.get("value") if isinstance(v, dict) else v)
    return [] if n is None else [n]


def quantity_values(v: Any) -> list[tuple[float, str | None, str | None, str | None, float | None, str | None]]:
    """``(value, system, code, unit, canon_value, canon_code)``."""
    if not isinstance(v, dict):
        n = _number(v)
        return [] if n is None else [(n, None, None, None, None, None)]
    n = _number(v.get("value"))
    if n is None:
        return []
    system, code, unit = v.get("system"), v.get("code"), v.get("unit")
    if "currency" in v:  # Money
        system, code = "urn:iso:std:iso:4217", v.get("currency")
    canon_v, canon_c = None, None
    if system == UCUM and isinstance(code, str):
        c = ucum_canonical(Decimal(str(v["value"])), code)
        if c is not None:
            canon_v, canon_c = float(c[0]), c[1]
    return [(n, system, _cut(code, 128), _cut(unit, 128), canon_v, canon_c)]


def uri_values(v: Any) -> list[str]:
    return [v] if isinstance(v, str) and v else []


def composite_component(ctype: str, v: Any) -> list[dict[str, Any]]:
    """Encodings of one component value (see :data:`hie.search.tables.search_composite`)."""
    if ctype == "token":
        return [{"system": s, "code": c, "value": None, "low": None, "high": None}
                for s, c, _t, suf in token_values(v) if c is not None and not suf]
    if ctype == "reference":
        return [{"system": t, "code": i if i is not None else u, "value": None, "low": None,
                 "high": None} for t, i, u in reference_values(v)]
    if ctype == "string":
        return [{"system": None, "code": norm_string(s)[:512], "value": None, "low": None,
                 "high": None} for s in string_values(v)]
    if ctype == "date":
        return [{"system": None, "code": None, "value": None, "low": lo, "high": hi}
                for lo, hi in date_values(v)]
    if ctype == "number":
        return [{"system": None, "code": None, "value": n, "low": None, "high": None}
                for n in number_values(v)]
    if ctype == "quantity":
        out = []
        for n, s, c, u, cv, cc in quantity_values(v):
            out.append({"system": s, "code": c or u, "value": n, "low": None, "high": None})
            if cc is not None and (cc != c or cv != n):
                out.append({"system": UCUM, "code": cc, "value": cv, "low": None, "high": None})
        return out
    if ctype == "uri":
        return [{"system": None, "code": s, "value": None, "low": None, "high": None}
                for s in uri_values(v)]
    return []


# -- extraction -----------------------------------------------------------------------


def _safe(p: SearchParam, fn: Callable[[Any], list[Any]], arg: Any) -> list[Any]:
    try:
        return fn(arg)
    except Exception as exc:  # a FHIRPath evaluation error on odd data
        if (p.res_type, p.code) not in _warned:
            _warned.add((p.res_type, p.code))
            log.warning("search parameter %s.%s: evaluation failed: %s", p.res_type, p.code, exc)
        return []


def extract_rows(registry: SearchRegistry, res_type: str, resource: dict[str, Any]) -> dict[str, list[dict[str, Any]]]:
    """Index rows (without the common columns) per table name for one resource."""
    rows: dict[str, set[tuple]] = {t.name: set() for t in ALL_INDEX_TABLES}
    for p in registry.indexed_params(res_type):
        code = p.code
        if p.type == "composite":
            for elem_fn, comps in registry.composite_parts(p):
                for elem in _safe(p, elem_fn, resource):
                    per_comp = []
                    for ctype, cfn in comps:
                        encs = [e for v in _safe(p, cfn, elem) for e in composite_component(ctype, v)]
                        per_comp.append(encs)
                    if not all(per_comp) or len(per_comp) > 3:
                        continue
                    for combo in product(*per_comp):
                        key: list[Any] = [code]
                        for i in range(3):
                            e = combo[i] if i < len(combo) else None
                            key.extend(
                                (_cut(e["system"], 256), _cut(e["code"], 512), e["value"], e["low"], e["high"])
                                if e else (None,) * 5
                            )
                        rows["search_composite"].add(tuple(key))
            continue
        values = _safe(p, p.extractor, resource)
        if not values:
            continue
        t = p.type
        for v in values:
            if t == "string":
                for s in string_values(v):
                    rows["search_string"].add((code, norm_string(s)[:512], s))
            elif t == "token":
                for system, c, text, suffix in token_values(v):
                    rows["search_token"].add((code + suffix, _cut(system, 256), _cut(c, 256), _cut(text, 512)))
            elif t == "reference":
                for tt, ti, url in reference_values(v):
                    rows["search_reference"].add((code, tt, _cut(ti, 64), _cut(url, 1024)))
                if isinstance(v, dict) and isinstance(v.get("identifier"), dict):
                    for system, c, _text, suffix in token_values(v["identifier"]):
                        if not suffix:
                            rows["search_token"].add((code + ":identifier", _cut(system, 256), _cut(c, 256), None))
            elif t == "date":
                for lo, hi in date_values(v):
                    rows["search_date"].add((code, lo, hi))
            elif t == "number":
                for n in number_values(v):
                    rows["search_number"].add((code, n))
            elif t == "quantity":
                for q in quantity_values(v):
                    rows["search_quantity"].add((code, *q))
            elif t == "uri":
                for s in uri_values(v):
                    rows["search_uri"].add((code, _cut(s, 1024)))
    return {name: [dict(zip(_COLUMNS[name], r, strict=True)) for r in sorted(vals, key=repr)]
            for name, vals in rows.items() if vals}


_COLUMNS = {
    "search_string": ("param", "value_norm", "value_exact"),
    "search_token": ("param", "system", "code", "text_norm"),
    "search_reference": ("param", "target_type", "target_id", "url"),
    "search_date": ("param", "low", "high"),
    "search_number": ("param", "value"),
    "search_quantity": ("param", "value", "system", "code", "unit", "canon_value", "canon_code"),
    "search_uri": ("param", "value"),
    "search_composite": ("param",) + tuple(
        f"c{i}_{k}" for i in (1, 2, 3) for k in ("system", "code", "value", "low", "high")
    ),
}
_TABLE_BY_NAME = {t.name: t for t in ALL_INDEX_TABLES}


# -- writing --------------------------------------------------------------------------


def delete_index(conn: Connection, resource_pk: int) -> None:
    """Remove every index row of one resource (on delete)."""
    delete_index_many(conn, [resource_pk])


def delete_index_many(conn: Connection, pks: list[int]) -> None:
    """Remove every index row of these resources (one statement per table per 500)."""
    for i in range(0, len(pks), 500):
        chunk = pks[i:i + 500]
        for t in ALL_INDEX_TABLES:
            conn.execute(delete(t).where(t.c.resource_pk.in_(chunk)))


def write_index(
    conn: Connection,
    registry: SearchRegistry,
    *,
    resource_pk: int,
    res_type: str,
    patient_key: str | None,
    resource: dict[str, Any],
) -> None:
    """Replace all index rows of one resource."""
    write_index_many(conn, registry, [{
        "resource_pk": resource_pk, "res_type": res_type,
        "patient_key": patient_key, "resource": resource,
    }])


def write_index_many(
    conn: Connection,
    registry: SearchRegistry,
    items: Iterable[dict[str, Any]],
    *,
    replace: bool = True,
) -> None:
    """Replace the index rows of many resources with one executemany per table.

    ``items``: dicts with ``resource_pk``, ``res_type``, ``patient_key``, ``resource``, and
    optionally ``rows``: the :func:`extract_rows` result for that resource computed earlier
    (ingest extracts outside the write transaction, see ``hie.interactions.bundle.prepare``).
    ``replace=False`` skips the delete (for resources known to be new)."""
    items = list(items)
    if not items:
        return
    if replace:
        delete_index_many(conn, [it["resource_pk"] for it in items])
    batches: dict[str, list[dict[str, Any]]] = {}
    for it in items:
        common = {"resource_pk": it["resource_pk"], "res_type": it["res_type"],
                  "patient_key": it.get("patient_key")}
        extracted = it.get("rows")
        if extracted is None:
            extracted = extract_rows(registry, it["res_type"], it["resource"])
        for name, rows in extracted.items():
            b = batches.setdefault(name, [])
            for r in rows:
                r.update(common)
                b.append(r)
    for name, rows in batches.items():
        conn.execute(_TABLE_BY_NAME[name].insert(), rows)


def reindex(
    conn_factory: Callable[[], AbstractContextManager[Connection]],
    registry: SearchRegistry,
    progress: Callable[[int, int], None] | None = None,
    *,
    batch_size: int = 500,
    res_type: str | None = None,
) -> int:
    """Rebuild the index rows of every current resource (optionally one type).

    ``conn_factory()`` must give a context manager yielding a Connection in its own
    transaction (e.g. ``engine.begin``); each batch commits separately, so a long
    reindex does not hold one huge transaction. ``progress(done, total)`` is called after
    each batch. Returns the number of resources indexed."""
    r = resource_table
    cond: ColumnElement[bool] = r.c.deleted.is_(False)
    if res_type:
        cond = cond & (r.c.res_type == res_type)
    with conn_factory() as conn:
        total = conn.execute(select(func.count()).select_from(r).where(cond)).scalar_one()
        # Index rows of deleted (tombstoned) resources must not survive a reindex.
        dead = select(r.c.pk).where(r.c.deleted.is_(True))
        if res_type:
            dead = dead.where(r.c.res_type == res_type)
        for t in ALL_INDEX_TABLES:
            conn.execute(delete(t).where(t.c.resource_pk.in_(dead)))
    done, last = 0, -1
    if progress:
        progress(0, total)
    while True:
        with conn_factory() as conn:
            rows = conn.execute(
                select(r.c.pk, r.c.res_type, r.c.patient_key, r.c.content)
                .where(cond & (r.c.pk > last)).order_by(r.c.pk).limit(batch_size)
            ).all()
            if not rows:
                break
            write_index_many(conn, registry, [
                {"resource_pk": pk, "res_type": rt, "patient_key": key,
                 "resource": orjson.loads(content)}
                for pk, rt, key, content in rows if content is not None
            ])
        last = rows[-1][0]
        done += len(rows)
        if progress:
            progress(done, total)
    return done
