"""Batch and transaction.

A transaction is atomic: every entry is validated, ``urn:uuid:`` and other ``fullUrl``
references are rewritten to the ids the server assigns, conditional references
(``Patient?identifier=...``) are resolved to exactly one resource, and all writes go to
the repository in one ``write_batch`` call (one database transaction) in the order the
spec fixes: DELETE, POST, PUT/PATCH, then GET. Any failing entry fails the whole
request with an OperationOutcome whose expression names ``Bundle.entry[i]...``.

A batch runs each entry on its own savepoint; a failing entry answers with its
OperationOutcome in ``entry.response.outcome`` and the others still commit.

Ingest (:func:`hie.ingest.ingest_bundle`) first calls :func:`prepare`, which does the
part of a transaction that needs no database (parsing, validation, and search-index
extraction for entries whose final content is already fixed by the bundle) before the
write transaction starts, so that SQLite's single write lock is held only for the
database work and parallel loaders overlap their CPU work (docs/adr/0005).

Spec: https://hl7.org/fhir/R4/http.html#transaction
"""

from __future__ import annotations

import base64
import logging
from dataclasses import dataclass, field
from typing import Any

import orjson

from hie.errors import (
    FhirError,
    InvalidReference,
    InvalidRequest,
    NotFound,
    internal_error,
    information_outcome,
    NOOP_CODE,
)
from hie.fhir.patch import apply_patch
from hie.fhir.references import iter_references
from hie.fhir.validate import ID_RE, check_id_matches, is_resource_type, validate_resource
from hie.interactions import crud
from hie.interactions.context import Context
from hie.interactions.result import Result
from hie.interactions.table import METHODS, Call, Parsed, execute, parse, relative_to_base
from hie.storage.repository import Write

log = logging.getLogger(__name__)

_ORDER = {"DELETE": 0, "POST": 1, "PUT": 2, "PATCH": 2, "GET": 3, "HEAD": 3}


@dataclass
class Entry:
    index: int
    method: str
    url: str  # relative to the base, query included
    path: str  # before '?'
    query: str  # after '?', may be ''
    full_url: str | None
    resource: dict[str, Any] | None
    if_none_exist: str | None = None
    if_match: str | None = None
    if_none_match: str | None = None
    target_type: str | None = None
    target_id: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    parsed: Parsed | None = None  # the entry's interaction (hie.interactions.table)
    parse_error: FhirError | None = None  # why a GET/HEAD entry's URL names no interaction

    @property
    def where(self) -> str:
        return f"Bundle.entry[{self.index}]"


def _relative(ctx: Context | str, url: str) -> str:
    """A reference below the base made relative; any other URL unchanged."""
    base = ctx if isinstance(ctx, str) else ctx.base_url
    try:
        return relative_to_base(url, base)
    except InvalidRequest:
        return url


def _parse_url(method: str, rel: str, where: str) -> tuple[Parsed | None, FhirError | None]:
    """The entry's interaction, from the same table the REST routes read. A write entry
    the table does not know is refused with the whole Bundle (400); a read entry's error
    (404, 405) is its own response."""
    path, _, query = rel.partition("?")
    try:
        parsed = parse(method, path, query)
    except FhirError as err:
        if method in ("GET", "HEAD"):
            return None, err
        raise InvalidRequest(f"{where}.request.url {rel!r}: {err.diagnostics}",
                             expression=[f"{where}.request.url"]) from None
    if parsed.row.name == "batch-transaction":
        raise InvalidRequest(f"{where}.request.url: a batch or transaction cannot be nested in a Bundle entry",
                             expression=[f"{where}.request.url"])
    return parsed, None


