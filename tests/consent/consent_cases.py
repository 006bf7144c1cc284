"""The table of consent decision cases shared by the decision and the grants tests.

Each case: the patient's consents (FHIR JSON built with ``consent.builder``), one access
request, the region policy and the expected outcome. Dates: now is 2025-06-01 12:00 JST.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from consent import builder as b
from consent.classes import ALL_CLASSES
from consent.grants import NEVER_GRANTED
from consent.model import NODE_TZ, Consent, parse_consent
from consent.policy import DISASTER_ROLE, EMERGENCY_ROLE, BreakGlassRule, Policy
from consent.request import AccessRequest, BreakGlass, ResourceFacts
from consent.vocab import SENSITIVE_LABELS

NOW = datetime(2025, 6, 1, 12, 0, tzinfo=NODE_TZ)
PAT = "Patient/p1"
OTHER_PAT = "Patient/p2"
CUSTODIAN = "H"

PERMIT, DENY, NA = "permit", "deny", "not-applicable"


def days_ago(n: float) -> datetime:
    return NOW - timedelta(days=n)


def facts(data_class: str = "lab", *, labels: tuple[str, ...] = (), date: datetime | None = days_ago(30),
          custodian: str = CUSTODIAN, patient: str = PAT, tags: tuple[str, ...] = (),
          status: str | None = None) -> ResourceFacts:
    return ResourceFacts(patient=patient, custodian=custodian, data_class=data_class,
                         security_labels=frozenset(labels), clinical_date=date, tags=frozenset(tags),
                         status=status)


def request(org: str | None = "A", *, practitioner: str | None = None, roles: tuple[str, ...] = (),
            purpose: str | None = "TREAT", now: datetime = NOW, patient_viewer: str | None = None,
            btg: BreakGlass | None = None, may_view: bool = True, may_disclose: bool = True,
            **fact_kw: Any) -> AccessRequest:
    return AccessRequest(resource=facts(**fact_kw), now=now, viewer_org=org, viewer_practitioner=practitioner,
                         roles=frozenset(roles), purpose=purpose, viewer_patient=patient_viewer, break_glass=btg,
                         viewer_may_view=may_view, viewer_may_disclose=may_disclose)


def btg(hours_ago: float = 1, reason: str = "unconscious patient brought in by ambulance") -> BreakGlass:
    return BreakGlass(declared_at=NOW - timedelta(hours=hours_ago), reason=reason)


def emergency(org: str = "ER", *, purpose: str = "ETREAT", roles: tuple[str, ...] = (EMERGENCY_ROLE,),
              declaration: BreakGlass | None = None, **fact_kw: Any) -> AccessRequest:
    return request(org, roles=roles, purpose=purpose, btg=declaration or btg(), **fact_kw)


@dataclass(frozen=True)
class Case:
    id: str
    consents: tuple[dict[str, Any], ...]
    request: AccessRequest
    expected: str
    policy: Policy = field(default_factory=Policy)
    basis: str | None = None
    break_glass: bool = False
    disaster: bool = False

    def parsed(self) -> list[Consent]:
        return [parse_consent(c) for c in self.consents]


# --------------------------------------------------------------------------- consents

ALL = b.all_facilities("all", PAT)
ALL_EXCEPT_B = b.all_facilities("all-x", PAT, exclude=["Organization/B"])
ALL_EXCEPT_BC = b.all_facilities("all-xx", PAT, exclude=["Organization/B", "Organization/C"])
ALL_EXCEPT_CUSTODIAN = b.all_facilities("all-xh", PAT, exclude=[f"Organization/{CUSTODIAN}"])
CHOSEN_AB = b.chosen_facilities("chosen", PAT, ["Organization/A", "Organization/B"])
CHOSEN_A_MED_LAB = b.chosen_facilities("chosen-ml", PAT, ["Organization/A"],
                                       provision_kw={"classes": ["medication", "lab"]})
PER_A = b.per_facility("per-a", PAT, "Organization/A")
PER_B = b.per_facility("per-b", PAT, "Organization/B")
PER_A_REVOKED = b.per_facility("per-a-old", PAT, "Organization/A", status="inactive")
PER_A_OTHER_PATIENT = b.per_facility("per-a-p2", OTHER_PAT, "Organization/A")
DR1 = b.per_individual("dr1", PAT, ["Practitioner/dr1"])
ORG_A_EXCEPT_DR9 = b.consent("a-x-dr9", PAT, b.provision("permit", actors=["Organization/A"], provisions=[
    b.provision("deny", actors=["Practitioner/dr9"])]))
ONLY_MEDICATION = b.consent("med", PAT, b.provision("permit", classes=["medication"]))
ALL_BUT_IMAGING = b.consent("no-img", PAT, b.provision("permit", provisions=[b.provision("deny", classes=["imaging"])]))
DATA_FROM_2020 = b.consent("d2020", PAT, b.provision("permit", data_period=b.period("2020-01-01")))
DATA_UNTIL_2022 = b.consent("d-2022", PAT, b.provision("permit", data_period=b.period(end="2022-12-31")))
DENY_BEFORE_2015 = b.consent("no-old", PAT, b.provision("permit", provisions=[
    b.provision("deny", data_period=b.period(end="2014-12-31"))]))
EXPIRED = b.consent("expired", PAT, b.provision("permit", in_force=b.period("2024-04-01", "2025-03-31")))
NOT_YET = b.consent("not-yet", PAT, b.provision("permit", in_force=b.period("2025-07-01")))
IN_FORCE = b.consent("in-force", PAT, b.provision("permit", in_force=b.period("2025-04-01", "2026-03-31")))
ENDS_TODAY = b.consent("ends-today", PAT, b.provision("permit", in_force=b.period(end="2025-06-01")))
ENDED_YESTERDAY = b.consent("ended", PAT, b.provision("permit", in_force=b.period(end="2025-05-31")))
DENY_B_THIS_YEAR = b.consent("b-2025", PAT, b.provision("permit", provisions=[
    b.provision("deny", actors=["Organization/B"], in_force=b.period("2025-01-01", "2025-12-31"))]))
DENY_B_LAST_YEAR = b.consent("b-2024", PAT, b.provision("permit", provisions=[
    b.provision("deny", actors=["Organization/B"], in_force=b.period("2024-01-01", "2024-12-31"))]))
DENY_B_STANDALONE = b.consent("deny-b", PAT, b.provision("deny", actors=["Organization/B"]))
DENY_B_REVOKED = b.consent("deny-b-old", PAT, b.provision("deny", actors=["Organization/B"]), status="inactive")
TREAT_ONLY = b.consent("treat", PAT, b.provision("permit", purposes=["TREAT"]))
ETREAT_ONLY = b.consent("etreat", PAT, b.provision("permit", purposes=["ETREAT"]))
NO_RESEARCH = b.consent("no-res", PAT, b.provision("permit", provisions=[b.provision("deny", purposes=["HRESCH"])]))


def with_label_permit(cid: str, labels: list[str], **kw: Any) -> dict[str, Any]:
    return b.consent(cid, PAT, b.provision("permit", provisions=[b.provision("permit", labels=labels, **kw)]))


ALL_PLUS_PSY = with_label_permit("psy", ["PSY"])
ALL_PLUS_PSY_HIV_SEPARATE = b.consent("psy-hiv", PAT, b.provision("permit", provisions=[
    b.provision("permit", labels=["PSY"]), b.provision("permit", labels=["HIV"])]))
HIV_ONLY = b.consent("hiv-only", PAT, b.provision("permit", labels=["HIV"]))
PSY_FOR_A = with_label_permit("psy-a", ["PSY"], actors=["Organization/A"])
PSY_FOR_PROBLEMS = with_label_permit("psy-prob", ["PSY"], classes=["problem"])
PSY_ONLY_ROOT = b.consent("psy-root", PAT, b.provision("permit", labels=["PSY"]))
ALL_PSY_DENY_HIV = b.consent("psy-no-hiv", PAT, b.provision("permit", provisions=[
    b.provision("permit", labels=["PSY"]), b.provision("deny", labels=["HIV"])]))
ALL_PSY_EXCEPT_B = b.consent("psy-x-b", PAT, b.provision("permit", provisions=[
    b.provision("permit", labels=["PSY"]), b.provision("deny", actors=["Organization/B"])]))

STATUSES = ["draft", "proposed", "rejected", "inactive", "entered-in-error"]


def _cases() -> list[Case]:
    c: list[Case] = []
    add = c.append

    # Pattern 1: all participating facilities, optionally minus an exclusion list.
    add(Case("all:any-facility-sees-lab", (ALL,), request("A"), PERMIT, basis="consent"))
    add(Case("all:unknown-facility-sees-imaging", (ALL,), request("Z", data_class="imaging"), PERMIT))
    for cls in ALL_CLASSES:
        if cls in NEVER_GRANTED:  # a viewer facility never sees a patient's Consents (nor audit rows)
            add(Case(f"all:class-{cls}-never-granted", (ALL,), request("A", data_class=cls), NA, basis="never-granted"))
            add(Case(f"all:class-{cls}-custodian-sees", (ALL,), request(CUSTODIAN, data_class=cls), PERMIT,
                     basis="custodian"))
        else:
            add(Case(f"all:class-{cls}-permitted", (ALL,), request("A", data_class=cls), PERMIT))
    # Network roles (the registry's): a facility that may not view gets no grant, one that may
    # not disclose does not even see its own records.
    add(Case("role:disclosing-only-sees-nothing-granted", (ALL,), request("A", may_view=False), NA,
             basis="network-role"))
    add(Case("role:disclosing-only-named-actor-sees-nothing", (PER_A,), request("A", may_view=False), NA))
    add(Case("role:disclosing-only-sees-its-own", (ALL,), request(CUSTODIAN, may_view=False), PERMIT, basis="custodian"))
    add(Case("role:viewing-only-custodian-sees-not-its-own-without-consent", (), request(CUSTODIAN, may_disclose=False),
             NA, basis="no-consent"))
    add(Case("role:viewing-only-sees-granted", (ALL,), request("A", may_disclose=False), PERMIT, basis="consent"))
    add(Case("role:no-break-glass-without-viewing-role", (), request(
        "ER", roles=(EMERGENCY_ROLE,), purpose="ETREAT", btg=btg(), data_class="allergy", may_view=False), NA,
        basis="network-role"))
    add(Case("all:anonymous-viewer-not-a-facility", (ALL,), request(None), NA, basis="no-consent"))
    add(Case("all-x:excluded-facility-denied", (ALL_EXCEPT_B,), request("B"), DENY, basis="consent"))
    add(Case("all-x:excluded-second-of-list-denied", (ALL_EXCEPT_BC,), request("C"), DENY))
    add(Case("all-x:not-excluded-facility-sees", (ALL_EXCEPT_BC,), request("A"), PERMIT))
    add(Case("all-x:exclusion-covers-every-class", (ALL_EXCEPT_B,), request("B", data_class="demographics"), DENY))
    add(Case("all-x:exclusion-beats-per-facility-consent", (ALL_EXCEPT_B, PER_B), request("B"), DENY))
    add(Case("all-x:exclusion-beats-sibling-label-permit", (ALL_PSY_EXCEPT_B,), request("B", labels=("PSY",)), DENY))
    add(Case("all-x:sibling-label-permit-for-others", (ALL_PSY_EXCEPT_B,), request("A", labels=("PSY",)), PERMIT))

    # Pattern 2: a chosen list of facilities.
    add(Case("chosen:first-listed-sees", (CHOSEN_AB,), request("A"), PERMIT))
    add(Case("chosen:second-listed-sees", (CHOSEN_AB,), request("B"), PERMIT))
    add(Case("chosen:unlisted-not-applicable", (CHOSEN_AB,), request("C"), NA))
    add(Case("chosen:any-user-of-listed-facility", (CHOSEN_AB,), request("A", practitioner="dr7"), PERMIT))
    add(Case("chosen:listed-classes-lab", (CHOSEN_A_MED_LAB,), request("A", data_class="lab"), PERMIT))
    add(Case("chosen:listed-classes-medication", (CHOSEN_A_MED_LAB,), request("A", data_class="medication"), PERMIT))
    add(Case("chosen:unlisted-class-imaging", (CHOSEN_A_MED_LAB,), request("A", data_class="imaging"), NA))
    add(Case("chosen:listed-class-unlisted-facility", (CHOSEN_A_MED_LAB,), request("B", data_class="lab"), NA))

    # Pattern 3: one consent per facility.
    add(Case("per-facility:named-facility-sees", (PER_A,), request("A"), PERMIT))
    add(Case("per-facility:other-facility-not-applicable", (PER_A,), request("B"), NA))
    add(Case("per-facility:second-consent-adds-facility", (PER_A, PER_B), request("B"), PERMIT))
    add(Case("per-facility:revoked-one-stops", (PER_A_REVOKED, PER_B), request("A"), NA, basis="consent-status"))
    add(Case("per-facility:revoking-one-keeps-other", (PER_A_REVOKED, PER_B), request("B"), PERMIT))
    add(Case("per-facility:other-patients-consent-ignored", (PER_A_OTHER_PATIENT,), request("A"), NA))

    # Pattern 4: per individual.
    add(Case("individual:named-doctor-sees", (DR1,), request("A", practitioner="dr1"), PERMIT))
    add(Case("individual:named-doctor-at-another-facility", (DR1,), request("X", practitioner="dr1"), PERMIT))
    add(Case("individual:colleague-not-applicable", (DR1,), request("A", practitioner="dr2"), NA))
    add(Case("individual:unidentified-user-not-applicable", (DR1,), request("A"), NA))
    add(Case("individual:facility-minus-one-doctor-denied", (ORG_A_EXCEPT_DR9,), request("A", practitioner="dr9"), DENY))
    add(Case("individual:facility-minus-one-doctor-others-see", (ORG_A_EXCEPT_DR9,), request("A", practitioner="dr1"), PERMIT))
    add(Case("individual:facility-minus-doctor-elsewhere", (ORG_A_EXCEPT_DR9,), request("B", practitioner="dr9"), NA))

    # Data classes.
    for cls in ALL_CLASSES:
        add(Case(f"class:only-medication-vs-{cls}", (ONLY_MEDICATION,), request("A", data_class=cls),
                 PERMIT if cls == "medication" else NA))
    add(Case("class:withheld-imaging-denied", (ALL_BUT_IMAGING,), request("A", data_class="imaging"), DENY))
    add(Case("class:withheld-imaging-lab-visible", (ALL_BUT_IMAGING,), request("A", data_class="lab"), PERMIT))

    # Data periods (dataPeriod; dates are inclusive whole days in JST).
    add(Case("data-period:before-start", (DATA_FROM_2020,), request(date=datetime(2019, 12, 31, 23, 59, tzinfo=NODE_TZ)), NA))
    add(Case("data-period:on-start", (DATA_FROM_2020,), request(date=datetime(2020, 1, 1, tzinfo=NODE_TZ)), PERMIT))
    add(Case("data-period:after-start", (DATA_FROM_2020,), request(date=days_ago(10)), PERMIT))
    add(Case("data-period:undated-outside-permit", (DATA_FROM_2020,), request(data_class="demographics", date=None), NA))
    add(Case("data-period:last-minute-of-end-day", (DATA_UNTIL_2022,), request(date=datetime(2022, 12, 31, 23, 59, tzinfo=NODE_TZ)), PERMIT))
    add(Case("data-period:after-end", (DATA_UNTIL_2022,), request(date=datetime(2023, 1, 1, tzinfo=NODE_TZ)), NA))
    add(Case("data-period:end-in-utc-still-inside", (DATA_UNTIL_2022,), request(date=datetime.fromisoformat("2022-12-31T14:59:00+00:00")), PERMIT))
    add(Case("data-period:deny-old-data", (DENY_BEFORE_2015,), request(date=datetime(2014, 6, 1, tzinfo=NODE_TZ)), DENY))
    add(Case("data-period:deny-old-spares-new", (DENY_BEFORE_2015,), request(date=datetime(2016, 6, 1, tzinfo=NODE_TZ)), PERMIT))
    add(Case("data-period:undated-inside-deny", (DENY_BEFORE_2015,), request(data_class="demographics", date=None), DENY))
    add(Case("data-period:unrestricted-permit-covers-undated", (ALL,), request(data_class="demographics", date=None), PERMIT))

    # Provision periods: expired, not yet in force, boundaries.
    add(Case("period:expired-consent", (EXPIRED,), request(), NA))
    add(Case("period:not-yet-in-force", (NOT_YET,), request(), NA))
    add(Case("period:in-force", (IN_FORCE,), request(), PERMIT))
    add(Case("period:in-force-until-end-of-today", (ENDS_TODAY,), request(), PERMIT))
    add(Case("period:ended-yesterday", (ENDED_YESTERDAY,), request(), NA))
    add(Case("period:expired-consent-later-in-force", (EXPIRED,), request(now=datetime(2024, 5, 1, tzinfo=NODE_TZ)), PERMIT))
    add(Case("period:nested-deny-in-force", (DENY_B_THIS_YEAR,), request("B"), DENY))
    add(Case("period:nested-deny-expired", (DENY_B_LAST_YEAR,), request("B"), PERMIT))

    # Status: only active consents count.
    for status in STATUSES:
        add(Case(f"status:{status}-consent-does-nothing",
                 (b.all_facilities(f"s-{status}", PAT, status=status),), request(), NA, basis="consent-status"))
        add(Case(f"status:{status}-deny-does-nothing",
                 (ALL, b.consent(f"d-{status}", PAT, b.provision("deny", actors=["Organization/A"]), status=status)),
                 request("A"), PERMIT))
    add(Case("status:active-standalone-deny-wins", (ALL, DENY_B_STANDALONE), request("B"), DENY))
    add(Case("status:revoked-standalone-deny", (ALL, DENY_B_REVOKED), request("B"), PERMIT))
    add(Case("status:no-consent-at-all", (), request(), NA, basis="no-consent"))

    # Sensitive labels: denied by default, permitted per label when named.
    add(Case("label:psy-denied-by-default", (ALL,), request(labels=("PSY",)), DENY, basis="sensitive-label"))
    for label in sorted(SENSITIVE_LABELS):
        add(Case(f"label:{label}-denied-without-explicit-permit", (ALL,), request(labels=(label,)), DENY))
        add(Case(f"label:{label}-permitted-when-named", (with_label_permit(f"l-{label}", [label]),),
                 request(labels=(label,)), PERMIT))
    add(Case("label:two-labels-one-permitted", (ALL_PLUS_PSY,), request(labels=("PSY", "HIV")), DENY))
    add(Case("label:two-labels-both-permitted", (ALL_PLUS_PSY_HIV_SEPARATE,), request(labels=("PSY", "HIV")), PERMIT))
    add(Case("label:labels-permitted-by-two-consents", (ALL_PLUS_PSY, HIV_ONLY), request(labels=("PSY", "HIV")), PERMIT))
    add(Case("label:label-permit-for-named-facility", (PSY_FOR_A,), request("A", labels=("PSY",)), PERMIT))
    add(Case("label:label-permit-other-facility", (PSY_FOR_A,), request("B", labels=("PSY",)), DENY))
    add(Case("label:label-permit-limited-to-problems", (PSY_FOR_PROBLEMS,), request(data_class="problem", labels=("PSY",)), PERMIT))
    add(Case("label:label-permit-not-for-lab", (PSY_FOR_PROBLEMS,), request(data_class="lab", labels=("PSY",)), DENY))
    add(Case("label:non-sensitive-label-ignored", (ALL,), request(labels=("R", "N")), PERMIT))
    add(Case("label:label-only-consent-hides-ordinary", (PSY_ONLY_ROOT,), request(), NA))
    add(Case("label:label-only-consent-shows-label", (PSY_ONLY_ROOT,), request(labels=("PSY",)), PERMIT))
    add(Case("label:denied-label", (ALL_PSY_DENY_HIV,), request(labels=("HIV",)), DENY, basis="consent"))
    add(Case("label:denied-label-among-permitted", (ALL_PSY_DENY_HIV,), request(labels=("PSY", "HIV")), DENY))
    add(Case("label:label-deny-spares-other-label", (ALL_PSY_DENY_HIV,), request(labels=("PSY",)), PERMIT))
    add(Case("label:label-deny-spares-ordinary", (ALL_PSY_DENY_HIV,), request(), PERMIT))
    add(Case("label:no-consent-labelled", (), request(labels=("PSY",)), NA, basis="no-consent"))

    # Purposes of use.
    add(Case("purpose:treat-permit-treat", (TREAT_ONLY,), request(purpose="TREAT"), PERMIT))
    add(Case("purpose:treat-permit-covers-etreat", (TREAT_ONLY,), request(purpose="ETREAT"), PERMIT))
    add(Case("purpose:treat-permit-not-research", (TREAT_ONLY,), request(purpose="HRESCH"), NA))
    add(Case("purpose:treat-permit-no-purpose", (TREAT_ONLY,), request(purpose=None), NA))
    add(Case("purpose:etreat-permit-not-plain-treat", (ETREAT_ONLY,), request(purpose="TREAT"), NA))
    add(Case("purpose:research-denied", (NO_RESEARCH,), request(purpose="HRESCH"), DENY))
    add(Case("purpose:research-deny-spares-treatment", (NO_RESEARCH,), request(purpose="TREAT"), PERMIT))
    add(Case("purpose:unrestricted-permit-any-purpose", (ALL,), request(purpose="HPAYMT"), PERMIT))

    # The custodian always sees what it disclosed.
    add(Case("custodian:without-any-consent", (), request(CUSTODIAN), PERMIT, basis="custodian"))
    add(Case("custodian:despite-exclusion", (ALL_EXCEPT_CUSTODIAN,), request(CUSTODIAN), PERMIT, basis="custodian"))
    add(Case("custodian:sensitive-label", (ALL,), request(CUSTODIAN, labels=("HIV", "PSY")), PERMIT))
    add(Case("custodian:uninformed-condition", (), request(CUSTODIAN, data_class="problem", tags=("UNINFORMED",)), PERMIT))
    add(Case("custodian:after-revocation", (PER_A_REVOKED,), request(CUSTODIAN), PERMIT))
    add(Case("custodian:other-custodians-data-excluded", (ALL_EXCEPT_CUSTODIAN,), request(CUSTODIAN, custodian="K"), DENY))

    # The patient as viewer.
    add(Case("patient:own-record-without-consent", (), request(None, patient_viewer=PAT), PERMIT, basis="patient"))
    add(Case("patient:own-sensitive-data", (), request(None, patient_viewer=PAT, labels=("PSY",)), PERMIT))
    add(Case("patient:uninformed-condition-hidden", (ALL,), request(None, patient_viewer=PAT, data_class="problem",
                                                                    tags=("UNINFORMED",)), DENY, basis="uninformed"))
    add(Case("patient:uninformed-tag-on-observation-hidden", (), request(None, patient_viewer=PAT, tags=("UNINFORMED",)), DENY))
    add(Case("patient:lts-tag-shown", (), request(None, patient_viewer=PAT, data_class="problem", tags=("LTS",)), PERMIT))
    add(Case("patient:someone-elses-record", (ALL,), request(None, patient_viewer=OTHER_PAT), DENY, basis="patient"))

    # Break-the-glass: emergency role + ETREAT + reason, within the window, emergency dataset only.
    add(Case("btg:active-allergy", (), emergency(data_class="allergy", status="active"), PERMIT, break_glass=True, basis="break-the-glass"))
    add(Case("btg:allergy-without-status", (), emergency(data_class="allergy", date=None), PERMIT, break_glass=True))
    add(Case("btg:resolved-allergy", (), emergency(data_class="allergy", status="resolved"), NA))
    add(Case("btg:active-problem", (), emergency(data_class="problem", status="active"), PERMIT, break_glass=True))
    add(Case("btg:relapsed-problem", (), emergency(data_class="problem", status="relapse"), PERMIT, break_glass=True))
    add(Case("btg:resolved-problem", (), emergency(data_class="problem", status="resolved"), NA))
    add(Case("btg:problem-without-status", (), emergency(data_class="problem"), NA))
    add(Case("btg:recent-medication", (), emergency(data_class="medication", status="active", date=days_ago(30)), PERMIT, break_glass=True))
    add(Case("btg:medication-90-days", (), emergency(data_class="medication", status="completed", date=days_ago(90)), PERMIT, break_glass=True))
    add(Case("btg:old-medication", (), emergency(data_class="medication", status="completed", date=days_ago(120)), NA))
    add(Case("btg:stopped-medication", (), emergency(data_class="medication", status="stopped", date=days_ago(5)), NA))
    add(Case("btg:undated-medication", (), emergency(data_class="medication", date=None), NA))
    add(Case("btg:recent-lab", (), emergency(data_class="lab", status="final", date=days_ago(10)), PERMIT, break_glass=True))
    add(Case("btg:old-lab", (), emergency(data_class="lab", status="final", date=days_ago(45)), NA))
    add(Case("btg:cancelled-lab", (), emergency(data_class="lab", status="cancelled", date=days_ago(1)), NA))
    add(Case("btg:demographics", (), emergency(data_class="demographics", date=None), PERMIT, break_glass=True))
    for cls in ("imaging", "document", "vitals", "encounter", "clinical", "financial"):
        add(Case(f"btg:{cls}-outside-dataset", (), emergency(data_class=cls), NA))
    add(Case("btg:role-missing", (), emergency(data_class="allergy", roles=("physician",)), NA))
    add(Case("btg:reason-missing", (), emergency(data_class="allergy", declaration=btg(reason="")), NA))
    add(Case("btg:reason-blank", (), emergency(data_class="allergy", declaration=btg(reason="   ")), NA))
    add(Case("btg:purpose-treat-not-enough", (), emergency(data_class="allergy", purpose="TREAT"), NA))
    add(Case("btg:purpose-btg-is-emergency", (), emergency(data_class="allergy", purpose="BTG"), PERMIT, break_glass=True))
    add(Case("btg:within-24h", (), emergency(data_class="allergy", declaration=btg(hours_ago=23.9)), PERMIT, break_glass=True))
    add(Case("btg:window-expired", (), emergency(data_class="allergy", declaration=btg(hours_ago=24.1)), NA))
    add(Case("btg:short-window-expired", (), emergency(data_class="allergy", declaration=btg(hours_ago=3)), NA,
             policy=Policy(break_glass=BreakGlassRule(duration=timedelta(hours=2)))))
    add(Case("btg:long-window-open", (), emergency(data_class="allergy", declaration=btg(hours_ago=30)), PERMIT,
             policy=Policy(break_glass=BreakGlassRule(duration=timedelta(hours=48))), break_glass=True))
    add(Case("btg:declared-in-future", (), emergency(data_class="allergy", declaration=btg(hours_ago=-1)), NA))
    add(Case("btg:sensitive-medication-hidden", (), emergency(data_class="medication", labels=("HIV",), date=days_ago(3)), NA))
    add(Case("btg:sensitive-medication-if-policy-allows", (), emergency(data_class="medication", labels=("HIV",), date=days_ago(3)),
             PERMIT, policy=Policy(emergency_includes_sensitive=True), break_glass=True))
    add(Case("btg:overrides-exclusion", (ALL_EXCEPT_B,), emergency("B", data_class="allergy"), PERMIT, break_glass=True))
    add(Case("btg:exclusion-stands-if-policy-says", (ALL_EXCEPT_B,), emergency("B", data_class="allergy"), DENY,
             policy=Policy(emergency_overrides_deny=False)))
    add(Case("btg:not-used-when-consent-permits", (ALL,), emergency(data_class="allergy"), PERMIT, basis="consent"))
    add(Case("btg:needs-a-facility-user", (), request(None, roles=(EMERGENCY_ROLE,), purpose="ETREAT", btg=btg(),
                                                      data_class="allergy"), NA))
    add(Case("btg:custom-emergency-role", (), emergency(data_class="allergy", roles=("er-doctor",)), PERMIT,
             policy=Policy(break_glass=BreakGlassRule(roles=frozenset({"er-doctor"}))), break_glass=True))

    # Disaster mode: opens the emergency dataset to disaster-response roles.
    disaster = Policy(disaster_mode=True)
    add(Case("disaster:responder-sees-allergy", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="allergy"),
             PERMIT, policy=disaster, disaster=True, basis="disaster-mode"))
    add(Case("disaster:responder-sees-recent-medication", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="medication"),
             PERMIT, policy=disaster, disaster=True))
    add(Case("disaster:role-missing", (), request("DMAT", roles=("physician",), data_class="allergy"), NA, policy=disaster))
    add(Case("disaster:mode-off", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="allergy"), NA))
    add(Case("disaster:imaging-outside-dataset", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="imaging"), NA, policy=disaster))
    add(Case("disaster:resolved-problem", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="problem", status="resolved"),
             NA, policy=disaster))
    add(Case("disaster:sensitive-hidden", (), request("DMAT", roles=(DISASTER_ROLE,), data_class="allergy", labels=("GDIS",)),
             NA, policy=disaster))
    add(Case("disaster:custom-role", (), request("DMAT", roles=("dmat",), data_class="allergy"), PERMIT,
             policy=Policy(disaster_mode=True, disaster_roles=frozenset({"dmat"})), disaster=True))
    add(Case("disaster:emergency-role-is-not-disaster-role", (), request("DMAT", roles=(EMERGENCY_ROLE,), data_class="allergy"),
             NA, policy=disaster))

    # Nested provisions inherit every restriction of their ancestors.
    a_plus_psy = b.consent("a-psy", PAT, b.provision("permit", actors=["Organization/A"], provisions=[
        b.provision("permit", labels=["PSY"])]))
    add(Case("nested:label-permit-within-parent-actor", (a_plus_psy,), request("A", labels=("PSY",)), PERMIT))
    add(Case("nested:label-permit-not-beyond-parent-actor", (a_plus_psy,), request("B", labels=("PSY",)), NA))
    expired_psy = b.consent("old-psy", PAT, b.provision("permit", in_force=b.period(end="2025-03-31"), provisions=[
        b.provision("permit", labels=["PSY"])]))
    add(Case("nested:label-permit-expires-with-parent", (ALL, expired_psy), request(labels=("PSY",)), DENY,
             basis="sensitive-label"))
    problems_psy = b.consent("prob-psy", PAT, b.provision("permit", classes=["problem"], provisions=[
        b.provision("permit", labels=["PSY"])]))
    add(Case("nested:label-permit-within-parent-class", (problems_psy,), request(data_class="problem", labels=("PSY",)), PERMIT))
    add(Case("nested:label-permit-not-beyond-parent-class", (problems_psy,), request(data_class="lab", labels=("PSY",)), NA))
    treat_psy = b.consent("treat-psy", PAT, b.provision("permit", purposes=["TREAT"], provisions=[
        b.provision("permit", labels=["PSY"])]))
    add(Case("nested:label-permit-within-parent-purpose", (treat_psy,), request(purpose="ETREAT", labels=("PSY",)), PERMIT))
    add(Case("nested:label-permit-not-beyond-parent-purpose", (treat_psy,), request(purpose="HRESCH", labels=("PSY",)), NA))
    recent_psy = b.consent("new-psy", PAT, b.provision("permit", data_period=b.period("2020"), provisions=[
        b.provision("permit", labels=["PSY"])]))
    add(Case("nested:label-permit-within-parent-data-period", (recent_psy,), request(labels=("PSY",)), PERMIT))
    add(Case("nested:label-permit-not-beyond-parent-data-period", (recent_psy,),
             request(labels=("PSY",), date=datetime(2019, 5, 1, tzinfo=NODE_TZ)), NA))
    lab_img_minus_b = b.consent("li-x-b", PAT, b.provision("permit", classes=["lab", "imaging"], provisions=[
        b.provision("deny", actors=["Organization/B"])]))
    add(Case("nested:deny-within-parent-class", (lab_img_minus_b,), request("B", data_class="imaging"), DENY))
    add(Case("nested:deny-not-beyond-parent-class", (lab_img_minus_b, PER_B), request("B", data_class="medication"), PERMIT))
    three_levels = b.consent("deep", PAT, b.provision("permit", actors=["Organization/A"], provisions=[
        b.provision("permit", labels=["PSY", "HIV"], provisions=[
            b.provision("deny", actors=["Practitioner/dr9"], labels=["HIV"])])]))
    add(Case("nested:three-levels-grandchild-denies", (three_levels,), request("A", practitioner="dr9", labels=("HIV",)), DENY))
    add(Case("nested:three-levels-grandchild-spares-psy", (three_levels,), request("A", practitioner="dr9", labels=("PSY",)), PERMIT))
    add(Case("nested:three-levels-other-doctor", (three_levels,), request("A", practitioner="dr1", labels=("HIV",)), PERMIT))
    add(Case("nested:three-levels-dr9-elsewhere", (three_levels, with_label_permit("hiv-all", ["HIV"])),
             request("B", practitioner="dr9", labels=("HIV",)), PERMIT))

    # Combining: deny overrides across consents; other patients' consents are ignored.
    add(Case("combine:permit-and-deny-gives-deny", (PER_B, DENY_B_STANDALONE), request("B"), DENY))
    add(Case("combine:two-permits", (PER_A, ALL), request("A"), PERMIT))
    add(Case("combine:other-patient-deny-ignored", (ALL, b.consent("p2-deny", OTHER_PAT, b.provision("deny"))), request("A"), PERMIT))
    return c


CASES = _cases()


def case_params() -> list[Any]:
    import pytest
    return [pytest.param(case, id=case.id) for case in CASES]


def without_emergency_or_patient(req: AccessRequest) -> AccessRequest:
    """The part of a request the grants table answers: a facility user's consent question."""
    return replace(req, break_glass=None, viewer_patient=None)
