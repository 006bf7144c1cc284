"""SS-MIX2 directory import: walk a standardized-storage tree, map and ingest every file.

Implements the ``hie import ssmix2`` behaviour of the project issue "Hospital feeds":
date order (undated records first), condition flags (1 imported, 2 superseded =
skipped, 0 deleted = DELETE of the resources the file had produced), a resumable
state file (one JSON object per import root and facility, written atomically every
few files), idempotent re-runs (unchanged files are not read again; a changed file
is re-mapped and PUT to the same ids), per-file report, dead-letter store for every
file that cannot be mapped or ingested, and a polling watch mode.
Storage layout: SS-MIX2 標準化ストレージ仕様書 Ver. 1.2h, https://www.jami.jp/jamistd/docs/SS-MIX2/

A newer version of an order (same patient, date, kind and order number; later
timestamp) replaces the older one: resources the older file produced and the newer
one no longer does are deleted, so a changed order leaves nothing stale behind.

``workers > 1`` (``hie import ssmix2 --workers``) imports in that many processes. Files
are partitioned by patient (every file of a patient goes to the same process, in the
same date order as a sequential import); the processes work in rounds of
``save_every`` files each, after which the parent merges their state and saves the
state file, so an interrupted import resumes as before. Patients are independent in
the node (their resources, their orders); the shared facility Organization is created
idempotently (a PUT of the same content) by whichever process needs it first.
"""

from __future__ import annotations

import hashlib
import json
import multiprocessing
import os
import time
import zlib
from concurrent.futures import ProcessPoolExecutor
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any
from collections.abc import Callable

from adapters.feed import Feed, describe, record
from adapters.hl7v2.ids import FeedIds
from adapters.hl7v2.mapping import MappingResult, map_message
from adapters.ssmix2.storage import (FLAG_DELETED, FLAG_SUPERSEDED, NO_ORDER, StorageFile, StorageNameError,
                                     parse_path, walk)

STATE_VERSION = 1
CHANNEL = "ssmix2"


@dataclass
class FileResult:
    path: str
    kind: str
    status: str  # mapped | deleted | rejected | superseded | unchanged | stale
    resources: int = 0
    reason: str = ""
    warnings: list[str] = field(default_factory=list)


@dataclass
class ImportReport:
    root: str
    facility: str
    files: list[FileResult] = field(default_factory=list)
    seconds: float = 0.0

    def counts(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for f in self.files:
            out[f.status] = out.get(f.status, 0) + 1
        return out

    def to_json(self) -> dict[str, Any]:
        return {"root": self.root, "facility": self.facility, "seconds": round(self.seconds, 3),
                "counts": self.counts(), "files": [asdict(f) for f in self.files]}


def map_storage_bytes(raw: bytes, path: Path, facility: str, *, ids: FeedIds, root: Path | None = None,
                      strict_patient_id: bool = False) -> MappingResult:
    """Map one storage file's bytes; kind, patient and flag come from its name."""
    if root is not None:
        sf = parse_path(root, path)
    else:
        # Replay: the file is known by its absolute path; take the last six parts.
        parts = path.parts[-6:]
        sf = parse_path(Path(*path.parts[:-6]) if len(path.parts) > 6 else Path("/"), Path(*path.parts[:-6], *parts))
    return map_message(raw, facility=facility, source=str(path), ids=ids, kind=sf.kind,
                       storage_patient_id=sf.patient_id, strict_patient_id=strict_patient_id,
                       delete=sf.flag == FLAG_DELETED)


def default_state_path(root: Path, facility: str) -> Path:
    digest = hashlib.sha256(str(root.resolve()).encode()).hexdigest()[:10]
    base = Path(os.environ.get("HIE_DATA_DIR", ".")) / "ssmix2-state"
    return base / f"{facility}-{digest}.json"


class State:
    """Per-file fingerprints and outcomes, and per-order resource ids (JSON file)."""

    def __init__(self, path: Path, root: Path, facility: str) -> None:
        self.path = path
        self.data: dict[str, Any] = {"version": STATE_VERSION, "root": str(root.resolve()),
                                     "facility": facility, "files": {}, "orders": {}}
        if path.exists():
            loaded = json.loads(path.read_text("utf-8"))
            if loaded.get("version") != STATE_VERSION or loaded.get("facility") != facility:
                raise ValueError(f"state file {path} belongs to another facility or version")
            self.data = loaded
        self.dirty = 0

    def save(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.data, ensure_ascii=False, separators=(",", ":")), "utf-8")
        os.replace(tmp, self.path)
        self.dirty = 0


def _fingerprint(path: Path) -> tuple[int, int]:
    st = path.stat()
    return st.st_size, st.st_mtime_ns


