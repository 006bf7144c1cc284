"""The Synthea corpus (100 patients, 19,553 entries) loads through transaction Bundles into
SQLite and PostgreSQL with the per-type counts the bundles ask for; loading it again
changes nothing; the Organizations and Practitioners repeated across bundles are stored once.
"""

from __future__ import annotations

import csv
import hashlib
from collections import Counter

import orjson
import pytest
from sqlalchemy import func, select

from hie.loader import load_paths
from hie.storage.tables import resource, resource_version
from tests.summary.corpus_check import check_every_patient_summary
from tests.support import require_corpus

pytestmark = [pytest.mark.corpus, pytest.mark.slow]


def expected_counts(bundles) -> Counter[str]:
    distinct: set[tuple[str, str]] = set()
    for f in sorted(bundles.glob("*.json")):
        for e in orjson.loads(f.read_bytes())["entry"]:
            distinct.add((e["resource"]["resourceType"], e["fullUrl"]))
    return Counter(t for t, _ in distinct)


def db_state(node) -> tuple[Counter[str], int, str]:
    with node.engine.connect() as conn:
        counts = Counter(dict(conn.execute(
            select(resource.c.res_type, func.count()).where(resource.c.deleted.is_(False)).group_by(resource.c.res_type)
        ).all()))
        versions = conn.execute(select(func.count()).select_from(resource_version)).scalar_one()
        digest = hashlib.sha256()
        for row in conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.version_id,
                                       resource.c.last_updated, resource.c.content).order_by(resource.c.pk)):
            digest.update(repr(row[:4]).encode())
            digest.update(row[4])
    return counts, versions, digest.hexdigest()


def test_synthea_loads_with_expected_counts_and_reload_is_idempotent(node):
    bundles = require_corpus("synthea-r4", "bundles")
    manifest = list(csv.DictReader((bundles.parent / "manifest.csv").open()))
    expected = expected_counts(bundles)

    report = load_paths(node, [bundles])
    assert report.rejected == []
    counts, versions, digest = db_state(node)
    assert counts == expected
    # per-patient types match the manifest totals exactly
    for rtype in ("Observation", "Encounter", "Condition", "MedicationRequest", "ImagingStudy", "Claim",
                  "ExplanationOfBenefit", "Immunization", "Procedure", "DiagnosticReport", "CarePlan", "Goal",
                  "AllergyIntolerance"):
        assert counts[rtype] == sum(int(r[rtype]) for r in manifest), rtype
    assert counts["Patient"] == 100
    # shared Organizations and Practitioners: 145 entries each, stored once per identity
    assert counts["Organization"] == 69 and counts["Practitioner"] == 69
    assert report.created["Organization"] == 69 and report.unchanged["Organization"] == 145 - 69
    assert sum(report.created.values()) == sum(expected.values())
    print(f"\nSynthea load on {node.engine.dialect.name}: {sum(counts.values())} resources, "
          f"{versions} versions, types {dict(counts)}")

    again = load_paths(node, [bundles])
    assert again.rejected == []
    assert sum(again.created.values()) == 0 and sum(again.updated.values()) == 0
    assert sum(again.unchanged.values()) == 19553
    assert db_state(node) == (counts, versions, digest)
    # issue 14: $summary on every patient, on the corpus just loaded (tests/summary/corpus_check.py)
    assert check_every_patient_summary(node, bundles) == 100