def parse_entries(ctx: Context | str, bundle: dict[str, Any]) -> list[Entry]:
    """Parse and check ``Bundle.entry`` (``ctx``: a Context or the base URL)."""
    raw_entries = bundle.get("entry") or []
    if not isinstance(raw_entries, list):
        raise InvalidRequest("Bundle.entry must be an array", expression=["Bundle.entry"])
    out: list[Entry] = []
    for i, e in enumerate(raw_entries):
        where = f"Bundle.entry[{i}]"
        if not isinstance(e, dict):
            raise InvalidRequest(f"{where} must be an object", expression=[where])
        req = e.get("request")
        if not isinstance(req, dict):
            raise InvalidRequest(f"{where}.request is required in a batch or transaction",
                                 expression=[f"{where}.request"])
        method = req.get("method")
        if method not in METHODS:
            raise InvalidRequest(f"{where}.request.method {method!r} is not one of {', '.join(METHODS)}",
                                 expression=[f"{where}.request.method"])
        url = req.get("url")
        if not isinstance(url, str) or not url:
            raise InvalidRequest(f"{where}.request.url is required", expression=[f"{where}.request.url"])
        base = ctx if isinstance(ctx, str) else ctx.base_url
        rel = relative_to_base(url, base, where=f"{where}.request.url")
        path, _, query = rel.partition("?")
        resource = e.get("resource")
        segs = [s for s in path.split("/") if s]
        # POST to an operation or to _search carries its input, not a resource to create.
        posts_input = method == "POST" and bool(segs) and (segs[-1].startswith("$") or segs[-1] == "_search")
        if method in ("POST", "PUT", "PATCH") and not isinstance(resource, dict) and not posts_input:
            raise InvalidRequest(f"{where}.resource is required for {method}", expression=[f"{where}.resource"])
        entry = Entry(
            index=i, method=method, url=rel, path=path.strip("/"), query=query,
            full_url=e.get("fullUrl"), resource=resource if isinstance(resource, dict) else None,
            if_none_exist=req.get("ifNoneExist"), if_match=req.get("ifMatch"),
            if_none_match=req.get("ifNoneMatch"),
        )
        entry.parsed, entry.parse_error = _parse_url(method, rel, where)
        if method in ("POST", "PUT", "PATCH", "DELETE") and not posts_input:
            if not segs or not is_resource_type(segs[0]):
                raise InvalidRequest(f"{where}.request.url {url!r} does not name a resource type",
                                     expression=[f"{where}.request.url"])
            entry.target_type = segs[0]
            if method == "POST" and len(segs) != 1:
                raise InvalidRequest(f"{where}.request.url for POST must be a resource type",
                                     expression=[f"{where}.request.url"])
            if method != "POST":
                if len(segs) == 2 and not query:
                    if not ID_RE.match(segs[1]):
                        raise InvalidRequest(f"{where}.request.url has an invalid id",
                                             expression=[f"{where}.request.url"])
                    entry.target_id = segs[1]
                elif len(segs) == 1 and query:
                    pass  # conditional
                else:
                    raise InvalidRequest(
                        f"{where}.request.url {url!r}: {method} needs Type/id or Type?criteria",
                        expression=[f"{where}.request.url"],
                    )
        out.append(entry)
    return out


def _error_for(entry: Entry, err: FhirError) -> FhirError:
    """Prefix the issues' expressions with the entry's location."""
    for issue in err.issues:
        if not issue.expression:
            issue.expression = [entry.where]
        else:
            issue.expression = [
                x if x.startswith("Bundle.")
                else f"{entry.where}.resource.{x.split('.', 1)[1]}" if "." in x and is_resource_type(x.split(".", 1)[0])
                else f"{entry.where}.{x}"
                for x in issue.expression
            ]
        if not issue.diagnostics.startswith(entry.where):
            issue.diagnostics = f"{entry.where}: {issue.diagnostics}"
    return err


# -- preparation outside the write transaction ----------------------------------------


class _NeedsDatabase(Exception):
    """An entry's final content depends on what the database holds (see :func:`prepare`)."""


@dataclass
class Prepared:
    """A transaction Bundle after the work that needs no database (:func:`prepare`).

    ``index`` maps an entry index to ``(basis, rows)``: the resource as the transaction
    will write it (references rewritten, ``id`` set) and its search-index rows. The
    repository uses the rows only if the resource it writes equals ``basis``."""

    bundle: dict[str, Any]
    entries: list[Entry]
    final: dict[int, dict[str, Any]] = field(default_factory=dict)
    index: dict[int, tuple[dict[str, Any], dict[str, list[dict[str, Any]]]]] = field(default_factory=dict)

    def keys(self) -> list[tuple[str, str]]:
        """(type, id) of the entries whose final content is known (for a no-op check)."""
        return [(r["resourceType"], r["id"]) for r in self.final.values()]

    def extract(self, registry: Any, current: dict[tuple[str, str], Any] | None = None) -> int:
        """Extract the index rows of every entry with known content, except those equal to
        the stored version in ``current`` ((type, id) -> Stored): they will be no-ops.
        Returns how many entries are such no-ops."""
        from hie.search.indexer import extract_rows
        from hie.storage.repository import Repository, same_content

        unchanged = 0
        for i, res in self.final.items():
            st = (current or {}).get((res["resourceType"], res["id"]))
            if st is not None and not st.deleted and st.content is not None and same_content(st.content, res):
                unchanged += 1
                continue
            # Extracted from the stamped form, as the repository would; the rows do not
            # depend on meta.versionId / meta.lastUpdated (_lastUpdated is a column).
            body = Repository._stamp(res, res["id"], 1, 0)  # noqa: SLF001 - same write path
            self.index[i] = (res, extract_rows(registry, res["resourceType"], body))
        return unchanged


