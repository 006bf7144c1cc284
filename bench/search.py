"""Search benchmark: typical clinician queries on a PostgreSQL database of >= 1,000,000 resources.

Benchmarks FHIR R4 search (https://hl7.org/fhir/R4/search.html) as implemented by
:mod:`hie.search` and :mod:`hie.interactions.search`.

Build: the Synthea corpus ($HIE_CORPUS/synthea-r4, 100 patients, 19.5k resources) is
resolved (``urn:uuid`` -> ``Type/id``), given a Japanese kana name per Patient and a
Provenance per patient (target: the patient's Observations), then replicated with fresh
ids (every UUID gets a ``-r<k>`` suffix) until the database holds at least ``--target``
resources. Index rows are extracted once per source resource with the node's indexer
(:func:`hie.search.indexer.extract_rows`) and replicated with the same id rewrite; rows
are bulk-loaded with COPY and the indexes are built afterwards.

Measure: each query runs through :func:`hie.interactions.search.search_bundle` (the
repository's SQL + Bundle building) as the system principal, with the node's
:class:`~hie.enforcement.policy.ConsentPolicy`, for ``--runs`` different patients; p50/p95
are printed per query.

    .venv/bin/python bench/search.py [--target 1000000] [--rebuild] [--runs 60]
"""

from __future__ import annotations

import argparse
import os
import random
import re
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import orjson
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from consent.periods import from_epoch_us  # noqa: E402
from hie.clock import SystemClock  # noqa: E402
from hie.enforcement.policy import ConsentPolicy  # noqa: E402
from hie.interactions.context import Context  # noqa: E402
from hie.interactions.search import search_bundle as search  # noqa: E402
from hie.principal import SYSTEM, Principal  # noqa: E402
from hie.search.indexer import _COLUMNS, extract_rows  # noqa: E402
from hie.search.registry import SearchRegistry  # noqa: E402
from hie.search.tables import ALL_INDEX_TABLES  # noqa: E402
from hie.storage.access import AccessPolicy  # noqa: E402
from hie.storage.db import PG_OPTIONS  # noqa: E402
from hie.storage.repository import Repository  # noqa: E402
from hie.storage.tables import metadata  # noqa: E402
from hie.storage.tables import resource as R  # noqa: E402

PG = os.environ.get("HIE_BENCH_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/")
DB = os.environ.get("HIE_BENCH_DB", "hie_bench_search")
UUID = re.compile(r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}")
KANA_FAMILY = ["ヤマダ", "スズキ", "タナカ", "サトウ", "ワタナベ", "イトウ", "ナカムラ", "コバヤシ", "カトウ", "ヨシダ"]
KANA_GIVEN = ["タロウ", "ハナコ", "イチロウ", "ユキ", "ケンジ", "サクラ", "ヒロシ", "アキコ", "マコト", "ミホ"]


def corpus() -> Path:
    return Path(os.environ.get("HIE_CORPUS", REPO.parent / "shared" / "data")) / "synthea-r4" / "bundles"


