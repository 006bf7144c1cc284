"""Consent enforcement overhead on search: a viewing facility vs the system principal.

Uses the search benchmark's PostgreSQL database (``bench/search.py`` builds it: >= 1,000,000
Synthea-derived resources). Prepares it for enforcement once: adds the enforcement columns
if the database predates them, sets each row's data class (``consent.classes``) and a
custodian (the disclosing facility, spread over five facilities), and compiles consents:
half of the patients consent to "all participating facilities" with labs excluded for
every tenth of them, the others give no consent. The five disclosing facilities and the
viewer are registered as active Organizations of the facility directory
(:mod:`hie.enforcement.facilities`, written through the repository so that its write
listener builds the directory snapshot): the disclosers with the network role
``disclosing``, the viewer with ``both``, so that it may view and its predicate has the
same branches (administrative, own disclosures, grants) as before network roles existed.
An unregistered viewer would see administrative rows only. Then runs the clinician queries of
``bench/search.py`` for the patients who consented, as the system principal and as a
viewing facility whose every row passes through the consent predicate (grants,
deny-overrides, label checks), and prints p50/p95 for both and the ratios.

The two principals run the very same queries (same parameters), interleaved: each
generated query runs once as each principal, alternating which goes first, each as its
own request (each request builds its repository and so its access predicate, with the
facility-directory lookup, as the node does). On a shared
machine whose load changes over a run, this pairs like with like.

    .venv/bin/python bench/consent_overhead.py [--runs 60]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from bench.search import DB, PG, clinician_queries, percentiles, request_context, search  # noqa: E402
from hie.auth.registry import facility  # noqa: E402
from hie.clock import SystemClock  # noqa: E402
from hie.enforcement import facilities  # noqa: E402
from hie.enforcement.policy import ConsentPolicy  # noqa: E402
from hie.enforcement.tables import consent_grant, node_setting  # noqa: E402
from hie.principal import SYSTEM, Principal  # noqa: E402
from hie.search.registry import SearchRegistry  # noqa: E402
from hie.storage.db import PG_OPTIONS  # noqa: E402
from hie.storage.repository import Repository, Write  # noqa: E402
from hie.storage.tables import resource_version  # noqa: E402

FACILITIES = ["1110000011", "1110000029", "1110000037", "1110000045", "1110000052"]
VIEWER = "1130000016"  # a facility that disclosed nothing: every row goes through the grants

CLASS_SQL = """
UPDATE resource SET data_class = CASE
  WHEN res_type = 'Patient' THEN 'demographics'
  WHEN res_type = 'Condition' THEN 'problem'
  WHEN res_type = 'AllergyIntolerance' THEN 'allergy'
  WHEN res_type IN ('MedicationRequest', 'Immunization') THEN 'medication'
  WHEN res_type IN ('ImagingStudy') THEN 'imaging'
  WHEN res_type IN ('Encounter') THEN 'encounter'
  WHEN res_type IN ('Claim', 'ExplanationOfBenefit') THEN 'financial'
  WHEN res_type IN ('Organization', 'Practitioner') THEN 'administrative'
  WHEN res_type = 'Provenance' THEN 'audit'
  WHEN res_type = 'Observation' AND content LIKE '%laboratory%' THEN 'lab'
  WHEN res_type = 'Observation' AND content LIKE '%vital-signs%' THEN 'vitals'
  WHEN res_type = 'DiagnosticReport' THEN 'lab'
  ELSE 'clinical' END,
 custodian = CASE WHEN res_type IN ('Organization', 'Practitioner') THEN NULL
  ELSE (ARRAY['1110000011','1110000029','1110000037','1110000045','1110000052'])[1 + (pk % 5)] END,
 patient_key = CASE WHEN res_type IN ('Organization', 'Practitioner') THEN NULL ELSE patient_key END
