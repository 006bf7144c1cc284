"""Database access for the identity tables (:mod:`hie.identity.tables`).

Small functions over a SQLAlchemy ``Connection``, used by :mod:`hie.identity.service`
inside the caller's transaction: persons and links (the regional master patient index),
persisted blocking keys for DB-backed candidate retrieval for ``Patient/$match``
(https://hl7.org/fhir/R4/patient-operation-match.html; the in-memory reference is
:class:`hie.identity.index.MatchIndex`), the review queue and the event log.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import Connection, and_, delete, insert, literal, or_, select, text, union_all, update

from hie.identity.tables import identity_block as B
from hie.identity.tables import identity_event as E
from hie.identity.tables import identity_link as L
from hie.identity.tables import identity_person as P
from hie.identity.tables import identity_review as Q
from hie.search.tables import search_token as T
from hie.storage.tables import resource as R


def new_person_key() -> str:
    return "rp-" + uuid.uuid4().hex


def insert_ignore(conn: Connection, table: Any, values: dict[str, Any]) -> int:
    """INSERT ... ON CONFLICT DO NOTHING on both dialects; returns the rows inserted."""
    from sqlalchemy.dialects import postgresql, sqlite

    stmt: Any = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(table)
    return conn.execute(stmt.values(**values).on_conflict_do_nothing()).rowcount


def advisory_lock(conn: Connection, key: int) -> None:
    """A transaction-level advisory lock on PostgreSQL (SQLite write transactions are serial)."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


# --- persons and links -----------------------------------------------------------------


@dataclass(frozen=True)
class Person:
    person_key: str
    regional_id: str | None
    has_patient: bool
    status: str
    merged_into: str | None


@dataclass(frozen=True)
class Link:
    patient_id: str
    person_key: str
    role: str
    method: str
    linked_by: str | None
    linked_at: int
    score: float | None


def person(conn: Connection, key: str) -> Person | None:
    row = conn.execute(select(P.c.person_key, P.c.regional_id, P.c.has_patient, P.c.status, P.c.merged_into)
                       .where(P.c.person_key == key)).first()
    return Person(*row) if row else None


def persons_by_regional_id(conn: Connection, regional_id: str) -> list[Person]:
    rows = conn.execute(select(P.c.person_key, P.c.regional_id, P.c.has_patient, P.c.status, P.c.merged_into)
                        .where(P.c.regional_id == regional_id)).all()
    return [Person(*r) for r in rows]


def merged_into(conn: Connection, key: str) -> list[str]:
    return list(conn.execute(select(P.c.person_key).where(P.c.merged_into == key, P.c.status == "merged"))
                .scalars())


def create_person(conn: Connection, key: str, now: int, regional_id: str | None = None) -> None:
    conn.execute(insert(P), {"person_key": key, "regional_id": regional_id, "has_patient": False,
                             "status": "active", "merged_into": None, "created": now})


def update_person(conn: Connection, key: str, **values: Any) -> None:
    conn.execute(update(P).where(P.c.person_key == key).values(**values))


def link(conn: Connection, patient_id: str) -> Link | None:
    row = conn.execute(select(*L.c).where(L.c.patient_id == patient_id)).first()
    return Link(*row) if row else None


def links(conn: Connection, patient_ids: Iterable[str]) -> dict[str, Link]:
    ids = list(dict.fromkeys(patient_ids))
    out: dict[str, Link] = {}
    for i in range(0, len(ids), 500):
        for row in conn.execute(select(*L.c).where(L.c.patient_id.in_(ids[i: i + 500]))):
            out[row[0]] = Link(*row)
    return out


def person_key_of(conn: Connection, patient_id: str) -> str | None:
    return conn.execute(select(L.c.person_key).where(L.c.patient_id == patient_id)).scalar()


