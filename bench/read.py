"""Read benchmark: FHIR reads by id over HTTP, 1/4/16 clients, SQLite and PostgreSQL, 1 and 2 workers.

Loads the benchmark region (:mod:`bench._region`: the Synthea corpus held by five
registered facilities, every patient's consent to share, a viewing facility's practitioner)
into a fresh database, counts the database round trips of a read in process (same ASGI app,
bearer auth, audit on), then starts the real server (``hie serve``: uvicorn workers, audit
journal + flusher process) and runs C concurrent keep-alive clients reading random
resources by id for D seconds, as the node's own client (``system/*.rs``) and as the
viewing facility's practitioner (``user/*.rs``: every row through the consent predicate).
Prints reads/s, p50/p95/p99 and round trips per read per cell. ``bench/read_audit.py``
isolates the cost of audit.

    .venv/bin/python bench/read.py [--db sqlite,postgresql] [--workers 1,2] [--clients 1,4,16]
                                   [--seconds 6] [--bundles 100] [--as system,viewer] [--out cells.jsonl]

``HIE_BENCH_TREE=/path/to/old/checkout`` benchmarks another tree with the same code.
"""

from __future__ import annotations

import random
import sys
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import use_tree  # noqa: E402

use_tree()

from bench._load import Workload  # noqa: E402
from bench._matrix import arguments, run  # noqa: E402
from bench._region import Region  # noqa: E402

HIDDEN_FROM_VIEWERS = ("Consent", "AuditEvent")


def workloads(node: Any, region: Region, tokens: dict[str, str], sample: int = 3000) -> list[Workload]:
    from sqlalchemy import select

    from hie.storage.tables import resource

    with node.engine.connect() as conn:
        ids = sorted(conn.execute(select(resource.c.res_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), resource.c.res_type.not_in(HIDDEN_FROM_VIEWERS))).all())
    picked = random.Random(11).sample(ids, min(sample, len(ids)))
    paths = [f"/fhir/{t}/{i}" for t, i in picked]
    return [Workload("read", who, paths) for who in ("system", "viewer")]


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    run("read by id", args, workloads)


if __name__ == "__main__":
    main()
