"""Ingest benchmark: Synthea transaction Bundles -> resources/s on SQLite and PostgreSQL.

Loads the corpus (``HIE_CORPUS``/synthea-r4/bundles) through the node's own ingest path
(``hie.loader.load_paths``: validation, urn:uuid rewriting, indexing, versioning, one
database transaction per bundle) into a fresh database of each kind, then loads it a
second time (all no-op updates) and prints both rates, for each ``--workers`` count
(loader processes, as ``hie load --workers``; default: 1 and the number of cores).

    .venv/bin/python bench/ingest.py [--limit N] [--db sqlite,postgresql] [--workers 1,2]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import corpus, database  # noqa: E402
from hie.app import Node  # noqa: E402
from hie.config import Settings  # noqa: E402
from hie.loader import default_workers, load_paths  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--limit", type=int, default=0, help="only the first N bundles (0 = all 100)")
    ap.add_argument("--db", default="sqlite,postgresql")
    ap.add_argument("--workers", default=",".join(dict.fromkeys(["1", str(default_workers())])),
                    help="comma-separated loader process counts")
    args = ap.parse_args()
    files = sorted((corpus() / "synthea-r4" / "bundles").glob("*.json"))
    if args.limit:
        files = files[: args.limit]
    entries = 0
    import orjson

    for f in files:
        entries += len(orjson.loads(f.read_bytes())["entry"])
    print(f"corpus: {len(files)} Synthea bundles, {entries} entries")
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db.split(","):
            for workers in (int(w) for w in args.workers.split(",")):
                with database(kind, Path(tmp)) as url:
                    node = Node(Settings(database_url=url, data_dir=Path(tmp)))
                    node.upgrade()
                    t0 = time.perf_counter()
                    report = load_paths(node, files, workers=workers)
                    t1 = time.perf_counter()
                    again = load_paths(node, files, workers=workers)
                    t2 = time.perf_counter()
                    node.close()
                    assert not report.rejected and not again.rejected, (report.rejected, again.rejected)
                    assert sum(again.created.values()) == 0 and sum(again.updated.values()) == 0
                    print(f"{kind:10s} workers={workers}  first load: {entries} resources in {t1 - t0:6.1f} s = "
                          f"{entries / (t1 - t0):7.0f} resources/s   | reload (no-op): {t2 - t1:6.1f} s = "
                          f"{entries / (t2 - t1):7.0f} resources/s", flush=True)


if __name__ == "__main__":
    main()