def _validate_entries(entries: list[Entry]) -> None:
    for entry in entries:
        if entry.resource is not None and entry.method in ("POST", "PUT") and not _reads(entry):
            try:
                validate_resource(entry.resource, expected_type=entry.target_type, path=f"{entry.where}.resource")
            except FhirError as err:
                raise _error_for(entry, err) from None


def prepare(bundle: dict[str, Any], *, base_url: str) -> Prepared | None:
    """Parse and validate a transaction Bundle without the database, and work out the
    final content of every ``PUT Type/id`` entry whose references the Bundle itself
    settles (``urn:uuid`` fullUrls of other ``PUT Type/id`` entries, relative and
    absolute references). Returns None for anything but a transaction.

    Raises the same errors, in the same order, as :func:`transaction` would for parsing
    and validation. Reference problems are left to the transaction (it reports them
    with the entry that comes first in processing order)."""
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle" or bundle.get("type") != "transaction":
        return None
    entries = parse_entries(base_url, bundle)
    _validate_entries(entries)
    prepared = Prepared(bundle, entries)
    static: dict[str, str] = {}
    unresolved: set[str] = set()
    for e in entries:
        if not e.full_url:
            continue
        if e.method == "PUT" and e.target_id is not None and e.full_url not in static and e.full_url not in unresolved:
            static[e.full_url] = f"{e.target_type}/{e.target_id}"
        else:
            unresolved.add(e.full_url)
            static.pop(e.full_url, None)
    targets: set[tuple[str, str]] = set()
    for e in entries:
        if e.method != "PUT" or e.target_id is None or e.resource is None:
            continue
        key = (e.target_type or "", e.target_id)
        if key in targets or e.resource.get("id") != e.target_id:
            continue  # the transaction will reject it
        targets.add(key)
        final = orjson.loads(orjson.dumps(e.resource))
        try:
            _rewrite(base_url, e, final, static, {}, {}, unresolved)
        except (_NeedsDatabase, FhirError):
            continue
        prepared.final[e.index] = final
    return prepared


# -- transaction ----------------------------------------------------------------------


def transaction(ctx: Context, bundle: dict[str, Any], prepared: Prepared | None = None) -> Result:
    if prepared is not None and prepared.bundle is not bundle:
        prepared = None
    entries = prepared.entries if prepared is not None else parse_entries(ctx, bundle)
    plan = _Plan()

    # Validate every resource before anything else (nothing is written if one is bad);
    # prepare() has done that already.
    if prepared is None:
        _validate_entries(entries)

    for entry in sorted(entries, key=lambda e: (_ORDER[e.method], e.index)):
        if _reads(entry):
            continue  # after the writes, below
        try:
            if entry.method == "DELETE":
                _plan_delete(ctx, plan, entry)
            elif entry.method == "POST":
                _plan_post(ctx, plan, entry)
            elif entry.method in ("PUT", "PATCH"):
                _plan_put_or_patch(ctx, plan, entry, prepared)
        except FhirError as err:
            raise _error_for(entry, err) from None

    _resolve_references(ctx, plan)
    _run_writes(ctx, plan)
    _run_reads(ctx, entries, plan.results)
    return Result(200, _response_bundle(ctx, "transaction-response", entries, plan.results))


@dataclass
class _Plan:
    """What a transaction's entries come to before anything is written: the ids assigned
    to the ``fullUrl`` values, the resources each entry touches, the writes in order, and the
    results already known (a conditional delete matching nothing, an ifNoneExist hit)."""

    id_map: dict[str, str] = field(default_factory=dict)  # fullUrl -> Type/id
    touched: dict[tuple[str, str], int] = field(default_factory=dict)
    results: dict[int, Result] = field(default_factory=dict)
    writes: list[tuple[Entry, Write]] = field(default_factory=list)

    def claim(self, entry: Entry, rtype: str, rid: str) -> None:
        prev = self.touched.get((rtype, rid))
        if prev is not None:
            raise _error_for(entry, InvalidRequest(
                f"{rtype}/{rid} is also the target of Bundle.entry[{prev}]; a transaction may touch a resource once"))
        self.touched[(rtype, rid)] = entry.index


