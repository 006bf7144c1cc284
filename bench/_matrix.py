"""The benchmark matrix shared by ``bench/read.py`` and ``bench/http_search.py``.

For each database (SQLite, PostgreSQL): a fresh database, the benchmark region
(:mod:`bench._region`: Synthea held by registered facilities, consents, a viewing
facility's practitioner), the workloads of the benchmark, their database round trips per
request counted in process (:func:`bench._load.round_trips`), then for each number of
worker processes a real ``hie serve`` (uvicorn, bearer auth, audit journal + flusher
process) loaded by 1, 4 and 16 keep-alive clients per workload and principal. One line per
cell: requests/s, p50/p95/p99, errors, round trips per request. ``--out`` appends every
cell as a JSON line.
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from bench._common import TREE, database, server, tree_commit
from bench._load import IN_PROCESS_BASE, Trips, Workload, round_trips, run_load
from bench._region import Region, build, tokens

MakeWorkloads = Callable[[Any, Region, dict[str, str]], list[Workload]]


def arguments(doc: str) -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=doc, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", default="sqlite,postgresql", help="databases, comma-separated")
    ap.add_argument("--workers", default="1,2", help="worker process counts, comma-separated")
    ap.add_argument("--clients", default="1,4,16", help="concurrent client counts, comma-separated")
    ap.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell (after 1 s warm-up)")
    ap.add_argument("--bundles", type=int, default=100, help="Synthea bundles (patients) to load")
    ap.add_argument("--as", dest="principals", default="system,viewer", help="principals: system, viewer")
    ap.add_argument("--show-statements", action="store_true", help="print one request's statements per workload")
    ap.add_argument("--out", type=Path, default=None, help="append every cell as a JSON line to this file")
    return ap


def ints(s: str) -> list[int]:
    return [int(x) for x in s.split(",") if x]


def run(title: str, args: argparse.Namespace, make: MakeWorkloads) -> None:
    os.environ["HIE_AUDIT_FLUSHER"] = "external"  # this process journals; the server's flusher stores
    from hie.app import Node
    from hie.config import Settings

    print(f"{title}: tree {TREE} at {tree_commit()}", flush=True)
    with tempfile.TemporaryDirectory(prefix="hie-bench-") as tmp:
        for kind in args.db.split(","):
            data_dir = Path(tmp) / kind
            data_dir.mkdir()
            with database(kind, Path(tmp)) as url:
                node = Node(Settings(database_url=url, data_dir=data_dir))
                try:
                    node.upgrade()
                    t0 = time.perf_counter()
                    region = build(node, args.bundles, data_dir)
                    print(f"{kind}: region of {len(region.patients)} patients loaded in "
                          f"{time.perf_counter() - t0:.0f} s", flush=True)
                    local = tokens(node, IN_PROCESS_BASE + "/fhir")
                    loads = [w for w in make(node, region, local) if w.principal in args.principals.split(",")]
                    trips = {id(w): round_trips(node, local[w.principal], w) for w in loads}
                    for w in loads:
                        print_trips(kind, w, trips[id(w)], args.show_statements)
                    for workers in ints(args.workers):
                        serve(kind, url, workers, data_dir, node, loads, trips, args)
                finally:
                    node.close()


def print_trips(kind: str, w: Workload, t: Trips, show: bool) -> None:
    print(f"{kind:10s} round trips per request, {w.name} as {w.principal}: mean {t.mean:.2f} "
          f"(min {t.low}, max {t.high}; {t.errors} non-200 of the sample)", flush=True)
    if len(t.by_label) > 1:
        for label, mean in t.by_label.items():
            print(f"{'':10s}   {mean:5.2f}  {label}", flush=True)
    if show:
        for sql in t.example:
            print(f"{'':10s}   | {' '.join(sql.split())[:160]}", flush=True)


def serve(kind: str, url: str, workers: int, data_dir: Path, node: Any, loads: list[Workload],
          trips: dict[int, Trips], args: argparse.Namespace) -> None:
    with server(url, workers, data_dir) as s:
        tok = tokens(node, s.url + "/fhir")
        for clients in ints(args.clients):
            for w in loads:
                res = run_load(s.url, tok[w.principal], w.paths, clients, args.seconds).summary()
                load = Path("/proc/loadavg").read_text().split()[0]
                cell = {"db": kind, "workers": workers, "workload": w.name, "principal": w.principal,
                        "clients": clients, "round_trips": trips[id(w)].mean, **res, "tree": str(TREE),
                        "commit": tree_commit(), "loadavg": float(load)}
                print(f"{kind:10s} w={workers} {w.name:6s} {w.principal:6s} c={clients:<2d} "
                      f"{res['rate']:7.0f} req/s  p50 {res['p50_ms']:6.2f}  p95 {res['p95_ms']:6.2f}  "
                      f"p99 {res['p99_ms']:6.2f} ms  errors {res['errors']:<4d} "
                      f"round trips/req {trips[id(w)].mean:.2f}  load {load}", flush=True)
                if args.out:
                    with args.out.open("a") as f:
                        f.write(json.dumps(cell) + "\n")