def load_source() -> list[dict[str, Any]]:
    """Synthea resources with resolved references, kana names and Provenances."""
    out: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    for n, f in enumerate(sorted(corpus().glob("*.json"))):
        raw = f.read_bytes()
        b = orjson.loads(raw)
        urls = {e["fullUrl"]: f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in b["entry"]}
        for full, local in urls.items():
            raw = raw.replace(f'"{full}"'.encode(), f'"{local}"'.encode())
        b = orjson.loads(raw)
        obs_refs = []
        for e in b["entry"]:
            res = e["resource"]
            key = (res["resourceType"], res["id"])
            if key in seen:
                continue
            seen.add(key)
            if res["resourceType"] == "Patient":
                res.setdefault("name", []).append({
                    "use": "usual",
                    "extension": [{"url": "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation",
                                   "valueCode": "SYL"}],
                    "family": KANA_FAMILY[n % 10], "given": [KANA_GIVEN[(n // 10) % 10]]})
                patient = res["id"]
            if res["resourceType"] == "Observation":
                obs_refs.append({"reference": f"Observation/{res['id']}"})
            out.append(res)
        out.append({"resourceType": "Provenance", "id": f"prov-{patient}",
                    "target": obs_refs[-20:] or [{"reference": f"Patient/{patient}"}],
                    "recorded": "2021-04-01T00:00:00Z", "agent": [{"who": {"reference": f"Patient/{patient}"}}]})
    return out


def patient_of(res: dict[str, Any]) -> str | None:
    if res["resourceType"] == "Patient":
        return res["id"]
    for k in ("subject", "patient", "beneficiary"):
        v = res.get(k)
        if isinstance(v, dict) and str(v.get("reference", "")).startswith("Patient/"):
            return v["reference"][8:]
    if res["resourceType"] == "Provenance":
        return res["agent"][0]["who"]["reference"][8:]
    return None


def _suffix(v: Any, suf: str) -> Any:
    return UUID.sub(lambda m: m.group(0) + suf, v) if isinstance(v, str) and "-" in v else v


def build(engine: Any, target: int, registry: SearchRegistry) -> None:
    src = load_source()
    print(f"source: {len(src)} resources; extracting index rows ...", flush=True)
    t0 = time.time()
    templates = []
    for res in src:
        rows = extract_rows(registry, res["resourceType"], res)
        templates.append((res, orjson.dumps(res).decode(), patient_of(res),
                          {name: [tuple(r[c] for c in _COLUMNS[name]) for r in rs] for name, rs in rows.items()}))
    print(f"extracted in {time.time() - t0:.1f}s", flush=True)
    replicas = -(-target // len(src))
    metadata.drop_all(engine, tables=[R, *ALL_INDEX_TABLES])
    metadata.create_all(engine, tables=[R, *ALL_INDEX_TABLES])
    with engine.begin() as c:
        for t in [R, *ALL_INDEX_TABLES]:
            for idx in t.indexes:
                c.execute(text(f'DROP INDEX IF EXISTS "{idx.name}"'))
    raw = engine.raw_connection()
    try:
        cur = raw.cursor()
        pk = 0
        for k in range(replicas):
            suf = f"-r{k}"
            t1 = time.time()
            res_rows = []
            idx_rows: dict[str, list[tuple]] = {}
            for res, js, pat, rows in templates:
                pk += 1
                rid = _suffix(res["id"], suf)
                key = _suffix(pat, suf) if pat else None
                res_rows.append((pk, res["resourceType"], rid, 1, 1_617_000_000_000_000 + pk, False,
                                 _suffix(js, suf).encode(), key, None, "clinical", " ", " ", False))
                for name, rs in rows.items():
                    lst = idx_rows.setdefault(name, [])
                    for r in rs:
                        lst.append((pk, res["resourceType"], key) + tuple(_suffix(x, suf) for x in r))
            with cur.copy("COPY resource (pk, res_type, res_id, version_id, last_updated, deleted, content, "
                          "patient_key, custodian, data_class, security_labels, sensitive_labels, hidden_from_patient) "
                          "FROM STDIN") as cp:
                for row in res_rows:
                    cp.write_row(row)
            for name, rows in idx_rows.items():
                cols = ("resource_pk", "res_type", "patient_key") + _COLUMNS[name]
                with cur.copy(f"COPY {name} ({', '.join(cols)}) FROM STDIN") as cp:
                    for row in rows:
                        cp.write_row(row)
            raw.commit()
            print(f"replica {k + 1}/{replicas}: {pk} resources ({time.time() - t1:.1f}s)", flush=True)
        cur.execute("SELECT setval(pg_get_serial_sequence('resource', 'pk'), %s)", (pk,))
        raw.commit()
    finally:
        raw.close()
    print("building indexes ...", flush=True)
    t2 = time.time()
    with engine.begin() as c:
        for t in [R, *ALL_INDEX_TABLES]:
            for idx in t.indexes:
                idx.create(c)
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("VACUUM ANALYZE"))
    print(f"indexes built in {time.time() - t2:.1f}s", flush=True)


BASE_URL = "http://bench/fhir"


def request_context(conn: Any, registry: SearchRegistry, principal: Principal, policy: AccessPolicy) -> Context:
    """What the node builds per request: the principal's repository (its access predicate
    is made here, from the policy) in an interaction context."""
    repo = Repository(conn, principal, registry=registry, policy=policy)
    return Context(principal, registry, repo, BASE_URL)


Query = tuple[str, Any]  # (label, make) where make() -> (res_type, params)


def clinician_queries(engine: Any, patients: list[str] | None = None, seed: int = 7) -> list[Query]:
    """The benchmark's clinician queries, each with a generator of fresh parameters.

    ``patients`` restricts the patients queried (default: all)."""
    with engine.connect() as c:
        total = c.execute(text("SELECT count(*) FROM resource")).scalar_one()
        pats = c.execute(text(
            "SELECT r.res_id, min(d.low) FROM resource r JOIN search_date d ON d.resource_pk = r.pk "
            "AND d.param = 'birthdate' WHERE r.res_type = 'Patient' GROUP BY r.res_id")).all()
        kana = {row[0]: row[1] for row in c.execute(text(
            "SELECT r.res_id, s.value_exact FROM resource r JOIN search_string s ON s.resource_pk = r.pk "
            "AND s.param = 'family' WHERE r.res_type = 'Patient' AND s.value_exact >= 'ア'"))}
        img = [row[0] for row in c.execute(text(
            "SELECT DISTINCT target_id FROM search_reference WHERE res_type = 'ImagingStudy' AND param = 'patient'"))]
        codes = [row[0] for row in c.execute(text(
            "SELECT code FROM search_token WHERE res_type = 'Observation' AND param = 'code' "
            "AND system = 'http://loinc.org' GROUP BY code ORDER BY count(*) DESC LIMIT 5"))]
    if patients is not None:
        wanted = set(patients)
        pats = [p for p in pats if p[0] in wanted]
        img = [i for i in img if i in wanted] or img
    print(f"database: {total:,} resources, {len(pats):,} patients")
    rnd = random.Random(seed)

    def pick() -> tuple[str, str]:
        pid, low = rnd.choice(pats)
        return pid, from_epoch_us(low).date().isoformat()

    return [
        ("lab results by code, sorted by date (Observation?patient&code&_sort=-date)",
         lambda: ("Observation", [("patient", pick()[0]), ("code", f"http://loinc.org|{rnd.choice(codes[:3])}"),
                                  ("_sort", "-date"), ("_count", "50")])),
        ("active medications (MedicationRequest?patient&status=active)",
         lambda: ("MedicationRequest", [("patient", pick()[0]), ("status", "active")])),
        ("imaging studies of a patient (ImagingStudy?patient)",
         lambda: ("ImagingStudy", [("patient", rnd.choice(img))])),
        ("patient lookup by kana family name and birth date (Patient?family&birthdate)",
         lambda: _kana_query(rnd, pats, kana)),
        ("observations with _revinclude=Provenance:target (Observation?patient&_revinclude)",
         lambda: ("Observation", [("patient", pick()[0]), ("_sort", "-date"), ("_count", "20"),
                                  ("_revinclude", "Provenance:target")])),
        ("count of a patient's observations (_summary=count)",
         lambda: ("Observation", [("patient", pick()[0]), ("_summary", "count")])),
        ("count of a patient's lab results by code (_summary=count)",
         lambda: ("Observation", [("patient", pick()[0]), ("code", f"http://loinc.org|{codes[0]}"),
                                  ("_summary", "count")])),
        ("count of a rarer code, region-wide (Observation?code&_summary=count)",
         lambda: ("Observation", [("code", f"http://loinc.org|{codes[-1]}"), ("_summary", "count")])),
    ]


def percentiles(times: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``times``."""
    times = sorted(times)
    return statistics.median(times), times[min(len(times) - 1, int(round(0.95 * (len(times) - 1))))]


def measure(engine: Any, registry: SearchRegistry, runs: int, principal: Principal = SYSTEM,
            policy: AccessPolicy | None = None,
            patients: list[str] | None = None) -> dict[str, tuple[float, float, float]]:
    """Run the clinician queries; returns {label: (p50 ms, p95 ms, mean hits)}.

    Each query runs as ``principal`` (default: the system principal) under ``policy``
    (default: the node's consent policy); ``patients`` restricts the patients queried."""
    policy = policy or ConsentPolicy(clock=SystemClock())
    results: dict[str, tuple[float, float, float]] = {}
    print(f"{'query':<92} {'p50 ms':>8} {'p95 ms':>8} {'hits(avg)':>10}")
    for label, make in clinician_queries(engine, patients):
        times, hits = [], []
        with engine.connect() as c:
            ctx = request_context(c, registry, principal, policy)
            for i in range(runs + 3):
                t, params = make()
                t0 = time.perf_counter()
                b = search(ctx, t, params)
                dt = (time.perf_counter() - t0) * 1000
                if i >= 3:  # warm-up
                    times.append(dt)
                    hits.append(b.get("total", len(b["entry"])))
            c.rollback()  # ends the transaction opened by the first query
        p50, p95 = percentiles(times)
        print(f"{label:<92} {p50:8.1f} {p95:8.1f} {statistics.mean(hits):10.1f}")
        results[label] = (p50, p95, statistics.mean(hits))
    return results


def _kana_query(rnd: random.Random, pats: list, kana: dict) -> tuple[str, list]:
    # A birth date is indexed as its day in the node's zone (consent.periods.instant_range),
    # so its indexed low end is that day's midnight in the node's zone.
    pid, low = rnd.choice(pats)
    return "Patient", [("family", kana.get(pid, "ヤマダ")), ("birthdate", from_epoch_us(low).date().isoformat())]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--target", type=int, default=1_000_000)
    ap.add_argument("--rebuild", action="store_true")
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    registry = SearchRegistry.load_default()
    admin = create_engine(PG + "postgres", isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        exists = c.execute(text("SELECT 1 FROM pg_database WHERE datname = :n"), {"n": DB}).first()
        if not exists:
            c.execute(text(f'CREATE DATABASE "{DB}"'))
    engine = create_engine(PG + DB, connect_args={"options": PG_OPTIONS})  # the node's session settings
    need = args.rebuild or not exists
    if not need:
        with engine.connect() as c:
            try:
                n = c.execute(text("SELECT count(*) FROM resource")).scalar_one()
                need = n < args.target
            except Exception:
                need = True
    if need:
        build(engine, args.target, registry)
    measure(engine, registry, args.runs)


if __name__ == "__main__":
    main()