def _plan_delete(ctx: Context, plan: _Plan, entry: Entry) -> None:
    rid = entry.target_id
    if rid is None:
        found = _match_one(ctx, entry.target_type, entry.query, "Conditional delete")  # type: ignore[arg-type]
        rid = found
    if rid is None:
        plan.results[entry.index] = Result(204)
        return
    plan.claim(entry, entry.target_type, rid)  # type: ignore[arg-type]
    plan.writes.append((entry, Write("delete", entry.target_type, rid,  # type: ignore[arg-type]
                                     if_match=crud.parse_etag(entry.if_match), method="DELETE")))


def _plan_post(ctx: Context, plan: _Plan, entry: Entry) -> None:
    rtype = entry.target_type
    assert rtype and entry.resource is not None
    if entry.if_none_exist:
        found = _match_one(ctx, rtype, entry.if_none_exist, "ifNoneExist")
        if found is not None:
            _map_full_url(plan.id_map, entry, rtype, found)
            st = ctx.repo.current(rtype, found)
            assert st is not None
            plan.results[entry.index] = Result(200, None, location=f"{rtype}/{found}/_history/{st.version_id}",
                                               etag=st.etag, last_modified=st.last_updated)
            return
    rid = ctx.repo.new_id()
    _map_full_url(plan.id_map, entry, rtype, rid)
    plan.claim(entry, rtype, rid)
    plan.writes.append((entry, Write("create", rtype, rid, dict(entry.resource), method="POST")))


def _plan_put_or_patch(ctx: Context, plan: _Plan, entry: Entry, prepared: Prepared | None) -> None:
    rtype = entry.target_type
    assert rtype and entry.resource is not None
    rid = entry.target_id
    kind = "update"
    if rid is None:
        rid = _match_one(ctx, rtype, entry.query, f"Conditional {entry.method.lower()}")
        if rid is None:
            if entry.method == "PATCH":
                raise NotFound(f"Conditional patch '{entry.query}' matches no {rtype}")
            # No match: a create (with the body's id, an update as create).
            kind = "update" if entry.resource.get("id") else "create"
            rid = entry.resource.get("id") or ctx.repo.new_id()
    if entry.method == "PUT":
        if entry.target_id is not None:
            check_id_matches(entry.resource, rid, path=f"{entry.where}.resource")
        _map_full_url(plan.id_map, entry, rtype, rid)
        plan.claim(entry, rtype, rid)
        plan.writes.append((entry, Write(kind, rtype, rid, {**entry.resource, "id": rid},
                                         if_match=crud.parse_etag(entry.if_match), method="PUT",
                                         index=prepared.index.get(entry.index) if prepared else None)))
    else:
        plan.claim(entry, rtype, rid)
        entry.extra["patch_target"] = (rtype, rid)
        plan.writes.append((entry, _patch_write(ctx, entry, rtype, rid)))


def _resolve_references(ctx: Context, plan: _Plan) -> None:
    """Rewrite references (fullUrl -> assigned id; conditional -> resolved id) and check
    that every relative reference points at something that exists."""
    pending_refs: dict[tuple[str, str], tuple[Entry, str]] = {}
    for entry, w in plan.writes:
        if w.resource is None or w.kind == "delete":
            continue
        try:
            _rewrite(ctx, entry, w.resource, plan.id_map, pending_refs, plan.touched)
        except FhirError as err:
            raise _error_for(entry, err) from None
    _check_targets_exist(ctx, pending_refs)


def _run_writes(ctx: Context, plan: _Plan) -> None:
    """All writes in one ``write_batch``; each entry's result from its write's outcome."""
    writes, results = plan.writes, plan.results
    try:
        done = ctx.repo.write_batch([w for _, w in writes]) if writes else []
    except FhirError as err:
        idx = getattr(err, "write_index", None)
        if idx is not None:
            raise _error_for(writes[idx][0], err) from None
        raise
    for (entry, _w), wr in zip(writes, done, strict=True):
        if wr.outcome == "absent":
            results[entry.index] = Result(204)
        elif wr.outcome == "deleted":
            results[entry.index] = Result(204, None, etag=wr.stored.etag if wr.stored else None)
        else:
            st = wr.stored
            assert st is not None
            status = 201 if wr.outcome == "created" else 200
            results[entry.index] = Result(
                status, st.content if ctx.prefer_return == "representation" else None,
                location=f"{st.res_type}/{st.res_id}/_history/{st.version_id}", etag=st.etag,
                last_modified=st.last_updated,
            )
            if wr.outcome == "noop":
                results[entry.index].unchanged = True


