"""Benchmark: Patient/$match latency on a 100,000-person in-memory index.

Acceptance of the "Patient identity" issue: ``$match`` p95 under 50 ms on a 100,000-person
index (https://hl7.org/fhir/R4/patient-operation-match.html, IHE PDQm ITI-119).

Builds the index from one facility record per synthetic person (tests/identity/population.py,
with its variants), then times ``MatchIndex.match`` - feature extraction, candidate
selection and scoring - for queries that are other facilities' records of random people.

    .venv/bin/python bench/match.py [--people 100000] [--queries 2000] [--seed 20240601]
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "identity"))

from population import SEED, RecordFactory, generate_people  # noqa: E402

from hie.identity.features import extract_features  # noqa: E402
from hie.identity.index import MatchIndex  # noqa: E402
from hie.identity.score import CERTAIN  # noqa: E402


def percentile(sorted_values: list[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(round(q * (len(sorted_values) - 1))))]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--people", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=2000)
    parser.add_argument("--seed", type=int, default=SEED)
    args = parser.parse_args()

    t0 = time.perf_counter()
    people = generate_people(args.people, args.seed)
    factory = RecordFactory(args.seed)
    facilities = factory.facilities
    index = MatchIndex()
    indexed_at: dict[str, str] = {}
    for p in people:
        facility = factory.rng.choice(facilities)
        record = factory.record(p, facility)
        index.add(p.person_id, record.resource)
        indexed_at[p.person_id] = facility
    t1 = time.perf_counter()
    print(f"index: {len(index)} persons built in {t1 - t0:.1f} s")

    rng = random.Random(args.seed + 7)
    queries = []
    for p in rng.sample(people, args.queries):
        other = rng.choice([f for f in facilities if f != indexed_at[p.person_id]])
        queries.append((p.person_id, factory.record(p, other).resource))

    for _, resource in queries[:50]:  # warm-up
        index.match(resource)
    latencies, candidates, top_hits, certain_hits, false_certain = [], [], 0, 0, 0
    for person_id, resource in queries:
        start = time.perf_counter()
        results = index.match(resource)
        latencies.append((time.perf_counter() - start) * 1000)
        candidates.append(len(index.candidates(extract_features(resource))))
        if results and results[0].candidate_id == person_id:
            top_hits += 1
            certain_hits += results[0].grade == CERTAIN
        false_certain += sum(r.grade == CERTAIN and r.candidate_id != person_id for r in results)
    latencies.sort()
    print(f"match latency over {len(latencies)} queries (ms): p50 {percentile(latencies, 0.50):.2f}  "
          f"p95 {percentile(latencies, 0.95):.2f}  p99 {percentile(latencies, 0.99):.2f}  "
          f"max {latencies[-1]:.2f}  mean {statistics.fmean(latencies):.2f}")
    candidates.sort()
    print(f"candidates per query: mean {statistics.fmean(candidates):.1f}  p95 {percentile(candidates, 0.95)}  "
          f"max {candidates[-1]}")
    print(f"true person ranked first: {top_hits / len(queries):.3f}; of which graded certain: "
          f"{certain_hits / len(queries):.3f}; other persons graded certain (false auto-links): {false_certain}")


if __name__ == "__main__":
    main()
