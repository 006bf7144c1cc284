"""``$summary`` on every Synthea patient of a loaded corpus (issue 14, acceptance 1).

Called by tests/conformance/test_synthea_load.py right after it has loaded the whole
corpus (SQLite and PostgreSQL), so the corpus is loaded once for both checks. Each
patient's document must validate with the R4B models, put the Composition first, resolve
every section entry, and hold exactly the patient's records of each section's type (the
manifest's per-patient counts, up to the section cap)."""

from __future__ import annotations

import csv
from pathlib import Path
from typing import Any

from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.auth.service import system_token
from hie.summary.sections import MAX_ENTRIES
from tests.summary.summary_support import BASE, check_document, section_refs

#: section LOINC -> the manifest column whose records it must hold in full.
FULL_SECTIONS = {"48765-2": "AllergyIntolerance", "11369-6": "Immunization", "47519-4": "Procedure",
                 "10160-0": "MedicationRequest"}


def check_every_patient_summary(node: Any, bundles: Path) -> int:
    """Run ``$summary`` for each patient of the corpus manifest; return how many were checked."""
    manifest = list(csv.DictReader((bundles.parent / "manifest.csv").open()))
    token = system_token(node, "system/*.rs", fhir_base=BASE)
    with TestClient(create_app(node, audit=False), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as client:
        for row in manifest:
            pid = row["patient_id"]
            r = client.get(f"/fhir/Patient/{pid}/$summary")
            assert r.status_code == 200, (pid, r.text[:500])
            comp = check_document(r.json(), pid)
            refs = section_refs(comp)
            for code, column in FULL_SECTIONS.items():
                assert len(refs.get(code, [])) == min(int(row[column]), MAX_ENTRIES), (pid, code, column)
            conditions = len(refs.get("11450-4", [])) + len(refs.get("11348-0", []))
            assert conditions == int(row["Condition"]), (pid, "conditions")
            assert all(ref.startswith(("Observation/", "DiagnosticReport/")) for ref in refs.get("30954-2", []))
    return len(manifest)
