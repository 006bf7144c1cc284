"""The node's public ingest functions: every feed (``hie load``, SS-MIX2, MLLP, DICOM,
documents) ends in the same transaction processing as the REST API, as the explicit
system principal, so validation, labeling, indexing and audit are identical for every
source (ARCHITECTURE.md, "Ingest").

Nothing is dropped silently: an item that cannot be ingested is kept in the
``ingest_failure`` table (the dead-letter store) with its payload and the error, listed
by ``hie ingest failures`` and replayed by ``hie ingest replay``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update

from hie.errors import FhirError
from hie.interactions import bundle as bundle_mod
from hie.principal import SYSTEM, Principal
from hie.storage.db import write_tx
from hie.storage.tables import ingest_failure as F


def ingest_bundle(
    node: Any, bundle: dict[str, Any], *, source: str, principal: Principal = SYSTEM,
    return_resources: bool = False,
) -> dict[str, Any]:
    """Process a transaction or batch Bundle; return the response Bundle as a dict.

    ``source`` names where the data came from (file path, ``mllp:<control id>``); it is
    written to ``meta.source`` of resources that do not carry one.
    Raises :class:`hie.errors.FhirError` (for a transaction, nothing was written).
    """
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") != "Binary":
            meta = res.setdefault("meta", {})
            if isinstance(meta, dict) and not meta.get("source"):
                meta["source"] = source
    with node.context(
        principal, write=True, prefer_return="representation" if return_resources else "minimal"
    ) as ctx:
        result = bundle_mod.process(ctx, bundle)
    return orjson.loads(orjson.dumps(result.body))


@dataclass
class Failure:
    pk: int
    received: int
    channel: str
    source: str
    payload: bytes
    error: str
    status: str
    attempts: int
    last_attempt: int


def record_failure(node: Any, *, channel: str, source: str, payload: bytes, error: str) -> int:
    now = node.clock.now_us()
    with write_tx(node.engine) as conn:
        return conn.execute(
            insert(F).returning(F.c.pk),
            {"received": now, "channel": channel, "source": source, "payload": payload, "error": error,
             "status": "failed", "attempts": 1, "last_attempt": now},
        ).scalar_one()


def list_failures(node: Any, *, status: str | None = "failed", channel: str | None = None) -> list[Failure]:
    stmt = select(*F.c).order_by(F.c.pk)
    if status:
        stmt = stmt.where(F.c.status == status)
    if channel:
        stmt = stmt.where(F.c.channel == channel)
    with node.engine.connect() as conn:
        return [Failure(*row) for row in conn.execute(stmt)]


def get_failure(node: Any, pk: int) -> Failure | None:
    with node.engine.connect() as conn:
        row = conn.execute(select(*F.c).where(F.c.pk == pk)).first()
    return Failure(*row) if row else None


def mark_replayed(node: Any, pk: int, *, ok: bool, error: str | None = None) -> None:
    now = node.clock.now_us()
    values: dict[str, Any] = {"status": "replayed" if ok else "failed", "attempts": F.c.attempts + 1,
                              "last_attempt": now}
    if error:
        values["error"] = error
    with write_tx(node.engine) as conn:
        conn.execute(update(F).where(F.c.pk == pk).values(**values))


def error_text(err: Exception) -> str:
    if isinstance(err, FhirError):
        return "; ".join(
            f"{i.diagnostics}" + (f" @ {', '.join(i.expression)}" if i.expression else "") for i in err.issues
        )
    return f"{type(err).__name__}: {err}"
