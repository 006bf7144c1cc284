"""The one search query builder: FHIR search parameters -> SQL, for SQLite and PostgreSQL.

Implements https://hl7.org/fhir/R4/search.html: parameter types (string, token, reference,
date, number, quantity, uri, composite), modifiers (``:missing :exact :contains :text
:not :of-type :identifier :<Type> :below :above``), prefixes (``eq ne gt lt ge le sa eb
ap``), chaining (https://hl7.org/fhir/R4/search.html#chaining), reverse chaining
(``_has``), the common parameters ``_id _lastUpdated _tag _profile _security _source
_list _type``, sorting, paging, ``_include``/``_revinclude`` (with ``:iterate``) and
counts.

The access choke point: every statement built here receives the caller's predicate
``access(resource_alias) -> ColumnElement[bool]`` and applies it to every ``resource``
alias it reads -- the main query, each chained/``_has`` subquery, each include and
revinclude, and the count. Nothing is filtered after the fact.

Semantics chosen where the specification leaves room (the test oracle implements the
same rules independently, see ``tests/search/oracle.py``):

* multi-valued elements match when *any* value matches (also for ``ne``);
* ``:not`` and ``:missing=true`` match resources with *no* matching value;
* date search values and stored values are closed ranges of epoch µs; ``eq`` = stored
  range within the search range, ``gt`` = stored high > search high, ``lt`` = stored low <
  search low, ``ge``/``le`` = ``gt``/``lt`` or ``eq``, ``sa``/``eb`` = entirely after /
  before, ``ap`` = overlaps the search range widened by 10% of its distance from now;
* numbers and quantities: ``eq``/``ne``/``ap`` use the implicit precision range of the
  search value (``ap`` widened by 10% of the value), ``gt lt ge le`` compare exactly,
  ``sa``/``eb`` behave as ``gt``/``lt``;
* references: ``Type/id``, a plain ``id`` (any target type), an absolute URL (local when
  it starts with the node's base URL), or a canonical ``url[|version]``;
* sort: ascending by the lowest value, descending by the highest; resources without a
  value sort last; ties are broken by insertion order (``resource.pk``).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from sqlalchemy import (
    ColumnElement,
    Connection,
    Select,
    and_,
    case,
    exists,
    false,
    func,
    literal,
    not_,
    or_,
    select,
    true,
)

from hie.errors import InvalidSearch, NotSupported
from hie.search.indexer import parse_reference
from hie.search.normalize import (
    UCUM,
    DateFormatError,
    date_range,
    implicit_range,
    norm_string,
    parse_decimal,
    ucum_canonical,
)
from hie.search.registry import CONTROL_PARAMS, SearchParam, SearchRegistry
from hie.search.tables import TABLES_BY_TYPE, search_reference, search_token
from hie.storage.tables import resource as resource_table

Access = Callable[[Any], ColumnElement[bool]]
Row = tuple[Any, ...]  # (pk, res_type, res_id[, content])

PREFIXES = ("eq", "ne", "gt", "lt", "ge", "le", "sa", "eb", "ap")
MODIFIERS_BY_TYPE = {
    "string": {"exact", "contains", "missing"},
    "token": {"not", "text", "of-type", "missing", "in", "not-in", "above", "below"},
    "reference": {"identifier", "missing"},
    "date": {"missing"},
    "number": {"missing"},
    "quantity": {"missing"},
    "uri": {"below", "above", "missing"},
    "composite": {"missing"},
}
MAX_CHAIN_DEPTH = 4
MAX_INCLUDE_ITERATIONS = 5


@dataclass
class Env:
    """What a query needs besides the parameters."""

    registry: SearchRegistry
    access: Access
    base_url: str | None = None
    now_us: int = field(default_factory=lambda: time.time_ns() // 1000)


# -- splitting values ---------------------------------------------------------------------


def split_escaped(s: str, sep: str) -> list[str]:
    r"""Split on ``sep`` not preceded by a backslash; ``\,`` ``\|`` ``\$`` ``\\`` unescape."""
    out, cur, i = [], [], 0
    while i < len(s):
        c = s[i]
        if c == "\\" and i + 1 < len(s):
            cur.append(s[i:i + 2])
            i += 2
            continue
        if c == sep:
            out.append("".join(cur))
            cur = []
        else:
            cur.append(c)
        i += 1
    out.append("".join(cur))
    return out


def unescape(s: str) -> str:
    out, i = [], 0
    while i < len(s):
        if s[i] == "\\" and i + 1 < len(s):
            out.append(s[i + 1])
            i += 2
        else:
            out.append(s[i])
            i += 1
    return "".join(out)


def split_prefix(v: str) -> tuple[str, str]:
    if len(v) > 2 and v[:2] in PREFIXES and (v[2].isdigit() or v[2] in "-+."):
        return v[:2], v[2:]
    return "eq", v


def _bad(msg: str, name: str) -> InvalidSearch:
    return InvalidSearch(msg, expression=[name])


def _as_sent(exc: InvalidSearch | NotSupported, name: str) -> InvalidSearch | NotSupported:
    """An error raised inside a chain or ``_has`` names the part it was checking (``name:bad``,
    ``subject``); the client sent ``name`` (``subject:Patient.name:bad``): the expression is
    that, and the diagnostics say which part."""
    for issue in exc.issues:
        if issue.expression != [name]:
            issue.expression = [name]
            if name not in issue.diagnostics:
                issue.diagnostics = f"In {name}: {issue.diagnostics}"
    return exc


# -- value conditions (shared by plain and composite parameters) ---------------------------


def token_cond(system_col: Any, code_col: Any, raw: str, name: str) -> ColumnElement[bool]:
    parts = [unescape(p) for p in split_escaped(raw, "|")]
    if len(parts) == 1:
        return code_col == parts[0]
    if len(parts) != 2:
        raise _bad(f"Invalid token value {raw!r} for {name}: use [system]|[code]", name)
    system, code = parts
    conds = [system_col.is_(None) if system == "" else system_col == system]
    if code:
        conds.append(code_col == code)
    return and_(*conds)


def _date_search_range(raw: str, name: str) -> tuple[str, int, int]:
    prefix, v = split_prefix(raw)
    # A "+" time-zone sign that the client did not percent-encode arrives as a space.
    v = v.replace(" ", "+")
    try:
        lo, hi = date_range(v)
    except DateFormatError as exc:
        raise _bad(f"Invalid date value {raw!r} for {name}", name) from exc
    return prefix, lo, hi


def date_cond(low: Any, high: Any, raw: str, name: str, now_us: int) -> ColumnElement[bool]:
    prefix, lo, hi = _date_search_range(raw, name)
    return date_cond_range(low, high, prefix, lo, hi, now_us)


def date_cond_range(low: Any, high: Any, prefix: str, lo: int, hi: int, now_us: int) -> ColumnElement[bool]:
    eq = and_(low >= lo, high <= hi)
    if prefix == "eq":
        return eq
    if prefix == "ne":
        return or_(low < lo, high > hi)
    if prefix == "gt":
        return high > hi
    if prefix == "lt":
        return low < lo
    if prefix == "ge":
        return or_(high > hi, eq)
    if prefix == "le":
        return or_(low < lo, eq)
    if prefix == "sa":
        return low > hi
    if prefix == "eb":
        return high < lo
    # ap: widen by 10% of the distance from now
    gap = abs(now_us - lo) // 10
    return and_(low <= hi + gap, high >= lo - gap)


def number_cond(col: Any, prefix: str, d: Decimal) -> ColumnElement[bool]:
    lo, hi = implicit_range(d)
    return _range_cond(col, prefix, float(d), lo, hi)


def _range_cond(col: Any, prefix: str, v: float, lo: float, hi: float) -> ColumnElement[bool]:
    """A prefixed number test of ``col`` against value ``v`` with implicit range [lo, hi)."""
    if prefix == "eq":
        return and_(col >= lo, col < hi)
    if prefix == "ne":
        return or_(col < lo, col >= hi)
    if prefix in ("gt", "sa"):
        return col > v
    if prefix in ("lt", "eb"):
        return col < v
    if prefix == "ge":
        return col >= v
    if prefix == "le":
        return col <= v
    margin = abs(v) * 0.1
    return and_(col >= min(lo, v - margin), col <= max(hi, v + margin))


def _parse_number(raw: str, name: str) -> tuple[str, Decimal]:
    prefix, v = split_prefix(raw)
    try:
        return prefix, parse_decimal(v)
    except ValueError as exc:
        raise _bad(f"Invalid number {raw!r} for {name}", name) from exc


def quantity_cond(cols: dict[str, Any], raw: str, name: str) -> ColumnElement[bool]:
    """``cols``: value, system, code, and optionally unit, canon_value, canon_code."""
    parts = [unescape(p) for p in split_escaped(raw, "|")]
    if len(parts) not in (1, 3):
        raise _bad(f"Invalid quantity {raw!r} for {name}: use [prefix]number|system|code", name)
    prefix, d = _parse_number(parts[0], name)
    if len(parts) == 1:
        return number_cond(cols["value"], prefix, d)
    system, code = parts[1], parts[2]
    conds = []
    if code:
        unit_match = cols["code"] == code
        if not system and "unit" in cols:
            unit_match = or_(unit_match, cols["unit"] == code)
        raw_cond = [unit_match, number_cond(cols["value"], prefix, d)]
        if system:
            raw_cond.append(cols["system"] == system)
        conds.append(and_(*raw_cond))
        if system == UCUM:
            c = ucum_canonical(d, code)
            if c is not None:
                cv, cc = c
                scale = cv / d if d != 0 else Decimal(1)
                if "canon_code" in cols:
                    conds.append(and_(cols["canon_code"] == cc,
                                      _scaled_number_cond(cols["canon_value"], prefix, d, scale)))
                else:  # composite: canonical duplicate rows carry system=UCUM
                    conds.append(and_(cols["system"] == UCUM, cols["code"] == cc,
                                      _scaled_number_cond(cols["value"], prefix, d, scale)))
        return or_(*conds)
    cond = number_cond(cols["value"], prefix, d)
    if system:
        cond = and_(cond, cols["system"] == system)
    return cond


def _scaled_number_cond(col: Any, prefix: str, d: Decimal, scale: Decimal) -> ColumnElement[bool]:
    # The same test as number_cond, with the search value and its implicit range scaled.
    v = float(d * scale)
    lo, hi = implicit_range(d)
    lo, hi = float(Decimal(lo) * scale), float(Decimal(hi) * scale)
    if scale < 0:
        lo, hi = hi, lo
    return _range_cond(col, prefix, v, lo, hi)


def string_prefix_cond(col: Any, raw: str) -> ColumnElement[bool]:
    return col.startswith(norm_string(unescape(raw))[:512], autoescape=True)


# -- the builder --------------------------------------------------------------------------


@dataclass
class Parsed:
    """A search request split into criteria and result controls."""

    criteria: list[tuple[str, str]] = field(default_factory=list)
    control: dict[str, list[str]] = field(default_factory=dict)
    ignored: list[tuple[str, str]] = field(default_factory=list)  # (name, reason)


class Builder:
    """Builds SQL conditions over an alias of ``resource`` for one search."""

    def __init__(self, env: Env) -> None:
        self.env = env
        self.reg = env.registry

    # -- entry points ---------------------------------------------------------------

    def where(self, res_type: str | None, r: Any, criteria: list[tuple[str, str]]) -> ColumnElement[bool]:
        """All criteria ANDed, plus type, not-deleted and access."""
        conds: list[ColumnElement[bool]] = [r.c.deleted.is_(False), self.env.access(r)]
        if res_type:
            conds.insert(0, r.c.res_type == res_type)
        for name, value in criteria:
            try:
                conds.append(self.criterion(res_type, r, name, value, depth=0))
            except (InvalidSearch, NotSupported) as exc:
                raise _as_sent(exc, name) from None
        return and_(*conds)

    def criterion(self, res_type: str | None, r: Any, name: str, value: str, depth: int) -> ColumnElement[bool]:
        if depth > MAX_CHAIN_DEPTH:
            raise _bad(f"Chain too deep in {name}", name)
        if name.startswith("_has:"):
            return self._has(res_type, r, name, value, depth)
        head, _, chain = name.partition(".")
        code, _, modifier = head.partition(":")
        if code == "_type":
            types = [unescape(t) for t in split_escaped(value, ",")]
            return r.c.res_type.in_(types)
        if code == "_list":
            return self._list(res_type, r, value)
        p = self._param(res_type, code, name)
        if chain:
            if p.type != "reference":
                raise _bad(f"Chained parameter {name}: {code} is not a reference parameter", name)
            return self._chain(res_type, r, p, modifier, chain, value, depth)
        if modifier == "missing":
            if value not in ("true", "false"):
                raise _bad(f":missing takes true or false, not {value!r}", name)
            present = self._present(res_type, r, p)
            return not_(present) if value == "true" else present
        if modifier and modifier not in MODIFIERS_BY_TYPE[p.type] and not (
            p.type == "reference" and (modifier in p.targets or self._is_type(modifier))
        ):
            raise _bad(f"Modifier :{modifier} is not valid for {p.type} parameter {code}", name)
        if modifier in ("in", "not-in", "above", "below") and p.type == "token":
            raise NotSupported(f"Modifier :{modifier} needs terminology support, which this node does not have yet",
                               expression=[name])
        values = split_escaped(value, ",")
        if any(v == "" for v in values):
            raise _bad(f"Empty value in {name}={value!r}", name)
        if code == "_id":
            ids = [unescape(v) for v in values]
            cond = r.c.res_id.in_(ids)
            return not_(cond) if modifier == "not" else cond
        if code == "_lastUpdated":
            return or_(*[date_cond(r.c.last_updated, r.c.last_updated, v, name, self.env.now_us)
                         for v in values])
        if p.type == "token" and modifier == "not":
            return not_(self._index_in(res_type, r, search_token, p.code,
                                       or_(*[self._token_value(search_token, v, name) for v in values])))
        return self._value_in(res_type, r, p, modifier, values, name)

    # -- parameter lookup ---------------------------------------------------------------

    def _is_type(self, t: str) -> bool:
        return t[:1].isupper() and self.reg.has_type(t)

    def _param(self, res_type: str | None, code: str, name: str) -> SearchParam:
        p = self.reg.get(res_type or "Resource", code)
        if p is None:
            raise _bad(f"Unknown search parameter {code!r} for {res_type or 'system-level search'}", name)
        if not p.supported:
            raise NotSupported(f"Search parameter {code!r} is not supported: {p.reason}", expression=[name])
        return p

    # -- index subqueries -----------------------------------------------------------------

    def _index_in(
        self, res_type: str | None, r: Any, t: Any, param: str, cond: ColumnElement[bool],
    ) -> ColumnElement[bool]:
        sub = select(t.c.resource_pk).where(t.c.param == param, cond)
        if res_type:
            sub = sub.where(t.c.res_type == res_type)
        return r.c.pk.in_(sub)

    def _present(self, res_type: str | None, r: Any, p: SearchParam) -> ColumnElement[bool]:
        if p.code in ("_id", "_lastUpdated"):
            return true()
        t = _table(p)
        return exists(select(literal(1)).select_from(t).where(t.c.resource_pk == r.c.pk, t.c.param == p.code))

    def _value_in(self, res_type: str | None, r: Any, p: SearchParam, modifier: str, values: list[str],
                  name: str) -> ColumnElement[bool]:
        t = _table(p)
        param = p.code
        if p.type == "reference" and modifier == "identifier":
            t, param = search_token, p.code + ":identifier"
            conds = [self._token_value(t, v, name) for v in values]
        elif p.type == "token" and modifier == "of-type":
            param = p.code + ":of-type"
            conds = []
            for v in values:
                parts = [unescape(x) for x in split_escaped(v, "|")]
                if len(parts) != 3 or not all(parts):
                    raise _bad(f":of-type takes system|code|value, not {v!r}", name)
                conds.append(and_(t.c.system == parts[0], t.c.code == f"{parts[1]}|{parts[2]}"))
        else:
            conds = [self._row_cond(p, t, modifier, v, name) for v in values]
        return self._index_in(res_type, r, t, param, or_(*conds))

    def _token_value(self, t: Any, v: str, name: str) -> ColumnElement[bool]:
        return token_cond(t.c.system, t.c.code, v, name)

    def _row_cond(self, p: SearchParam, t: Any, modifier: str, v: str, name: str) -> ColumnElement[bool]:
        typ = p.type
        if typ == "string":
            if modifier == "exact":
                return t.c.value_exact == unescape(v)
            if modifier == "contains":
                return t.c.value_norm.contains(norm_string(unescape(v))[:512], autoescape=True)
            return string_prefix_cond(t.c.value_norm, v)
        if typ == "token":
            if modifier == "text":
                return string_prefix_cond(t.c.text_norm, v)
            return self._token_value(t, v, name)
        if typ == "reference":
            return self._reference_value(p, t, modifier, v)
        if typ == "date":
            return date_cond(t.c.low, t.c.high, v, name, self.env.now_us)
        if typ == "number":
            prefix, d = _parse_number(v, name)
            return number_cond(t.c.value, prefix, d)
        if typ == "quantity":
            return quantity_cond(dict(t.c), v, name)
        if typ == "uri":
            u = unescape(v)
            if modifier == "below":
                return t.c.value.startswith(u, autoescape=True)
            if modifier == "above":
                return literal(u).like(func.replace(func.replace(t.c.value, "%", "\\%"), "_", "\\_")
                                       + literal("%"), escape="\\")
            return t.c.value == u
        if typ == "composite":
            return self._composite_value(p, t, v, name)
        raise NotSupported(f"Parameter type {typ} is not supported", expression=[name])

    def local_reference(self, v: str) -> str:
        base = (self.env.base_url or "").rstrip("/")
        if base and v.startswith(base + "/"):
            return v[len(base) + 1:]
        return v

    def _reference_value(self, p: SearchParam, t: Any, modifier: str, v: str) -> ColumnElement[bool]:
        v = self.local_reference(unescape(v))
        if modifier:  # a type modifier
            typ, _, rid = v.rpartition("/")
            if typ and typ != modifier:
                return false()
            return and_(t.c.target_type == modifier, t.c.target_id == rid)
        ttype, tid, url = parse_reference(v)
        if url is not None:
            if "/" not in url and ":" not in url:  # a plain id
                cond = t.c.target_id == url
                if len(p.targets) == 1:
                    cond = and_(cond, t.c.target_type == p.targets[0])
                return cond
            return t.c.url == url.split("|", 1)[0]
        return and_(t.c.target_type == ttype, t.c.target_id == tid)

    def _composite_value(self, p: SearchParam, t: Any, v: str, name: str) -> ColumnElement[bool]:
        parts = split_escaped(v, "$")
        if len(parts) != len(p.components):
            raise _bad(f"Composite {p.code} needs {len(p.components)} values separated by '$'", name)
        conds = []
        for i, (part, (url, _expr)) in enumerate(zip(parts, p.components, strict=True), start=1):
            ctype = self.reg.definition(url)["type"]  # type: ignore[index]
            c = {k: t.c[f"c{i}_{k}"] for k in ("system", "code", "value", "low", "high")}
            if ctype == "token":
                conds.append(token_cond(c["system"], c["code"], part, name))
            elif ctype == "reference":
                tt, ti, url_ = parse_reference(self.local_reference(unescape(part)))
                conds.append(and_(c["system"] == tt, c["code"] == ti) if url_ is None else c["code"] == url_)
            elif ctype == "string":
                conds.append(string_prefix_cond(c["code"], part))
            elif ctype == "date":
                conds.append(date_cond(c["low"], c["high"], part, name, self.env.now_us))
            elif ctype == "number":
                prefix, d = _parse_number(part, name)
                conds.append(number_cond(c["value"], prefix, d))
            elif ctype == "quantity":
                conds.append(quantity_cond(c, part, name))
            elif ctype == "uri":
                conds.append(c["code"] == unescape(part))
        return and_(*conds)

    # -- chains, _has, _list --------------------------------------------------------------

    def _chain(self, res_type: str | None, r: Any, p: SearchParam, modifier: str, chain: str, value: str,
               depth: int) -> ColumnElement[bool]:
        if modifier and modifier not in p.targets and not self._is_type(modifier):
            raise _bad(f"Chained parameter {p.code}:{modifier}: unknown target type", p.code)
        targets = [modifier] if modifier else list(p.targets)
        next_code = chain.split(".", 1)[0].split(":", 1)[0]
        usable = [tt for tt in targets if next_code.startswith("_has") or self.reg.get(tt, next_code)]
        if not usable:
            raise _bad(f"Chained parameter {p.code}.{chain}: no target type of {p.code} has parameter "
                       f"{next_code!r}", f"{p.code}.{chain}")
        ref = search_reference.alias()
        per_type = []
        for tt in usable:
            r2 = resource_table.alias()
            sub = select(r2.c.res_id).where(self.where(tt, r2, []),
                                            self.criterion(tt, r2, chain, value, depth + 1))
            per_type.append(and_(ref.c.target_type == tt, ref.c.target_id.in_(sub)))
        q = select(ref.c.resource_pk).where(ref.c.param == p.code, or_(*per_type))
        if res_type:
            q = q.where(ref.c.res_type == res_type)
        return r.c.pk.in_(q)

    def _has(self, res_type: str | None, r: Any, name: str, value: str, depth: int) -> ColumnElement[bool]:
        parts = name.split(":", 3)
        if len(parts) < 4 or not parts[1] or not parts[2] or not parts[3]:
            raise _bad(f"_has needs _has:Type:reference:parameter, not {name!r}", name)
        _, src_type, ref_code, rest = parts
        if not self._is_type(src_type):
            raise _bad(f"_has: unknown resource type {src_type!r}", name)
        rp = self._param(src_type, ref_code, name)
        if rp.type != "reference":
            raise _bad(f"_has: {src_type}.{ref_code} is not a reference parameter", name)
        ref = search_reference.alias()
        r2 = resource_table.alias()
        sub = (
            select(ref.c.target_id)
            .join(r2, r2.c.pk == ref.c.resource_pk)
            .where(ref.c.res_type == src_type, ref.c.param == ref_code,
                   ref.c.target_type == (res_type if res_type else r.c.res_type),
                   self.where(src_type, r2, []), self.criterion(src_type, r2, rest, value, depth + 1))
        )
        return r.c.res_id.in_(sub)

    def _list(self, res_type: str | None, r: Any, value: str) -> ColumnElement[bool]:
        ref = search_reference.alias()
        lst = resource_table.alias()
        ids = [unescape(v) for v in split_escaped(value, ",")]
        sub = (
            select(ref.c.target_id)
            .join(lst, lst.c.pk == ref.c.resource_pk)
            .where(ref.c.res_type == "List", ref.c.param == "item", lst.c.res_id.in_(ids),
                   ref.c.target_type == (res_type if res_type else r.c.res_type),
                   lst.c.res_type == "List", lst.c.deleted.is_(False), self.env.access(lst))
        )
        return r.c.res_id.in_(sub)

    # -- compartments ---------------------------------------------------------------------

    def compartment(self, res_type: str | None, r: Any, comp: tuple[str, str],
                    only: list[str] | None = None) -> ColumnElement[bool]:
        ctype, cid = comp
        if ctype != "Patient":
            raise NotSupported(f"Compartment {ctype} is not supported", expression=[ctype])
        types = [res_type] if res_type else (only or list(self.reg.compartment))
        ref = search_reference.alias()
        per_type = []
        for t in types:
            params = self.reg.compartment.get(t)
            if not params:
                continue
            per_type.append(and_(ref.c.res_type == t, ref.c.param.in_(params)))
        in_comp: ColumnElement[bool] = false()
        if per_type:
            in_comp = r.c.pk.in_(select(ref.c.resource_pk).where(
                ref.c.target_type == ctype, ref.c.target_id == cid, or_(*per_type)))
        if res_type in (None, "Patient"):
            in_comp = or_(in_comp, and_(r.c.res_type == "Patient", r.c.res_id == cid))
        # The compartment's own resource must exist and be visible (consent hides it all).
        owner = resource_table.alias()
        visible = exists(select(literal(1)).select_from(owner).where(
            owner.c.res_type == ctype, owner.c.res_id == cid, owner.c.deleted.is_(False),
            self.env.access(owner)))
        return and_(in_comp, visible)

    # -- sorting ----------------------------------------------------------------------------

    def sort_keys(self, res_type: str | None, r: Any, sort: str) -> list[Any]:
        keys: list[Any] = []
        for item in [s for s in sort.split(",") if s]:
            desc = item.startswith("-")
            code = item[1:] if desc else item
            if code == "_id":
                col: Any = r.c.res_id
            elif code == "_lastUpdated":
                col = r.c.last_updated
            else:
                p = self._param(res_type, code, "_sort")
                t = _table(p)
                if p.type == "date":
                    expr = func.max(t.c.high) if desc else func.min(t.c.low)
                elif p.type in ("number", "quantity"):
                    expr = func.max(t.c.value) if desc else func.min(t.c.value)
                elif p.type == "string":
                    expr = (func.max if desc else func.min)(t.c.value_norm)
                elif p.type == "token":
                    expr = (func.max if desc else func.min)(t.c.code)
                elif p.type == "reference":
                    expr = (func.max if desc else func.min)(func.coalesce(t.c.target_id, t.c.url))
                elif p.type == "uri":
                    expr = (func.max if desc else func.min)(t.c.value)
                else:
                    raise _bad(f"Cannot sort on {p.type} parameter {code}", "_sort")
                col = (select(expr).where(t.c.resource_pk == r.c.pk, t.c.param == p.code)
                       .scalar_subquery())
            keys.append(case((col.is_(None), 1), else_=0))
            keys.append(col.desc() if desc else col.asc())
        keys.append(r.c.pk.asc())
        return keys


def _table(p: SearchParam) -> Any:
    return TABLES_BY_TYPE[p.type]


# -- parsing a request ---------------------------------------------------------------------


def split_params(registry: SearchRegistry, res_type: str | None, params: list[tuple[str, str]]) -> Parsed:
    """Separate criteria from result parameters; collect unknown/unsupported names."""
    out = Parsed()
    for name, value in params:
        base = name.split(":", 1)[0].split(".", 1)[0]
        if base in CONTROL_PARAMS and base not in ("_has", "_type", "_list"):
            out.control.setdefault(base if ":" not in name else name, []).append(value)
            continue
        if base in ("_has", "_type", "_list"):
            out.criteria.append((name, value))
            continue
        p = registry.get(res_type or "Resource", base)
        if p is None:
            out.ignored.append((name, f"Unknown search parameter {base!r} for {res_type or 'system-level search'}"))
        elif not p.supported:
            out.ignored.append((name, f"Search parameter {base!r} is not supported: {p.reason}"))
        else:
            out.criteria.append((name, value))
    return out


def prefer_custom_plans(conn: Connection) -> None:
    """On PostgreSQL, plan each search statement for its actual values.

    psycopg prepares a statement after a few executions and PostgreSQL may then switch
    to a generic plan, which ignores how selective ``patient=...`` is compared to a common
    code: measured at 1M resources, 2 s instead of 5 ms. Statements now go unprepared
    (``hie.storage.db``, psycopg ``prepare=False``), so each is planned with its values
    and this sends nothing: a request's statements are its own (docs/adr/0007)."""