def vouched_members(conn: Connection, key: str) -> list[str]:
    """Local Patient ids linked to person ``key`` by a link that is not a scored ``auto``
    link (own record, staff review, counter identification, merge): the records that show a
    facility holds this person (consent authorship, :mod:`hie.enforcement.writes`)."""
    return list(conn.execute(select(L.c.patient_id).where(
        L.c.person_key == key, L.c.role == "local", L.c.method != "auto")).scalars())


def members(conn: Connection, key: str, role: str | None = "local") -> list[Link]:
    """Links of a person, oldest first (``role`` None: local and regional)."""
    stmt = select(*L.c).where(L.c.person_key == key)
    if role:
        stmt = stmt.where(L.c.role == role)
    return [Link(*r) for r in conn.execute(stmt.order_by(L.c.linked_at, L.c.patient_id))]


def ensure_own_person(conn: Connection, patient_id: str, now: int) -> str:
    """The person key of ``patient_id``, creating a person of its own if it has none.
    Safe against a concurrent transaction doing the same (the link row decides)."""
    key = new_person_key()
    if insert_ignore(conn, L, {"patient_id": patient_id, "person_key": key, "role": "local", "method": "own",
                               "linked_by": None, "linked_at": now, "score": None}):
        create_person(conn, key, now)
        return key
    found = person_key_of(conn, patient_id)
    assert found is not None
    return found


def set_link(conn: Connection, patient_id: str, key: str, *, method: str, by: str | None, now: int,
             score: float | None = None, role: str = "local") -> None:
    done = conn.execute(update(L).where(L.c.patient_id == patient_id).values(
        person_key=key, method=method, linked_by=by, linked_at=now, score=score, role=role)).rowcount
    if not done:
        conn.execute(insert(L), {"patient_id": patient_id, "person_key": key, "role": role, "method": method,
                                 "linked_by": by, "linked_at": now, "score": score})


def regional_ids_among(conn: Connection, patient_ids: Iterable[str]) -> set[str]:
    ids = list(patient_ids)
    if not ids:
        return set()
    return set(conn.execute(select(L.c.patient_id).where(L.c.patient_id.in_(ids), L.c.role == "regional"))
               .scalars())


# --- facts of the stored Patient rows (the resource table, read for identity decisions) ---


def custodians(conn: Connection, patient_ids: Iterable[str]) -> dict[str, str | None]:
    """Custodian facility of each current (not deleted) Patient among ``patient_ids``.
    No access predicate: callers decide with it only after the caller's own repository
    showed the record, or for the system principal."""
    ids = list(dict.fromkeys(patient_ids))
    out: dict[str, str | None] = {}
    for i in range(0, len(ids), 500):
        rows = conn.execute(select(R.c.res_id, R.c.custodian).where(
            R.c.res_type == "Patient", R.c.res_id.in_(ids[i: i + 500]), R.c.deleted.is_(False)))
        out.update({pid: code for pid, code in rows})
    return out


def identifier_system_visible(conn: Connection, system: str, access: Any) -> bool:
    """Whether a Patient visible under ``access`` (the caller's predicate) has an
    identifier in ``system``."""
    return conn.execute(
        select(T.c.resource_pk).join(R, R.c.pk == T.c.resource_pk).where(
            T.c.res_type == "Patient", T.c.param == "identifier", T.c.system == system,
            R.c.deleted.is_(False), access(R)).limit(1)).first() is not None


# --- blocking keys -----------------------------------------------------------------------


def replace_blocks(conn: Connection, patient_id: str, resource_pk: int, keys: Iterable[str]) -> None:
    conn.execute(delete(B).where(B.c.patient_id == patient_id, B.c.source == "demographics"))
    rows = [{"key": k[:300], "patient_id": patient_id, "resource_pk": resource_pk, "source": "demographics"}
            for k in sorted(set(keys))]
    if rows:
        conn.execute(insert(B), rows)


def add_verified_block(conn: Connection, patient_id: str, resource_pk: int, key: str) -> None:
    insert_ignore(conn, B, {"key": key[:300], "patient_id": patient_id, "resource_pk": resource_pk,
                            "source": "verified"})


