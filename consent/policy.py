"""Regional access policy: break-the-glass, disaster mode and the emergency dataset.

APPI allows disclosure without consent to protect life in an emergency; the MHLW guideline
(v6.0, 2023) requires emergency access to be documented, detectable and audited. The node
models that exception as a policy value, separate from patients' Consents
(https://hl7.org/fhir/R4/consent.html) and from the grants table:

- **break-the-glass** (:class:`BreakGlassRule`, the one specification the token endpoint,
  ``$break-glass``, the SQL predicate and the reference decision all follow): a facility user
  holding an emergency role, acting with purpose of use ETREAT (v3 ActReason,
  https://hl7.org/fhir/R4/v3/ActReason/cs.html, or a specialization such as BTG), declares an
  emergency with a non-empty reason; for the rule's ``duration`` after the declaration they
  see the emergency dataset;
- **disaster mode**: a region-wide switch that opens the emergency dataset to users holding a
  disaster-response role (e.g. DMAT members), with no per-user declaration.

Either way the viewer sees only :class:`EmergencyDataset` (allergies, active problems, current
medications, recent labs, demographics and emergency contacts), and the decision says it was
used so the caller writes the audit trail. Pure code.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Final

from consent.classes import ALLERGY, DEMOGRAPHICS, LAB, MEDICATION, PROBLEM
from consent.request import ResourceFacts
from consent.vocab import ETREAT, purpose_closure

EMERGENCY_ROLE: Final = "emergency-clinician"
DISASTER_ROLE: Final = "disaster-response"


@dataclass(frozen=True)
class EmergencyRule:
    """Which resources of one data class belong to the emergency dataset.

    All given conditions must hold: the resource's status is in ``include_statuses`` (when
    given) and not in ``exclude_statuses``; its clinical date is at most ``max_age_days``
    before now (when given; undated resources then do not qualify).
    """

    data_class: str
    include_statuses: frozenset[str] | None = None
    exclude_statuses: frozenset[str] = frozenset()
    max_age_days: int | None = None

    def admits(self, facts: ResourceFacts, now: datetime) -> tuple[bool, str]:
        if facts.data_class != self.data_class:
            return False, f"data class {facts.data_class!r} is not {self.data_class!r}"
        if self.include_statuses is not None and facts.status not in self.include_statuses:
            wanted = ", ".join(sorted(self.include_statuses))
            return False, f"{self.data_class} status {facts.status!r} is not one of {wanted}"
        if facts.status is not None and facts.status in self.exclude_statuses:
            return False, f"{self.data_class} status {facts.status!r} is excluded"
        if self.max_age_days is not None:
            if facts.clinical_date is None:
                return False, f"{self.data_class} without a clinical date (must be within {self.max_age_days} days)"
            if facts.clinical_date < now - timedelta(days=self.max_age_days):
                return False, f"{self.data_class} older than {self.max_age_days} days"
        return True, f"{self.data_class} is in the emergency dataset"


@dataclass(frozen=True)
class EmergencyDataset:
    """The data an emergency viewer may see: one rule per admitted data class."""

    rules: tuple[EmergencyRule, ...]

    @property
    def data_classes(self) -> frozenset[str]:
        return frozenset(rule.data_class for rule in self.rules)

    def admits(self, facts: ResourceFacts, now: datetime) -> tuple[bool, str]:
        """Is the resource in the dataset, and why (not)."""
        for rule in self.rules:
            if rule.data_class == facts.data_class:
                return rule.admits(facts, now)
        return False, f"data class {facts.data_class!r} is not in the emergency dataset"


DEFAULT_EMERGENCY_DATASET: Final = EmergencyDataset((
    # Patient and RelatedPerson: who the patient is and whom to call.
    EmergencyRule(DEMOGRAPHICS),
    # Every allergy and contraindication that is not known to be over.
    EmergencyRule(ALLERGY, exclude_statuses=frozenset({"inactive", "resolved", "entered-in-error"})),
    # Active problems only (Condition.clinicalStatus active / recurrence / relapse).
    EmergencyRule(PROBLEM, include_statuses=frozenset({"active", "recurrence", "relapse"})),
    # Current medications: prescribed, dispensed or given in the last 90 days.
    EmergencyRule(MEDICATION, exclude_statuses=frozenset(
        {"entered-in-error", "cancelled", "stopped", "draft", "declined", "not-done", "not-taken"}),
        max_age_days=90),
    # Recent lab results: the last 30 days.
    EmergencyRule(LAB, exclude_statuses=frozenset({"entered-in-error", "cancelled", "registered"}),
                  max_age_days=30),
))


@dataclass(frozen=True)
class BreakGlassRule:
    """Who may break the glass, with which purpose of use, and for how long.

    A user may act under break-the-glass when they hold one of ``roles`` and their purpose
    of use is ``purpose`` or a specialization of it (``BTG`` under ``ETREAT``). The token
    endpoint issues a token with that purpose only to such a user, ``$break-glass`` records a
    declaration only from one, and a declaration opens the emergency dataset for ``duration``
    only to a request that still meets both conditions.
    """

    roles: frozenset[str] = frozenset({EMERGENCY_ROLE})
    purpose: str = ETREAT
    duration: timedelta = timedelta(hours=24)

    def is_emergency_purpose(self, purpose: str | None) -> bool:
        """Whether ``purpose`` is the break-the-glass purpose (or a specialization of it)."""
        return self.purpose in purpose_closure(purpose)

    def refusals(self, roles: frozenset[str], purpose: str | None) -> list[str]:
        """Why a user with ``roles`` acting for ``purpose`` may not break the glass (empty: may)."""
        out = []
        if not roles & self.roles:
            out.append("the user lacks an emergency role (" + ", ".join(sorted(self.roles)) + ")")
        if not self.is_emergency_purpose(purpose):
            out.append(f"purpose of use must be {self.purpose}, got {purpose}")
        return out

    def admits(self, roles: frozenset[str], purpose: str | None) -> bool:
        return not self.refusals(roles, purpose)

    def may_claim_purpose(self, roles: frozenset[str], purpose: str | None) -> bool:
        """Whether a token may carry ``purpose``: the emergency purpose only for an emergency role."""
        return not self.is_emergency_purpose(purpose) or bool(roles & self.roles)


@dataclass(frozen=True)
class Policy:
    """Region-wide settings the decision engine applies next to patients' consents."""

    break_glass: BreakGlassRule = field(default=BreakGlassRule())
    disaster_mode: bool = False
    disaster_roles: frozenset[str] = frozenset({DISASTER_ROLE})
    emergency_dataset: EmergencyDataset = field(default=DEFAULT_EMERGENCY_DATASET)
    emergency_includes_sensitive: bool = False
    """Whether emergency access also shows resources with sensitive labels (default: no)."""
    emergency_overrides_deny: bool = True
    """APPI's life-protection exception applies even where a consent denies the viewer; set
    to False to let explicit denials stand against break-the-glass and disaster mode."""


DEFAULT_POLICY: Final = Policy()