def find_pks(
    conn: Connection,
    registry: SearchRegistry,
    res_type: str,
    params: list[tuple[str, str]],
    access: Access,
    *,
    base_url: str | None = None,
) -> list[int]:
    """``resource.pk`` of the current, non-deleted resources matching ``params`` (all of
    them, in pk order). Used by conditional create/update/delete and conditional
    references. Unknown or unsupported parameters are an error here: a condition that
    was silently dropped would match too much."""
    parsed = split_params(registry, res_type, params)
    if parsed.ignored:
        name, reason = parsed.ignored[0]
        raise InvalidSearch(reason, expression=[name])
    b = Builder(Env(registry, access, base_url))
    prefer_custom_plans(conn)
    r = resource_table.alias("r")
    q = select(r.c.pk).where(b.where(res_type, r, parsed.criteria)).order_by(r.c.pk)
    return list(conn.execute(q).scalars())


def match_query(b: Builder, res_type: str | None, criteria: list[tuple[str, str]],
                compartment: tuple[str, str] | None = None) -> tuple[Any, ColumnElement[bool]]:
    """``(alias, where)`` for the main query."""
    r = resource_table.alias("r")
    where = b.where(res_type, r, criteria)
    if compartment:
        # a single ``_type`` already limits the rows: the membership test needs only those types
        only = [v for n, v in criteria if n == "_type"]
        types = [t for t in only[0].split(",") if t] if len(only) == 1 and not res_type else None
        where = and_(where, b.compartment(res_type, r, compartment, only=types))
    return r, where