def import_tree(node: Any, root: Path, facility: str, *, state_path: Path | None = None,
                feed: Feed | None = None, strict_patient_id: bool = False, settle_seconds: float = 0.0,
                progress: Callable[[int, int, str], None] | None = None, save_every: int = 50,
                workers: int = 1) -> ImportReport:
    """Import every file under ``root`` once; see the module docstring."""
    root = root.resolve()
    feed = feed or Feed(node)
    state = State(state_path or default_state_path(root, facility), root, facility)
    report = ImportReport(root=str(root), facility=facility)
    t0 = time.perf_counter()
    now = time.time()
    parsed: list[StorageFile] = []
    rejected_names: list[tuple[Path, str]] = []
    for path in walk(root):
        try:
            parsed.append(parse_path(root, path))
        except StorageNameError as err:
            rejected_names.append((path, str(err)))
    files_state = state.data["files"]
    total = len(parsed) + len(rejected_names)
    done = 0

    for path, reason in rejected_names:
        rel = str(path.relative_to(root))
        done += 1
        fp = _fingerprint(path)
        prev = files_state.get(rel)
        if prev and tuple(prev["fp"]) == fp:
            report.files.append(FileResult(rel, "", "unchanged", reason=prev.get("reason", "")))
        else:
            raw = path.read_bytes()
            record(node, channel=CHANNEL, facility=facility, where=str(path), payload=raw, error=reason)
            files_state[rel] = {"fp": list(fp), "status": "rejected", "reason": reason}
            state.dirty += 1
            report.files.append(FileResult(rel, "", "rejected", reason=reason))
        if progress:
            progress(done, total, rel)

    ordered = sorted(parsed, key=lambda f: f.sort_key)
    if workers > 1 and len(ordered) > 1:
        for rel in _import_parallel(node, feed, state, ordered, facility, strict_patient_id, settle_seconds, now,
                                    workers, save_every, report):
            done += 1
            if progress:
                progress(done, total, rel)
    else:
        for sf in ordered:
            done += 1
            result = _import_one(node, feed, state, sf, facility, strict_patient_id, settle_seconds, now)
            if result is not None:
                report.files.append(result)
            if state.dirty >= save_every:
                state.save()
            if progress:
                progress(done, total, sf.rel)
    state.save()
    report.seconds = time.perf_counter() - t0
    return report


# -- parallel import ----------------------------------------------------------------------

_worker: dict[str, Any] = {}


class _StateView:
    """The part of :class:`State` that :func:`_import_one` uses, in a worker process."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.dirty = 0


def _init_worker(settings: Any, registry: Any, facility_names: dict[str, str]) -> None:
    from hie.app import Node

    node = Node(settings, registry=registry)
    _worker.update(node=node, feed=Feed(node, facility_names=dict(facility_names)))


def _import_chunk(files: list[StorageFile], files_state: dict[str, Any], orders: dict[str, Any], facility: str,
                  strict_patient_id: bool, settle_seconds: float, now: float,
                  ) -> tuple[list[tuple[str, FileResult | None]], dict[str, Any], dict[str, Any]]:
    """Import one patient partition's next files; return the results and the state entries
    of these files and of their orders (None: the order was removed)."""
    view = _StateView({"files": files_state, "orders": orders})
    out = []
    for sf in files:
        out.append((sf.rel, _import_one(_worker["node"], _worker["feed"], view, sf, facility, strict_patient_id,
                                        settle_seconds, now)))
    keys = {"|".join(sf.order_key) for sf in files}
    return out, {sf.rel: files_state.get(sf.rel) for sf in files}, {k: orders.get(k) for k in keys}


def _import_parallel(node: Any, feed: Feed, state: State, ordered: list[StorageFile], facility: str,
                     strict_patient_id: bool, settle_seconds: float, now: float, workers: int, save_every: int,
                     report: ImportReport) -> Any:
    """Yield each file's ``rel`` as it is done (see the module docstring)."""
    results: dict[str, FileResult] = {}
    files_state, orders = state.data["files"], state.data["orders"]
    partitions: list[list[StorageFile]] = [[] for _ in range(workers)]
    for sf in ordered:  # date order within each partition, as in a sequential import
        prev = files_state.get(sf.rel)
        if prev and tuple(prev["fp"]) == _fingerprint(sf.path):  # as _import_one, without a process
            results[sf.rel] = FileResult(sf.rel, sf.kind, "unchanged", reason=prev.get("reason", ""))
            yield sf.rel
            continue
        partitions[zlib.crc32(sf.patient_id.encode()) % workers].append(sf)
    partitions = [p for p in partitions if p]
    if not partitions:
        report.files.extend(results[sf.rel] for sf in ordered if sf.rel in results)
        return
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=len(partitions), mp_context=ctx, initializer=_init_worker,
                             initargs=(node.settings, node.registry, feed.facility_names)) as pool:
        step = max(1, save_every)
        for start in range(0, max(len(p) for p in partitions), step):
            futures = []
            for part in partitions:
                chunk = part[start:start + step]
                if chunk:
                    keys = {"|".join(sf.order_key) for sf in chunk}
                    futures.append(pool.submit(
                        _import_chunk, chunk, {sf.rel: files_state[sf.rel] for sf in chunk if sf.rel in files_state},
                        {k: orders[k] for k in keys if k in orders}, facility, strict_patient_id, settle_seconds,
                        now))
            for fut in futures:
                out, fstate, ostate = fut.result()
                for rel, res in out:
                    if res is not None:
                        results[rel] = res
                for rel, v in fstate.items():
                    if v is not None:
                        files_state[rel] = v
                for k, v in ostate.items():
                    if v is None:
                        orders.pop(k, None)
                    else:
                        orders[k] = v
                for rel, _ in out:
                    yield rel
            state.save()
    report.files.extend(results[sf.rel] for sf in ordered if sf.rel in results)


