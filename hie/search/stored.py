"""Stored ``SearchParameter`` resources add to or override the official definitions.

A write listener checks each SearchParameter written through the repository (a definition
the registry cannot use is refused with its path) and bumps a version counter in the
``node_setting`` table in the same transaction. Every process compares that version with
the one it loaded, at most every :data:`CHECK_INTERVAL` seconds, and rebuilds its registry
from the vendored definitions plus every active stored SearchParameter when it changed — so
all worker processes agree without a restart. Resources written afterwards are indexed with
the new parameters; ``hie reindex`` indexes the ones already stored.

Spec: https://hl7.org/fhir/R4/searchparameter.html
"""

from __future__ import annotations

import logging
import os
import threading
import time
import weakref
from typing import Any

import orjson
from sqlalchemy import Connection, select

from hie.enforcement.policy import put_setting
from hie.enforcement.tables import node_setting as S
from hie.errors import InvalidResource
from hie.search.registry import DEFINITIONS, SearchRegistry
from hie.storage.tables import resource as R

log = logging.getLogger(__name__)

VERSION_SETTING = "search_parameters_version"
CHECK_INTERVAL = 2.0  # seconds between version checks per process (the watcher thread)
_UNLOADED = "\0unloaded"  # never a stored version


def _fresh_registry() -> SearchRegistry:
    return SearchRegistry.from_files(DEFINITIONS / "search-parameters.json",
                                     DEFINITIONS / "compartmentdefinition-patient.json")


def check_definition(resource: dict[str, Any]) -> None:
    """Refuse a SearchParameter the registry cannot use (as an OperationOutcome with the path).

    Checked on a registry of its own, so a refused or rolled-back definition leaves nothing
    behind (SearchParameter writes are rare; a registry takes ~0.2 s to build)."""
    try:
        added = _fresh_registry().register(dict(resource))
    except ValueError as exc:
        text = str(exc)
        path = text.split(" ", 1)[0] if text.startswith("SearchParameter.") else "SearchParameter"
        raise InvalidResource(f"{text}", expression=[path]) from None
    unsupported = [p for p in added if not p.supported]
    if unsupported:
        p = unsupported[0]
        raise InvalidResource(f"SearchParameter.expression: {p.res_type}.{p.code} cannot be indexed: {p.reason}",
                              expression=["SearchParameter.expression"])


class StoredSearchParameters:
    def __init__(self, node: Any, *, interval: float = CHECK_INTERVAL) -> None:
        self.node = node
        self.interval = interval
        self.loaded: str | None = _UNLOADED
        self.checked = 0.0
        self.lock = threading.Lock()
        self.pending = False  # a SearchParameter was written by this process since the last load
        self._stop = threading.Event()
        self._watcher: threading.Thread | None = None
        self._watcher_pid = 0  # the process the watcher runs in

    def on_write(self, repo: Any, results: list[Any]) -> None:
        """Write listener: check SearchParameters and bump the version in this transaction."""
        touched = False
        for res in results:
            st = res.stored
            if st is None or st.res_type != "SearchParameter":
                continue
            touched = True
            if not st.deleted and st.content is not None:
                body = st.resource()
                if body.get("status") == "active":
                    check_definition(body)
        if touched:
            self.pending = True
            now = repo.clock.now_us()
            put_setting(repo.conn, VERSION_SETTING, str(now), by=repo.principal.name, now=now)

    def ensure_loaded(self) -> None:
        """Before the first request: load the registry and start watching for changes."""
        if self.loaded is _UNLOADED:
            self._reload_now()
        if self._watcher_pid != os.getpid() and not self._stop.is_set():
            with self.lock:  # first request of this process (a forked worker starts its own)
                if self._watcher_pid != os.getpid():
                    self._watcher_pid = os.getpid()
                    self._watcher = threading.Thread(target=_watch, args=(weakref.ref(self), self._stop),
                                                     name="hie-search-parameters", daemon=True)
                    self._watcher.start()

    def after_commit(self) -> None:
        """After a write request: reload if it wrote a SearchParameter (this process at once)."""
        if self.pending:
            self.pending = False
            self._reload_now()

    def stop(self) -> None:
        self._stop.set()
        watcher = self._watcher
        if watcher is not None and watcher is not threading.current_thread():
            watcher.join(timeout=5)

    def _reload_now(self) -> None:
        from hie.storage.db import read_tx

        with read_tx(self.node.engine) as conn:
            self.refresh(conn, force=True)

    def refresh(self, conn: Connection, *, force: bool = False) -> None:
        """Reload the registry if another transaction changed the stored SearchParameters."""
        if not force and time.monotonic() - self.checked < CHECK_INTERVAL:
            return
        version = conn.execute(select(S.c.value).where(S.c.name == VERSION_SETTING)).scalar_one_or_none()
        self.checked = time.monotonic()
        if version is None and self.loaded is _UNLOADED:
            self.loaded = None  # nothing stored: the registry the node started with is right
            return
        if version == self.loaded:
            return
        with self.lock:
            if version == self.loaded:
                return
            rows = conn.execute(select(R.c.content).where(
                R.c.res_type == "SearchParameter", R.c.deleted.is_(False))).scalars().all()
            # read as the node itself: audited
            self.node.system_use("search-parameter-refresh",
                                 f"{len(rows)} stored SearchParameter(s), version {version}")
            active = [orjson.loads(c) for c in rows]
            active = [d for d in active if d.get("status") == "active"]
            # Always built the same way: the vendored definitions, the configuration other
            # capabilities apply (e.g. the reduced AuditEvent index), the stored parameters.
            registry = _fresh_registry()
            for hook in getattr(self.node, "registry_hooks", ()):
                hook(registry)
            for d in active:
                try:
                    registry.register(d)
                except ValueError as exc:  # refused on write; only an old row can get here
                    log.warning("stored SearchParameter %s not used: %s", d.get("id"), exc)
            self.node.registry = registry
            self.loaded = version
            if active:
                log.info("search registry: %d stored SearchParameter(s) in use", len(active))


def _watch(ref: weakref.ReferenceType[StoredSearchParameters], stop: threading.Event) -> None:
    """The watcher thread: check the version every ``interval`` seconds until stopped (or
    the node is gone). A failed check (database restarting) is retried at the next tick."""
    while True:
        stored = ref()
        if stored is None:
            return
        interval = stored.interval
        del stored
        if stop.wait(interval):
            return
        stored = ref()
        if stored is None:
            return
        try:
            stored._reload_now()
        except Exception as exc:  # noqa: BLE001 - keep watching; requests use the loaded registry
            log.debug("search parameter version check failed: %s", exc)
        del stored


def install(node: Any) -> StoredSearchParameters:
    stored = StoredSearchParameters(node)
    node.write_listeners.append(stored.on_write)
    node.stored_search_parameters = stored
    return stored
