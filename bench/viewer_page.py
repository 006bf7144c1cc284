"""The clinician viewer's patient page for a 2,000-resource patient (issue 14, acceptance 5).

The region of ``bench/summary.py`` (the same 2,000-record patient spread over three
facilities, a consent sharing with every facility, background patients) in a throwaway
database; a practitioner of the viewing facility logs in through the node's own login
(password + TOTP, authorization code, server-side session) and the page
``GET /viewer/patient/<id>`` is timed over HTTP in process (Starlette TestClient: routing,
session, token check, the consent predicate in every statement, collection, the page's
blocks, Jinja2 rendering and the audit event; the audit store is off, as in the $summary
bench). Prints p50/p95/p99 (ms) and the page size.

    .venv/bin/python bench/viewer_page.py                 # PostgreSQL (HIE_TEST_PG_URL server)
    .venv/bin/python bench/viewer_page.py --db sqlite --runs 100
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import database, percentiles, tree_commit  # noqa: E402
from bench.summary import MIX, VIEWER, load, region  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--runs", type=int, default=100)
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--others", type=int, default=20, help="background patients (200 records each)")
    args = ap.parse_args()

    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.app import Node
    from hie.config import Settings
    from tests.web import viewer_helpers as vh

    pid = "sum-bench"
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        node = Node(Settings(database_url=url, data_dir=Path(tmp), audit_system_use=False))
        node.upgrade()
        resources = region(pid, args.others)
        t = time.perf_counter()
        load(node, resources)
        print(f"tree {tree_commit()}, {args.db}: loaded {len(resources)} resources "
              f"({sum(MIX.values())} for the patient) in {time.perf_counter() - t:.1f} s")
        with TestClient(create_app(node, audit=False), base_url="http://127.0.0.1") as c:
            vh.login(c, vh.enrol(node, "bench-viewer", org=VIEWER), "bench-viewer")
            for _ in range(args.warmup):
                page = c.get(f"/viewer/patient/{pid}")
                assert page.status_code == 200, page.text[:500]
            samples = []
            for _ in range(args.runs):
                t = time.perf_counter()
                page = c.get(f"/viewer/patient/{pid}")
                samples.append((time.perf_counter() - t) * 1000)
                assert page.status_code == 200
        q = percentiles(samples)
        print(f"viewer patient page: {len(page.content) / 1024:.0f} KiB; p50 {q[50]:.1f} ms, p95 {q[95]:.1f} ms, "
              f"p99 {q[99]:.1f} ms ({len(samples)} runs)")
        node.close()


if __name__ == "__main__":
    main()