def _run_reads(ctx: Context, entries: list[Entry], results: dict[int, Result]) -> None:
    """The read entries, after the writes, in Bundle order."""
    for entry in entries:
        if _reads(entry):
            try:
                results[entry.index] = dispatch_read(ctx, entry)
            except FhirError as err:
                raise _error_for(entry, err) from None


def _reads(entry: Entry) -> bool:
    """GET/HEAD entries and POSTs that are not creates (``_search``, operations) run after
    a transaction's writes, each through :func:`dispatch_read`."""
    return entry.method in ("GET", "HEAD") or (
        entry.method == "POST" and entry.parsed is not None and entry.parsed.row.name != "create")


def _patch_write(ctx: Context, entry: Entry, rtype: str, rid: str) -> Write:
    st = ctx.repo.read(rtype, rid)
    crud.check_if_match(st, entry.if_match)
    ops = _patch_operations(entry)
    patched = apply_patch(st.resource(), ops)
    validate_resource(patched, expected_type=rtype, path=f"{entry.where}.resource")
    return Write("update", rtype, rid, patched, if_match=st.version_id, method="PATCH")


def _patch_operations(entry: Entry) -> Any:
    res = entry.resource or {}
    if res.get("resourceType") == "Binary":
        ctype = res.get("contentType", "")
        if "json-patch" not in ctype:
            raise InvalidRequest(
                f"{entry.where}.resource: PATCH Binary must have contentType application/json-patch+json")
        try:
            return orjson.loads(base64.b64decode(res.get("data", "")))
        except (ValueError, orjson.JSONDecodeError) as exc:
            raise InvalidRequest(f"{entry.where}.resource.data is not a base64 JSON Patch: {exc}") from None
    if res.get("resourceType") == "Parameters":  # FHIRPath Patch
        return res
    raise InvalidRequest(
        f"{entry.where}.resource: a PATCH entry carries a FHIRPath Patch (Parameters) or a Binary "
        "with a JSON Patch", expression=[f"{entry.where}.resource"],
    )


def _map_full_url(id_map: dict[str, str], entry: Entry, rtype: str, rid: str) -> None:
    if entry.full_url:
        id_map[entry.full_url] = f"{rtype}/{rid}"


def _match_one(ctx: Context, rtype: str, query: str, what: str) -> str | None:
    found = crud.match_one(ctx, rtype, query, what=f"{what} '{rtype}?{query}'")
    return found.res_id if found is not None else None


def _rewrite(
    ctx: Context | str, entry: Entry, resource: dict[str, Any], id_map: dict[str, str],
    pending: dict[tuple[str, str], tuple[Entry, str]], touched: dict[tuple[str, str], int],
    unresolved: frozenset[str] | set[str] = frozenset(),
) -> None:
    """Rewrite the references of one entry's resource in place (see :func:`transaction`).

    ``ctx`` may be the base URL alone (from :func:`prepare`): then a reference that needs
    the database (a conditional reference) or one in ``unresolved`` (the fullUrl of an
    entry whose id is assigned in the transaction) raises :class:`_NeedsDatabase`."""
    base = ctx if isinstance(ctx, str) else ctx.base_url
    for path, ref_obj in iter_references(resource):
        ref = ref_obj["reference"]
        loc = f"{entry.where}.resource.{path}.reference" if path else f"{entry.where}.resource.reference"
        if ref.startswith("#"):
            continue
        if ref in id_map:
            ref_obj["reference"] = id_map[ref]
            continue
        if isinstance(ctx, str) and (ref in unresolved or ref.startswith(("urn:uuid:", "urn:oid:"))):
            raise _NeedsDatabase
        if ref.startswith(("urn:uuid:", "urn:oid:")):
            raise InvalidReference(
                f"{loc}: reference {ref!r} matches no fullUrl in this transaction", expression=[loc]
            )
        rel = _relative(base, ref) if ref.startswith(base) else ref
        if rel.startswith(("http://", "https://")):
            continue  # an external reference: not ours to check
        head, _, query = rel.partition("?")
        if query:
            if not is_resource_type(head):
                raise InvalidReference(f"{loc}: conditional reference {ref!r} has no resource type", expression=[loc])
            if isinstance(ctx, str):
                raise _NeedsDatabase
            found = _match_one(ctx, head, query, f"Conditional reference at {loc}")
            if found is None:
                raise InvalidReference(f"{loc}: conditional reference {ref!r} matches no resource", expression=[loc])
            ref_obj["reference"] = f"{head}/{found}"
            continue
        parts = rel.split("/")
        if len(parts) in (2, 4) and is_resource_type(parts[0]):
            if rel != ref:
                ref_obj["reference"] = rel
            key = (parts[0], parts[1])
            if key not in touched and key not in pending:
                pending[key] = (entry, loc)


