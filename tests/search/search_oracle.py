"""A brute-force search evaluator: the independent oracle for hie.search.query.

For every stored resource it evaluates the search parameter's FHIRPath expression with
fhirpathpy (never the compiled extractors) and applies the matching rules of
https://hl7.org/fhir/R4/search.html in plain Python (the rules chosen where the
specification leaves room are listed in hie/search/query.py). No SQL is involved.
"""

from __future__ import annotations

import re
from decimal import Decimal
from typing import Any

from hie.search.fhirpath import fhirpathpy_extractor
from hie.search.indexer import (
    date_values,
    parse_reference,
    quantity_values,
    reference_values,
    string_values,
    token_values,
)
from hie.search.normalize import date_range, implicit_range, norm_string, ucum_canonical

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")


def _prefix(v: str) -> tuple[str, str]:
    if len(v) > 2 and v[:2] in PREFIXES and (v[2].isdigit() or v[2] in "-+."):
        return v[:2], v[2:]
    return "eq", v


def date_match(lo: int, hi: int, prefix: str, slo: int, shi: int, now: int) -> bool:
    eq = lo >= slo and hi <= shi
    return {
        "eq": eq, "ne": lo < slo or hi > shi, "gt": hi > shi, "lt": lo < slo,
        "ge": hi > shi or eq, "le": lo < slo or eq, "sa": lo > shi, "eb": hi < slo,
    }.get(prefix, None) if prefix != "ap" else (lo <= shi + abs(now - slo) // 10 and hi >= slo - abs(now - slo) // 10)


def num_match(x: float, prefix: str, d: Decimal) -> bool:
    v = float(d)
    lo, hi = implicit_range(d)
    if prefix == "eq":
        return lo <= x < hi
    if prefix == "ne":
        return not (lo <= x < hi)
    if prefix in ("gt", "sa"):
        return x > v
    if prefix in ("lt", "eb"):
        return x < v
    if prefix == "ge":
        return x >= v
    if prefix == "le":
        return x <= v
    m = abs(v) * 0.1
    return min(lo, v - m) <= x <= max(hi, v + m)


class Oracle:
    def __init__(self, registry: Any, rows: list[tuple[int, dict[str, Any]]], now_us: int) -> None:
        self.reg = registry
        self.rows = rows
        self.now = now_us
        self.by_key = {(r["resourceType"], r["id"]): (pk, r) for pk, r in rows}
        self._fns: dict[tuple[str, str], Any] = {}
        self._cache: dict[tuple[int, str], list[Any]] = {}

    # -- extraction (fhirpathpy only) -----------------------------------------------------

    def values(self, pk: int, res: dict[str, Any], code: str) -> list[Any]:
        key = (pk, code)
        if key not in self._cache:
            p = self.reg.get(res["resourceType"], code)
            fk = (res["resourceType"], code)
            if fk not in self._fns:
                # fhirpathpy does not accept a base type (Resource., DomainResource.) as the
                # root of a path evaluated on a concrete resource: name the concrete type.
                expr = re.sub(r"(^|\|\s*|\()(Resource|DomainResource)\.", rf"\g<1>{fk[0]}.", p.expression)
                self._fns[fk] = fhirpathpy_extractor(expr)
            try:
                self._cache[key] = self._fns[fk](res)
            except Exception:
                self._cache[key] = []
        return self._cache[key]

    # -- matching ---------------------------------------------------------------------------

    def search(self, res_type: str, criteria: list[tuple[str, str]]) -> list[int]:
        return [pk for pk, res in self.rows if res["resourceType"] == res_type
                and all(self.crit(pk, res, n, v) for n, v in criteria)]

    def crit(self, pk: int, res: dict[str, Any], name: str, value: str) -> bool:
        rt = res["resourceType"]
        if name.startswith("_has:"):
            _, src, ref_code, rest = name.split(":", 3)
            for spk, sres in self.rows:
                if sres["resourceType"] != src:
                    continue
                if any((tt, ti) == (rt, res["id"]) for v in self.values(spk, sres, ref_code)
                       for tt, ti, _u in reference_values(v)) and self.crit(spk, sres, rest, value):
                    return True
            return False
        head, _, chain = name.partition(".")
        code, _, mod = head.partition(":")
        if code == "_id":
            return res["id"] in value.split(",")
        p = self.reg.get(rt, code)
        if chain:
            for v in self.values(pk, res, code):
                for tt, ti, _u in reference_values(v):
                    if mod and tt != mod:
                        continue
                    target = self.by_key.get((tt, ti))
                    if target and self.reg.get(tt, chain.split(".")[0].split(":")[0]) and \
                            self.crit(target[0], target[1], chain, value):
                        return True
            return False
        vals = self.values(pk, res, code) if p.type != "composite" else None
        if mod == "missing":
            present = bool(self._encoded(p, vals, pk, res))
            return present != (value == "true")
        if mod == "not":
            return not any(self.one(p, "", vals, v, pk, res) for v in value.split(","))
        return any(self.one(p, mod, vals, v, pk, res) for v in value.split(","))

    def _encoded(self, p: Any, vals: Any, pk: int, res: dict[str, Any]) -> list[Any]:
        t = p.type
        if t == "composite":
            return self._composite_rows(p, res)
        conv = {"string": string_values, "token": token_values, "reference": reference_values,
                "date": date_values, "quantity": quantity_values}[t]
        out = [x for v in vals for x in conv(v)]
        if t == "token":
            out = [x for x in out if x[3] == ""]
        return out

    def one(self, p: Any, mod: str, vals: Any, v: str, pk: int, res: dict[str, Any]) -> bool:
        t = p.type
        if t == "string":
            ss = [s for x in vals for s in string_values(x)]
            if mod == "exact":
                return v in ss
            if mod == "contains":
                return any(norm_string(v) in norm_string(s) for s in ss)
            return any(norm_string(s).startswith(norm_string(v)) for s in ss)
        if t == "token":
            toks = [x for x in vals for x in token_values(x)]
            if mod == "text":
                return any(tx is not None and tx.startswith(norm_string(v)) for _s, _c, tx, suf in toks if not suf)
            return any(self._tok(s, c, v) for s, c, _tx, suf in toks if not suf)
        if t == "reference":
            refs = [x for x in vals for x in reference_values(x)]
            tt, ti, url = parse_reference(v)
            if url is not None and "/" not in url and ":" not in url:
                return any(i == url and (len(p.targets) != 1 or ty == p.targets[0]) for ty, i, _u in refs)
            if url is not None:
                return any(u == url.split("|")[0] for _t, _i, u in refs)
            return (tt, ti) in [(a, b) for a, b, _u in refs]
        if t == "date":
            prefix, s = _prefix(v)
            slo, shi = date_range(s)
            return any(date_match(lo, hi, prefix, slo, shi, self.now) for x in vals for lo, hi in date_values(x))
        if t == "quantity":
            return any(self._qty(q, v) for x in vals for q in quantity_values(x))
        if t == "composite":
            parts = v.split("$")
            return any(all(self._comp(ct, enc, part) for (ct, enc), part in zip(row, parts, strict=True))
                       for row in self._composite_rows(p, res))
        raise AssertionError(t)

    @staticmethod
    def _tok(system: Any, code: Any, v: str) -> bool:
        if "|" not in v:
            return code == v
        s, c = v.split("|", 1)
        return (system is None if s == "" else system == s) and (not c or code == c)

    @staticmethod
    def _qty(q: tuple, v: str) -> bool:
        n, system, code, unit, cv, cc = q
        parts = v.split("|")
        prefix, num = _prefix(parts[0])
        d = Decimal(num)
        if len(parts) == 1:
            return num_match(n, prefix, d)
        s, c = parts[1], parts[2]
        if (code == c or (not s and unit == c)) and (not s or system == s) and num_match(n, prefix, d):
            return True
        if s == "http://unitsofmeasure.org" and cc is not None:
            canon = ucum_canonical(d, c)
            if canon and canon[1] == cc:
                scale = canon[0] / d
                return num_match(cv / float(scale), prefix, d) if scale else False
        return False

    def _composite_rows(self, p: Any, res: dict[str, Any]) -> list[list[tuple[str, Any]]]:
        from hie.search.fhirpath import R4_MODEL
        from fhirpathpy import evaluate

        out = []
        for part in p.expression.split(" | "):
            base = part.strip()
            elems = fhirpathpy_extractor(base)(res)
            for e in elems:
                row = []
                for url, cexpr in p.components:
                    ct = self.reg.definition(url)["type"]
                    from fhirpathpy.engine.nodes import ResourceNode

                    vals = evaluate(ResourceNode.create_node(e, base), cexpr, {}, R4_MODEL)
                    row.append((ct, vals))
                if all(v for _c, v in row):
                    out.append(row)
        return out

    def _comp(self, ct: str, vals: list[Any], part: str) -> bool:
        if ct == "token":
            return any(self._tok(s, c, part) for x in vals for s, c, _t, suf in token_values(x) if c and not suf)
        if ct == "quantity":
            return any(self._qty(q, part) for x in vals for q in quantity_values(x))
        if ct == "date":
            prefix, s = _prefix(part)
            slo, shi = date_range(s)
            return any(date_match(lo, hi, prefix, slo, shi, self.now) for x in vals for lo, hi in date_values(x))
        if ct == "string":
            return any(norm_string(s).startswith(norm_string(part)) for x in vals for s in string_values(x))
        raise AssertionError(ct)

    # -- sort, includes ---------------------------------------------------------------------

    def sort_key(self, pk: int, res: dict[str, Any], code: str, desc: bool) -> Any:
        p = self.reg.get(res["resourceType"], code)
        vals = self.values(pk, res, code)
        if p.type == "date":
            ds = [r for v in vals for r in date_values(v)]
            return (max(h for _l, h in ds) if desc else min(lo for lo, _h in ds)) if ds else None
        if p.type == "quantity":
            qs = [q[0] for v in vals for q in quantity_values(v)]
            return (max(qs) if desc else min(qs)) if qs else None
        if p.type == "string":
            ss = [norm_string(s)[:512] for v in vals for s in string_values(v)]
            return (max(ss) if desc else min(ss)) if ss else None
        if p.type == "token":
            cs = [c for v in vals for _s, c, _t, suf in token_values(v) if c is not None and not suf]
            return (max(cs) if desc else min(cs)) if cs else None
        raise AssertionError(p.type)

    def sorted_pks(self, pks: list[int], sort: str) -> list[int]:
        res = {pk: r for pk, r in self.rows}
        keys = [(k[1:], True) if k.startswith("-") else (k, False) for k in sort.split(",")]
        # Python sort is stable: sort by pk, then by each key from the last to the first.
        out = sorted(pks)
        for code, desc in reversed(keys):
            have = [pk for pk in out if self.sort_key(pk, res[pk], code, desc) is not None]
            missing = [pk for pk in out if self.sort_key(pk, res[pk], code, desc) is None]
            have.sort(key=lambda pk: self.sort_key(pk, res[pk], code, desc), reverse=desc)
            out = have + missing
        return out

    def include(self, pks: list[int], src_type: str, code: str, reverse: bool) -> set[int]:
        res = dict(self.rows)
        out: set[int] = set()
        if not reverse:
            for pk in pks:
                if res[pk]["resourceType"] != src_type:
                    continue
                for v in self.values(pk, res[pk], code):
                    for tt, ti, _u in reference_values(v):
                        if (tt, ti) in self.by_key:
                            out.add(self.by_key[(tt, ti)][0])
        else:
            keys = {(res[pk]["resourceType"], res[pk]["id"]) for pk in pks}
            for spk, sres in self.rows:
                if sres["resourceType"] == src_type and any(
                        (tt, ti) in keys for v in self.values(spk, sres, code) for tt, ti, _u in reference_values(v)):
                    out.add(spk)
        return out - set(pks)
