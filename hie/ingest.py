"""The node's public ingest functions: every feed (``hie load``, SS-MIX2, MLLP, DICOM,
documents) ends in the same transaction processing as the REST API, as the explicit
system principal, so validation, labeling, indexing and audit are identical for every
source (ARCHITECTURE.md, "Ingest").

Nothing is dropped silently: an item that cannot be ingested is kept in the
``ingest_failure`` table (the dead-letter store) with its payload and the error, listed
by ``hie ingest failures`` and replayed by ``hie ingest replay``.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

import orjson
from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError, OperationalError

from hie.errors import FhirError, VersionConflict
from hie.interactions import bundle as bundle_mod
from hie.principal import SYSTEM, Principal
from hie.storage.db import write_tx
from hie.storage.repository import WriteNeeded

try:
    import fcntl
except ImportError:  # pragma: no cover - not POSIX
    fcntl = None  # type: ignore[assignment]
from hie.storage.tables import ingest_failure as F

log = logging.getLogger(__name__)


#: A transaction that lost a race (two loaders creating the same shared resource, a
#: PostgreSQL deadlock or serialization failure) is run again this many times.
RETRIES = 3
_RETRY_SQLSTATES = frozenset({"40P01", "40001"})  # deadlock_detected, serialization_failure


def ingest_bundle(
    node: Any, bundle: dict[str, Any], *, source: str, principal: Principal = SYSTEM,
    return_resources: bool = False,
) -> dict[str, Any]:
    """Process a transaction or batch Bundle; return the response Bundle as a dict.

    ``source`` names where the data came from (file path, ``mllp:<control id>``); it is
    written to ``meta.source`` of resources that do not carry one.
    Raises :class:`hie.errors.FhirError` (for a transaction, nothing was written).

    A transaction is prepared before its write transaction begins: parsed, validated,
    and the search-index rows of entries whose content the Bundle fixes extracted
    (:func:`hie.interactions.bundle.prepare`), skipping entries equal to what is stored
    (they will be no-ops). The write transaction then holds the database's write lock
    only for the database work. A transaction that fails on a concurrent write of the
    same resource by another loader is retried (:data:`RETRIES`).

    Each call as the system principal is audited (one AuditEvent naming ``source``).
    """
    if principal.is_system:
        node.system_use("ingest", f"{bundle.get('type')} Bundle from {source}")
    for entry in bundle.get("entry") or ():
        res = entry.get("resource") if isinstance(entry, dict) else None
        if isinstance(res, dict) and res.get("resourceType") != "Binary":
            meta = res.setdefault("meta", {})
            if isinstance(meta, dict) and not meta.get("source"):
                meta["source"] = source
    base_url = node.settings.base_url or "http://localhost:8080/fhir"
    pristine = orjson.dumps(bundle) if bundle.get("type") == "transaction" else None
    attempt = 0
    prefer = "representation" if return_resources else "minimal"
    while True:
        prepared = bundle_mod.prepare(bundle, base_url=base_url)
        if prepared is not None and prepared.final:
            with node.context(principal, write=False, prefer_return=prefer) as rctx:
                current = rctx.repo.current_many(prepared.keys())
                unchanged = prepared.extract(node.registry, current)
                if unchanged == len(prepared.entries):
                    # Every entry is a PUT of what is stored: a no-op transaction is a read
                    # (same answer, same snapshot), so it needs no write lock. The
                    # repository stops before writing if something did change after all.
                    rctx.repo.read_only = True
                    try:
                        result = bundle_mod.process(rctx, bundle, prepared)
                        return orjson.loads(orjson.dumps(result.body))
                    except WriteNeeded:
                        bundle.clear()
                        bundle.update(orjson.loads(pristine))  # type: ignore[arg-type]
                        prepared = bundle_mod.prepare(bundle, base_url=base_url)
                        assert prepared is not None
                        prepared.extract(node.registry, None)
        try:
            with writer_turn(node), node.context(principal, write=True, prefer_return=prefer) as ctx:
                result = bundle_mod.process(ctx, bundle, prepared)
            return orjson.loads(orjson.dumps(result.body))
        except (VersionConflict, OperationalError, IntegrityError) as err:
            if pristine is None or attempt >= RETRIES or not _is_race(err):
                raise
            attempt += 1
            log.info("transaction from %s lost a race (%s); retrying (%d/%d)", source, err, attempt, RETRIES)
            bundle.clear()
            bundle.update(orjson.loads(pristine))  # the failed attempt rewrote references in place


def existing(node: Any, keys: Iterable[str], *, principal: Principal = SYSTEM) -> set[str]:
    """Which of the ``Type/id`` keys the node holds (current and not deleted), in one read
    (feeds decide what to create if absent with this instead of a search per key)."""
    pairs = [tuple(k.split("/", 1)) for k in dict.fromkeys(keys) if "/" in k]
    if not pairs:
        return set()
    if principal.is_system:
        node.system_use("ingest", f"existence of {len(pairs)} resource(s) checked by a feed")
    with node.context(principal, write=False) as ctx:
        found = ctx.repo.current_many(pairs)
    return {f"{t}/{i}" for (t, i), st in found.items() if not st.deleted}


_turn_fds: dict[tuple[int, str], int] = {}


@contextmanager
def writer_turn(node: Any) -> Iterator[None]:
    """On SQLite, ingest writers (``hie load --workers``, parallel SS-MIX2 import) take
    turns on an exclusive ``flock`` next to the database before ``BEGIN IMMEDIATE``.
    SQLite's own busy handler polls with sleeps of up to 100 ms, so a waiting writer
    would leave the lock idle for most of that; a blocked ``flock`` wakes the moment
    the lock is released. Other writers (the REST API) still queue on SQLite's lock, so
    correctness never depends on this. PostgreSQL needs no turn-taking."""
    db = node.engine.url.database if node.engine.dialect.name == "sqlite" else None
    if not db or db == ":memory:" or fcntl is None:
        yield
        return
    key = (os.getpid(), db)  # an fd inherited over fork would share the parent's lock
    fd = _turn_fds.get(key)
    if fd is None:
        fd = _turn_fds[key] = os.open(db + ".ingest-lock", os.O_RDWR | os.O_CREAT, 0o600)
    fcntl.flock(fd, fcntl.LOCK_EX)
    try:
        yield
    finally:
        fcntl.flock(fd, fcntl.LOCK_UN)


def _is_race(err: Exception) -> bool:
    if isinstance(err, VersionConflict):
        # Concurrent creation or update; not "written twice in one request" (that repeats).
        return "concurrently" in str(err.issues[0].diagnostics if err.issues else err)
    if isinstance(err, IntegrityError):
        return True
    return getattr(getattr(err, "orig", None), "sqlstate", None) in _RETRY_SQLSTATES


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
