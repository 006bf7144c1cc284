"""Search, includes and the named reads operations need: repository methods, so that no
code outside the storage layer and the search internals runs SQL on resource data.

:class:`NamedReads` is a part of :class:`hie.storage.repository.Repository` (kept in its
own module so the repository stays a set of small collaborators). Search and includes
build their statements with :mod:`hie.search.query` and run them on the repository's
connection with the repository's access predicate.

The *node lookups* at the end answer enforcement decisions that must be taken before the
caller may see the record (break-the-glass names a patient the clinician cannot see yet;
an operator explains a consent). They do not apply the access predicate, return no more
than the decision needs, and every caller gates them (role check, or answers 404 like an
unknown id). They are the only reads without the predicate, and they are named.
"""

from __future__ import annotations

from collections.abc import Sequence
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Engine, func, select

from hie.storage.db import READ
from hie.storage.tables import resource as R

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from hie.storage.access import AccessPredicate

Row = tuple[Any, ...]  # (pk, res_type, res_id, content)


@dataclass
class SearchPage:
    rows: list[Row]  # (pk, res_type, res_id, content) of the page's matches
    has_next: bool
    total: int | None  # None when not asked for


class NamedReads:
    conn: Connection
    access: AccessPredicate
    registry: Any

    # -- search -------------------------------------------------------------------------

    def search(
        self,
        res_type: str | None,
        criteria: list[tuple[str, str]],
        *,
        sort: str | None = None,
        count: int,
        offset: int = 0,
        compartment: tuple[str, str] | None = None,
        base_url: str | None = None,
        total: bool = True,
    ) -> SearchPage:
        """One page of matches (content read by the statement that applies the access
        predicate) and, if ``total``, the number of matches: told by the page when it
        reaches the last match, otherwise counted in one more statement."""
        from hie.search.query import count_query, page_query

        b = self._builder(base_url)
        rows: list[Row] = []
        has_next = False
        if count > 0:
            rows = [tuple(r) for r in self.conn.execute(page_query(
                b, res_type, criteria, sort=sort, count=count + 1, offset=offset, compartment=compartment))]
            has_next = len(rows) > count
            rows = rows[:count]
        n: int | None = None
        if total:
            if count > 0 and not has_next and (rows or offset == 0):
                n = offset + len(rows)  # the page reaches the last match (same snapshot)
            else:
                n = self.conn.execute(count_query(b, res_type, criteria, compartment)).scalar_one()
        return SearchPage(rows, has_next, n)

    def include(self, matches: Sequence[Row], includes: list[tuple[str, bool, bool]], *,
                base_url: str | None = None) -> list[Row]:
        """Rows ``(pk, res_type, res_id, content)`` that ``includes`` =
        ``[(spec, reverse, iterate)]`` add to ``matches`` (each visible resource once)."""
        from hie.search.query import resolve_includes

        if not includes or not matches:
            return []
        return resolve_includes(self.conn, self._builder(base_url), list(matches), includes)

    def custodians(self, pks: Sequence[int]) -> dict[int, str | None]:
        """The custodian (disclosing facility code) of each row among ``pks`` that the
        caller may see, by pk (a summary names the source facility of every entry)."""
        out: dict[int, str | None] = {}
        keys = list(dict.fromkeys(pks))
        for i in range(0, len(keys), 900):
            stmt = select(R.c.pk, R.c.custodian).where(R.c.pk.in_(keys[i:i + 900]), self.access(R))
            out.update((int(pk), cust) for pk, cust in self.conn.execute(stmt))
        return out

    def _builder(self, base_url: str | None) -> Any:
        from hie.search.query import Builder, Env

        return Builder(Env(self.registry, self.access, base_url))

    def savepoint(self) -> AbstractContextManager[Any]:
        """A nested transaction (a batch entry fails alone); a read has no transaction to
        nest in and nothing to undo (hie.storage.db.read_tx), so it gets none."""
        if self.conn.get_execution_options().get(READ):
            return nullcontext()
        return self.conn.begin_nested()

    # -- node lookups (no access predicate; callers gate them) ---------------------------

    def stored_patient_key(self, patient_id: str) -> str | None:
        """The patient key of a stored, not deleted Patient, or None (break-the-glass and
        operators' tools need it for a patient the caller cannot see)."""
        return self.conn.execute(select(R.c.patient_key).where(
            R.c.res_type == "Patient", R.c.res_id == patient_id, R.c.deleted.is_(False))).scalar_one_or_none()

    def row_patient_key(self, pk: int) -> str | None:
        """The patient key stored on row ``pk`` (write listeners: the key the write set)."""
        return self.conn.execute(select(R.c.patient_key).where(R.c.pk == pk)).scalar_one_or_none()

    def row_custodian(self, pk: int) -> str | None:
        """The custodian stored on row ``pk`` (consent compilation: who recorded a Consent)."""
        return self.conn.execute(select(R.c.custodian).where(R.c.pk == pk)).scalar_one_or_none()

    def patient_consents(self, patient_key: str) -> list[bytes]:
        """The JSON of every current Consent about ``patient_key`` (operators' explain)."""
        return list(self.conn.execute(select(R.c.content).where(
            R.c.res_type == "Consent", R.c.patient_key == patient_key, R.c.deleted.is_(False))).scalars())

    def record_facts(self, res_type: str, res_id: str) -> tuple[bytes, str | None, str | None] | None:
        """``(content, patient_key, custodian)`` of a current record (operators' explain)."""
        row = self.conn.execute(select(R.c.content, R.c.patient_key, R.c.custodian).where(
            R.c.res_type == res_type, R.c.res_id == res_id, R.c.deleted.is_(False))).first()
        return (row[0], row[1], row[2]) if row else None


def any_resource(engine: Engine) -> bool:
    """Whether the database holds any resource (``hie serve`` loads the demo into an empty one)."""
    with engine.connect() as conn:
        return conn.execute(select(R.c.pk).limit(1)).first() is not None


# -- audit trail verification (``hie audit verify``, as the node itself) ------------------------


def audit_event_rows(conn: Connection, ids: Sequence[str]) -> dict[str, Any]:
    """Current rows ``(res_id, version_id, deleted, content)`` of the AuditEvents ``ids``,
    tombstones included (a deleted record is what verification looks for)."""
    stmt = select(R.c.res_id, R.c.version_id, R.c.deleted, R.c.content).where(
        R.c.res_type == "AuditEvent", R.c.res_id.in_(list(ids)))
    return {row.res_id: row for row in conn.execute(stmt)}


def unchained_audit_events(conn: Connection, chained_ids: Any, *, sample: int = 5) -> tuple[int, list[str]]:
    """How many stored AuditEvents are not among ``chained_ids`` (a subquery of event ids),
    and up to ``sample`` of their ids (inserted records)."""
    cond = (R.c.res_type == "AuditEvent") & R.c.res_id.not_in(chained_ids)
    count = conn.execute(select(func.count()).select_from(R).where(cond)).scalar_one()
    ids = list(conn.execute(select(R.c.res_id).where(cond).limit(sample)).scalars()) if count else []
    return count, ids
