"""Consent enforcement overhead on search: a viewing facility vs the system principal.

Uses the search benchmark's PostgreSQL database (``bench/search.py`` builds it: >= 1,000,000
Synthea-derived resources). Prepares it for enforcement once: adds the enforcement columns
if the database predates them, sets each row's data class (``consent.classes``) and a
custodian (the disclosing facility, spread over five facilities), and compiles consents:
half of the patients consent to "all participating facilities" with labs excluded for
every tenth of them, the others give no consent. Then runs the same clinician queries
for the patients who consented, as the system principal and as a viewing facility whose
every row passes through the consent predicate (grants, deny-overrides, label checks),
and prints p50/p95 for both and the ratio.

    .venv/bin/python bench/consent_overhead.py [--runs 60]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from sqlalchemy import create_engine, inspect, text  # noqa: E402

from bench.search import DB, PG, measure  # noqa: E402
from hie.clock import SystemClock  # noqa: E402
from hie.enforcement.policy import ConsentPolicy  # noqa: E402
from hie.enforcement.tables import consent_grant  # noqa: E402
from hie.principal import Principal  # noqa: E402
from hie.search.registry import SearchRegistry  # noqa: E402

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


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--runs", type=int, default=60)
    args = ap.parse_args()
    engine = create_engine(PG + DB, connect_args={"options": "-c jit=off"})  # as the node's engine
    consented = prepare(engine)
    registry = SearchRegistry.load_default()
    policy = ConsentPolicy(clock=SystemClock())
    viewer = Principal(kind="user", name="viewer", user_id="bench", organization_id=VIEWER)
    print("\n== system principal ==")
    base = measure(engine, registry, args.runs, patients=consented)
    print(f"\n== viewing facility {VIEWER} (consent predicate on every row) ==")
    enforced = measure(engine, registry, args.runs, patients=consented,
                       access=lambda conn: policy.predicate(viewer, conn))
    print(f"\n{'query':<92} {'p50 ratio':>9} {'p95 ratio':>9}")
    for label in base:
        b, e = base[label], enforced[label]
        print(f"{label:<92} {e[0] / b[0]:9.2f} {e[1] / b[1]:9.2f}")
    tb = sum(v[0] for v in base.values())
    te = sum(v[0] for v in enforced.values())
    print(f"overall (sum of p50s): system {tb:.1f} ms, viewer {te:.1f} ms, overhead {100 * (te / tb - 1):.1f}%")


if __name__ == "__main__":
    main()
