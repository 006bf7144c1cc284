"""``hie load``: FHIR Bundles, single resources and NDJSON files into the node.

* transaction/batch Bundles are processed as such. By default (``keep_ids``) a
  ``POST`` entry whose ``fullUrl`` is ``urn:uuid:<uuid>`` becomes ``PUT Type/<uuid>``:
  the bundle's stable identity becomes the logical id, so loading the same files twice
  changes nothing (the second load is all no-op updates) and resources repeated across
  bundles (Synthea's shared Organizations and Practitioners) are stored once;
* other Bundles (collection, document, searchset, ...) have their entries stored;
* a single resource is stored with ``PUT`` when it has an id, else ``POST``;
* ``.ndjson`` files are stored in batches of lines.

Every file (or NDJSON line) that fails is reported with its name, line and reason and
kept in the dead-letter store; the rest still loads.

``workers > 1`` loads files in that many processes, each with its own node built from
the node's settings (``hie load --workers``, default: the number of cores). Each
process prepares a transaction (validation, index extraction) outside its database
transaction, so on SQLite the single write lock is held only for the database work.
Files are independent units; a transaction that fails in the parallel phase (for
example because it references a resource another file creates) is not reported yet:
after the parallel phase every such unit is loaded again, one by one in the original
order, and only what fails then is reported and dead-lettered. The result is the same
as a sequential load whenever the sequential load would have succeeded.
"""

from __future__ import annotations

import copy
import multiprocessing
import os
from collections import Counter
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson

from hie.errors import NOOP_CODE, FhirError
from hie.fhir.validate import ID_RE
from hie.ingest import error_text, ingest_bundle, record_failure

NDJSON_BATCH = 500


@dataclass
class LoadReport:
    files: int = 0
    created: Counter[str] = field(default_factory=Counter)
    updated: Counter[str] = field(default_factory=Counter)
    unchanged: Counter[str] = field(default_factory=Counter)
    deleted: Counter[str] = field(default_factory=Counter)
    rejected: list[tuple[str, str]] = field(default_factory=list)  # (where, reason)

    @property
    def stored(self) -> int:
        return sum(self.created.values()) + sum(self.updated.values())

    def merge(self, other: LoadReport) -> None:
        self.files += other.files
        self.created.update(other.created)
        self.updated.update(other.updated)
        self.unchanged.update(other.unchanged)
        self.deleted.update(other.deleted)
        self.rejected.extend(other.rejected)


@dataclass
class _Deferred:
    """A transaction that failed in the parallel phase, to be loaded again sequentially."""

    file: Path
    where: str
    payload: bytes  # the file (JSON) or the batch's lines (NDJSON)
    ndjson: bool


def iter_files(paths: list[Path]) -> Iterator[Path]:
    for p in paths:
        if p.is_dir():
            for f in sorted(p.rglob("*")):
                if f.is_file() and f.suffix.lower() in (".json", ".ndjson"):
                    yield f
        else:
            yield p


def keep_ids(bundle: dict[str, Any]) -> dict[str, Any]:
    out = copy.copy(bundle)
    entries = []
    for e in bundle.get("entry") or []:
        req = (e or {}).get("request") or {}
        full = e.get("fullUrl") or ""
        res = e.get("resource")
        if (req.get("method") == "POST" and full.startswith("urn:uuid:") and not req.get("ifNoneExist")
                and isinstance(res, dict) and ID_RE.match(full[9:])):
            rid = full[9:]
            e = {**e, "resource": {**res, "id": rid},
                 "request": {**req, "method": "PUT", "url": f"{req.get('url', res.get('resourceType'))}/{rid}"}}
        entries.append(e)
    out["entry"] = entries
    return out


def _as_transaction(resources: list[dict[str, Any]]) -> dict[str, Any]:
    entries = []
    for r in resources:
        rtype = r.get("resourceType", "")
        if r.get("id"):
            entries.append({"resource": r, "request": {"method": "PUT", "url": f"{rtype}/{r['id']}"}})
        else:
            entries.append({"resource": r, "request": {"method": "POST", "url": rtype}})
    return {"resourceType": "Bundle", "type": "transaction", "entry": entries}


