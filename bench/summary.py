"""``Patient/$summary`` latency for a 2,000-resource patient (issue 14, acceptance 5).

Builds a throwaway database (PostgreSQL by default, ``--db sqlite`` for the embedded one):
three registered facilities, one patient whose 2,000 records are spread over them (labs,
vital signs, encounters, conditions, prescriptions and dispenses, immunizations,
procedures, allergies, reports, care plans), a consent that shares them with every
facility, and ``--others`` background patients. Then it runs the operation as the node
does below HTTP and token checks: ``Node.context(principal)`` + the interaction table's
``$summary`` row + JSON serialization of the document, ``--runs`` times each as the system
principal and as a viewing facility's practitioner (through the consent predicate),
interleaved, after ``--warmup`` runs; with ``--http`` also over the ASGI app in process
(bearer token, routing, the AuditEvent with every resource shown, JSON rendering) as the
system client. Prints p50/p95/p99 (ms), the CPU time of this process, the document size and
the statements each summary sends (``hie/storage/statements.py``).

    .venv/bin/python bench/summary.py                 # PostgreSQL (HIE_TEST_PG_URL server)
    .venv/bin/python bench/summary.py --db sqlite --runs 100
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench._common import database, percentiles, statement_counter, tree_commit  # noqa: E402

HOME, LAB, CLINIC, VIEWER = "1110000011", "1110000045", "1110000052", "1170000010"
TAG = "http://hie.example.jp/fhir/CodeSystem/custodian"
INST = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID"
ROLE = "http://hie.example.jp/fhir/StructureDefinition/network-role"
LOINC, JLAC10 = "http://loinc.org", "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
#: records of the patient per type (2,000 in all)
MIX = {"Observation-lab": 700, "Observation-vital": 300, "Encounter": 200, "Condition": 120,
       "MedicationRequest": 200, "MedicationDispense": 120, "Immunization": 60, "Procedure": 120,
       "AllergyIntolerance": 20, "DiagnosticReport": 100, "CarePlan": 60}


def _meta(code: str) -> dict[str, Any]:
    return {"tag": [{"system": TAG, "code": code}]}


def _cc(system: str, code: str, text: str) -> dict[str, Any]:
    return {"coding": [{"system": system, "code": code, "display": text}], "text": text}


def _day(i: int) -> str:
    return f"{2020 + (i // 300) % 6}-{1 + (i // 25) % 12:02d}-{1 + i % 28:02d}T09:00:00+09:00"


def _record(kind: str, i: int, pid: str) -> dict[str, Any]:
    fac = (HOME, LAB, CLINIC)[i % 3]
    subj = {"reference": f"Patient/{pid}"}
    rid = f"{pid}-{kind.lower()}-{i}"
    base: dict[str, Any] = {"id": rid, "meta": _meta(fac)}
    if kind == "Observation-lab":
        return {**base, "resourceType": "Observation", "status": "final", "subject": subj,
                "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "laboratory", "Lab")],
                "code": _cc(JLAC10, f"3D{i % 40:03d}000001926101", f"検査項目{i % 40}"),
                "effectiveDateTime": _day(i), "valueQuantity": {"value": 5 + i % 7, "unit": "mg/dL"}}
    if kind == "Observation-vital":
        code = ("8867-4", "29463-7", "8310-5", "59408-5")[i % 4]
        return {**base, "resourceType": "Observation", "status": "final", "subject": subj,
                "category": [_cc("http://terminology.hl7.org/CodeSystem/observation-category", "vital-signs",
                                 "Vital Signs")],
                "code": _cc(LOINC, code, code), "effectiveDateTime": _day(i),
                "valueQuantity": {"value": 60 + i % 30, "unit": "1"}}
    if kind == "Encounter":
        return {**base, "resourceType": "Encounter", "status": "finished", "subject": subj,
                "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
                "period": {"start": _day(i)}}
    if kind == "Condition":
        status = ("active", "resolved")[i % 2]
        return {**base, "resourceType": "Condition", "subject": subj, "code": {"text": f"病名{i}"},
                "clinicalStatus": _cc("http://terminology.hl7.org/CodeSystem/condition-clinical", status, status),
                "onsetDateTime": _day(i)}
    if kind in ("MedicationRequest", "MedicationDispense"):
        med = _cc("http://medis.or.jp/CodeSystem/master-HOT9", f"{100000000 + i % 30}", f"薬剤{i % 30}")
        if kind == "MedicationRequest":
            return {**base, "resourceType": kind, "status": ("active", "completed")[i % 2], "intent": "order",
                    "subject": subj, "medicationCodeableConcept": med, "authoredOn": _day(i)[:10]}
        return {**base, "resourceType": kind, "status": "completed", "subject": subj,
                "medicationCodeableConcept": med, "whenHandedOver": _day(i)}
    if kind == "Immunization":
        return {**base, "resourceType": kind, "status": "completed", "patient": subj,
                "vaccineCode": {"text": f"ワクチン{i % 8}"}, "occurrenceDateTime": _day(i)}
    if kind == "Procedure":
        return {**base, "resourceType": kind, "status": "completed", "subject": subj,
                "code": {"text": f"処置{i % 25}"}, "performedDateTime": _day(i)}
    if kind == "AllergyIntolerance":
        return {**base, "resourceType": kind, "patient": subj, "code": {"text": f"アレルゲン{i}"},
                "category": ["medication" if i % 2 else "food"], "criticality": "high" if i % 4 == 1 else "low"}
    if kind == "DiagnosticReport":
        return {**base, "resourceType": kind, "status": "final", "subject": subj,
                "code": _cc(LOINC, "24323-8", "Comprehensive metabolic panel"), "effectiveDateTime": _day(i)}
    return {**base, "resourceType": "CarePlan", "status": ("active", "completed")[i % 2], "intent": "plan",
            "subject": subj, "title": f"計画{i}"}


def region(pid: str, others: int) -> list[dict[str, Any]]:
    from consent import builder

    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": f"fac-{c}", "name": f"施設{c}", "active": True,
         "extension": [{"url": ROLE, "valueCode": "viewing" if c == VIEWER else "both"}],
         "identifier": [{"system": INST, "value": c}]} for c in (HOME, LAB, CLINIC, VIEWER)]
    for p in [pid, *(f"bg{k}" for k in range(others))]:
        out.append({"resourceType": "Patient", "id": p, "meta": _meta(HOME), "gender": "female",
                    "name": [{"family": "要約", "given": [p]}], "birthDate": "1960-01-01"})
        out.append(builder.all_facilities(f"consent-{p}", f"Patient/{p}", recorded_by=f"Organization/fac-{HOME}",
                                          date_time="2026-01-10T10:00:00+09:00"))
    for kind, n in MIX.items():
        out += [_record(kind, i, pid) for i in range(n)]
    for k in range(others):
        out += [_record(kind, i, f"bg{k}") for kind, n in MIX.items() for i in range(n // 10)]
    return out


def load(node: Any, resources: list[dict[str, Any]]) -> None:
    from hie.ingest import ingest_bundle

    first = [r for r in resources if r["resourceType"] in ("Organization", "Patient")]
    rest = [r for r in resources if r["resourceType"] not in ("Organization", "Patient")]
    for chunk in [first, *(rest[i:i + 500] for i in range(0, len(rest), 500))]:
        ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in chunk]},
            source="bench:summary")


def run_once(node: Any, principal: Any, pid: str) -> tuple[float, float, int]:
    """(wall ms, this process's CPU ms, document bytes) of one summary."""
    import orjson

    from hie.interactions.table import Call, execute, parse

    t, c = time.perf_counter(), time.process_time()
    with node.context(principal, write=False) as ctx:
        result = execute(ctx, Call(parse("GET", f"Patient/{pid}/$summary")))
    size = len(orjson.dumps(result.body))
    return (time.perf_counter() - t) * 1000, (time.process_time() - c) * 1000, size


def _http_runs(node: Any, pid: str, runs: int, warmup: int) -> tuple[list[float], list[float]]:
    """The same request over the ASGI app in process (token check, routing, audit recorded with
    every resource shown, JSON rendering), as the system client."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.auth.service import system_token

    base = "http://testserver/fhir"
    token = system_token(node, "system/*.rs", fhir_base=base)
    wall: list[float] = []
    used: list[float] = []
    with TestClient(create_app(node), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as client:
        for i in range(warmup + runs):
            t, c = time.perf_counter(), time.process_time()
            r = client.get(f"/fhir/Patient/{pid}/$summary")
            assert r.status_code == 200, r.text[:300]
            if i >= warmup:
                wall.append((time.perf_counter() - t) * 1000)
                used.append((time.process_time() - c) * 1000)
    return wall, used



def built_region(url: str, data_dir: Path, db: str, pid: str, others: int, **settings: Any) -> Any:
    """A node on ``url``, tuned as a serving process is (hie/asgi.py, ADR 0009), holding the
    bench region (:func:`region`); prints what was loaded. Shared with bench/viewer_page.py."""
    from hie.app import Node
    from hie.config import Settings

    node = Node(Settings(database_url=url, data_dir=data_dir, audit_system_use=False, **settings))
    node.upgrade()
    try:  # absent in old trees
        from hie.runtime import tune_gc
    except ImportError:
        pass
    else:
        tune_gc()
    resources = region(pid, others)
    t = time.perf_counter()
    load(node, resources)
    print(f"tree {tree_commit()}, {db}: loaded {len(resources)} resources "
          f"({sum(MIX.values())} for the patient) in {time.perf_counter() - t:.1f} s")
    return node

def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--db", choices=("postgresql", "sqlite"), default="postgresql")
    ap.add_argument("--runs", type=int, default=200)
    ap.add_argument("--warmup", type=int, default=10)
    ap.add_argument("--others", type=int, default=20, help="background patients (200 records each)")
    ap.add_argument("--http", action="store_true", help="also run the request over the ASGI app with audit on")
    args = ap.parse_args()

    from hie.principal import SYSTEM, Principal

    pid = "sum-bench"
    with tempfile.TemporaryDirectory() as tmp, database(args.db, Path(tmp)) as url:
        node = built_region(url, Path(tmp), args.db, pid, args.others, base_url="http://testserver/fhir")
        viewer = Principal(kind="user", name="viewer", user_id="bench-viewer", organization_id=VIEWER)
        principals = {"system": SYSTEM, "viewer": viewer}
        counter = statement_counter(node.engine)
        for name, p in principals.items():
            for _ in range(args.warmup):
                run_once(node, p, pid)
            with counter.counting(thread_only=True) as block:
                _ms, _cpu, size = run_once(node, p, pid)
            print(f"{name}: document {size / 1024:.0f} KiB, {block.count} statements per summary")
        samples: dict[str, list[float]] = {n: [] for n in principals}
        cpu: dict[str, list[float]] = {n: [] for n in principals}
        for i in range(args.runs):
            order = list(principals.items()) if i % 2 == 0 else list(principals.items())[::-1]
            for name, p in order:
                wall, used, _size = run_once(node, p, pid)
                samples[name].append(wall)
                cpu[name].append(used)
        if args.http:
            samples["system over HTTP"], cpu["system over HTTP"] = _http_runs(node, pid, args.runs, args.warmup)
        for name, s in samples.items():
            q, qc = percentiles(s), percentiles(cpu[name])
            print(f"{name}: $summary p50 {q[50]:.1f} ms, p95 {q[95]:.1f} ms, p99 {q[99]:.1f} ms ({len(s)} runs); "
                  f"client-process CPU p50 {qc[50]:.1f} ms, p95 {qc[95]:.1f} ms")
        print(f"load average during the runs: {' '.join(f'{x:.1f}' for x in os.getloadavg())} "
              f"on {os.cpu_count()} CPUs")
        node.close()


if __name__ == "__main__":
    main()