def _import_one(node: Any, feed: Feed, state: State | _StateView, sf: StorageFile, facility: str,
                strict_patient_id: bool, settle_seconds: float, now: float) -> FileResult | None:
    files_state = state.data["files"]
    orders = state.data["orders"]
    fp = _fingerprint(sf.path)
    prev = files_state.get(sf.rel)
    if prev and tuple(prev["fp"]) == fp:
        return FileResult(sf.rel, sf.kind, "unchanged", reason=prev.get("reason", ""))
    if settle_seconds and now - sf.path.stat().st_mtime < settle_seconds:
        return None  # still being written by the EHR: next round
    order_key = "|".join(sf.order_key)
    if sf.flag == FLAG_SUPERSEDED:
        files_state[sf.rel] = {"fp": list(fp), "status": "superseded"}
        state.dirty += 1
        return FileResult(sf.rel, sf.kind, "superseded", reason="condition flag 2: a newer file holds this order")
    current = orders.get(order_key)
    if current and current["ts"] > sf.timestamp and sf.flag != FLAG_DELETED:
        files_state[sf.rel] = {"fp": list(fp), "status": "stale"}
        state.dirty += 1
        return FileResult(sf.rel, sf.kind, "stale",
                          reason=f"an imported file for this order is newer ({current['ts']})")
    raw = sf.path.read_bytes()
    try:
        result = map_message(raw, facility=facility, source=str(sf.path), ids=feed.ids, kind=sf.kind,
                             storage_patient_id=sf.patient_id, strict_patient_id=strict_patient_id,
                             delete=sf.flag == FLAG_DELETED)
        urls = [e["request"]["url"] for e in result.bundle["entry"]]
        if sf.flag != FLAG_DELETED and current and sf.order != NO_ORDER or (
                sf.flag != FLAG_DELETED and current and sf.order == NO_ORDER):
            stale_urls = [u for u in current["urls"] if u not in urls and not u.startswith("Patient/")]
            if stale_urls:
                result.bundle["entry"] = result.bundle["entry"] + [
                    {"request": {"method": "DELETE", "url": u}} for u in stale_urls]
        feed.submit(result, facility=facility, source=str(sf.path))
    except Exception as err:  # noqa: BLE001 - every failure is reported and kept
        reason = describe(err)
        record(node, channel=CHANNEL, facility=facility, where=str(sf.path), payload=raw, error=reason)
        files_state[sf.rel] = {"fp": list(fp), "status": "rejected", "reason": reason}
        state.dirty += 1
        return FileResult(sf.rel, sf.kind, "rejected", reason=reason)
    if sf.flag == FLAG_DELETED:
        orders.pop(order_key, None)
        status = "deleted"
    else:
        orders[order_key] = {"ts": sf.timestamp, "urls": urls}
        status = "mapped"
    files_state[sf.rel] = {"fp": list(fp), "status": status, "resources": result.resource_count}
    state.dirty += 1
    return FileResult(sf.rel, sf.kind, status, resources=result.resource_count, warnings=result.warnings)


def watch(node: Any, root: Path, facility: str, *, interval: float = 5.0, settle_seconds: float = 2.0,
          rounds: int | None = None, on_report: Callable[[ImportReport], None] | None = None, **kwargs: Any) -> None:
    """Poll the tree and import new or changed files as the EHR writes them.

    A file is taken once its modification time is ``settle_seconds`` old, so that a
    file still being written is not read half-way. ``rounds`` bounds the loop (tests).
    """
    feed = kwargs.pop("feed", None) or Feed(node)
    n = 0
    while rounds is None or n < rounds:
        report = import_tree(node, root, facility, feed=feed, settle_seconds=settle_seconds, **kwargs)
        if on_report:
            on_report(report)
        n += 1
        if rounds is not None and n >= rounds:
            break
        time.sleep(interval)