def verified_keys(conn: Connection, patient_ids: Iterable[str]) -> list[str]:
    ids = list(patient_ids)
    if not ids:
        return []
    return sorted(set(conn.execute(select(B.c.key).where(B.c.patient_id.in_(ids), B.c.source == "verified"))
                      .scalars()))


def delete_blocks(conn: Connection, patient_id: str) -> None:
    conn.execute(delete(B).where(B.c.patient_id == patient_id))


def patients_with_key(conn: Connection, key: str) -> dict[str, int]:
    return dict(conn.execute(select(B.c.patient_id, B.c.resource_pk).where(B.c.key == key)).all())


def candidates(conn: Connection, keys: Iterable[str], max_block: int) -> dict[str, int]:
    """Local patients sharing a blocking key with the probe (patient id -> resource pk).

    One statement: per key, at most ``max_block + 1`` rows; keys that reach the cap (a
    nursing home's phone, a dummy number) are dropped, as in the in-memory index."""
    keys = sorted({k[:300] for k in keys})
    if not keys:
        return {}
    parts = [select(literal(i).label("k"), B.c.patient_id, B.c.resource_pk)
             .where(B.c.key == key).limit(max_block + 1) for i, key in enumerate(keys)]
    stmt = union_all(*[p.subquery().select() for p in parts]) if len(parts) > 1 else parts[0]
    per_key: dict[int, list[tuple[str, int]]] = {}
    for k, pid, pk in conn.execute(stmt):
        per_key.setdefault(k, []).append((pid, pk))
    out: dict[str, int] = {}
    for rows in per_key.values():
        if len(rows) <= max_block:
            out.update(rows)
    return out


# --- review queue ------------------------------------------------------------------------


@dataclass(frozen=True)
class ReviewItem:
    pk: int
    patient_id: str
    candidate_id: str
    score: float
    grade: str
    levels: dict[str, str]
    status: str
    created: int
    decided_by: str | None
    decided_at: int | None


def _item(row: Any) -> ReviewItem:
    return ReviewItem(row.pk, row.patient_id, row.candidate_id, row.score, row.grade, orjson.loads(row.levels),
                      row.status, row.created, row.decided_by, row.decided_at)


def _pair(a: str, b: str) -> Any:
    return or_(and_(Q.c.patient_id == a, Q.c.candidate_id == b), and_(Q.c.patient_id == b, Q.c.candidate_id == a))


def pair_status(conn: Connection, a: str, b: str) -> str | None:
    return conn.execute(select(Q.c.status).where(_pair(a, b)).order_by(Q.c.pk.desc()).limit(1)).scalar()


def not_a_match(conn: Connection, patient_id: str) -> set[str]:
    """Patients that staff decided are not the same person as ``patient_id``."""
    rows = conn.execute(select(Q.c.patient_id, Q.c.candidate_id).where(
        Q.c.status == "not-a-match", or_(Q.c.patient_id == patient_id, Q.c.candidate_id == patient_id)))
    return {b if a == patient_id else a for a, b in rows}


def enqueue(conn: Connection, patient_id: str, candidate_id: str, score: float, grade: str,
            levels: dict[str, str], now: int) -> bool:
    """Propose a pair for review unless the pair was ever proposed or decided."""
    if pair_status(conn, patient_id, candidate_id) is not None:
        return False
    return bool(insert_ignore(conn, Q, {"patient_id": patient_id, "candidate_id": candidate_id, "score": score,
                                        "grade": grade, "levels": orjson.dumps(levels).decode(),
                                        "status": "open", "created": now}))


def record_decision(conn: Connection, a: str, b: str, status: str, by: str, now: int) -> None:
    """Remember a decision on a pair (creating the row if the pair was never proposed)."""
    done = conn.execute(update(Q).where(_pair(a, b)).values(status=status, decided_by=by, decided_at=now)).rowcount
    if not done:
        conn.execute(insert(Q), {"patient_id": a, "candidate_id": b, "score": 0.0, "grade": "certainly-not",
                                 "levels": "{}", "status": status, "created": now, "decided_by": by,
                                 "decided_at": now})