def _count(report: LoadReport, sent: dict[str, Any], response: dict[str, Any]) -> None:
    for req_e, resp_e in zip(sent.get("entry") or [], response.get("entry") or [], strict=False):
        req = req_e.get("request") or {}
        rtype = (req_e.get("resource") or {}).get("resourceType") or str(req.get("url", "")).split("/")[0].split("?")[0]
        status = str((resp_e.get("response") or {}).get("status", ""))
        if status.startswith("201"):
            report.created[rtype] += 1
        elif status.startswith("204") and req.get("method") == "DELETE":
            report.deleted[rtype] += 1
        elif status.startswith("200"):
            if req.get("method") in ("GET", "HEAD"):
                continue
            # 200 on a write: updated, or unchanged (no-op, flagged with NOOP_CODE).
            if req.get("method") == "POST" or _is_noop(resp_e):
                report.unchanged[rtype] += 1
            else:
                report.updated[rtype] += 1


def _is_noop(resp_e: dict[str, Any]) -> bool:
    outcome = (resp_e.get("response") or {}).get("outcome") or {}
    for issue in outcome.get("issue") or []:
        for coding in (issue.get("details") or {}).get("coding") or []:
            if coding.get("code") == NOOP_CODE:
                return True
    return False


def default_workers() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else (os.cpu_count() or 1)


def load_paths(
    node: Any, paths: list[Path], *, keep_bundle_ids: bool = True,
    progress: Callable[[Path], None] | None = None, workers: int = 1,
) -> LoadReport:
    files = list(iter_files(paths))
    if workers > 1 and len(files) > 1:
        return _load_parallel(node, files, keep_bundle_ids, progress, min(workers, len(files)))
    report = LoadReport()
    for f in files:
        report.merge(_load_file(node, f, keep_bundle_ids, None))
        if progress:
            progress(f)
    return report


def _load_file(node: Any, f: Path, keep_bundle_ids: bool, defer: list[_Deferred] | None) -> LoadReport:
    report = LoadReport(files=1)
    try:
        if f.suffix.lower() == ".ndjson":
            _load_ndjson(node, f, report, defer)
        else:
            _load_json(node, f, report, keep_bundle_ids, defer)
    except OSError as exc:
        report.rejected.append((str(f), f"cannot read: {exc}"))
    return report


# -- parallel loading -----------------------------------------------------------------

_worker_node: Any = None


def _init_worker(settings: Any, registry: Any) -> None:
    global _worker_node
    from hie.app import Node

    _worker_node = Node(settings, registry=registry)


def _worker_load(f: Path, keep_bundle_ids: bool) -> tuple[LoadReport, list[_Deferred]]:
    defer: list[_Deferred] = []
    return _load_file(_worker_node, f, keep_bundle_ids, defer), defer


def _load_parallel(
    node: Any, files: list[Path], keep_bundle_ids: bool, progress: Callable[[Path], None] | None, workers: int,
) -> LoadReport:
    report = LoadReport()
    deferred: dict[int, list[_Deferred]] = {}
    # fork: workers start at once with the modules and the search registry loaded, and
    # callers need no ``if __name__ == "__main__"`` guard; each worker builds its own
    # node (engine, pool) and never touches the parent's connections.
    methods = multiprocessing.get_all_start_methods()
    ctx = multiprocessing.get_context("fork" if "fork" in methods else "spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=ctx, initializer=_init_worker,
                             initargs=(node.settings, node.registry)) as pool:
        futures = {pool.submit(_worker_load, f, keep_bundle_ids): n for n, f in enumerate(files)}
        for fut in as_completed(futures):
            n = futures[fut]
            part, later = fut.result()
            report.merge(part)
            if later:
                deferred[n] = later
            if progress:
                progress(files[n])
    # Second pass, in file order and one at a time: what failed may have depended on
    # another file that was loading concurrently.
    for n in sorted(deferred):
        for d in deferred[n]:
            if d.ndjson:
                batch = [orjson.loads(line) for line in d.payload.split(b"\n")]
                _submit(node, d.file, d.where, _as_transaction(batch), d.payload, report, None)
            else:
                _load_json(node, d.file, report, keep_bundle_ids, None, raw=d.payload)
    return report


