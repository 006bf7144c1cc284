"""Emergency declarations and the region-wide disaster switch, as named functions.

The enforcement operations (:mod:`hie.enforcement.operations`) hold no SQL: they call
these, which read and write the ``break_glass`` and ``node_setting`` tables on the
connection of the caller's repository (its transaction). Resource data is never read
here; the access predicate (:mod:`hie.enforcement.policy`) reads the same tables.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import ColumnElement, insert, select

from hie.enforcement.policy import DISASTER_SETTING, disaster_mode_on, put_setting
from hie.enforcement.tables import break_glass as BG
from hie.principal import Principal


def declare(repo: Any, principal: Principal, *, key: str, patient_id: str, reason: str, principal_key: str,
            declared_at: int, expires_at: int, kind: str = "break-glass") -> None:
    """Store one declaration (it opens the emergency dataset of ``key`` until ``expires_at``)."""
    repo.conn.execute(insert(BG), {
        "principal": principal_key, "organization": principal.organization_id, "patient_key": key,
        "patient_id": patient_id, "reason": reason[:2000], "declared_at": declared_at,
        "expires_at": expires_at, "kind": kind,
    })


def declarations(repo: Any, *, patient_key: str | None = None, since_us: int | None = None) -> list[dict[str, Any]]:
    """Declarations about ``patient_key`` (or all), declared at or after ``since_us``, newest first."""
    conds: list[ColumnElement[bool]] = []
    if patient_key is not None:
        conds.append(BG.c.patient_key == patient_key)
    if since_us is not None:
        conds.append(BG.c.declared_at >= since_us)
    stmt = select(BG).where(*conds).order_by(BG.c.declared_at.desc())
    return [dict(r) for r in repo.conn.execute(stmt).mappings()]


def set_disaster_mode(repo: Any, on: bool, *, by: str, now: int) -> None:
    put_setting(repo.conn, DISASTER_SETTING, "on" if on else "off", by=by, now=now)


def disaster_mode(repo: Any) -> bool:
    return disaster_mode_on(repo.conn)
