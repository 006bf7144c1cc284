"""The audit recorder: takes an AuditEvent per request off the request path, durably.

Write path (per request): the AuditEvent is built, serialized and appended with one
``write(2)`` to this process's journal file (``<data_dir>/audit-journal/<pid>-<id>.jsonl``,
held under an exclusive ``flock``) before the response is sent. From then on the record
survives a crash of the process (the kernel has it). With ``HIE_AUDIT_SYNC=always`` the
request also waits for ``fdatasync``, so it survives a crash of the machine too, at the
price of one disk flush per request (ADR 0002 compares both).

A background flusher (every :attr:`interval` seconds, or sooner when a batch is full)
swaps the journal for a fresh one, stores the batch as ``AuditEvent`` resources through
the repository (as the system principal, one ``write_batch``) and chains them
(:mod:`hie.audit.chain`) in the same database transaction, then deletes the old
journal. If the process dies before that, the journal stays; any process of the node
replays journals whose lock is free (at start and periodically). Replays are idempotent:
event ids are fixed when the event is built, a stored identical AuditEvent is a no-op
and a chained id is not chained again.

Spec: https://profiles.ihe.net/ITI/BALP/ (what is recorded); ADR docs/adr/0002-auth-and-audit.md (why this way)
"""

from __future__ import annotations

import atexit
import fcntl
import logging
import os
import threading
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import orjson

from hie.audit import chain
from hie.principal import SYSTEM
from hie.storage.db import write_tx
from hie.storage.repository import Write

log = logging.getLogger("hie.audit")



class AuditRecorder:
    def __init__(self, node: Any, *, interval: float | None = 0.2, max_batch: int = 2000,
                 sync: str | None = None, store: bool | None = None) -> None:
        from hie.auth.service import AuthService

        self.node = node
        self.dir = Path(node.settings.data_dir) / "audit-journal"
        self.dir.mkdir(parents=True, exist_ok=True)
        self.witness = Path(node.settings.data_dir) / "audit-checkpoints.log"
        self.keys = AuthService.for_node(node).keys
        self.interval = interval
        self.max_batch = max_batch
        self.sync = (sync or os.environ.get("HIE_AUDIT_SYNC", "process")).lower()
        #: False: this process only writes and rotates journals; a separate flusher
        #: process (``hie audit flusher``) stores them, so the serving process spends
        #: no CPU on storing, indexing and chaining (HIE_AUDIT_FLUSHER=external).
        self.store = store if store is not None else os.environ.get("HIE_AUDIT_FLUSHER", "thread") != "external"
        self._lock = threading.Lock()
        self._flush_lock = threading.Lock()
        self._pending: list[dict[str, Any]] = []
        self._fd: int | None = None
        self._path: Path | None = None
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._last_recover = 0.0
        if self.store:
            self.recover()
        if interval is not None:
            atexit.register(self.close)

    @classmethod
    def for_node(cls, node: Any) -> AuditRecorder:
        return node.service("audit", lambda: cls(node))

    # -- request path ----------------------------------------------------------------------

    def record(self, event: dict[str, Any]) -> None:
        line = orjson.dumps(event) + b"\n"
        with self._lock:
            if self._fd is None:
                self._open_journal()
            fd = self._fd
            assert fd is not None
            os.write(fd, line)
            self._pending.append(event)
            full = len(self._pending) >= self.max_batch
        if self.sync == "always":
            os.fdatasync(fd)
        if self.interval is not None:
            if self._thread is None:
                self._start()
            if full:
                self._wake.set()

    def _open_journal(self) -> None:
        path = self.dir / f"{os.getpid()}-{uuid.uuid4().hex[:12]}.jsonl"
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        fcntl.flock(fd, fcntl.LOCK_EX)
        self._fd, self._path = fd, path

    # -- flushing --------------------------------------------------------------------------

    @contextmanager
    def quiesced(self) -> Iterator[None]:
        """Flush, and keep the background flusher out until the block ends (used by test
        fixtures that truncate tables between tests)."""
        with self._flush_lock:
            self._flush_unlocked()
            yield

    def flush(self) -> int:
        """Store and chain what is pending; returns the number of events stored."""
        with self._flush_lock:
            return self._flush_unlocked()

    def _flush_unlocked(self) -> int:
        with self._lock:
            batch, self._pending = self._pending, []
            fd, path = self._fd, self._path
            self._fd = self._path = None
        if fd is None:
            return 0
        if not self.store:
            os.close(fd)  # rotate: the closed journal is the external flusher's to store
            return 0
        try:
            if batch:
                self._store(batch)
            assert path is not None
            path.unlink()
        except Exception:  # noqa: BLE001 - keep the journal; recover() retries it
            log.exception("audit flush failed; %d events stay in %s for replay", len(batch), path)
            return 0
        finally:
            os.close(fd)  # releases the flock: the journal is now recoverable by anyone
        return len(batch)

    def _store(self, events: list[dict[str, Any]]) -> None:
        with write_tx(self.node.engine) as conn:
            repo = self.node.repository(conn, SYSTEM)
            repo.write_batch([Write("update", "AuditEvent", e["id"], e, method="POST") for e in events])
            chain.append(conn, events, now_us=self.node.clock.now_us(), signer=self.keys.audit_signing(),
                         witness=self.witness)

    def recover(self) -> int:
        """Replay journals left by processes that died (their lock is free)."""
        done = 0
        for path in sorted(self.dir.glob("*.jsonl")):
            if path == self._path:
                continue
            try:
                fd = os.open(path, os.O_RDWR)
            except FileNotFoundError:
                continue
            try:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # a live process owns it
                if not path.exists():
                    continue
                events = []
                with open(fd, "rb", closefd=False) as f:
                    for line in f.read().split(b"\n"):
                        if not line.strip():
                            continue
                        try:
                            events.append(orjson.loads(line))
                        except orjson.JSONDecodeError:
                            log.warning("audit journal %s: skipping a torn line", path.name)
                for i in range(0, len(events), self.max_batch):
                    self._store(events[i:i + self.max_batch])
                path.unlink()
                done += len(events)
            except Exception:  # noqa: BLE001
                log.exception("audit journal %s could not be replayed; kept", path)
            finally:
                os.close(fd)
        if done and self.interval is None:
            log.warning("replayed %d audit events from journals of stopped processes", done)
        self._last_recover = time.monotonic()
        return done

    # -- background thread -----------------------------------------------------------------

    def _start(self) -> None:
        with self._lock:
            if self._thread is not None:
                return
            self._thread = threading.Thread(target=self._run, name="hie-audit-flusher", daemon=True)
            self._thread.start()

    def _run(self) -> None:
        assert self.interval is not None
        while not self._stop.is_set():
            self._wake.wait(self.interval)
            self._wake.clear()
            try:
                self.flush()
                if self.store and time.monotonic() - self._last_recover > 30:
                    self.recover()
            except Exception:  # noqa: BLE001
                log.exception("audit flusher")

    def run_external(self, stop: threading.Event | None = None) -> None:
        """The external flusher's loop: store journals that their writers have closed."""
        stop = stop or threading.Event()
        while not stop.is_set():
            try:
                self.recover()
            except Exception:  # noqa: BLE001
                log.exception("audit flusher")
            stop.wait(self.interval or 0.2)

    def close(self) -> None:
        self._stop.set()
        self._wake.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout=10)
        self.flush()
