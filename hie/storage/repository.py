"""The repository: the one way into stored resources, always on behalf of a principal.

Every statement built here ANDs the principal's access predicate
(:mod:`hie.storage.access`) into its WHERE clause — reads, vreads, history, searches
(through :mod:`hie.search.query`) and counts. There is no flag to bypass it; ingest
and maintenance pass :data:`hie.principal.SYSTEM`.

Writes go through :meth:`Repository.write_batch`, one code path for single REST writes
and for thousand-entry transactions: current rows are fetched in bulk, every write is
authorized before anything is written (:mod:`hie.enforcement.writes`: who may write what,
custody fixed at creation, no update-as-create of an id the writer cannot see), new rows are
inserted with multi-row INSERT ... RETURNING, each update is a version-checked UPDATE
(optimistic locking, so concurrent ``If-Match`` updates give one success and one
412), every version is appended to ``resource_version``, and the search indexes are
rewritten in the same transaction. An update whose content equals the current
version (ignoring ``meta.versionId``, ``meta.lastUpdated`` and ``meta.source``) is a no-op and does not
create a version, which is what makes re-loading the same data idempotent.

Spec: https://hl7.org/fhir/R4/http.html (read, vread, update, delete, history)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import ColumnElement, Connection, and_, exists, func, insert, or_, select, update
from sqlalchemy.exc import IntegrityError

from consent.classes import ADMINISTRATIVE
from hie.clock import Clock, SystemClock, instant, new_id
from hie.errors import FhirError, Gone, NotFound, PreconditionFailed, VersionConflict
from hie.principal import Principal
from hie.storage.db import GENERIC_PLAN
from hie.storage.access import AccessPolicy, AccessPredicate
from hie.storage.queries import NamedReads
from hie.storage.rowmeta import RowMeta, patient_of, row_meta
from hie.storage.tables import resource as R
from hie.storage.tables import resource_version as V

_COLS = (R.c.pk, R.c.res_type, R.c.res_id, R.c.version_id, R.c.last_updated, R.c.deleted, R.c.content)
#: Enforcement columns copied onto every version row.
_META_COLS = ("patient_key", "custodian", "data_class", "security_labels", "sensitive_labels", "clinical_date",
              "status", "hidden_from_patient")
_VCOLS = (V.c.resource_pk, V.c.res_type, V.c.res_id, V.c.version_id, V.c.last_updated, V.c.deleted, V.c.content)

#: Roles that keep seeing deleted records (410 and history) that their access predicate
#: allows; the same name as :data:`hie.enforcement.policy.OPERATOR_ROLE` (ADR 0006).
TOMBSTONE_ROLES = frozenset({"operator"})

_SAME = object()  # a recomputed row whose patient key did not change

WriteListener = Callable[["Repository", list["WriteResult"]], None]
"""Called at the end of every ``write_batch``, inside the same database transaction,
with the results of the writes that changed something (identity linking, consent
grant compilation and similar derived state plug in here)."""

PatientKeyResolver = Callable[[Connection, str], str]
"""Maps a local Patient id to the regional patient key (the identity service plugs in)."""


def identity_patient_key(_conn: Connection, patient_id: str) -> str:
    return patient_id


@dataclass
class Stored:
    pk: int
    res_type: str
    res_id: str
    version_id: int
    last_updated: int  # epoch microseconds, UTC
    deleted: bool
    content: bytes | None
    method: str | None = None

    def resource(self) -> dict[str, Any]:
        if self.content is None:
            raise ValueError("deleted resource has no content")
        return orjson.loads(self.content)

    @property
    def etag(self) -> str:
        return f'W/"{self.version_id}"'


@dataclass
class Write:
    """One write in a batch. ``kind`` is create, update or delete."""

    kind: str
    res_type: str
    res_id: str | None = None
    resource: dict[str, Any] | None = None
    if_match: int | None = None
    method: str | None = None  # recorded in history (POST, PUT, PATCH, DELETE)
    #: Search-index rows extracted before the write transaction, as ``(basis, rows)``:
    #: ``rows`` is :func:`hie.search.indexer.extract_rows` of ``basis``. Used only when
    #: ``resource`` equals ``basis`` at write time; otherwise the rows are extracted here.
    index: tuple[dict[str, Any], dict[str, list[dict[str, Any]]]] | None = None


@dataclass
class WriteResult:
    outcome: str  # created | updated | noop | deleted | absent
    stored: Stored | None
    previous_version: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)


def strip_volatile(res: dict[str, Any]) -> dict[str, Any]:
    out = dict(res)
    meta = out.get("meta")
    if isinstance(meta, dict):
        # meta.source names the feed a copy came from; the same content arriving from
        # another file is still the same content (no new version).
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated", "source")}
        if meta:
            out["meta"] = meta
        else:
            out.pop("meta", None)
    return out


class WriteNeeded(Exception):
    """Raised by a read-only repository when a batch turns out to change something."""


def same_content(stored: bytes, resource: dict[str, Any]) -> bool:
    """True if ``resource`` would be a no-op update of the stored JSON ``stored``."""
    return strip_volatile(orjson.loads(stored)) == strip_volatile(resource)


def _precomputed_rows(w: Write) -> dict[str, list[dict[str, Any]]] | None:
    if w.index is not None and w.index[0] == w.resource:
        return w.index[1]
    return None


@dataclass
class _Plan:
    """What one ``write_batch`` will do, decided (and authorized) before anything is written."""

    results: list[WriteResult | None]
    inserts: list[tuple[int, dict[str, Any], dict[str, Any]]] = field(default_factory=list)  # (index, stub, resource)
    updates: list[tuple[int, Stored, dict[str, Any]]] = field(default_factory=list)
    deletes: list[tuple[int, Stored]] = field(default_factory=list)
    custody: dict[int, str | None] = field(default_factory=dict)  # write index -> custodian
    version_rows: list[dict[str, Any]] = field(default_factory=list)
    fresh: list[tuple[int, str, str | None, dict[str, Any], Any]] = field(default_factory=list)  # index items
    changed: list[tuple[int, str, str | None, dict[str, Any], Any]] = field(default_factory=list)


class Repository(NamedReads):
    def __init__(
        self,
        conn: Connection,
        principal: Principal,
        *,
        registry: Any,
        policy: AccessPolicy,
        clock: Clock | None = None,
        patient_key: PatientKeyResolver = identity_patient_key,
        id_factory: Callable[[], str] = new_id,
        listeners: Sequence[WriteListener] = (),
    ) -> None:
        self.conn = conn
        self.principal = principal
        self.registry = registry
        self.clock = clock or SystemClock()
        if policy is None:  # fail closed: there is no open default
            raise TypeError("Repository needs an access policy (no default: pass the node's, or an explicit one)")
        self.policy: AccessPolicy = policy
        self.access: AccessPredicate = self.policy.predicate(principal, conn)
        self._patient_key = patient_key
        self.new_id = id_factory
        self.listeners = tuple(listeners)
        #: Set by ingest when every write of a batch is expected to be a no-op: the batch
        #: runs in a read transaction and raises WriteNeeded before changing anything.
        self.read_only = False
        self._custodian_access: dict[str, AccessPredicate] = {}

    # -- reads -------------------------------------------------------------------------

    def current(self, res_type: str, res_id: str) -> Stored | None:
        """The current row (a tombstone if deleted), or None if absent or not visible."""
        row = self.conn.execute(
            select(*_COLS).where(R.c.res_type == res_type, R.c.res_id == res_id, self.visible(R)),
            execution_options={GENERIC_PLAN: True},  # a primary-key lookup whatever the values
        ).first()
        return Stored(*row) if row else None

    def read(self, res_type: str, res_id: str) -> Stored:
        st = self.current(res_type, res_id)
        if st is None:
            raise NotFound(f"Resource {res_type}/{res_id} is not known")
        if st.deleted:
            raise Gone(
                f"Resource {res_type}/{res_id} was deleted (version {st.version_id})",
                headers={"ETag": st.etag},
            )
        return st

    def vread(self, res_type: str, res_id: str, version_id: int) -> Stored:
        row = self.conn.execute(
            select(*_VCOLS, V.c.method).where(
                V.c.res_type == res_type, V.c.res_id == res_id, V.c.version_id == version_id,
                self.version_visible(),
            )
        ).first()
        if row is None:
            raise NotFound(f"Version {version_id} of {res_type}/{res_id} is not known")
        st = Stored(*row)
        if st.deleted:
            raise Gone(f"Version {version_id} of {res_type}/{res_id} is a deletion", headers={"ETag": st.etag})
        return st

    def load_pks(self, pks: Sequence[int]) -> list[Stored]:
        """Current rows for ``pks`` in the given order (access-filtered again)."""
        if not pks:
            return []
        found: dict[int, Stored] = {}
        for chunk in _chunks(list(pks), 900):
            for row in self.conn.execute(select(*_COLS).where(R.c.pk.in_(chunk), self.visible(R))):
                found[row[0]] = Stored(*row)
        return [found[pk] for pk in pks if pk in found]

    def history(
        self,
        res_type: str | None = None,
        res_id: str | None = None,
        *,
        since_us: int | None = None,
        until_us: int | None = None,
        count: int = 50,
        offset: int = 0,
    ) -> tuple[list[Stored], int]:
        conds = [self.version_visible()]
        if res_type:
            conds.append(V.c.res_type == res_type)
        if res_id:
            conds.append(V.c.res_id == res_id)
        if since_us is not None:
            conds.append(V.c.last_updated >= since_us)
        if until_us is not None:
            conds.append(V.c.last_updated <= until_us)
        where = and_(*conds)
        total = self.conn.execute(select(func.count()).select_from(V).where(where)).scalar_one()
        rows = self.conn.execute(
            select(*_VCOLS, V.c.method)
            .where(where)
            .order_by(V.c.last_updated.desc(), V.c.pk.desc())
            .limit(count)
            .offset(offset)
        ).all()
        return [Stored(*r) for r in rows], total

    # -- visibility of current rows and of versions (docs/adr/0006-version-visibility.md) --

    def visible(self, r: Any) -> ColumnElement[bool]:
        """``access(r)`` for a row of ``resource``, plus the deletion rule: a tombstone stays
        visible to its custodian, to operators, to the system principal and, for
        administrative data, to everyone; to anybody else a deleted record answers like one
        that never existed (deletion withdraws it from sharing)."""
        if self.principal.is_system or self.principal.roles & TOMBSTONE_ROLES:
            return self.access(r)
        keep = [r.c.deleted.is_(False), and_(r.c.patient_key.is_(None), r.c.data_class == ADMINISTRATIVE)]
        if self.principal.organization_id:
            keep.append(r.c.custodian == self.principal.organization_id)
        return and_(self.access(r), or_(*keep))

    def version_visible(self) -> ColumnElement[bool]:
        """A row of ``resource_version`` is visible when the viewer may see that version AND
        the current row of its resource (:meth:`visible`): relabelling, ``UNINFORMED``,
        moving to another patient or deleting a resource takes its old versions along. One
        condition in the same statement (an EXISTS on ``resource`` by primary key), so
        totals and paging follow it."""
        if self.principal.is_system:
            return self.access(V)
        return and_(self.access(V), exists().where(R.c.pk == V.c.resource_pk, self.visible(R)))

    # -- maintenance: enforcement columns of stored rows (ADR 0006, "Existing data") -------

    def recompute_enforcement(self, *, after_pk: int = 0, limit: int = 500) -> tuple[int | None, int]:
        """Recompute patient key, class, labels, date, status and ``UNINFORMED`` of up to
        ``limit`` resources with ``pk > after_pk`` and of all their versions, from the stored
        content with the current rules; the custodian stays (custody is fixed at creation).
        System principal only (``hie reindex``). Returns the last pk done (None when there
        is nothing after ``after_pk``) and how many rows changed."""
        self._require_system()
        rows = self.conn.execute(select(R.c.pk, R.c.content, *(R.c[c] for c in _META_COLS))
                                 .where(R.c.pk > after_pk).order_by(R.c.pk).limit(limit)).all()
        if not rows:
            return None, 0
        return rows[-1][0], self._recompute_rows(rows)[0]

    def recompute_enforcement_of(self, pks: Sequence[int]) -> int:
        """:meth:`recompute_enforcement` of the resources ``pks`` (and their versions), and
        the ``patient_key`` of their search-index rows: the maintenance step that keeps a row
        whose columns come from another resource (a Binary's securityContext,
        :mod:`hie.storage.dependents`) in step with it. Returns how many rows changed."""
        from hie.search.tables import ALL_INDEX_TABLES

        self._require_system()
        changed = 0
        for chunk in _chunks(sorted(set(pks)), 500):
            rows = self.conn.execute(select(R.c.pk, R.c.content, *(R.c[c] for c in _META_COLS))
                                     .where(R.c.pk.in_(chunk)).order_by(R.c.pk)).all()
            n, rekeyed = self._recompute_rows(rows)
            changed += n
            for pk, key in rekeyed.items():
                if key is not _SAME:
                    for table in ALL_INDEX_TABLES:
                        self.conn.execute(update(table).where(table.c.resource_pk == pk).values(patient_key=key))
        return changed

    def system_view(self) -> Repository:
        """The system principal's repository on this connection, without write listeners
        (for maintenance steps inside a write transaction, :mod:`hie.storage.dependents`)."""
        from hie.principal import SYSTEM

        return Repository(self.conn, SYSTEM, registry=self.registry, policy=self.policy, clock=self.clock,
                          patient_key=self._patient_key, id_factory=self.new_id)

    def _require_system(self) -> None:
        if not self.principal.is_system:
            raise PermissionError("recomputing enforcement columns is maintenance of the system principal")

    def _recompute_rows(self, rows: Sequence[Any]) -> tuple[int, dict[int, Any]]:
        """Rewrite the enforcement columns of ``(pk, content, *_META_COLS)`` rows of
        ``resource`` and of all their versions. Returns how many rows changed and
        ``{pk: new patient key, or _SAME}`` of the resources that changed."""
        self._batch_writes = ()
        self._key_cache = {}
        versions = self.conn.execute(
            select(V.c.pk, V.c.resource_pk, V.c.content, *(V.c[c] for c in _META_COLS))
            .where(V.c.resource_pk.in_([r[0] for r in rows])).order_by(V.c.resource_pk, V.c.version_id)).all()
        n = 0
        changed: dict[int, Any] = {}
        last_of: dict[int, dict[str, Any]] = {}
        for vpk, rpk, content, *version_values in versions:
            was = dict(zip(_META_COLS, version_values, strict=True))
            new = self._recomputed(content, was, last_of.get(rpk))
            last_of[rpk] = new
            if new != was:
                self.conn.execute(update(V).where(V.c.pk == vpk).values(**new))
                changed.setdefault(rpk, _SAME)
                n += 1
        for pk, content, *old_values in rows:
            old = dict(zip(_META_COLS, old_values, strict=True))
            new = self._recomputed(content, old, last_of.get(pk))
            if new != old:
                self.conn.execute(update(R).where(R.c.pk == pk).values(**new))
                changed[pk] = new["patient_key"] if new["patient_key"] != old["patient_key"] else _SAME
                n += 1
        return n, changed

    def _recomputed(
        self, content: bytes | None, old: dict[str, Any], previous: dict[str, Any] | None
    ) -> dict[str, Any]:
        if content is None:  # a deletion keeps what the version before it was
            return dict(previous) if previous is not None else old
        self._resolving_for = old["custodian"]
        try:
            meta, key = self._resolve_patient(row_meta(orjson.loads(content), old["custodian"]))
        finally:
            self._resolving_for = None
        return {**meta.columns(), "custodian": old["custodian"], "patient_key": key}

    def _target_visible(self) -> ColumnElement[bool]:
        """Which current rows a ``patient_via`` reference may resolve to. A write: what the
        writer sees. Maintenance (system principal, recomputing a stored row): the rows in
        the custody of the row's custodian and what that facility's access predicate lets
        it see, so that a row never takes, after the fact, a patient or labels from a record
        its custodian could not see (the write-time rule); a row without a custodian
        (written by the node itself) resolves as the system."""
        custodian = self._resolving_for
        if custodian is None:
            return self.visible(R)
        access = self._custodian_access.get(custodian)
        if access is None:
            viewer = Principal(kind="user", name=f"custodian {custodian}", organization_id=custodian)
            access = self._custodian_access[custodian] = self.policy.predicate(viewer, self.conn)
        return or_(R.c.custodian == custodian, access(R))

    def patient_key(self, patient_id: str) -> str:
        """The regional patient key of a local Patient id (the identity service's resolver)."""
        return self._patient_key(self.conn, patient_id)

    def find_pks(self, res_type: str, params: list[tuple[str, str]]) -> list[int]:
        from hie.search.query import find_pks

        return find_pks(self.conn, self.registry, res_type, params, self.access)

    # -- writes ------------------------------------------------------------------------

    def create(self, resource: dict[str, Any], *, res_id: str | None = None) -> Stored:
        res = self.write_batch([Write("create", resource["resourceType"], res_id, resource, method="POST")])
        assert res[0].stored is not None
        return res[0].stored

    def update(
        self, res_type: str, res_id: str, resource: dict[str, Any], *, if_match: int | None = None,
        method: str = "PUT",
    ) -> WriteResult:
        return self.write_batch([Write("update", res_type, res_id, resource, if_match=if_match, method=method)])[0]

    def delete(self, res_type: str, res_id: str, *, if_match: int | None = None) -> WriteResult:
        return self.write_batch([Write("delete", res_type, res_id, if_match=if_match, method="DELETE")])[0]

    def write_batch(self, writes: Sequence[Write]) -> list[WriteResult]:
        """Apply ``writes`` in order; a failing write raises a FhirError whose
        ``write_index`` attribute names its position (the caller rolls back)."""
        try:
            results = self._write_batch(writes)
            changed = [r for r in results if r.outcome in ("created", "updated", "deleted")]
            if changed:
                for listener in self.listeners:
                    listener(self, changed)
            return results
        except FhirError as err:
            if not hasattr(err, "write_index"):
                err.write_index = self._current_write  # type: ignore[attr-defined]
            raise

    _current_write: int | None = None
    _batch_writes: Sequence[Write] = ()
    _resolving_for: str | None = None  # custodian of the stored row being recomputed (maintenance)
    _key_cache: dict[str, str]  # local Patient id -> regional key, per write batch

    def _write_batch(self, writes: Sequence[Write]) -> list[WriteResult]:
        self._key_cache = {}
        self._batch_writes = writes  # targets of patient_via written in the same batch
        now = self.clock.now_us()
        keys = [(w.res_type, w.res_id) for w in writes if w.kind != "create" and w.res_id]
        plan = self._plan(writes, self.current_many(keys))
        if self.read_only and (plan.inserts or plan.updates or plan.deletes):
            raise WriteNeeded
        if plan.inserts and not self.principal.is_system:
            self._refuse_hidden_ids(writes, plan.inserts)
        self._current_write = None
        self._insert_new(writes, plan, now)
        self._apply_updates(writes, plan, now)
        self._apply_deletes(writes, plan, now)
        self._write_versions_and_index(plan)
        assert all(r is not None for r in plan.results)
        return plan.results  # type: ignore[return-value]

    def _plan(self, writes: Sequence[Write], existing: dict[tuple[str, str], Stored]) -> _Plan:
        """Sort the writes into inserts, updates, deletes and no-ops, authorizing each one
        (:class:`hie.enforcement.writes.WriteGuard`) before anything is written."""
        from hie.enforcement.writes import WriteGuard

        guard = WriteGuard(self.principal, self.conn, key=self._key, patient_of=patient_of,
                           custodial=self._custodial)
        facts = self._stored_facts(existing.values())
        plan = _Plan([None] * len(writes))
        seen_new: set[tuple[str, str]] = set()
        for i, w in enumerate(writes):
            self._current_write = i
            cur = existing.get((w.res_type, w.res_id)) if w.res_id else None
            if w.kind == "delete":
                if w.if_match is not None and (cur is None or cur.version_id != w.if_match):
                    raise PreconditionFailed(
                        f"If-Match version {w.if_match} does not match the current version of "
                        f"{w.res_type}/{w.res_id}"
                    )
                if cur is None or cur.deleted:
                    plan.results[i] = WriteResult("absent", cur)
                else:
                    guard.authorize("delete", w.res_type, None, facts[cur.pk])
                    plan.deletes.append((i, cur))
                continue
            assert w.resource is not None
            if w.kind == "create" or cur is None:
                if w.kind == "update" and not guard.may_create_with_id:
                    # No update-as-create: an id the writer cannot see answers alike, free or hidden.
                    raise NotFound(f"Resource {w.res_type}/{w.res_id} is not known")
                if w.kind == "update" and w.if_match is not None:
                    raise PreconditionFailed(f"If-Match given but {w.res_type}/{w.res_id} does not exist")
                guard.authorize("create", w.res_type, w.resource, None)
                plan.custody[i] = guard.custodian_for_create(w.res_type, w.resource)
                rid = w.res_id or self.new_id()
                if (w.res_type, rid) in seen_new:
                    raise VersionConflict(f"{w.res_type}/{rid} is written twice in one request")
                seen_new.add((w.res_type, rid))
                plan.inserts.append((i, {"res_id": rid}, w.resource))
                continue
            if w.if_match is not None and cur.version_id != w.if_match:
                raise PreconditionFailed(
                    f"If-Match version {w.if_match} does not match the current version "
                    f"{cur.version_id} of {w.res_type}/{w.res_id}"
                )
            guard.authorize("update", w.res_type, w.resource, facts[cur.pk])
            plan.custody[i] = guard.custodian_for_update(w.res_type, w.resource, facts[cur.pk])
            unchanged = cur.content is not None and same_content(cur.content, {**w.resource, "id": w.res_id})
            if unchanged and not cur.deleted:
                plan.results[i] = WriteResult("noop", cur, cur.version_id)
                continue
            plan.updates.append((i, cur, w.resource))
        return plan

    def _row_values(self, body: dict[str, Any], custodian: str | None) -> tuple[str | None, dict[str, Any]]:
        """(patient key, enforcement columns) of a stamped body; custody as the guard decided."""
        meta, key = self._resolve_patient(row_meta(body, custodian))
        return key, {**meta.columns(), "custodian": custodian}

    def _insert_new(self, writes: Sequence[Write], plan: _Plan, now: int) -> None:
        """New resources: one multi-row INSERT ... RETURNING."""
        if not plan.inserts:
            return
        rows = []
        prepared: list[tuple[int, dict[str, Any], dict[str, Any], Any]] = []
        for i, stub, res in plan.inserts:
            w = writes[i]
            body = self._stamp(res, stub["res_id"], 1, now)
            pkey, cols = self._row_values(body, plan.custody[i])
            row = {
                "res_type": w.res_type, "res_id": stub["res_id"], "version_id": 1,
                "last_updated": now, "deleted": False, "content": orjson.dumps(body),
                "patient_key": pkey, **cols,
            }
            rows.append(row)
            prepared.append((i, row, body, pkey))
        try:
            pks = self.conn.execute(
                insert(R).returning(R.c.pk, sort_by_parameter_order=True), rows
            ).scalars().all()
        except IntegrityError:
            raise VersionConflict(
                "A resource with the same type and id was created concurrently; retry the request"
            ) from None
        for (i, row, body, pkey), pk in zip(prepared, pks, strict=True):
            st = Stored(pk, row["res_type"], row["res_id"], 1, now, False, row["content"], writes[i].method)
            plan.results[i] = WriteResult("created", st)
            plan.version_rows.append(self._version_row(pk, row, writes[i].method or "POST"))
            plan.fresh.append((pk, row["res_type"], pkey, body, _precomputed_rows(writes[i])))

    def _apply_updates(self, writes: Sequence[Write], plan: _Plan, now: int) -> None:
        for i, cur, res in plan.updates:
            self._current_write = i
            w = writes[i]
            new_v = cur.version_id + 1
            body = self._stamp(res, cur.res_id, new_v, now)
            pkey, cols = self._row_values(body, plan.custody[i])
            content = orjson.dumps(body)
            vals = {
                "version_id": new_v, "last_updated": now, "deleted": False, "content": content,
                "patient_key": pkey, **cols,
            }
            self._versioned_update(cur, w.if_match, vals)
            row = {"res_type": cur.res_type, "res_id": cur.res_id, **vals}
            plan.version_rows.append(self._version_row(cur.pk, row, w.method or "PUT"))
            plan.changed.append((cur.pk, cur.res_type, pkey, body, _precomputed_rows(w)))
            st = Stored(cur.pk, cur.res_type, cur.res_id, new_v, now, False, content, w.method)
            plan.results[i] = WriteResult("updated", st, cur.version_id)

    def _apply_deletes(self, writes: Sequence[Write], plan: _Plan, now: int) -> None:
        for i, cur in plan.deletes:
            self._current_write = i
            w = writes[i]
            new_v = cur.version_id + 1
            vals = {"version_id": new_v, "last_updated": now, "deleted": True, "content": None}
            self._versioned_update(cur, w.if_match, vals)
            old = self.conn.execute(select(*(R.c[c] for c in _META_COLS)).where(R.c.pk == cur.pk)).one()
            row = {"res_type": cur.res_type, "res_id": cur.res_id, **vals, **dict(zip(_META_COLS, old, strict=True))}
            plan.version_rows.append(self._version_row(cur.pk, row, "DELETE"))
            plan.results[i] = WriteResult(
                "deleted", Stored(cur.pk, cur.res_type, cur.res_id, new_v, now, True, None, "DELETE"),
                cur.version_id,
            )

    def _write_versions_and_index(self, plan: _Plan) -> None:
        from hie.search.indexer import delete_index_many, write_index_many

        self._current_write = None
        if plan.deletes:
            delete_index_many(self.conn, [cur.pk for _, cur in plan.deletes])
        if plan.version_rows:
            self.conn.execute(insert(V), plan.version_rows)
        for items, replace in ((plan.fresh, False), (plan.changed, True)):
            if items:
                write_index_many(
                    self.conn, self.registry,
                    [{"resource_pk": pk, "res_type": rt, "patient_key": pkey, "resource": body, "rows": rows}
                     for pk, rt, pkey, body, rows in items],
                    replace=replace,
                )

    # -- helpers -----------------------------------------------------------------------

    def _stored_facts(self, rows: Iterable[Stored]) -> dict[int, Any]:
        """Custodian and patient key of current rows the batch changes (what the write guard
        judges); the content comes with the rows."""
        from hie.enforcement.writes import StoredFacts

        by_pk = {st.pk: st for st in rows}
        out: dict[int, Any] = {}
        for chunk in _chunks(list(by_pk), 900):
            for pk, custodian, pkey in self.conn.execute(
                    select(R.c.pk, R.c.custodian, R.c.patient_key).where(R.c.pk.in_(chunk))):
                out[pk] = StoredFacts(custodian, pkey, by_pk[pk].content)
        return out

    def _custodial(self, res_type: str, res_ids: list[str], custodian: str) -> bool:
        """Whether any of ``res_ids`` is a current (not deleted) ``res_type`` in the custody of
        ``custodian``. A fact for the write guard only (registrar holding check): it returns
        no data, so it does not apply the access predicate."""
        for chunk in _chunks(list(dict.fromkeys(res_ids)), 400):
            hit = self.conn.execute(select(R.c.pk).where(
                R.c.res_type == res_type, R.c.res_id.in_(chunk), R.c.custodian == custodian,
                R.c.deleted.is_(False)).limit(1)).first()
            if hit is not None:
                return True
        return False

    def _resolve_patient(self, meta: RowMeta, depth: int = 0) -> tuple[RowMeta, str | None]:
        """The row's patient key (one distinct regional key, else None) and its metadata
        after taking what a ``patient_via`` target gives (a Binary's securityContext: the
        target's patient, class, sensitive labels, date; hie/storage/rowmeta.py)."""
        keys = {self._key(pid) for pid in meta.patient_ids}
        if not keys and meta.patient_via and depth < 3:
            for ref in meta.patient_via:
                target = self._via_target(ref, depth)
                if target is not None:
                    meta = meta.taking(target)
                    keys.add(target["patient_key"])
        keys.discard(None)
        return meta, (keys.pop() if len(keys) == 1 else None)

    def _via_target(self, ref: str, depth: int) -> dict[str, Any] | None:
        """Enforcement columns of ``Type/id``: as written in this batch, else the current row
        if the writer may see it (a hidden target gives nothing: no patient is learnt)."""
        rtype, _, rid = ref.partition("/")
        for w in reversed(self._batch_writes):
            if w.res_type == rtype and w.res_id == rid and w.resource is not None and w.kind != "delete":
                meta, key = self._resolve_patient(row_meta({**w.resource, "id": rid}, None), depth + 1)
                return {**meta.columns(), "patient_key": key}
        row = self.conn.execute(
            select(*(R.c[c] for c in _META_COLS)).where(
                R.c.res_type == rtype, R.c.res_id == rid, R.c.deleted.is_(False), self._target_visible())
        ).first()
        return dict(zip(_META_COLS, row, strict=True)) if row is not None else None

    def _key(self, patient_ref: str | None) -> str | None:
        """Regional key of a local Patient id, cached for the current write batch (a bundle
        is usually about one patient; re-keying happens in listeners, after the batch)."""
        if not patient_ref:
            return None
        key = self._key_cache.get(patient_ref)
        if key is None:
            key = self._key_cache[patient_ref] = self._patient_key(self.conn, patient_ref)
        return key

    def _refuse_hidden_ids(self, writes: Sequence[Write], inserts: list[tuple[int, dict[str, Any], Any]]) -> None:
        """An update-as-create of an id that exists but is hidden from the principal answers
        404, as reading it does (instead of 409 from the unique key)."""
        ids = {(writes[i].res_type, stub["res_id"]): i for i, stub, _ in inserts if writes[i].kind == "update"}
        for chunk in _chunks(list(ids), 400):
            stmt = select(R.c.res_type, R.c.res_id).where(_keys_match(chunk))
            for rt, rid in self.conn.execute(stmt.limit(1)):
                self._current_write = ids[(rt, rid)]
                raise NotFound(f"Resource {rt}/{rid} is not known")

    def current_many(self, keys: Iterable[tuple[str, str | None]]) -> dict[tuple[str, str], Stored]:
        """Current rows (tombstones included) of the visible resources among ``keys``."""
        keys = [k for k in dict.fromkeys(keys) if k[1]]
        out: dict[tuple[str, str], Stored] = {}
        for chunk in _chunks(keys, 400):
            stmt = select(*_COLS).where(_keys_match(chunk), self.visible(R))
            for row in self.conn.execute(stmt):
                st = Stored(*row)
                out[(st.res_type, st.res_id)] = st
        return out

    def _versioned_update(self, cur: Stored, if_match: int | None, vals: dict[str, Any]) -> None:
        result = self.conn.execute(
            update(R).where(R.c.pk == cur.pk, R.c.version_id == cur.version_id).values(**vals)
        )
        if result.rowcount != 1:
            if if_match is not None:
                raise PreconditionFailed(
                    f"If-Match version {if_match} is no longer current for {cur.res_type}/{cur.res_id}"
                )
            raise VersionConflict(
                f"{cur.res_type}/{cur.res_id} was changed concurrently; retry the request"
            )

    @staticmethod
    def _version_row(resource_pk: int, row: dict[str, Any], method: str) -> dict[str, Any]:
        return {
            "resource_pk": resource_pk, "res_type": row["res_type"], "res_id": row["res_id"],
            "version_id": row["version_id"], "last_updated": row["last_updated"], "method": method,
            "deleted": row["deleted"], "content": row["content"],
            **{c: row.get(c) for c in _META_COLS},
        }

    @staticmethod
    def _stamp(res: dict[str, Any], res_id: str, version: int, now: int) -> dict[str, Any]:
        body = dict(res)
        body.pop("resourceType", None)
        meta = dict(body.pop("meta", None) or {})
        meta["versionId"] = str(version)
        meta["lastUpdated"] = instant(now)
        body.pop("id", None)
        # resourceType, id and meta first, as FHIR JSON is usually written.
        return {"resourceType": res["resourceType"], "id": res_id, "meta": meta, **body}


def _keys_match(keys: Sequence[tuple[str, str]]) -> Any:
    """``resource`` rows with these (type, id) keys: one ``res_type = ? AND res_id IN (...)``
    per type. SQLite answers a row-value ``(res_type, res_id) IN (...)`` with a scan of the
    whole unique index, which made every write batch cost time proportional to the table."""
    by_type: dict[str, list[str]] = {}
    for t, i in keys:
        by_type.setdefault(t, []).append(i)
    return or_(*(and_(R.c.res_type == t, R.c.res_id.in_(ids)) for t, ids in by_type.items()))


def _chunks(items: list[Any], size: int) -> Iterable[list[Any]]:
    for i in range(0, len(items), size):
        yield items[i : i + size]
