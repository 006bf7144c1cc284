"""Re-keying: moving a local patient's stored rows from one regional patient key to another.

Part of the identity service (links, unlinks and merges of regional persons, see
:mod:`hie.identity.service`). Every row that holds patient data carries ``patient_key``
(ARCHITECTURE.md, "Data the node keeps per stored resource"): ``resource``,
``resource_version`` and every search-index table (:data:`hie.search.tables.ALL_INDEX_TABLES`).
The access predicate (:mod:`hie.storage.access`) joins on it, so when a local patient
joins or leaves a regional person, its rows must follow in the same transaction as the
link change -- otherwise a viewing facility would see (or miss) records for a moment,
or for ever.

Why raw UPDATEs here and nowhere else: this is storage maintenance of a derived
column, not a change of any resource. Writing new resource versions through
:class:`hie.storage.repository.Repository` would invent history entries for content
that did not change (and could not touch past versions at all). The statements only
ever set ``patient_key``; content, versions and everything else stay as they are.

Which rows belong to which local patient is decided with the same function the write
path uses (:func:`hie.storage.rowmeta.patient_of`), per version: a resource whose
subject changed keeps each version keyed by the patient that version was about.
Tombstones and deletion versions take the patient of the last version with content.
A row keyed through another resource (a Binary's ``securityContext``, the ``patient_via``
of :mod:`hie.storage.rowmeta`) moves with the resource it follows, and so do its versions.

Spec context: https://hl7.org/fhir/R4/patient.html#links (linking patient records).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, select, update

from hie.search.tables import ALL_INDEX_TABLES
from hie.storage.rowmeta import patient_of, patient_refs
from hie.storage.tables import resource as R
from hie.storage.tables import resource_version as V

_CHUNK = 500


@dataclass
class RekeyCount:
    resources: int = 0
    versions: int = 0
    index_rows: int = 0


def current_rows(conn: Connection, res_type: str, key: str) -> list[Any]:
    """Current rows (as :class:`hie.storage.repository.Stored` fields) of ``res_type``
    keyed ``key`` (compiled state that follows a re-key, e.g. consent grants)."""
    return [tuple(row) for row in conn.execute(
        select(R.c.pk, R.c.res_type, R.c.res_id, R.c.version_id, R.c.last_updated, R.c.deleted, R.c.content)
        .where(R.c.res_type == res_type, R.c.patient_key == key, R.c.deleted.is_(False))).all()]


def _chunks(items: list[int]) -> Iterable[list[int]]:
    for i in range(0, len(items), _CHUNK):
        yield items[i: i + _CHUNK]


def rekey_all(conn: Connection, old_key: str, new_key: str) -> RekeyCount:
    """Every row keyed ``old_key`` moves to ``new_key`` (the whole person moves: a merge,
    or a local patient that was alone under its key)."""
    n = RekeyCount()
    n.resources = conn.execute(update(R).where(R.c.patient_key == old_key).values(patient_key=new_key)).rowcount
    n.versions = conn.execute(update(V).where(V.c.patient_key == old_key).values(patient_key=new_key)).rowcount
    for table in ALL_INDEX_TABLES:
        n.index_rows += conn.execute(
            update(table).where(table.c.patient_key == old_key).values(patient_key=new_key)
        ).rowcount
    return n


def _ref(content: bytes | None) -> str | None:
    return patient_of(orjson.loads(content)) if content is not None else None


def _via(content: bytes) -> tuple[str, ...]:
    ids, via = patient_refs(orjson.loads(content))
    return () if ids else via


def _following(conn: Connection, moved: list[int], followers: dict[int, tuple[str, ...]]) -> list[int]:
    """Of ``followers`` (pk -> ``Type/id`` references it is keyed through), those whose
    reference names a moved resource, transitively."""
    if not followers:
        return []
    names: dict[int, str] = {}
    for chunk in _chunks(sorted(set(moved) | set(followers))):
        names.update((pk, f"{t}/{i}") for pk, t, i in conn.execute(
            select(R.c.pk, R.c.res_type, R.c.res_id).where(R.c.pk.in_(chunk))))
    gone = {names[pk] for pk in moved if pk in names}
    out: list[int] = []
    while True:
        more = [pk for pk, via in followers.items() if pk not in out and gone.intersection(via)]
        if not more:
            return out
        out += more
        gone.update(names[pk] for pk in more)


def rekey_patients(conn: Connection, old_key: str, patient_ids: Iterable[str], new_key: str) -> RekeyCount:
    """Rows keyed ``old_key`` that are about one of ``patient_ids`` move to ``new_key``;
    rows of the person's other patients stay."""
    moving = set(patient_ids)
    n = RekeyCount()
    # Versions first: they also tell tombstones which patient they were about.
    version_rows = conn.execute(
        select(V.c.pk, V.c.resource_pk, V.c.version_id, V.c.content).where(V.c.patient_key == old_key)
    ).all()
    last_ref: dict[int, tuple[int, str | None]] = {}
    version_refs: dict[int, str | None] = {}
    for pk, resource_pk, version_id, content in sorted(version_rows, key=lambda r: (r[1], r[2])):
        ref = _ref(content)
        if ref is None and content is None:
            ref = last_ref.get(resource_pk, (0, None))[1]
        version_refs[pk] = ref
        if content is not None:
            last_ref[resource_pk] = (version_id, ref)

    resource_rows = conn.execute(
        select(R.c.pk, R.c.content).where(R.c.patient_key == old_key)
    ).all()
    moved_pks: list[int] = []
    followers: dict[int, tuple[str, ...]] = {}  # pk -> the references its key came through
    for pk, content in resource_rows:
        if content is not None and _ref(content) is None:
            via = _via(content)
            if via:
                followers[pk] = via
        if content is not None:
            ref = _ref(content)
        elif pk in last_ref:
            ref = last_ref[pk][1]
        else:  # tombstone whose versions are keyed otherwise: ask its last version with content
            last = conn.execute(
                select(V.c.content).where(V.c.resource_pk == pk, V.c.content.is_not(None))
                .order_by(V.c.version_id.desc()).limit(1)
            ).scalar()
            ref = _ref(last)
        if ref in moving:
            moved_pks.append(pk)

    moved_versions = [pk for pk, ref in version_refs.items() if ref in moving]
    following = _following(conn, moved_pks, followers)
    moved_pks += following
    moved_versions += [pk for pk, resource_pk, _, content in version_rows
                       if resource_pk in following and content is not None]
    for chunk in _chunks(moved_pks):
        n.resources += conn.execute(
            update(R).where(R.c.pk.in_(chunk), R.c.patient_key == old_key).values(patient_key=new_key)
        ).rowcount
        for table in ALL_INDEX_TABLES:
            n.index_rows += conn.execute(
                update(table).where(table.c.resource_pk.in_(chunk), table.c.patient_key == old_key)
                .values(patient_key=new_key)
            ).rowcount
    for chunk in _chunks(sorted(moved_versions)):
        n.versions += conn.execute(
            update(V).where(V.c.pk.in_(chunk), V.c.patient_key == old_key).values(patient_key=new_key)
        ).rowcount
    return n
