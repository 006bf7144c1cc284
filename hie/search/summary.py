"""``_summary`` and ``_elements``: returning a subset of each resource.

Implements https://hl7.org/fhir/R4/search.html#summary and
https://hl7.org/fhir/R4/search.html#elements. Subsetted resources are marked with the
``SUBSETTED`` tag (http://terminology.hl7.org/CodeSystem/v3-ObservationValue), as the
specification requires. Only top-level elements are selected.
"""

from __future__ import annotations

from typing import Any

from hie.search.summary_elements import MANDATORY, SUMMARY

SUBSETTED = {"system": "http://terminology.hl7.org/CodeSystem/v3-ObservationValue", "code": "SUBSETTED"}
_ALWAYS = ("resourceType", "id", "meta")


def _matches(key: str, names: tuple[str, ...] | set[str]) -> bool:
    if key in names:
        return True
    # choice elements: "deceasedBoolean" is the element "deceased"
    for n in names:
        if key.startswith(n) and len(key) > len(n) and key[len(n)].isupper():
            return True
    return False


def _mark(res: dict[str, Any]) -> dict[str, Any]:
    meta = dict(res.get("meta") or {})
    tags = list(meta.get("tag") or [])
    if not any(t.get("code") == "SUBSETTED" for t in tags if isinstance(t, dict)):
        tags.append(dict(SUBSETTED))
    meta["tag"] = tags
    res["meta"] = meta
    return res


def apply_summary(res: dict[str, Any], mode: str) -> dict[str, Any]:
    """``mode``: ``true`` (summary elements), ``text`` (text, id, meta, mandatory
    elements), ``data`` (everything but text); ``false``/``count`` leave it alone."""
    rt = res.get("resourceType", "")
    if mode == "true":
        names = set(SUMMARY.get(rt, ())) | set(_ALWAYS)
        out = {k: v for k, v in res.items() if _matches(k, names) or k.startswith("_") and _matches(k[1:], names)}
    elif mode == "text":
        names = set(MANDATORY.get(rt, ())) | set(_ALWAYS) | {"text"}
        out = {k: v for k, v in res.items() if _matches(k, names)}
    elif mode == "data":
        out = {k: v for k, v in res.items() if k != "text"}
    else:
        return res
    return _mark(out)


def apply_elements(res: dict[str, Any], elements: list[str]) -> dict[str, Any]:
    """Keep the listed top-level elements plus id, meta and mandatory elements."""
    rt = res.get("resourceType", "")
    wanted = {e.split(".", 1)[-1] if e.startswith(rt + ".") else e.split(".", 1)[0] for e in elements}
    names = wanted | set(_ALWAYS) | set(MANDATORY.get(rt, ()))
    out = {k: v for k, v in res.items() if _matches(k, names) or k.startswith("_") and _matches(k[1:], names)}
    return _mark(out)