def review_items_in_custody(conn: Connection, facility: str, status: str | None = "open",
                            limit: int = 100) -> list[ReviewItem]:
    """Review items whose two records are both current Patients in ``facility``'s custody."""
    mine = [select(R.c.res_id).where(R.c.res_type == "Patient", R.c.custodian == facility,
                                     R.c.deleted.is_(False), R.c.res_id == col).exists()
            for col in (Q.c.patient_id, Q.c.candidate_id)]
    stmt = select(*Q.c).where(*mine).order_by(Q.c.score.desc(), Q.c.pk).limit(limit)
    if status:
        stmt = stmt.where(Q.c.status == status)
    return [_item(r) for r in conn.execute(stmt)]


def review_item(conn: Connection, pk: int) -> ReviewItem | None:
    row = conn.execute(select(*Q.c).where(Q.c.pk == pk)).first()
    return _item(row) if row else None


def review_items(conn: Connection, status: str | None = "open", limit: int = 100) -> list[ReviewItem]:
    stmt = select(*Q.c).order_by(Q.c.score.desc(), Q.c.pk).limit(limit)
    if status:
        stmt = stmt.where(Q.c.status == status)
    return [_item(r) for r in conn.execute(stmt)]


def open_items_of(conn: Connection, patient_ids: Iterable[str]) -> list[ReviewItem]:
    ids = list(patient_ids)
    if not ids:
        return []
    rows = conn.execute(select(*Q.c).where(Q.c.status == "open", or_(Q.c.patient_id.in_(ids),
                                                                     Q.c.candidate_id.in_(ids))))
    return [_item(r) for r in rows]


def set_review_status(conn: Connection, pk: int, status: str, by: str | None, now: int) -> None:
    conn.execute(update(Q).where(Q.c.pk == pk).values(status=status, decided_by=by, decided_at=now))


# --- event log ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Event:
    pk: int
    at: int
    actor: str
    action: str
    patient_id: str | None
    from_key: str | None
    to_key: str | None
    detail: dict[str, Any]
    reversed_by: int | None


def log_event(conn: Connection, *, at: int, actor: str, action: str, patient_id: str | None,
              from_key: str | None, to_key: str | None, detail: dict[str, Any]) -> int:
    return conn.execute(insert(E).returning(E.c.pk), {
        "at": at, "actor": actor[:128], "action": action, "patient_id": patient_id, "from_key": from_key,
        "to_key": to_key, "detail": orjson.dumps(detail).decode(), "reversed_by": None}).scalar_one()


def _event(row: Any) -> Event:
    return Event(row.pk, row.at, row.actor, row.action, row.patient_id, row.from_key, row.to_key,
                 orjson.loads(row.detail), row.reversed_by)


def event(conn: Connection, pk: int) -> Event | None:
    row = conn.execute(select(*E.c).where(E.c.pk == pk)).first()
    return _event(row) if row else None


def events(conn: Connection, *, patient_id: str | None = None, limit: int = 100) -> list[Event]:
    stmt = select(*E.c).order_by(E.c.pk.desc()).limit(limit)
    if patient_id:
        stmt = stmt.where(E.c.patient_id == patient_id)
    return [_event(r) for r in conn.execute(stmt)]


def mark_reversed(conn: Connection, pk: int, by_event: int) -> None:
    conn.execute(update(E).where(E.c.pk == pk).values(reversed_by=by_event))


def last_link_event(conn: Connection, patient_id: str, to_key: str) -> Event | None:
    row = conn.execute(select(*E.c).where(
        E.c.patient_id == patient_id, E.c.to_key == to_key,
        E.c.action.in_(("auto-link", "review-link", "counter-link"))).order_by(E.c.pk.desc()).limit(1)).first()
    return _event(row) if row else None
