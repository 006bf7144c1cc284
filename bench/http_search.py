"""Patient-search benchmark over HTTP: the per-patient searches a clinician's summary runs.

The mix (issue 12): per-patient searches whose page holds 20-50 entries --
Observation?patient&category=laboratory|vital-signs&_sort=-date, MedicationRequest?patient,
Condition?patient, Encounter?patient&_sort=-date, Immunization?patient, Procedure?patient
(``_count=50``). For each query, the patients whose answer (as the system principal) holds
20-50 entries are kept; queries weigh equally in the mix, and a query with fewer than
``MIN_PATIENTS`` such patients is left out (Synthea's Condition and MedicationRequest lists
are mostly shorter than 20: the run prints which). Same region, server, clients and
round-trip counting as ``bench/read.py`` (:mod:`bench._matrix`), as the node's own client
and as a viewing facility's practitioner (every row through the consent predicate; every
patient consented, so both see the same entries -- checked in process).

    .venv/bin/python bench/http_search.py [--db sqlite,postgresql] [--workers 1,2] [--clients 1,4,16]
                                          [--seconds 6] [--bundles 100] [--as system,viewer] [--out cells.jsonl]

``HIE_BENCH_TREE=/path/to/old/checkout`` benchmarks another tree with the same code.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import use_tree  # noqa: E402

use_tree()

from bench._load import IN_PROCESS_BASE, Workload  # noqa: E402
from bench._matrix import arguments, run  # noqa: E402
from bench._region import Region  # noqa: E402

QUERIES: list[tuple[str, str, list[tuple[str, str]]]] = [
    ("Observation?patient&category=laboratory&_sort=-date", "Observation",
     [("category", "laboratory"), ("_sort", "-date")]),
    ("Observation?patient&category=vital-signs&_sort=-date", "Observation",
     [("category", "vital-signs"), ("_sort", "-date")]),
    ("MedicationRequest?patient", "MedicationRequest", []),
    ("Condition?patient", "Condition", []),
    ("Encounter?patient&_sort=-date", "Encounter", [("_sort", "-date")]),
    ("Immunization?patient", "Immunization", []),
    ("Procedure?patient", "Procedure", []),
]
LOW, HIGH = 20, 50
#: A query enters the mix only with at least this many patients (else one patient's page
#: would be a seventh of the load: Synthea's small Condition and MedicationRequest lists).
MIN_PATIENTS = 5


def path(res_type: str, patient: str, params: list[tuple[str, str]]) -> str:
    return f"/fhir/{res_type}?" + urlencode([("patient", patient), *params, ("_count", str(HIGH))])


def entries(client: Any, url: str, token: str) -> int:
    r = client.get(url, headers={"Authorization": f"Bearer {token}"})
    if r.status_code != 200:
        raise RuntimeError(f"{url}: {r.status_code} {r.text[:300]}")
    return len(r.json().get("entry", []))


def workloads(node: Any, region: Region, tokens: dict[str, str]) -> list[Workload]:
    from fastapi.testclient import TestClient

    chosen: dict[str, list[str]] = {}
    mismatched = 0
    with TestClient(node.create_app(), base_url=IN_PROCESS_BASE) as c:
        for label, res_type, params in QUERIES:
            for pid in region.patients:
                url = path(res_type, pid, params)
                n = entries(c, url, tokens["system"])
                if LOW <= n <= HIGH:
                    chosen.setdefault(label, []).append(url)
                    mismatched += entries(c, url, tokens["viewer"]) != n
    for label, _, _ in QUERIES:
        n = len(chosen.get(label, []))
        print(f"  {n:3d} patients with {LOW}-{HIGH} entries: {label}"
              + ("" if n >= MIN_PATIENTS else f" (fewer than {MIN_PATIENTS}: left out of the mix)"))
    chosen = {k: v for k, v in chosen.items() if len(v) >= MIN_PATIENTS}
    print(f"  viewer's entry count differs from the system's on {mismatched} of "
          f"{sum(map(len, chosen.values()))} searches", flush=True)
    weight = max(map(len, chosen.values()))
    paths, labels = [], []
    for label, urls in chosen.items():
        for k in range(weight):
            paths.append(urls[k % len(urls)])
            labels.append(label)
    return [Workload("search", who, paths, labels) for who in ("system", "viewer")]


def main() -> None:
    args = arguments(__doc__ or "").parse_args()
    run("patient searches", args, workloads)


if __name__ == "__main__":
    main()
