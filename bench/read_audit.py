"""Read benchmark: the cost of the audit trail on FHIR reads (audit off vs on).

Starts the real app (uvicorn on 127.0.0.1, one process) on a fresh database holding
P patients with an Observation each, and reads random resources by id with a bearer
token, C concurrent keep-alive clients for D seconds per round. Rounds alternate
audit off / on (background flusher, journal written per request) / on with
``HIE_AUDIT_SYNC=always`` (fdatasync per request), so drift hits all modes alike.
Prints reads/s, mean and p95 latency per mode and the ratio to "off"; then flushes
and checks that every audited read is in the chain (``hie audit verify``).

    .venv/bin/python bench/read_audit.py [--patients 500] [--clients 4] [--seconds 8] [--rounds 3] [--pg URL]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import httpx  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from hie.api.app import create_app  # noqa: E402
from hie.app import Node  # noqa: E402
from hie.audit.chain import verify  # noqa: E402
from hie.audit.recorder import AuditRecorder  # noqa: E402
from hie.audit.tables import audit_chain  # noqa: E402
from hie.auth.service import AuthService  # noqa: E402
from hie.config import Settings  # noqa: E402
from hie.ingest import ingest_bundle  # noqa: E402
from tests.support import LiveServer  # noqa: E402


def load(node: Node, patients: int) -> list[str]:
    entries = []
    for i in range(patients):
        entries.append({"resource": {"resourceType": "Patient", "id": f"b{i}", "gender": "female",
                                     "name": [{"family": "山田", "given": [f"花子{i}"]}]},
                        "request": {"method": "PUT", "url": f"Patient/b{i}"}})
        entries.append({"resource": {"resourceType": "Observation", "id": f"o{i}", "status": "final",
                                     "code": {"text": "BP"}, "subject": {"reference": f"Patient/b{i}"},
                                     "valueQuantity": {"value": 120 + i % 30, "unit": "mmHg"}},
                        "request": {"method": "PUT", "url": f"Observation/o{i}"}})
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": entries}, source="bench")
    return [f"Patient/b{i}" for i in range(patients)] + [f"Observation/o{i}" for i in range(patients)]


def run_round(url: str, token: str, ids: list[str], clients: int, seconds: float) -> tuple[int, list[float], int]:
    lat: list[float] = []
    errors = [0]
    lock = threading.Lock()
    until = time.perf_counter() + seconds

    def worker(seed: int) -> None:
        rnd = random.Random(seed)
        mine: list[float] = []
        bad = 0
        with httpx.Client(base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30) as c:
            while time.perf_counter() < until:
                t0 = time.perf_counter()
                r = c.get(f"/fhir/{rnd.choice(ids)}")
                mine.append(time.perf_counter() - t0)
                bad += r.status_code != 200
        with lock:
            lat.extend(mine)
            errors[0] += bad

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(clients)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return len(lat), lat, errors[0]


def drain(data_dir: Path, modes: dict) -> None:
    for rec in modes.values():
        if rec and rec.store:
            rec.flush()
        elif rec:
            rec.flush()  # rotate: hand the journal to the external flusher
    deadline = time.monotonic() + 120
    while list((data_dir / "audit-journal").glob("*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.1)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=500)
    ap.add_argument("--clients", type=int, default=4)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--pg", default=None, help="PostgreSQL URL of an empty database (default: SQLite in a temp dir)")
    args = ap.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hie-bench-audit-"))
    url = args.pg or f"sqlite:///{tmp / 'hie.sqlite'}"
    node = Node(Settings(database_url=url, data_dir=tmp, base_url=None))
    node.upgrade()
    ids = load(node, args.patients)
    svc = AuthService.for_node(node)
    modes = {
        "off": False,
        "on": AuditRecorder(node, interval=0.2),
        "on+fdatasync": AuditRecorder(node, interval=0.2, sync="always"),
        "on, external": AuditRecorder(node, interval=0.2, store=False),
    }
    # the external flusher: a separate process, as `hie audit flusher` runs beside the servers
    import os
    import subprocess

    env = {**os.environ, "HIE_DATABASE_URL": url, "HIE_DATA_DIR": str(tmp),
           "PYTHONPATH": str(Path(__file__).resolve().parents[1])}
    flusher = subprocess.Popen([sys.executable, "-m", "hie.cli", "audit", "flusher"], env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    apps = {name: create_app(node, audit=rec) for name, rec in modes.items()}
    results: dict[str, list[tuple[int, list[float], int, float]]] = {m: [] for m in modes}
    servers = {name: LiveServer(app) for name, app in apps.items()}
    for s in servers.values():
        s.__enter__()
    try:
        tokens = {name: svc.token_for_client(None, "system/*.rs", fhir_base=f"{s.url}/fhir", expires_in=3600).token
                  for name, s in servers.items()}
        for name, s in servers.items():  # warm-up
            run_round(s.url, tokens[name], ids, args.clients, 1.0)
        for _ in range(args.rounds):
            for name, s in servers.items():
                n, lat, bad, = run_round(s.url, tokens[name], ids, args.clients, args.seconds)
                results[name].append((n, lat, bad, args.seconds))
                drain(tmp, modes)  # the next round must not pay for this round's backlog
    finally:
        for s in servers.values():
            s.__exit__(None, None, None)
    for rec in modes.values():
        if rec:
            rec.close()
    time.sleep(1.0)  # let the external flusher store the last journals
    flusher.terminate()
    flusher.wait(timeout=30)
    AuditRecorder(node, interval=None)  # stores anything the flusher had not reached

    print(f"database: {node.engine.dialect.name}; {len(ids)} resources; {args.clients} clients; "
          f"{args.rounds} rounds x {args.seconds:.0f} s per mode")
    base_rate = None
    base_mean = None
    for name, rounds in results.items():
        reads = sum(r[0] for r in rounds)
        secs = sum(r[3] for r in rounds)
        lat = sorted(x for r in rounds for x in r[1])
        rate = reads / secs
        mean = statistics.fmean(lat) * 1000
        p95 = lat[int(0.95 * (len(lat) - 1))] * 1000
        errors = sum(r[2] for r in rounds)
        if base_rate is None:
            base_rate, base_mean = rate, mean
        print(f"  audit {name:13s} {rate:8.0f} reads/s   mean {mean:6.2f} ms   p95 {p95:6.2f} ms   "
              f"errors {errors}   throughput ratio {base_rate / rate:5.3f}   latency ratio {mean / base_mean:5.3f}")
    with node.engine.connect() as conn:
        chained = conn.execute(select(func.count()).select_from(audit_chain)).scalar_one()
        report = verify(conn, svc.keys)
    expected = sum(r[0] for name, rounds in results.items() if name != "off" for r in rounds)
    print(f"audit trail: {chained} chained records (>= {expected} audited timed reads plus warm-up); "
          f"verify: {'OK' if report.ok else report.problems[:3]}")
    node.close()


if __name__ == "__main__":
    main()
