"""Read benchmark: FHIR reads over HTTP with several concurrent clients.

Loads N Synthea bundles into a fresh database, starts the real server (``hie serve``,
uvicorn, W worker processes, audit on with its flusher process, bearer-token auth) and runs
C concurrent keep-alive clients that read random resources by id for D seconds as the
node's own client (``system/*.rs``). Prints reads/s and p50/p95/p99 latency, for SQLite and
PostgreSQL. ``bench/read_audit.py`` isolates the cost of audit.

    .venv/bin/python bench/read.py [--bundles 10] [--clients 8] [--seconds 15] [--workers 2]
"""

from __future__ import annotations

import argparse
import asyncio
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlalchemy import select  # noqa: E402

from bench._common import corpus, database, percentiles, server  # noqa: E402
from hie.app import Node  # noqa: E402
from hie.config import Settings  # noqa: E402
from hie.loader import load_paths  # noqa: E402
from hie.storage.tables import resource  # noqa: E402


async def client_loop(url: str, ids: list[tuple[str, str]], until: float, lat: list[float], errors: list[int],
                      headers: dict[str, str]) -> None:
    async with httpx.AsyncClient(base_url=url, timeout=30, headers=headers) as c:
        rnd = random.Random()
        while time.perf_counter() < until:
            rtype, rid = rnd.choice(ids)
            t0 = time.perf_counter()
            r = await c.get(f"/fhir/{rtype}/{rid}")
            lat.append(time.perf_counter() - t0)
            if r.status_code != 200:
                errors.append(r.status_code)


async def run_load(url: str, ids: list[tuple[str, str]], clients: int, seconds: float,
                   headers: dict[str, str]) -> tuple[int, list[float], list[int], float]:
    lat: list[float] = []
    errors: list[int] = []
    # warm-up
    await asyncio.gather(*(client_loop(url, ids, time.perf_counter() + 1.0, [], [], headers) for _ in range(clients)))
    t0 = time.perf_counter()
    until = t0 + seconds
    await asyncio.gather(*(client_loop(url, ids, until, lat, errors, headers) for _ in range(clients)))
    return len(lat), lat, errors, time.perf_counter() - t0


def bench_headers(node: Node, base: str) -> dict[str, str]:
    """A bearer token of the node's own client (``system/*.rs``) for the server at ``base``."""
    from hie.auth.service import system_token

    return {"Authorization": f"Bearer {system_token(node, 'system/*.rs', fhir_base=base + '/fhir')}"}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--bundles", type=int, default=10)
    ap.add_argument("--clients", type=int, default=8)
    ap.add_argument("--seconds", type=float, default=15)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="sqlite,postgresql")
    args = ap.parse_args()
    files = sorted((corpus() / "synthea-r4" / "bundles").glob("*.json"))[: args.bundles]
    with tempfile.TemporaryDirectory() as tmp:
        for kind in args.db.split(","):
            with database(kind, Path(tmp)) as url:
                node = Node(Settings(database_url=url, data_dir=Path(tmp)))
                node.upgrade()
                load_paths(node, files)
                with node.engine.connect() as conn:
                    ids = [(t, i) for t, i in conn.execute(
                        select(resource.c.res_type, resource.c.res_id).where(resource.c.deleted.is_(False)))]
                with server(url, args.workers, Path(tmp)) as base:
                    headers = bench_headers(node, base)
                    n, lat, errors, elapsed = asyncio.run(run_load(base, ids, args.clients, args.seconds, headers))
                node.close()
                p = percentiles(lat)
                print(f"{kind:10s} {len(ids)} resources, {args.clients} clients, {args.workers} workers: "
                      f"{n / elapsed:7.0f} reads/s  p50 {p[50] * 1000:6.2f} ms  p95 {p[95] * 1000:6.2f} ms  "
                      f"p99 {p[99] * 1000:6.2f} ms  errors {len(errors)}")


if __name__ == "__main__":
    main()