"""


def register_facilities(engine, registry: SearchRegistry, policy: ConsentPolicy) -> None:  # noqa: ANN001
    """The disclosers and the viewer as active Organizations, written by the system principal
    through the repository with the facility directory's write listener (idempotent: an
    unchanged Organization is a no-op write)."""
    resource_version.create(engine, checkfirst=True)
    node_setting.create(engine, checkfirst=True)
    orgs = [facility(fid=f"bench-org-{code}", code=code, name=f"Bench facility {code}", kind="hospital",
                     role="disclosing", region="13") for code in FACILITIES]
    orgs.append(facility(fid=f"bench-org-{VIEWER}", code=VIEWER, name="Bench viewer", kind="hospital",
                         role="both", region="13"))
    with engine.begin() as c:
        repo = Repository(c, SYSTEM, registry=registry, policy=policy, listeners=[facilities.on_write])
        repo.write_batch([Write("update", "Organization", o["id"], o) for o in orgs])
        # the role rows the access predicate reads (a database prepared by an older tree has none)
        facilities.sync_roles(c, facilities.directory(c), by="bench", now=int(time.time() * 1_000_000))
    with engine.connect() as c:
        registered = [facilities.lookup(c, code) for code in [*FACILITIES, VIEWER]]
    if not all(f is not None and f.active for f in registered) or not registered[-1].may_view:
        sys.exit("facility directory: the bench facilities are not registered as expected")


def prepare(engine) -> list[str]:  # noqa: ANN001
    insp = inspect(engine)
    cols = {c["name"] for c in insp.get_columns("resource")}
    with engine.begin() as c:
        if "sensitive_labels" not in cols:
            print("adding enforcement columns ...", flush=True)
            c.execute(text("ALTER TABLE resource ADD COLUMN sensitive_labels varchar(128) NOT NULL DEFAULT ' '"))
            c.execute(text("ALTER TABLE resource ADD COLUMN clinical_date bigint"))
            c.execute(text("ALTER TABLE resource ADD COLUMN status varchar(32)"))
            c.execute(text("ALTER TABLE resource ADD COLUMN hidden_from_patient boolean NOT NULL DEFAULT false"))
        done = c.execute(text("SELECT count(*) FROM resource WHERE data_class <> 'clinical'")).scalar_one()
    if not done:
        print("setting data classes and custodians ...", flush=True)
        t0 = time.time()
        with engine.begin() as c:
            c.execute(text(CLASS_SQL))
        print(f"  {time.time() - t0:.0f}s", flush=True)
    consent_grant.create(engine, checkfirst=True)
    with engine.begin() as c:
        pats = [r[0] for r in c.execute(text("SELECT res_id FROM resource WHERE res_type = 'Patient' ORDER BY res_id"))]
        consented = pats[::2]
        if not c.execute(text("SELECT count(*) FROM consent_grant")).scalar_one():
            rows = []
            for i, pid in enumerate(consented):
                rows.append({"consent_pk": i, "consent_id": f"bench-{i}", "patient_key": pid, "effect": "permit",
                             "viewer_org": "*", "viewer_practitioner": "*", "data_class": "*", "security_label": "",
                             "purpose": "*", "data_from": None, "data_to": None, "valid_from": None, "valid_to": None,
                             "provision_path": "Consent.provision"})
                if i % 10 == 0:
                    rows.append({**rows[-1], "effect": "deny", "data_class": "lab", "security_label": "*",
                                 "provision_path": "Consent.provision.provision[0]"})
            c.execute(consent_grant.insert(), rows)
        c.execute(text("ANALYZE consent_grant"))
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as c:
        c.execute(text("ANALYZE resource"))
    return consented


def paired(engine, registry, runs: int, policy, viewer: Principal,  # noqa: ANN001
           patients: list[str]) -> dict[str, dict[str, list[float]]]:
    """{label: {"system": [ms...], "viewer": [ms...], "hits_system": [...], "hits_viewer": [...]}}."""
    out: dict[str, dict[str, list[float]]] = {}
    for label, make in clinician_queries(engine, patients):
        rec: dict[str, list[float]] = {"system": [], "viewer": [], "hits_system": [], "hits_viewer": []}
        with engine.connect() as cs, engine.connect() as cv:
            for i in range(runs + 3):
                t, params = make()
                order = [("system", cs, SYSTEM), ("viewer", cv, viewer)]
                if i % 2:
                    order.reverse()
                for who, conn, principal in order:
                    t0 = time.perf_counter()
                    b = search(request_context(conn, registry, principal, policy), t, params)
                    dt = (time.perf_counter() - t0) * 1000
                    conn.rollback()  # one request = one transaction
                    if i >= 3:  # warm-up
                        rec[who].append(dt)
                        rec[f"hits_{who}"].append(b.get("total", len(b["entry"])))
        out[label] = rec
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    engine = create_engine(PG + DB, connect_args={"options": PG_OPTIONS})  # the node's session settings
    consented = prepare(engine)
    registry = SearchRegistry.load_default()
    policy = ConsentPolicy(clock=SystemClock())
    register_facilities(engine, registry, policy)
    viewer = Principal(kind="user", name="viewer", user_id="bench", organization_id=VIEWER)
    print(f"system principal vs viewing facility {VIEWER} (consent predicate on every row), same queries, interleaved")
    res = paired(engine, registry, args.runs, policy, viewer, consented)
    head = f"{'query':<84} {'system p50/p95':>15} {'viewer p50/p95':>15} {'hits s/v':>11} {'ratio p50':>9} {'p95':>6}"
    print(head)
    tb = te = 0.0
    for label, rec in res.items():
        (b50, b95), (e50, e95) = percentiles(rec["system"]), percentiles(rec["viewer"])
        tb, te = tb + b50, te + e50
        hits = f"{statistics.mean(rec['hits_system']):.0f}/{statistics.mean(rec['hits_viewer']):.0f}"
        print(f"{label[:84]:<84} {b50:7.1f}/{b95:<7.1f} {e50:7.1f}/{e95:<7.1f} {hits:>11} "
              f"{e50 / b50:9.2f} {e95 / b95:6.2f}")
    print(f"overall (sum of p50s): system {tb:.1f} ms, viewer {te:.1f} ms, overhead {100 * (te / tb - 1):.1f}%")
    per_patient = [(percentiles(r["system"])[0], percentiles(r["viewer"])[0]) for lbl, r in res.items()
                   if "region-wide" not in lbl]
    sb, sv = sum(b for b, _ in per_patient), sum(v for _, v in per_patient)
    print(f"per-patient queries only (sum of p50s): system {sb:.1f} ms, viewer {sv:.1f} ms, "
          f"overhead {100 * (sv / sb - 1):.1f}%")


if __name__ == "__main__":
    main()