def _submit(
    node: Any, f: Path, where: str, bundle: dict[str, Any], payload: bytes, report: LoadReport,
    defer: list[_Deferred] | None = None,
) -> None:
    is_transaction = bundle.get("type") == "transaction"
    try:
        response = ingest_bundle(node, bundle, source=f"file:{f.name}")
    except FhirError as err:
        if defer is not None and is_transaction:
            defer.append(_Deferred(f, where, payload, f.suffix.lower() == ".ndjson"))
            return
        reason = error_text(err)
        report.rejected.append((where, reason))
        record_failure(node, channel="load", source=where, payload=payload, error=reason)
        return
    _count(report, bundle, response)
    for resp_e in response.get("entry") or []:
        outcome = (resp_e.get("response") or {}).get("outcome")
        status = str((resp_e.get("response") or {}).get("status", ""))
        if outcome and not status.startswith("2"):  # batch entries that failed
            reason = "; ".join(i.get("diagnostics", "") for i in outcome.get("issue", []))
            report.rejected.append((where, reason))
            record_failure(node, channel="load", source=where, payload=payload, error=reason)


def _load_json(
    node: Any, f: Path, report: LoadReport, keep_bundle_ids: bool, defer: list[_Deferred] | None = None,
    raw: bytes | None = None,
) -> None:
    raw = f.read_bytes() if raw is None else raw
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError as exc:
        report.rejected.append((str(f), f"invalid JSON: {exc}"))
        record_failure(node, channel="load", source=str(f), payload=raw, error=f"invalid JSON: {exc}")
        return
    if not isinstance(data, dict) or "resourceType" not in data:
        report.rejected.append((str(f), "not a FHIR resource (no resourceType)"))
        record_failure(node, channel="load", source=str(f), payload=raw, error="no resourceType")
        return
    if data["resourceType"] == "Bundle" and data.get("type") in ("transaction", "batch"):
        bundle = keep_ids(data) if keep_bundle_ids else data
    elif data["resourceType"] == "Bundle" and data.get("type") != "document":
        resources = [e["resource"] for e in data.get("entry") or []
                     if isinstance(e, dict) and isinstance(e.get("resource"), dict)]
        bundle = _as_transaction(resources)
    else:
        bundle = _as_transaction([data])
    _submit(node, f, str(f), bundle, raw, report, defer)


def _load_ndjson(node: Any, f: Path, report: LoadReport, defer: list[_Deferred] | None = None) -> None:
    batch: list[dict[str, Any]] = []
    first_line = 1

    def flush(start: int, end: int) -> None:
        if batch:
            where = f"{f}:{start}-{end}"
            _submit(node, f, where, _as_transaction(batch), b"\n".join(orjson.dumps(r) for r in batch), report,
                    defer)
            batch.clear()

    with f.open("rb") as fh:
        lineno = 0
        for lineno, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                res = orjson.loads(line)
            except orjson.JSONDecodeError as exc:
                report.rejected.append((f"{f}:{lineno}", f"invalid JSON: {exc}"))
                record_failure(node, channel="load", source=f"{f}:{lineno}", payload=line, error=f"invalid JSON: {exc}")
                continue
            if not isinstance(res, dict) or "resourceType" not in res:
                report.rejected.append((f"{f}:{lineno}", "not a FHIR resource (no resourceType)"))
                record_failure(node, channel="load", source=f"{f}:{lineno}", payload=line, error="no resourceType")
                continue
            if not batch:
                first_line = lineno
            batch.append(res)
            if len(batch) >= NDJSON_BATCH:
                flush(first_line, lineno)
        flush(first_line, lineno)
