"""The interaction table: every FHIR interaction the node serves, and the one parser of
requests.

Each :class:`Interaction` row names its methods, its path shape (below the FHIR base), the
SMART permission letters it needs and on which type, its audit code (the
http://hl7.org/fhir/restful-interaction code BALP records as ``subtype``) and how the
CapabilityStatement lists it. :func:`parse` turns (method, path, query[, body parameters])
into a :class:`Parsed` request. The REST routes (:mod:`hie.api.app`), the scope check
(:mod:`hie.auth.enforce`), the audit code (:mod:`hie.audit.events`), batch/transaction
entries (:mod:`hie.interactions.bundle`) and the CapabilityStatement
(:mod:`hie.interactions.capabilities`) all read this table, so they cannot disagree about
what a request is. ``HEAD`` is accepted wherever ``GET`` is and means the same interaction.

:func:`execute` runs a parsed request (with its headers and body, a :class:`Call`) through
the interaction that implements it; HTTP routes and Bundle entries both use it.

:func:`relative_to_base` resolves an absolute URL against the configured base, whatever its
path, and refuses a URL for another base.

Spec: https://hl7.org/fhir/R4/http.html , https://hl7.org/fhir/R4/codesystem-restful-interaction.html
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from hie.errors import InvalidRequest, MethodNotAllowed, NotFound, UnknownResourceType
from hie.fhir.validate import is_resource_type
from hie.interactions.result import Result

# Placeholders in a path shape; anything else is a literal segment.
TYPE, ID, VID, OP, CTYPE = "{type}", "{id}", "{vid}", "{op}", "{ctype}"
_RESERVED = ("metadata", "_history", "_search")


@dataclass(frozen=True)
class Interaction:
    """One row of the table.

    ``on`` says which type the ``letters`` apply to: ``type`` (the path's type),
    ``types`` (the ``_type`` parameter, else ``*``), ``compartment`` (the compartment
    search's type, ``*`` for all), ``operation`` (the operation's own letters and types)
    or ``none`` (a public endpoint). ``capability`` is where the CapabilityStatement lists
    it: ``resource`` (``rest.resource.interaction``), ``system`` (``rest.interaction``),
    ``operation`` (``operation`` entries), ``compartment`` (``rest.compartment``) or
    ``statement`` (the CapabilityStatement itself)."""

    name: str
    code: str
    methods: tuple[str, ...]
    shape: tuple[str, ...]
    letters: str
    on: str
    capability: str
    level: str
    write: bool = False
    query: str = ""  # "required": conditional interactions need search criteria
    searches: bool = False  # its parameters are search criteria (scope-checked as such)
    listed_as: tuple[str, ...] = ()  # CapabilityStatement codes, when not just ``code``

    @property
    def capability_codes(self) -> tuple[str, ...]:
        return self.listed_as or (self.code,)


ROWS: tuple[Interaction, ...] = (
    Interaction("capabilities", "capabilities", ("GET",), ("metadata",), "", "none", "statement", "system"),
    Interaction("batch-transaction", "transaction", ("POST",), (), "", "none", "system", "system", write=True,
                listed_as=("transaction", "batch")),
    Interaction("search-system", "search-system", ("GET",), (), "s", "types", "system", "system", searches=True),
    Interaction("search-system-post", "search-system", ("POST",), ("_search",), "s", "types", "system", "system",
                searches=True),
    Interaction("history-system", "history-system", ("GET",), ("_history",), "s", "types", "system", "system"),
    Interaction("operation-system", "operation", ("GET", "POST"), (OP,), "", "operation", "operation", "system"),
    Interaction("create", "create", ("POST",), (TYPE,), "c", "type", "resource", "type", write=True),
    Interaction("search-type", "search-type", ("GET",), (TYPE,), "s", "type", "resource", "type", searches=True),
    Interaction("search-type-post", "search-type", ("POST",), (TYPE, "_search"), "s", "type", "resource", "type",
                searches=True),
    Interaction("conditional-update", "update", ("PUT",), (TYPE,), "us", "type", "resource", "type", write=True,
                query="required", searches=True),
    Interaction("conditional-patch", "patch", ("PATCH",), (TYPE,), "us", "type", "resource", "type", write=True,
                query="required", searches=True),
    Interaction("conditional-delete", "delete", ("DELETE",), (TYPE,), "ds", "type", "resource", "type",
                write=True, query="required", searches=True),
    Interaction("history-type", "history-type", ("GET",), (TYPE, "_history"), "s", "type", "resource", "type"),
    Interaction("operation-type", "operation", ("GET", "POST"), (TYPE, OP), "", "operation", "operation", "type"),
    Interaction("read", "read", ("GET",), (TYPE, ID), "r", "type", "resource", "instance"),
    Interaction("update", "update", ("PUT",), (TYPE, ID), "u", "type", "resource", "instance", write=True),
    Interaction("patch", "patch", ("PATCH",), (TYPE, ID), "u", "type", "resource", "instance", write=True),
    Interaction("delete", "delete", ("DELETE",), (TYPE, ID), "d", "type", "resource", "instance", write=True),
    Interaction("history-instance", "history-instance", ("GET",), (TYPE, ID, "_history"), "r", "type", "resource",
                "instance"),
    Interaction("vread", "vread", ("GET",), (TYPE, ID, "_history", VID), "r", "type", "resource", "instance"),
    Interaction("operation-instance", "operation", ("GET", "POST"), (TYPE, ID, OP), "", "operation", "operation",
                "instance"),
    Interaction("search-compartment", "search-compartment", ("GET",), ("Patient", ID, CTYPE), "s", "compartment",
                "compartment", "instance", searches=True),
)

BY_NAME = {row.name: row for row in ROWS}
#: The Patient compartment, which compartment search and ``$everything`` serve.
PATIENT_COMPARTMENT = "http://hl7.org/fhir/CompartmentDefinition/patient"


def capability_codes(where: str) -> list[str]:
    """The interaction codes the CapabilityStatement lists at ``where`` (``resource`` or
    ``system``), in table order."""
    out: list[str] = []
    for row in ROWS:
        if row.capability == where:
            out.extend(c for c in row.capability_codes if c not in out)
    return out
#: Methods a Bundle entry or an HTTP request may use.
METHODS = ("GET", "HEAD", "POST", "PUT", "PATCH", "DELETE")


@dataclass(frozen=True)
class Parsed:
    """A request as the table understands it."""

    row: Interaction
    method: str
    res_type: str | None = None
    res_id: str | None = None
    vid: str | None = None
    operation: Any = None  # hie.interactions.operations.Operation
    compartment_type: str | None = None  # "*" or a type, for search-compartment
    params: list[tuple[str, str]] = field(default_factory=list)
    query: str = ""

    @property
    def code(self) -> str:
        return self.row.code

    @property
    def write(self) -> bool:
        return self.row.write or bool(self.operation is not None and self.operation.write)

    def with_params(self, extra: list[tuple[str, str]]) -> Parsed:
        """The same request with parameters from a form body added (POST ``_search``)."""
        return replace(self, params=self.params + extra)


def _fits(seg: str, part: str) -> bool:
    if part == TYPE:
        return not seg.startswith("$") and seg not in _RESERVED
    if part in (ID, VID):
        return not seg.startswith("$") and seg not in _RESERVED
    if part == OP:
        return seg.startswith("$") and len(seg) > 1
    if part == CTYPE:
        return seg == "*" or is_resource_type(seg)
    return seg == part


def _shape_rows(segs: list[str]) -> list[Interaction]:
    return [row for row in ROWS if len(row.shape) == len(segs)
            and all(_fits(s, p) for s, p in zip(segs, row.shape, strict=True))]


def parse(method: str, path: str, query: str = "", body_params: list[tuple[str, str]] | None = None) -> Parsed:
    """Which interaction ``method path?query`` is (``path`` below the FHIR base). Raises
    404 for no such endpoint or unknown type; 501 for an unknown operation; 405 for a method
    the path does not take."""
    method = method.upper()
    segs = [s for s in path.strip("/").split("/") if s]
    rows = _shape_rows(segs)
    if not rows:
        raise NotFound(f"No such endpoint: /{'/'.join(segs)}")
    wanted = "GET" if method == "HEAD" else method
    fitting = [r for r in rows if wanted in r.methods and (r.query != "required" or query)]
    if not fitting:
        conditional = [r for r in rows if wanted in r.methods]
        if conditional:
            raise MethodNotAllowed(f"{method} on a type needs search criteria (conditional "
                                   f"{conditional[0].code}) or an id")
        raise MethodNotAllowed(f"{method} is not allowed on /{'/'.join(segs)}")
    row = fitting[0]
    values = dict(zip(row.shape, segs, strict=True))
    res_type = values.get(TYPE) or ("Patient" if row.name == "search-compartment" else None)
    if res_type is not None and not is_resource_type(res_type):
        raise UnknownResourceType(f"Unknown resource type '{res_type}'", expression=[res_type])
    params = parse_qsl(query, keep_blank_values=True) + list(body_params or [])
    op = None
    if OP in values:
        from hie.interactions import operations as ops

        op = ops.find(values[OP][1:], row.level, res_type)
        ops.check_method(op, wanted)
    return Parsed(row, method, res_type, values.get(ID), values.get(VID), op, values.get(CTYPE), params, query)


def relative_to_base(url: str, base: str, *, where: str = "request.url") -> str:
    """``url`` relative to the FHIR ``base`` (query kept). A relative URL stays as it is;
    an absolute one must lie below ``base`` (scheme and host compared case-insensitively),
    else 400: it names another server, and this node does not forward requests."""
    if not url.startswith(("http://", "https://")):
        return url.lstrip("/")
    u, b = urlsplit(url), urlsplit(base.rstrip("/"))
    same_origin = (u.scheme.lower(), u.netloc.lower()) == (b.scheme.lower(), b.netloc.lower())
    bpath = b.path.rstrip("/")
    if same_origin and (u.path == bpath or u.path.startswith(bpath + "/")):
        rel = u.path[len(bpath):].lstrip("/")
        return rel + (f"?{u.query}" if u.query else "")
    raise InvalidRequest(f"{where} {url!r} is not below this server's base {base!r}", expression=[where])


# -- execution ------------------------------------------------------------------------


@dataclass
class Call:
    """A parsed request with what the interaction needs beyond the URL."""

    parsed: Parsed
    body: Any = None  # resource (create/update), JSON Patch (patch), Bundle, operation input
    if_match: str | None = None
    if_none_match: str | None = None
    if_none_exist: str | None = None
    if_modified_since: int | None = None


def execute(ctx: Any, call: Call) -> Result:
    """Run ``call`` through the interaction its row names."""
    return _HANDLERS[call.parsed.row.name](ctx, call)


def _search(ctx: Any, call: Call) -> Result:
    from hie.interactions import search

    p = call.parsed
    if p.row.name == "search-compartment":
        ctype = None if p.compartment_type == "*" else p.compartment_type
        return search.search(ctx, ctype, p.params, compartment=("Patient", p.res_id or ""))
    return search.search(ctx, p.res_type, p.params)


def _history(ctx: Any, call: Call) -> Result:
    from hie.interactions import history

    p = call.parsed
    if p.row.name == "history-system":
        return history.history_system(ctx, p.params)
    if p.row.name == "history-type":
        return history.history_type(ctx, p.res_type or "", p.params)
    return history.history_instance(ctx, p.res_type or "", p.res_id or "", p.params)


def _crud(ctx: Any, call: Call) -> Result:
    from hie.interactions import crud

    p, name = call.parsed, call.parsed.row.name
    t, i = p.res_type or "", p.res_id or ""
    if name == "read":
        return crud.read(ctx, t, i, if_none_match=call.if_none_match, if_modified_since=call.if_modified_since)
    if name == "vread":
        return crud.vread(ctx, t, i, p.vid or "")
    if name == "create":
        return crud.create(ctx, t, call.body, if_none_exist=call.if_none_exist)
    if name == "update":
        return crud.update(ctx, t, i, call.body, if_match=call.if_match)
    if name == "conditional-update":
        return crud.conditional_update(ctx, t, p.query, call.body, if_match=call.if_match)
    if name == "patch":
        return crud.patch(ctx, t, i, call.body, if_match=call.if_match)
    if name == "conditional-patch":
        return crud.conditional_patch(ctx, t, p.query, call.body, if_match=call.if_match)
    if name == "delete":
        return crud.delete(ctx, t, i, if_match=call.if_match)
    return crud.conditional_delete(ctx, t, p.query)


def _operation(ctx: Any, call: Call) -> Result:
    from hie.interactions.operations import OperationCall

    p = call.parsed
    method = "GET" if p.method == "HEAD" else p.method
    op_call = OperationCall(p.operation.name, p.row.level, p.res_type, p.res_id, p.params, call.body, method)
    return p.operation.fn(ctx, op_call)


def _capabilities(ctx: Any, _call: Call) -> Result:
    from hie.interactions.capabilities import capabilities

    return capabilities(ctx)


def _bundle(ctx: Any, call: Call) -> Result:
    from hie.interactions import bundle

    return bundle.process(ctx, call.body)


_HANDLERS = {
    "capabilities": _capabilities, "batch-transaction": _bundle,
    "search-system": _search, "search-system-post": _search, "search-type": _search,
    "search-type-post": _search, "search-compartment": _search,
    "history-system": _history, "history-type": _history, "history-instance": _history,
    "operation-system": _operation, "operation-type": _operation, "operation-instance": _operation,
    **{name: _crud for name in ("read", "vread", "create", "update", "conditional-update", "patch",
                                "conditional-patch", "delete", "conditional-delete")},
}
assert set(_HANDLERS) == set(BY_NAME), "every row of the table has a handler"
