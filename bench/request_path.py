"""Per-request cost through the node's own request path, for any tree (old vs new).

Every request is what ``hie serve`` does below HTTP and token verification:
``Node.context(principal, write=False)`` (pool checkout, the node's transaction handling and
session settings, the principal's repository and access predicate) and then the interaction
(``crud.read`` or ``search_bundle``). It runs on the consent bench's database
(``bench/consent_overhead.py`` prepares it: data classes, custodians, grants, the registered
viewer), as the system principal and as the viewing facility, the very same requests
interleaved (alternating which goes first), and prints p50/p95 per request kind and
principal, the viewer overhead, and the statements each request sent (counted on the engine
with ``hie/storage/statements.py`` of THIS file's tree, which needs nothing of ``hie``).

The tree measured is ``HIE_TREE`` (default: this file's tree), so one script measures both::

    .venv/bin/python bench/request_path.py --runs 200                      # this tree
    HIE_TREE=/work/old .venv/bin/python bench/request_path.py --runs 200   # e.g. b11e96b

Only ``hie.app.Node``, ``hie.principal``, ``hie.interactions.crud.read`` and
``hie.interactions.search.search_bundle`` of the measured tree are used (present in both).
"""

from __future__ import annotations

import argparse
import importlib.util
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
TREE = Path(os.environ.get("HIE_TREE") or HERE.parent).resolve()
sys.path.insert(0, str(TREE))

from sqlalchemy import text  # noqa: E402

from hie.app import Node  # noqa: E402
from hie.interactions import crud  # noqa: E402
from hie.interactions.search import search_bundle  # noqa: E402
from hie.principal import SYSTEM, Principal  # noqa: E402

PG = os.environ.get("HIE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/")
DB = os.environ.get("HIE_BENCH_DB", "hie_bench_search")
VIEWER = "1130000016"  # bench/consent_overhead.py: registered, role both, disclosed nothing


def _statements() -> Any:
    path = HERE.parent / "hie" / "storage" / "statements.py"
    spec = importlib.util.spec_from_file_location("_bench_statements", path)
    assert spec is not None and spec.loader is not None
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # its dataclasses look their module up
    spec.loader.exec_module(mod)
    return mod


def requests(node: Node, seed: int = 11) -> list[tuple[str, Any]]:
    """(label, make) with make() -> a callable(ctx) for one request of that kind."""
    with node.engine.connect() as c:
        # patients with a permit grant and no deny (the viewer may see their records)
        pats = [r[0] for r in c.execute(text(
            "SELECT patient_key FROM consent_grant GROUP BY patient_key HAVING count(*) = 1 ORDER BY 1"))]
        obs = {pid: oid for pid, oid in c.execute(text(
            "SELECT DISTINCT ON (patient_key) patient_key, res_id FROM resource "
            "WHERE res_type = 'Observation' AND patient_key = ANY(:p) ORDER BY patient_key, pk"), {"p": pats})}
        codes = [r[0] for r in c.execute(text(
            "SELECT code FROM search_token WHERE res_type = 'Observation' AND param = 'code' "
            "AND system = 'http://loinc.org' GROUP BY code ORDER BY count(*) DESC LIMIT 3"))]
    pats = [p for p in pats if p in obs]
    rnd = random.Random(seed)
    print(f"tree {TREE}: {len(pats):,} consented patients", flush=True)

    def pid() -> str:
        return rnd.choice(pats)

    def search(res_type: str, params: list[tuple[str, str]]) -> Any:
        return lambda ctx: search_bundle(ctx, res_type, params)

    return [
        ("read Observation by id", lambda: (lambda o: lambda ctx: crud.read(ctx, "Observation", o))(obs[pid()])),
        ("Observation?patient&code&_sort=-date", lambda: search("Observation", [
            ("patient", pid()), ("code", f"http://loinc.org|{rnd.choice(codes)}"), ("_sort", "-date"),
            ("_count", "50")])),
        ("MedicationRequest?patient&status=active", lambda: search("MedicationRequest", [
            ("patient", pid()), ("status", "active")])),
        ("Observation?patient&_count=20 (total counted)", lambda: search("Observation", [
            ("patient", pid()), ("_sort", "-date"), ("_count", "20")])),
        ("Observation?patient&_summary=count", lambda: search("Observation", [
            ("patient", pid()), ("_summary", "count")])),
    ]


def run(node: Node, runs: int, viewer: Principal) -> dict[str, dict[str, list[float]]]:
    counter = _statements().install(node.engine)
    out: dict[str, dict[str, list[float]]] = {}
    for label, make in requests(node):
        rec: dict[str, list[float]] = {"system": [], "viewer": [], "n_system": [], "n_viewer": []}
        for i in range(runs + 5):
            call = make()
            order = [("system", SYSTEM), ("viewer", viewer)]
            if i % 2:
                order.reverse()
            for who, principal in order:
                with counter.counting(thread_only=True) as block:
                    t0 = time.perf_counter()
                    with node.context(principal, write=False) as ctx:
                        call(ctx)
                    dt = (time.perf_counter() - t0) * 1000
                if i >= 5:  # warm-up
                    rec[who].append(dt)
                    rec[f"n_{who}"].append(block.count)
        out[label] = rec
    return out


def pct(times: list[float], q: float) -> float:
    s = sorted(times)
    return s[min(len(s) - 1, int(round(q * (len(s) - 1))))]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=200)
    args = ap.parse_args()
    node = Node.open(PG + DB)
    viewer = Principal(kind="user", name="viewer", user_id="bench", organization_id=VIEWER)
    try:
        res = run(node, args.runs, viewer)
    finally:
        node.close()
    print(f"{'request':<48} {'system p50/p95':>15} {'viewer p50/p95':>15} {'ratio p50':>9} {'stmts s/v':>10}")
    ts = tv = 0.0
    for label, r in res.items():
        s50, v50 = statistics.median(r["system"]), statistics.median(r["viewer"])
        ts, tv = ts + s50, tv + v50
        n = f"{statistics.mean(r['n_system']):.1f}/{statistics.mean(r['n_viewer']):.1f}"
        print(f"{label:<48} {s50:7.2f}/{pct(r['system'], .95):<7.2f} {v50:7.2f}/{pct(r['viewer'], .95):<7.2f} "
              f"{v50 / s50:9.2f} {n:>10}")
    print(f"sum of p50s: system {ts:.2f} ms, viewer {tv:.2f} ms, viewer overhead {100 * (tv / ts - 1):+.1f}%")


if __name__ == "__main__":
    main()
