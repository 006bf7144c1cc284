"""explain(): which consent and provision permits or denies a facility, and why."""

from __future__ import annotations

from consent_cases import ALL_PSY_EXCEPT_B, DR1, NOW, PAT, PER_A_REVOKED, facts

from consent.explain import explain
from consent.model import parse_consent

CONSENTS = [parse_consent(c) for c in (ALL_PSY_EXCEPT_B, PER_A_REVOKED, DR1)]


def _findings(exp):
    return {(c.consent_id, p.path): p for c in exp.consents for p in c.provisions}


def test_excluded_facility_sees_the_exclusion_as_the_reason():
    exp = explain(PAT, "B", CONSENTS, now=NOW)
    found = _findings(exp)
    deny = found[("psy-x-b", "Consent.provision.provision[1]")]
    assert deny.applies and deny.effect == "deny"
    assert deny.covers == "Organization/B; all data classes; ordinary and sensitive data"
    assert not found[("dr1", "Consent.provision")].applies
    assert "Organization/B is not among its actors" in found[("dr1", "Consent.provision")].why
    outcomes = dict(exp.by_class)
    assert outcomes["lab"].effect.value == "deny" and outcomes["demographics"].effect.value == "deny"
    assert "administrative" not in outcomes


def test_revoked_consent_is_listed_with_no_effect():
    exp = explain(PAT, "A", CONSENTS, now=NOW)
    revoked = next(c for c in exp.consents if c.consent_id == "per-a-old")
    assert not revoked.in_effect and revoked.note == "status inactive: this consent has no effect"
    assert [p.applies for p in revoked.provisions] == [False]
    assert "Consent/per-a-old (inactive): status inactive" in exp.render()


def test_permitted_facility_gets_per_class_outcomes_with_sources():
    exp = explain(PAT, "A", CONSENTS, now=NOW)
    outcomes = dict(exp.by_class)
    assert outcomes["medication"].allowed
    assert "medication: permit (Consent/psy-x-b Consent.provision)" in exp.render()


def test_resource_explanation_names_the_missing_label():
    exp = explain(PAT, "A", CONSENTS, now=NOW, viewer_practitioner="dr1",
                  resource=facts("problem", labels=("PSY", "HIV")))
    found = _findings(exp)
    assert found[("psy-x-b", "Consent.provision.provision[0]")].why == "permits labels PSY"
    assert not found[("psy-x-b", "Consent.provision")].applies
    assert exp.decision is not None and not exp.decision.allowed
    assert "sensitive label(s) HIV not permitted" in exp.render()
    assert exp.by_class == ()


def test_resource_explanation_for_a_permitted_resource():
    exp = explain(PAT, "X", CONSENTS, now=NOW, viewer_practitioner="dr1", resource=facts("lab"))
    assert exp.decision is not None and exp.decision.allowed
    assert _findings(exp)[("dr1", "Consent.provision")].why == "permits this resource"


def test_patient_without_consents_is_told_nothing_is_shared():
    exp = explain("Patient/nobody", "A", CONSENTS, now=NOW)
    assert exp.consents == ()
    assert "no consent on file" in exp.render()
    assert all(not d.allowed for _, d in exp.by_class)


def test_a_facility_that_may_not_view_is_told_its_network_role_is_why():
    permitted = dict(explain(PAT, "A", CONSENTS, now=NOW).by_class)
    assert permitted["lab"].allowed
    exp = explain(PAT, "A", CONSENTS, now=NOW, viewer_may_view=False)
    outcomes = dict(exp.by_class)
    assert not any(d.allowed for d in outcomes.values())
    assert {r.basis for r in outcomes["lab"].reasons} == {"network-role"}
    assert not dict(explain(PAT, "A", CONSENTS, now=NOW).by_class)["consent"].allowed  # never granted
