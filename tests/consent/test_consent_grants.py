"""compile_grants(): exact rows for the patterns, and proof that the flat grants answer exactly
as decide() does (per table case, and over a seeded sample of a request grid for every consent
set in the table)."""

from __future__ import annotations

import itertools
import random
from dataclasses import replace
from datetime import datetime

import pytest
from consent_cases import ALL_EXCEPT_B, CASES, NOW, Case, case_params, request, without_emergency_or_patient

from consent import builder as b
from consent.decision import decide
from consent.errors import ConsentError
from consent.grants import Grant, compile_grants, grants_permit, utc_text
from consent.model import NODE_TZ, parse_consent
from consent.policy import Policy

PLAIN = Policy()


def _grants(case: Case) -> list[Grant]:
    return [g for c in case.parsed() for g in compile_grants(c)]


@pytest.mark.parametrize("case", case_params())
def test_grants_agree_with_decide(case: Case):
    req = without_emergency_or_patient(case.request)
    assert grants_permit(_grants(case), req) is decide(req, case.parsed(), PLAIN).allowed


def test_agreement_cases_cover_both_outcomes():
    results = [grants_permit(_grants(c), without_emergency_or_patient(c.request)) for c in CASES]
    assert results.count(True) >= 60 and results.count(False) >= 60


_ORGS = ["A", "B", "C", "H", "X"]
_PRACTITIONERS = [None, "dr1", "dr9"]
_CLASSES = ["lab", "imaging", "problem", "medication", "demographics"]
_LABELS = [(), ("PSY",), ("HIV",), ("PSY", "HIV"), ("R",)]
_DATES = [None, datetime(2014, 6, 1, tzinfo=NODE_TZ), datetime(2019, 12, 31, 23, 0, tzinfo=NODE_TZ),
          datetime(2021, 6, 1, tzinfo=NODE_TZ), datetime(2025, 5, 1, tzinfo=NODE_TZ)]
_PURPOSES = ["TREAT", "ETREAT", "HRESCH", None]
_SAMPLE = 2500
_NOWS = [NOW, datetime(2024, 6, 1, tzinfo=NODE_TZ), datetime(2027, 1, 1, tzinfo=NODE_TZ)]


def _consent_sets() -> list:
    seen: dict[str, Case] = {}
    for case in CASES:
        key = repr(case.consents)
        if case.consents and key not in seen:
            seen[key] = case
    return [pytest.param(case, id=case.id) for case in seen.values()]


@pytest.mark.parametrize("case", _consent_sets())
def test_grants_agree_with_decide_on_a_grid_of_requests(case: Case):
    consents = case.parsed()
    grants = [g for c in consents for g in compile_grants(c)]
    base = request()
    disagreements = []
    grid = list(itertools.product(_ORGS, _PRACTITIONERS, _CLASSES, _LABELS, _DATES, _PURPOSES, _NOWS))
    for org, pract, cls, labels, date, purpose, now in random.Random(case.id).sample(grid, _SAMPLE):
        req = replace(base, viewer_org=org, viewer_practitioner=pract, purpose=purpose, now=now,
                      resource=replace(base.resource, data_class=cls, security_labels=frozenset(labels),
                                       clinical_date=date))
        if grants_permit(grants, req) is not decide(req, consents, PLAIN).allowed:
            disagreements.append((org, pract, cls, labels, date, purpose, now))
    assert not disagreements, disagreements[:5]


def _row(g: Grant) -> tuple:
    return (g.effect, g.viewer_org, g.viewer_practitioner, g.data_class, g.security_label, g.purpose, g.provision_path)


def test_all_facilities_with_exclusion_compiles_to_one_permit_and_one_deny():
    rows = compile_grants(parse_consent(ALL_EXCEPT_B, patient_key="PK-1"))
    assert [_row(g) for g in rows] == [
        ("permit", "*", "*", "*", "", "*", "Consent.provision"),
        ("deny", "B", "*", "*", "*", "*", "Consent.provision.provision[0]"),
    ]
    assert {g.patient for g in rows} == {"PK-1"} and {g.consent_id for g in rows} == {"all-x"}


