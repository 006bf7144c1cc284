"""The search-parameter registry, loaded from the official R4 definitions.

Implements https://hl7.org/fhir/R4/searchparameter.html and the Patient compartment
(https://hl7.org/fhir/R4/compartmentdefinition-patient.html) for FHIR R4 search
(https://hl7.org/fhir/R4/search.html). The registry is data-driven: every parameter comes
from ``hie/definitions/search-parameters.json`` (1,375 SearchParameters of FHIR 4.0.1)
or from a stored ``SearchParameter`` resource registered with
:meth:`SearchRegistry.register`, which adds or overrides by ``(base, code)``.

A parameter is *supported* when the node can index and search it. Unsupported ones
(``special`` parameters such as ``near``, parameters without an expression such as
``_text``/``_content``/``_query``, and expressions fhirpathpy cannot compile) are logged
once and left out of :meth:`SearchRegistry.capability_params`; a search that names one
is answered with an error (strict) or a warning (lenient), never silently ignored.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable
from dataclasses import dataclass, field, replace
from functools import cached_property
from pathlib import Path
from typing import Any

from hie.search.fhirpath import (
    Extractor,
    expression_for_type,
    make_extractor,
    relative_extractor,
    simple_path,
    split_union,
    union_extractor,
)

log = logging.getLogger(__name__)

DEFINITIONS = Path(__file__).resolve().parent.parent / "definitions"

SUPPORTED_TYPES = {"string", "token", "reference", "date", "number", "quantity", "uri", "composite"}

#: Parameters answered from the ``resource`` table's own columns (no index rows).
COLUMN_PARAMS = {"_id", "_lastUpdated"}

#: Result parameters and special parameters interpreted by the query builder itself.
CONTROL_PARAMS = {
    "_sort", "_count", "_include", "_revinclude", "_summary", "_elements", "_total",
    "_contained", "_containedType", "_format", "_pretty", "_offset", "_has", "_type", "_list",
}


@dataclass
class SearchParam:
    """One search parameter as it applies to one resource type."""

    code: str
    url: str
    type: str
    res_type: str
    expression: str | None
    targets: tuple[str, ...] = ()
    description: str = ""
    #: composite: (definition url, relative expression) per component
    components: tuple[tuple[str, str], ...] = ()
    supported: bool = True
    reason: str = ""
    compiled: bool = False
    _extractor: Extractor | None = field(default=None, repr=False)

    @property
    def extractor(self) -> Extractor:
        assert self._extractor is not None, self.code
        return self._extractor


class SearchRegistry:
    """All search parameters by resource type and code."""

    def __init__(self, definitions: list[dict[str, Any]], compartment: dict[str, Any] | None):
        self._defs_by_url: dict[str, dict[str, Any]] = {}
        self._params: dict[str, dict[str, SearchParam]] = {}
        self._component_cache: dict[tuple[str, str], list] = {}
        self.compartment: dict[str, list[str]] = {}
        for d in definitions:
            self._defs_by_url[d["url"]] = d
        for d in definitions:
            self._add(d)
        if compartment:
            for r in compartment.get("resource", []):
                if r.get("param"):
                    self.compartment[r["code"]] = list(r["param"])
        self._log_unsupported()

    # -- loading ----------------------------------------------------------------------

    @classmethod
    def load_default(cls) -> SearchRegistry:
        """The registry of the vendored official R4 definitions (cached per process)."""
        return _default()

    @classmethod
    def from_files(cls, search_parameters: Path, compartment: Path | None) -> SearchRegistry:
        bundle = json.loads(search_parameters.read_text(encoding="utf-8"))
        defs = [e["resource"] for e in bundle.get("entry", [])]
        comp = json.loads(compartment.read_text(encoding="utf-8")) if compartment else None
        return cls(defs, comp)

    def register(self, search_parameter: dict[str, Any]) -> list[SearchParam]:
        """Add or override a parameter from a stored ``SearchParameter`` resource.

        Existing indexes are not rewritten: run ``hie reindex`` afterwards."""
        if search_parameter.get("resourceType") != "SearchParameter":
            raise ValueError("not a SearchParameter")
        for key in ("code", "base", "type"):
            if not search_parameter.get(key):
                raise ValueError(f"SearchParameter.{key} is required")
        if search_parameter.get("url"):
            self._defs_by_url[search_parameter["url"]] = search_parameter
        added = self._add(search_parameter)
        self.invalidate()
        for p in added:
            if not p.supported:
                log.warning("search parameter %s.%s not supported: %s", p.res_type, p.code, p.reason)
        return added

    def _add(self, d: dict[str, Any]) -> list[SearchParam]:
        out = []
        for base in d.get("base") or []:
            p = self._make(d, base)
            self._params.setdefault(base, {})[p.code] = p
            out.append(p)
        return out

    def _make(self, d: dict[str, Any], base: str) -> SearchParam:
        typ = d["type"]
        expr_full = d.get("expression")
        expr = expression_for_type(expr_full, base) if expr_full else None
        p = SearchParam(
            code=d["code"],
            url=d.get("url", ""),
            type=typ,
            res_type=base,
            expression=expr,
            targets=tuple(d.get("target") or ()),
            description=d.get("description", ""),
            components=tuple(
                (c["definition"], c["expression"]) for c in d.get("component") or ()
            ),
        )
        if typ not in SUPPORTED_TYPES:
            p.supported, p.reason = False, f"parameter type {typ!r} is not supported"
        elif p.code in COLUMN_PARAMS:
            p.supported = True
        elif not expr:
            p.supported, p.reason = False, "no FHIRPath expression"
        else:
            try:
                p._extractor, p.compiled = union_extractor(expr, base)
            except Exception as exc:  # fhirpathpy parse errors
                p.supported, p.reason = False, f"expression does not compile: {exc}"
        if p.supported and typ == "composite":
            for url, _ in p.components:
                cd = self._defs_by_url.get(url)
                if cd is None or cd["type"] not in SUPPORTED_TYPES - {"composite"}:
                    p.supported, p.reason = False, f"composite component {url} not supported"
                    break
        return p

    def _log_unsupported(self) -> None:
        seen = set()
        for params in self._params.values():
            for p in params.values():
                if not p.supported and (p.code, p.reason) not in seen:
                    seen.add((p.code, p.reason))
                    log.info("search parameter %s not supported: %s", p.code, p.reason)

    # -- lookup -------------------------------------------------------------------------

    def get(self, res_type: str, code: str) -> SearchParam | None:
        """The parameter ``code`` of ``res_type`` (own, then DomainResource, then Resource)."""
        p = self._find(res_type, code)
        if p is not None and res_type in self._restricted:
            return self._restrict_one(p, res_type)
        return p

    def restrict(self, res_type: str, codes: Iterable[str], reason: str) -> None:
        """Index and search only ``codes`` (and the column parameters ``_id``,
        ``_lastUpdated``) for ``res_type``; every other parameter of that type becomes
        unsupported with ``reason``: not indexed, refused or reported when searched, left
        out of the CapabilityStatement. For types written far more often than searched (the
        audit trail), where extracting every official parameter costs more than the write."""
        self._restricted[res_type] = (frozenset(codes) | COLUMN_PARAMS, reason)
        self._restricted_cache.clear()
        self.invalidate()

    @cached_property
    def _restricted(self) -> dict[str, tuple[frozenset[str], str]]:
        return {}

    @cached_property
    def _restricted_cache(self) -> dict[tuple[str, str], SearchParam]:
        return {}

    def _restrict_one(self, p: SearchParam, res_type: str) -> SearchParam:
        allowed, reason = self._restricted[res_type]
        if p.code in allowed or not p.supported:
            return p
        key = (res_type, p.code)
        c = self._restricted_cache.get(key)
        if c is None:
            c = self._restricted_cache[key] = replace(p, res_type=res_type, supported=False, reason=reason)
        return c

    def _find(self, res_type: str, code: str) -> SearchParam | None:
        for scope in (res_type, "DomainResource", "Resource"):
            p = self._params.get(scope, {}).get(code)
            if p is not None:
                if scope != res_type and p.res_type != res_type:
                    return self._specialize(p, res_type)
                return p
        return None

    @cached_property
    def _special_cache(self) -> dict[tuple[str, str], SearchParam]:
        return {}

    def _specialize(self, p: SearchParam, res_type: str) -> SearchParam:
        # Resource-level parameters (_tag, _profile, ...) evaluated on a concrete type.
        key = (res_type, p.code)
        c = self._special_cache.get(key)
        if c is None:
            c = SearchParam(
                code=p.code, url=p.url, type=p.type, res_type=res_type,
                expression=p.expression, targets=p.targets, description=p.description,
                components=p.components, supported=p.supported, reason=p.reason,
                compiled=p.compiled, _extractor=p._extractor,
            )
            self._special_cache[key] = c
        return c

    def params_for(self, res_type: str) -> list[SearchParam]:
        """Every parameter (supported or not) that applies to ``res_type``."""
        seen: dict[str, SearchParam] = {}
        for scope in ("Resource", "DomainResource", res_type):
            for code in self._params.get(scope, {}):
                q = self.get(res_type, code)
                if q is not None:
                    seen[code] = q
        return list(seen.values())

    def indexed_params(self, res_type: str) -> list[SearchParam]:
        """Supported parameters whose values live in the index tables."""
        cached = self._indexed.get(res_type)
        if cached is None:
            cached = [
                p for p in self.params_for(res_type)
                if p.supported and p.code not in COLUMN_PARAMS
            ]
            self._indexed[res_type] = cached
        return cached

    @cached_property
    def _indexed(self) -> dict[str, list[SearchParam]]:
        return {}

    def definition(self, url: str) -> dict[str, Any] | None:
        return self._defs_by_url.get(url)

    def composite_parts(self, p: SearchParam) -> list[tuple[Extractor, list[tuple[str, Extractor]]]]:
        """Per union part of a composite's expression: the element extractor and, per
        component, ``(component type, extractor relative to that element)``."""
        key = (p.res_type, p.code)
        cached = self._component_cache.get(key)
        if cached is None:
            cached = []
            assert p.expression
            for part in split_union(p.expression):
                elem_fn, _ = make_extractor(part, p.res_type)
                base_path = simple_path(part)
                comps = []
                for url, cexpr in p.components:
                    ctype = self._defs_by_url[url]["type"]
                    comps.append((ctype, relative_extractor(cexpr, base_path)))
                cached.append((elem_fn, comps))
            self._component_cache[key] = cached
        return cached

    def resource_types(self) -> list[str]:
        return sorted(t for t in self._params if t not in ("Resource", "DomainResource"))

    def has_type(self, t: str) -> bool:
        """A resource type with search parameters (the query builder asks per modifier,
        chain and include: a dict lookup, not a sorted list)."""
        return t in self._params and t not in ("Resource", "DomainResource")

    def capability_params(self, res_type: str) -> list[dict[str, Any]]:
        """``searchParam`` entries of the CapabilityStatement: supported parameters only."""
        out = []
        for p in sorted(self.params_for(res_type), key=lambda q: q.code):
            if not p.supported:
                continue
            entry = {"name": p.code, "definition": p.url, "type": p.type}
            if p.description:
                entry["documentation"] = p.description
            out.append(entry)
        return out

    def unsupported(self, res_type: str) -> list[SearchParam]:
        return [p for p in self.params_for(res_type) if not p.supported]

    def invalidate(self) -> None:
        self._indexed.clear()
        self._special_cache.clear()


_DEFAULT: SearchRegistry | None = None


def _default() -> SearchRegistry:
    global _DEFAULT
    if _DEFAULT is None:
        _DEFAULT = SearchRegistry.from_files(
            DEFINITIONS / "search-parameters.json",
            DEFINITIONS / "compartmentdefinition-patient.json",
        )
    return _DEFAULT
