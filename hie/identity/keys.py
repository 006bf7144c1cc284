"""Patient-key resolution: which regional person a Patient id belongs to.

:func:`resolve` is the storage layer's ``patient_key`` resolver (local Patient id ->
person key; a Patient the node has not seen gets a person of its own, so every clinical
row always carries a key). :func:`person_of` follows merges to the surviving person.
Only identity tables are read here (:mod:`hie.identity.store`).
"""

from __future__ import annotations

from typing import Final

from sqlalchemy import Connection

from hie.errors import NotFound
from hie.identity import store

_LOCK_ID: Final = 0x1D_E7_17  # pg_advisory_xact_lock key of identity changes


def lock(conn: Connection) -> None:
    """Serialize identity changes on PostgreSQL (SQLite write transactions already are)."""
    store.advisory_lock(conn, _LOCK_ID)


def resolve(conn: Connection, patient_id: str, now: int) -> str:
    """The person key of a local (or regional) Patient id, creating a person if needed."""
    key = store.person_key_of(conn, patient_id)
    return key if key is not None else store.ensure_own_person(conn, patient_id, now)


def active(conn: Connection, key: str) -> str:
    """Follow merges to the surviving person."""
    seen = set()
    while True:
        p = store.person(conn, key)
        if p is None:
            raise NotFound(f"regional person {key} is not known")
        if p.status != "merged" or not p.merged_into or key in seen:
            return key
        seen.add(key)
        key = p.merged_into


def person_of(conn: Connection, pid: str) -> str:
    """Person key for a Patient id (local or regional), following merges."""
    key = store.person_key_of(conn, pid)
    if key is None:
        raise NotFound(f"Patient/{pid} is not known")
    return active(conn, key)


def same_person(conn: Connection, patient_ids: list[str]) -> list[str]:
    """Every Patient id (local and regional) of the persons of ``patient_ids``."""
    keys = {person_of(conn, pid) for pid in patient_ids if store.person_key_of(conn, pid)}
    out: list[str] = []
    for key in sorted(keys):
        out.extend(ln.patient_id for ln in store.members(conn, key, role=None))
    return list(dict.fromkeys(out))
