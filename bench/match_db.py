"""Benchmark: DB-backed Patient/$match latency on a 100,000-person node.

Acceptance of the "Patient identity" issue: ``$match`` p95 under 50 ms on a 100,000-person
index (https://hl7.org/fhir/R4/patient-operation-match.html, IHE PDQm ITI-119).
``bench/match.py`` measures the in-memory :class:`hie.identity.index.MatchIndex`; this one
measures the operation the node serves: candidates from the persisted blocking keys
(``identity_block``), Patients loaded through the repository (with the access predicate),
scoring, grouping by regional person and the searchset Bundle -- one read transaction
per query, as the REST layer runs it (HTTP parsing and rendering excluded).

Loading writes one facility record per synthetic person (tests/identity/population.py)
through the repository in transactions of ``--batch`` Patients, so the identity write
listener stores blocking keys and matches every record as it arrives (few link: one
record per person). Queries are other facilities' records of random people.

    .venv/bin/python bench/match_db.py [--database-url URL] [--people 100000] [--queries 1000]

Default database: a fresh SQLite file in a temporary directory. For PostgreSQL pass an
empty database, e.g. ``postgresql+psycopg://postgres@127.0.0.1:5432/hie_bench_match``
(``--reuse`` skips loading when the database already holds the population).
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "identity"))
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from population import SEED, RecordFactory, generate_people  # noqa: E402
from sqlalchemy import func, select  # noqa: E402

from hie.app import Node  # noqa: E402
from hie.config import Settings  # noqa: E402
from hie.identity import store  # noqa: E402
from hie.identity.features import extract_features  # noqa: E402
from hie.identity.index import blocking_keys  # noqa: E402
from hie.identity.score import CERTAIN, MATCH_GRADE_URL  # noqa: E402
from hie.identity.service import _internal  # noqa: E402
from hie.identity.tables import identity_block, identity_link  # noqa: E402
from hie.interactions import operations as ops  # noqa: E402
from hie.principal import SYSTEM  # noqa: E402
from hie.storage.repository import Write  # noqa: E402


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--database-url", default=None)
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=1000)
    parser.add_argument("--batch", type=int, default=500)
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--reuse", action="store_true", help="do not load if the node already has the people")
    parser.add_argument("--load", choices=("keys", "listener"), default="keys",
                        help="keys: write Patients and store their blocking keys (what the listener stores, "
                             "without matching each record on the way in; one record per person links nothing); "
                             "listener: the full write listener, several times slower")
    args = parser.parse_args()

    tmp = Path(tempfile.mkdtemp(prefix="hie-match-db-"))
    url = args.database_url or f"sqlite:///{tmp / 'bench.sqlite'}"
    node = Node(Settings(database_url=url, data_dir=tmp, base_url="http://bench/fhir"))
    node.upgrade()
    print(f"database: {node.engine.url.render_as_string()}")

    people = generate_people(args.people, args.seed)
    factory = RecordFactory(args.seed)
    facilities = factory.facilities
    records, home = [], {}
    for p in people:
        facility = factory.rng.choice(facilities)
        records.append((p.person_id, factory.record(p, facility).resource))
        home[p.person_id] = facility
    with node.engine.connect() as conn:
        stored = conn.execute(select(func.count(func.distinct(identity_block.c.patient_id)))).scalar_one()
    if not (args.reuse and stored >= len(records)):
        t0 = time.perf_counter()
        for i in range(0, len(records), args.batch):
            chunk = records[i: i + args.batch]
            writes = [Write("update", "Patient", f"p-{pid}", {**res, "id": f"p-{pid}"}, method="PUT")
                      for pid, res in chunk]
            with node.context(SYSTEM, write=True) as ctx:
                if args.load == "listener":
                    ctx.repo.write_batch(writes)
                else:
                    with _internal():
                        results = ctx.repo.write_batch(writes)
                    for w, r in zip(writes, results, strict=True):
                        assert r.stored is not None and w.resource is not None
                        store.replace_blocks(ctx.repo.conn, r.stored.res_id, r.stored.pk,
                                             blocking_keys(extract_features(w.resource)))
            if (i // args.batch) % 20 == 0:
                done = i + len(chunk)
                print(f"  loaded {done} ({done / (time.perf_counter() - t0):.0f} Patients/s)", flush=True)
        print(f"load ({args.load}): {len(records)} Patients in {time.perf_counter() - t0:.1f} s")
    with node.engine.connect() as conn:
        n_keys = conn.execute(select(func.count()).select_from(identity_block)).scalar_one()
        n_linked = conn.execute(select(func.count()).select_from(identity_link)
                                .where(identity_link.c.method == "auto")).scalar_one()
    print(f"identity_block rows: {n_keys}; records auto-linked while loading: {n_linked}")

    rng = random.Random(args.seed + 7)
    queries = []
    for p in rng.sample(people, args.queries):
        other = rng.choice([f for f in facilities if f != home[p.person_id]])
        res = factory.record(p, other).resource
        res.pop("id", None)
        queries.append((f"p-{p.person_id}", res))

    op = ops.find("match", "type", "Patient")

    def run(resource: dict) -> dict:
        call = ops.OperationCall("match", "type", "Patient", None, [],
                                 {"resourceType": "Parameters",
                                  "parameter": [{"name": "resource", "resource": resource}]},
                                 "POST")
        with node.context(SYSTEM, write=False, base_url="http://bench/fhir") as ctx:
            return op.fn(ctx, call).body  # type: ignore[return-value]

    for _, resource in queries[:50]:  # warm-up
        run(resource)
    latencies, top_hits, certain_hits, sizes = [], 0, 0, []
    for expected, resource in queries:
        start = time.perf_counter()
        bundle = run(resource)
        latencies.append((time.perf_counter() - start) * 1000)
        entries = bundle.get("entry") or []
        sizes.append(len(entries))
        if entries:
            first = entries[0]["resource"]
            ids = {first["id"]} | {ln["other"]["reference"].split("/")[-1] for ln in first.get("link") or ()}
            if expected in ids:
                top_hits += 1
                grade = next(e["valueCode"] for e in entries[0]["search"]["extension"] if e["url"] == MATCH_GRADE_URL)
                certain_hits += grade == CERTAIN
    latencies.sort()
    print(f"DB-backed $match over {len(latencies)} queries on {args.people} persons ({node.engine.dialect.name}) "
          f"(ms): p50 {percentile(latencies, 0.50):.2f}  p95 {percentile(latencies, 0.95):.2f}  "
          f"p99 {percentile(latencies, 0.99):.2f}  max {latencies[-1]:.2f}  mean {statistics.fmean(latencies):.2f}")
    print(f"entries per answer: mean {statistics.fmean(sizes):.2f}; true person ranked first: "
          f"{top_hits / len(queries):.3f}; of which graded certain: {certain_hits / len(queries):.3f}")
    node.close()


if __name__ == "__main__":
    main()