def test_chosen_facilities_compile_to_one_row_per_facility_and_class():
    res = b.chosen_facilities("c", "Patient/p", ["Organization/A", "Organization/B"],
                              provision_kw={"classes": ["lab", "medication"], "purposes": ["TREAT"]})
    assert [_row(g) for g in compile_grants(parse_consent(res))] == [
        ("permit", "A", "*", "lab", "", "TREAT", "Consent.provision"),
        ("permit", "A", "*", "medication", "", "TREAT", "Consent.provision"),
        ("permit", "B", "*", "lab", "", "TREAT", "Consent.provision"),
        ("permit", "B", "*", "medication", "", "TREAT", "Consent.provision"),
    ]


def test_per_individual_compiles_to_any_facility_one_practitioner():
    rows = compile_grants(parse_consent(b.per_individual("i", "Patient/p", ["Practitioner/dr1"])))
    assert [_row(g) for g in rows] == [("permit", "*", "dr1", "*", "", "*", "Consent.provision")]


def test_nested_rows_carry_the_intersection_of_their_ancestors():
    res = b.consent("n", "Patient/p", b.provision(
        "permit", actors=["Organization/A"], purposes=["TREAT"], in_force=b.period("2025-04-01", "2026-03-31"),
        data_period=b.period("2020"), provisions=[
            b.provision("permit", labels=["PSY"], actors=["Practitioner/dr1"], purposes=["ETREAT"],
                        in_force=b.period("2025-05-01"))]))
    nested = [g for g in compile_grants(parse_consent(res)) if g.provision_path.endswith("[0]")]
    assert [_row(g) for g in nested] == [("permit", "A", "dr1", "*", "PSY", "ETREAT", "Consent.provision.provision[0]")]
    (g,) = nested
    assert (g.valid_from, g.valid_to) == (datetime(2025, 5, 1, tzinfo=NODE_TZ),
                                          datetime(2026, 3, 31, 23, 59, 59, 999999, tzinfo=NODE_TZ))
    assert (g.data_from, g.data_to) == (datetime(2020, 1, 1, tzinfo=NODE_TZ), None)


def test_deny_without_labels_covers_every_label_and_permit_never_uses_star():
    res = b.consent("d", "Patient/p", b.provision("permit", provisions=[
        b.provision("permit", labels=["HIV"]), b.provision("deny", actors=["Organization/B"])]))
    rows = compile_grants(parse_consent(res))
    assert {g.security_label for g in rows if g.effect == "permit"} == {"", "HIV"}
    assert {g.security_label for g in rows if g.effect == "deny"} == {"*"}


@pytest.mark.parametrize("status", ["draft", "proposed", "rejected", "inactive", "entered-in-error"])
def test_consent_that_is_not_active_compiles_to_nothing(status):
    assert compile_grants(parse_consent(b.all_facilities("x", "Patient/p", status=status))) == []


def test_compiling_needs_a_consent_id():
    with pytest.raises(ConsentError) as err:
        compile_grants(parse_consent(b.all_facilities(None, "Patient/p")))
    assert err.value.path == "Consent.id"


def test_rows_render_times_as_sortable_utc_text():
    row = compile_grants(parse_consent(b.consent("t", "Patient/p", b.provision(
        "permit", in_force=b.period("2025-04-01"), data_period=b.period(end="2024-12-31")))))[0].as_row()
    assert row["valid_from"] == "2025-03-31T15:00:00.000000Z"
    assert row["data_to"] == "2024-12-31T14:59:59.999999Z"
    assert row["valid_to"] is None and row["data_from"] is None
    assert utc_text(datetime(2025, 1, 1, tzinfo=NODE_TZ)) < utc_text(datetime(2025, 1, 1, 0, 0, 1, tzinfo=NODE_TZ))


def test_custodian_branch_needs_no_grant():
    assert grants_permit([], request("H"))
    assert not grants_permit([], request("A"))
    assert not grants_permit([], request(None))
