"""Hand-derived visibility for the scenario (so the reference comparison cannot be vacuous)."""

from __future__ import annotations

import pytest

from hie.clock import FixedClock
from tests.enforcement.scenario import consents, region
from tests.enforcement.test_sql_matches_reference import NOW_US, VIEWERS, visible_ids, write_all

ADMIN = {"Organization/org-a", "Organization/org-b", "Organization/org-c"}
P1_ORDINARY_FROM_A = {"Patient/p1", "Observation/lab-a-2024", "Observation/lab-a-2026", "Observation/lab-a-undated",
                      "Condition/cond-a", "Condition/cond-a-uninformed", "MedicationRequest/med-a",
                      "DocumentReference/doc-a"}
P1_SENSITIVE = {"Observation/lab-a-hiv", "Observation/lab-a-hiv-psy", "Condition/cond-a-psy"}


def setup(node, state):
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    write_all(node, region())
    if consents()[state]:
        write_all(node, consents()[state])


def clinical(ids):
    return {i for i in ids if not i.startswith("Organization/") and not i.startswith("Consent/")}


@pytest.mark.parametrize("state", ["none", "revoked", "expired"])
def test_without_effective_consent_c_sees_only_administrative_data(node, state):
    setup(node, state)
    assert visible_ids(node, VIEWERS["facility-c"]) == ADMIN


def test_facility_b_only(node):
    setup(node, "facility-b-only")
    b = visible_ids(node, VIEWERS["facility-b"])
    # its own disclosures + p1's ordinary data from A (+ the consent itself), no sensitive data
    assert clinical(b) == P1_ORDINARY_FROM_A | {"Observation/lab-b-2026", "Patient/p2", "Observation/lab-p2-b"}
    assert visible_ids(node, VIEWERS["facility-c"]) == ADMIN


def test_all_except_b(node):
    setup(node, "all-except-b")
    assert clinical(visible_ids(node, VIEWERS["facility-b"])) == {
        "Observation/lab-b-2026", "Patient/p2", "Observation/lab-p2-b"}
    assert clinical(visible_ids(node, VIEWERS["facility-c"])) == P1_ORDINARY_FROM_A | {"Observation/lab-b-2026"}


def test_labs_excluded(node):
    setup(node, "labs-excluded")
    seen = clinical(visible_ids(node, VIEWERS["facility-c"]))
    assert not any(i.startswith("Observation/") for i in seen)
    assert "Condition/cond-a" in seen and "MedicationRequest/med-a" in seen


def test_hiv_needs_its_own_permit_and_every_label_must_be_permitted(node):
    setup(node, "hiv-permitted-for-c")
    seen = visible_ids(node, VIEWERS["facility-c"])
    assert "Observation/lab-a-hiv" in seen
    assert "Observation/lab-a-hiv-psy" not in seen  # PSY not permitted
    assert "Condition/cond-a-psy" not in seen


@pytest.mark.parametrize("state", ["psy-permitted-for-labs-only", "psy-permitted-for-2026-data"])
def test_a_narrowed_label_permit_is_checked_against_the_labelled_row_itself(node, state):
    # cond-a-psy is a 2025 problem: neither a labs-only nor a 2026-data PSY permit covers it,
    # although another row of the same patient (lab-a-hiv-psy, 2026) is covered.
    setup(node, state)
    seen = visible_ids(node, VIEWERS["facility-c"])
    assert "Condition/cond-a-psy" not in seen
    assert ("Observation/lab-a-hiv-psy" in seen) == (state == "psy-permitted-for-labs-only")


def test_data_period_limits_what_is_shared_and_undated_data_stays_hidden(node):
    setup(node, "data-period-2026")
    seen = visible_ids(node, VIEWERS["facility-c"])
    assert "Observation/lab-a-2026" in seen
    assert "Observation/lab-a-2024" not in seen
    assert "Observation/lab-a-undated" not in seen


def test_per_individual_consent_is_for_that_practitioner_only(node):
    setup(node, "per-individual")
    assert "Observation/lab-a-2026" in visible_ids(node, VIEWERS["dr-c-at-c"])
    assert visible_ids(node, VIEWERS["facility-c"]) == ADMIN


def test_patient_sees_own_record_except_uninformed_and_nothing_of_others(node):
    setup(node, "none")
    seen = visible_ids(node, VIEWERS["patient-p1"])
    assert "Condition/cond-a-uninformed" not in seen
    assert "Observation/lab-p2-b" not in seen and "Patient/p2" not in seen
    assert (P1_ORDINARY_FROM_A - {"Condition/cond-a-uninformed"}) | P1_SENSITIVE | {"Observation/lab-b-2026"} <= seen
