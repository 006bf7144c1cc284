"""decide(): the table of consent cases (four patterns, classes, periods, labels, purposes,
custodian, patient viewer, break-the-glass, disaster mode)."""

from __future__ import annotations

import pytest
from consent_cases import CASES, NA, PERMIT, Case, case_params

from consent.decision import Decision, Effect, combine, decide


@pytest.mark.parametrize("case", case_params())
def test_decision_table(case: Case):
    decision = decide(case.request, case.parsed(), case.policy)
    assert decision.effect.value == case.expected, decision.render()
    assert decision.allowed is (case.expected == PERMIT)
    assert decision.break_glass is case.break_glass, decision.render()
    assert decision.disaster_mode is case.disaster, decision.render()
    if case.basis is not None:
        assert case.basis in {r.basis for r in decision.reasons}, decision.render()
    assert decision.reasons, "every decision says why"


def test_case_table_is_large_and_mixed():
    outcomes = [c.expected for c in CASES]
    assert len(CASES) >= 150
    assert len({c.id for c in CASES}) == len(CASES), "case ids are unique"
    assert {PERMIT, "deny", NA} <= set(outcomes)
    assert min(outcomes.count(o) for o in set(outcomes)) >= 25


@pytest.mark.parametrize("effects,expected", [
    pytest.param([], Effect.NOT_APPLICABLE, id="nothing-applies"),
    pytest.param([Effect.NOT_APPLICABLE], Effect.NOT_APPLICABLE, id="abstain"),
    pytest.param([Effect.PERMIT, Effect.NOT_APPLICABLE], Effect.PERMIT, id="permit-over-abstain"),
    pytest.param([Effect.PERMIT, Effect.DENY], Effect.DENY, id="deny-overrides-permit"),
    pytest.param([Effect.DENY, Effect.PERMIT, Effect.PERMIT], Effect.DENY, id="deny-overrides-many-permits"),
])
def test_combining_rule_is_deny_overrides(effects, expected):
    assert combine(effects) is expected


def _by_id(case_id: str) -> Case:
    return next(c for c in CASES if c.id == case_id)


def test_permit_reason_names_the_consent_and_provision_path():
    case = _by_id("individual:facility-minus-one-doctor-others-see")
    decision = decide(case.request, case.parsed(), case.policy)
    assert [(r.consent_id, r.provision_path) for r in decision.reasons] == [("a-x-dr9", "Consent.provision")]


def test_deny_reason_names_the_exclusion_provision():
    case = _by_id("all-x:exclusion-beats-per-facility-consent")
    decision = decide(case.request, case.parsed(), case.policy)
    denies = [r for r in decision.reasons if r.effect is Effect.DENY]
    assert [(r.consent_id, r.provision_path) for r in denies] == [("all-x", "Consent.provision.provision[0]")]
    assert "Organization/B" in denies[0].text


def test_refused_break_the_glass_says_why():
    case = _by_id("btg:role-missing")
    decision: Decision = decide(case.request, case.parsed(), case.policy)
    assert not decision.allowed
    assert any("lacks an emergency role" in n for n in decision.notes), decision.render()


def test_refused_break_the_glass_lists_every_failure():
    case = _by_id("btg:reason-missing")
    decision = decide(case.request, case.parsed(), case.policy)
    assert decision.notes == ("break-the-glass refused: no reason given",)


def test_break_the_glass_reason_is_recorded_for_audit():
    case = _by_id("btg:active-allergy")
    decision = decide(case.request, case.parsed(), case.policy)
    bg = [r for r in decision.reasons if r.basis == "break-the-glass"]
    assert len(bg) == 1 and "unconscious patient" in bg[0].text and "Organization/ER" in bg[0].text


def test_revoked_consent_is_reported_as_having_no_effect():
    case = _by_id("per-facility:revoked-one-stops")
    decision = decide(case.request, case.parsed(), case.policy)
    assert any(r.basis == "consent-status" and r.consent_id == "per-a-old" and "inactive" in r.text
               for r in decision.reasons)
