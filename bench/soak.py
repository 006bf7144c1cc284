"""Soak: mixed reads and patient searches against ``hie serve`` for 30 minutes; server RSS.

Loads the benchmark region (:mod:`bench._region`) into a fresh database (PostgreSQL by
default), starts the real server (``hie serve``: W uvicorn workers, audit journal + flusher
process) and runs C keep-alive clients -- half as the node's own client, half as a viewing
facility's practitioner -- each request a read by id (``bench/read.py``'s ids) or a
patient search (``bench/http_search.py``'s mix), half and half, for the given minutes after
a warm-up. Prints the resident set size (RSS, from /proc) of every server process (the
supervising ``hie serve``, each worker, the audit flusher) after start, after the warm-up,
every ``--every`` minutes and at the end, with the interval's throughput and latency, and
the growth of the total from the end of the warm-up to the end (acceptance: under 5%).
Request loops are bounded by time and stop by themselves; traffic is loopback only.

    .venv/bin/python bench/soak.py [--minutes 30] [--every 5] [--warmup 1] [--clients 4] [--workers 2]
                                   [--db postgresql] [--bundles 100]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import TREE, database, percentiles, server, server_rss, tree_commit, use_tree  # noqa: E402

use_tree()

from bench._load import IN_PROCESS_BASE, HttpConn  # noqa: E402
from bench._region import build, tokens  # noqa: E402


class Window:
    """Requests of one reporting interval."""

    def __init__(self) -> None:
        self.t0 = time.perf_counter()
        self.lat: list[float] = []
        self.errors = 0

    def line(self) -> str:
        secs = time.perf_counter() - self.t0
        p = percentiles(self.lat)
        return (f"{len(self.lat) / secs:6.0f} req/s  p50 {p[50] * 1000:6.2f} ms  p95 {p[95] * 1000:6.2f} ms  "
                f"errors {self.errors}")


async def client(url: str, token: str, reads: list[str], searches: list[str], until: float,
                 state: dict[str, Window], seed: int) -> None:
    conn, rnd = HttpConn(url, token), random.Random(seed)
    try:
        while time.perf_counter() < until:
            path = rnd.choice(reads if rnd.random() < 0.5 else searches)
            t0 = time.perf_counter()
            try:
                status, _ = await conn.get(path)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 599
                await conn.close()
            w = state["window"]
            w.lat.append(time.perf_counter() - t0)
            w.errors += status != 200
    finally:
        await conn.close()


def rss_report(label: str, pid: int, verbose: bool = False) -> int:
    procs = server_rss(pid)
    total = sum(r for _, r in procs.values())
    print(f"[{time.strftime('%H:%M:%S')}] RSS {label}: {total / 1024:8.1f} MiB in {len(procs)} processes", flush=True)
    if verbose:
        for p, (cmd, rss) in sorted(procs.items()):
            print(f"      pid {p:<7d} {rss / 1024:7.1f} MiB  {cmd[:110]}", flush=True)
    return total


async def soak(url: str, pid: int, tok: dict[str, str], reads: list[str], searches: list[str],
               args: argparse.Namespace) -> tuple[int, int]:
    state = {"window": Window()}
    start = time.perf_counter()
    end = start + (args.warmup + args.minutes) * 60
    tasks = [asyncio.create_task(client(url, tok["system" if i % 2 == 0 else "viewer"], reads, searches, end,
                                        state, i)) for i in range(args.clients)]
    await asyncio.sleep(args.warmup * 60)
    print(f"warm-up ({args.warmup:g} min): {state['window'].line()}", flush=True)
    base = rss_report("after warm-up (start)", pid, verbose=True)
    state["window"] = Window()
    last = base
    elapsed = 0.0
    while elapsed < args.minutes * 60 - 1e-6:
        step = min(args.every * 60, args.minutes * 60 - elapsed)
        await asyncio.sleep(step)
        elapsed += step
        w, state["window"] = state["window"], Window()
        print(f"minute {elapsed / 60:5.1f}: {w.line()}", flush=True)
        last = rss_report(f"at minute {elapsed / 60:.1f}", pid, verbose=elapsed >= args.minutes * 60 - 1e-6)
    await asyncio.gather(*tasks)
    return base, last


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="measured minutes (after the warm-up)")
    ap.add_argument("--every", type=float, default=5.0, help="minutes between RSS reports")
    ap.add_argument("--warmup", type=float, default=1.0, help="warm-up minutes before the start figure")
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--db", default="postgresql", choices=("postgresql", "sqlite"))
    ap.add_argument("--bundles", type=int, default=100)
    args = ap.parse_args()
    os.environ["HIE_AUDIT_FLUSHER"] = "external"
    from bench.http_search import workloads as search_workloads
    from bench.read import workloads as read_workloads
    from hie.app import Node
    from hie.config import Settings

    print(f"soak: tree {TREE} at {tree_commit()}; {args.db}, {args.workers} workers, {args.clients} clients, "
          f"{args.minutes:g} min after {args.warmup:g} min warm-up", flush=True)
    with tempfile.TemporaryDirectory(prefix="hie-soak-") as tmp, database(args.db, Path(tmp)) as url:
        node = Node(Settings(database_url=url, data_dir=Path(tmp)))
        try:
            node.upgrade()
            region = build(node, args.bundles, Path(tmp))
            local = tokens(node, IN_PROCESS_BASE + "/fhir")
            reads = read_workloads(node, region, local)[0].paths
            searches = search_workloads(node, region, local)[0].paths
            with server(url, args.workers, Path(tmp)) as s:
                time.sleep(2.0)  # every worker up
                rss_report("after server start, before any request", s.pid, verbose=True)
                tok = tokens(node, s.url + "/fhir", expires_in=int((args.minutes + args.warmup) * 60) + 3600)
                base, last = asyncio.run(soak(s.url, s.pid, tok, reads, searches, args))
        finally:
            node.close()
    print(f"RSS growth over {args.minutes:g} minutes: {base / 1024:.1f} -> {last / 1024:.1f} MiB "
          f"({100 * (last - base) / base:+.1f}%)", flush=True)


if __name__ == "__main__":
    main()