def page_query(b: Builder, res_type: str | None, criteria: list[tuple[str, str]], *, sort: str | None,
               count: int, offset: int, compartment: tuple[str, str] | None = None) -> Select:
    """One page of matches as rows ``(pk, res_type, res_id, content)``.

    The content comes with the page, from the same statement that applied the access
    predicate: one snapshot, the very row versions the predicate admitted. A second
    statement loading the pks would need the predicate again (a row may change in
    between), and would cost another round of planning."""
    r, where = match_query(b, res_type, criteria, compartment)
    q = select(r.c.pk, r.c.res_type, r.c.res_id, r.c.content).where(where)
    keys = b.sort_keys(res_type, r, sort) if sort else [r.c.pk.asc()]
    return q.order_by(*keys).limit(count).offset(offset)


def count_query(b: Builder, res_type: str | None, criteria: list[tuple[str, str]],
                compartment: tuple[str, str] | None = None) -> Select:
    r, where = match_query(b, res_type, criteria, compartment)
    return select(func.count()).select_from(r).where(where)


# -- includes ---------------------------------------------------------------------------


def include_pks(conn: Connection, b: Builder, src: list[Row], spec: str, reverse: bool) -> list[Row]:
    """Resources included by one ``_include``/``_revinclude`` value for ``src`` rows
    ``(pk, res_type, res_id, ...)``; returns ``(pk, res_type, res_id, content)`` rows, each
    resource once. The content is read by the statement that applies the access predicate
    (see :func:`page_query`)."""
    parts = spec.split(":")
    if spec == "*":
        parts = ["*", "*"]
    if len(parts) not in (2, 3):
        raise _bad(f"Invalid include {spec!r}: use Type:parameter[:targetType]",
                   "_revinclude" if reverse else "_include")
    src_type, code = parts[0], parts[1]
    target = parts[2] if len(parts) == 3 else None
    if src_type != "*" and not b._is_type(src_type):
        raise _bad(f"Unknown resource type {src_type!r} in include {spec!r}", "_include")
    if src_type != "*" and code != "*":
        p = b._param(src_type, code, "_include")
        if p.type != "reference":
            raise _bad(f"Include {spec!r}: {code} is not a reference parameter", "_include")
    ref = search_reference.alias()
    r2 = resource_table.alias()
    out: dict[int, Row] = {}
    if not src:
        return []
    if not reverse:
        pks = [s[0] for s in src if src_type == "*" or s[1] == src_type]
        for i in range(0, len(pks), 500):
            chunk = pks[i:i + 500]
            q = (select(r2.c.pk, r2.c.res_type, r2.c.res_id, r2.c.content)
                 .join(ref, and_(ref.c.target_type == r2.c.res_type, ref.c.target_id == r2.c.res_id))
                 .where(ref.c.resource_pk.in_(chunk), r2.c.deleted.is_(False), b.env.access(r2)))
            if src_type != "*":
                q = q.where(ref.c.res_type == src_type)
            if code != "*":
                q = q.where(ref.c.param == code)
            if target:
                q = q.where(ref.c.target_type == target)
            for row in conn.execute(q):
                out.setdefault(row[0], tuple(row))
    else:
        by_type: dict[str, list[str]] = {}
        for s in src:
            t, rid = s[1], s[2]
            if target and t != target:
                continue
            by_type.setdefault(t, []).append(rid)
        for t, ids in by_type.items():
            for i in range(0, len(ids), 500):
                q = (select(r2.c.pk, r2.c.res_type, r2.c.res_id, r2.c.content)
                     .join(ref, ref.c.resource_pk == r2.c.pk)
                     .where(ref.c.target_type == t, ref.c.target_id.in_(ids[i:i + 500]),
                            r2.c.deleted.is_(False), b.env.access(r2)))
                if src_type != "*":
                    q = q.where(ref.c.res_type == src_type, r2.c.res_type == src_type)
                if code != "*":
                    q = q.where(ref.c.param == code)
                for row in conn.execute(q):
                    out.setdefault(row[0], tuple(row))
    return list(out.values())


def resolve_includes(conn: Connection, b: Builder, matches: list[Row],
                     includes: list[tuple[str, bool, bool]]) -> list[Row]:
    """All included rows ``(pk, res_type, res_id, content)`` for ``includes`` =
    ``[(spec, reverse, iterate)]``, in pk order per round, without the matches themselves
    or duplicates. ``matches`` are rows ``(pk, res_type, res_id, ...)``."""
    seen = {m[0] for m in matches}
    result: list[Row] = []
    frontier = list(matches)
    for round_no in range(MAX_INCLUDE_ITERATIONS + 1):
        new: list[Row] = []
        for spec, reverse, iterate in includes:
            if round_no > 0 and not iterate:
                continue
            for row in include_pks(conn, b, frontier, spec, reverse):
                if row[0] not in seen:
                    seen.add(row[0])
                    new.append(row)
        if not new:
            break
        new.sort(key=lambda row: row[0])
        result.extend(new)
        if not any(it for _s, _r, it in includes):
            break
        # :iterate applies the iterating includes to everything included so far
        frontier = new
    return result