def _check_targets_exist(ctx: Context, pending: dict[tuple[str, str], tuple[Entry, str]]) -> None:
    if not pending:
        return
    existing = ctx.repo.current_many(pending.keys())
    for key, (_entry, loc) in pending.items():
        st = existing.get(key)
        if st is None or st.deleted:
            raise InvalidReference(
                f"{loc}: reference {key[0]}/{key[1]} points at a resource that does not exist",
                expression=[loc],
            )


# -- batch ----------------------------------------------------------------------------


def batch(ctx: Context, bundle: dict[str, Any]) -> Result:
    entries = parse_entries(ctx, bundle)
    results: dict[int, Result] = {}
    for entry in entries:
        try:
            with ctx.repo.savepoint():
                results[entry.index] = dispatch(ctx, entry)
        except FhirError as err:
            results[entry.index] = _ErrorResult(_error_for(entry, err))
        except Exception:  # noqa: BLE001 - one entry's crash must not sink the batch
            crash = internal_error()
            log.exception("batch entry %s failed (correlation id %s)", entry.index, crash.correlation_id)
            results[entry.index] = _ErrorResult(crash)
    return Result(200, _response_bundle(ctx, "batch-response", entries, results))


class _ErrorResult(Result):
    def __init__(self, err: FhirError) -> None:
        super().__init__(err.status, None)
        self.outcome = err.to_outcome()


def dispatch(ctx: Context, entry: Entry) -> Result:
    """Run one batch entry through the interaction the table names for it, exactly as the
    REST route would (``HEAD`` as ``GET``; its response carries no resource)."""
    if entry.parse_error is not None:
        raise entry.parse_error
    assert entry.parsed is not None
    body: Any = entry.resource
    if entry.parsed.row.name in ("patch", "conditional-patch"):
        body = _patch_operations(entry)
    call = Call(entry.parsed, body, if_match=entry.if_match, if_none_match=entry.if_none_match,
                if_none_exist=entry.if_none_exist)
    return execute(ctx, call)


def dispatch_read(ctx: Context, entry: Entry) -> Result:
    """A transaction's GET/HEAD entry (after its writes) or POST ``_search`` entry."""
    if entry.parsed is not None and entry.parsed.write:
        raise InvalidRequest(f"{entry.where}: an operation that writes cannot run inside a transaction",
                             expression=[f"{entry.where}.request.url"])
    return dispatch(ctx, entry)


def _response_bundle(ctx: Context, btype: str, entries: list[Entry], results: dict[int, Result]) -> dict[str, Any]:
    out_entries = []
    for entry in entries:
        res = results[entry.index]
        e: dict[str, Any] = {}
        if res.location:
            e["fullUrl"] = f"{ctx.base_url}/{res.location.split('/_history')[0]}"
        if isinstance(res, _ErrorResult):
            resp = res.entry_response()
            resp["outcome"] = res.outcome
            e["response"] = resp
        else:
            if res.body is not None and entry.method != "HEAD":
                e["resource"] = res.body_fragment()
            e["response"] = res.entry_response()
            if res.unchanged:
                e["response"]["outcome"] = information_outcome(
                    "No change: content identical to the current version", hie_code=NOOP_CODE)
        out_entries.append(e)
    return {"resourceType": "Bundle", "type": btype, "entry": out_entries}


def process(ctx: Context, bundle: Any, prepared: Prepared | None = None) -> Result:
    if not isinstance(bundle, dict) or bundle.get("resourceType") != "Bundle":
        raise InvalidRequest("POST to the base URL needs a Bundle", expression=["Bundle"])
    btype = bundle.get("type")
    if btype == "transaction":
        return transaction(ctx, bundle, prepared)
    if btype == "batch":
        return batch(ctx, bundle)
    raise InvalidRequest(
        f"Bundle.type must be 'transaction' or 'batch' to be processed, not {btype!r}",
        expression=["Bundle.type"],
    )


__all__ = ["process", "transaction", "batch", "dispatch"]
