"""Terminology the node's Consent profile uses: code systems, sensitive labels, purposes, roles.

Implements the vocabulary side of the node's Consent profile on base R4 Consent
(https://hl7.org/fhir/R4/consent.html):

- data classes (``provision.class`` / ``provision.code``) come from the node's own
  CodeSystem, whose canonical URL is :data:`DATA_CLASS_SYSTEM`;
- sensitive categories (``provision.securityLabel`` and the stored resources' labels) are the
  v3 ActCode *InformationSensitivityPolicy* act codes
  (https://hl7.org/fhir/R4/v3/InformationSensitivityPolicy/vs.html);
- purposes of use (``provision.purpose``) are v3 ActReason codes
  (https://hl7.org/fhir/R4/v3/PurposeOfUse/vs.html), matched with a small subsumption table;
- actor roles are v3 RoleClass ``PROV`` or v3 ParticipationType ``IRCP`` / ``PRCP``.

Pure data, no I/O.
"""

from __future__ import annotations

from typing import Final

NODE_BASE: Final = "http://hie.example.jp/fhir"
"""Base of every canonical URL the node publishes."""

DATA_CLASS_SYSTEM: Final = f"{NODE_BASE}/CodeSystem/data-class"
DATA_CLASS_VALUE_SET: Final = f"{NODE_BASE}/ValueSet/data-class"
CONSENT_PROFILE: Final = f"{NODE_BASE}/StructureDefinition/hie-consent"

CONSENT_SCOPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentscope"
PATIENT_PRIVACY: Final = "patient-privacy"
CONSENT_ACTION_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/consentaction"
ACT_CODE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
ACT_REASON_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
ROLE_CLASS_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
PARTICIPATION_TYPE_SYSTEM: Final = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
LOINC_SYSTEM: Final = "http://loinc.org"
PATIENT_CONSENT_LOINC: Final = "59284-0"

OPT_IN: Final = "OPTIN"
"""The only policy rule the node accepts: APPI forbids opt-out sharing of medical data."""

SENSITIVE_LABELS: Final[dict[str, str]] = {
    "ETH": "substance abuse information sensitivity",
    "GDIS": "genetic disease information sensitivity",
    "HIV": "HIV/AIDS information sensitivity",
    "PSY": "psychiatry information sensitivity",
    "SCA": "sickle cell anemia information sensitivity",
    "SDV": "sexual assault, abuse, or domestic violence information sensitivity",
    "SEX": "sexuality and reproductive health information sensitivity",
    "STD": "sexually transmitted disease information sensitivity",
    "TBOO": "taboo",
}
"""The R4 (2014-03-26) ActInformationSensitivityPolicy codes of v3 ActCode.

A stored resource carrying one of these in ``meta.security`` is hidden from every
facility other than its custodian unless a consent provision permits that label."""

VIEWER_ROLES: Final[frozenset[tuple[str, str]]] = frozenset({
    (ROLE_CLASS_SYSTEM, "PROV"),
    (PARTICIPATION_TYPE_SYSTEM, "IRCP"),
    (PARTICIPATION_TYPE_SYSTEM, "PRCP"),
})
"""Actor roles that mean "may view": healthcare provider, (primary) information recipient."""

VIEWING_ACTIONS: Final = frozenset({"access", "use", "disclose"})
"""consentaction codes the node enforces; all three mean "may be shown to the actor"."""

_PURPOSE_PARENT: Final[dict[str, str]] = {
    "ETREAT": "TREAT",
    "CLINTRCH": "TREAT",
    "POPHLTH": "TREAT",
    "BTG": "ETREAT",
    "ERTREAT": "ETREAT",
    "DISASTER": "PUBHLTH",
    "THREAT": "PUBHLTH",
    "FAMRQT": "PATRQT",
    "PWATRNY": "PATRQT",
    "SUPNWK": "PATRQT",
}
"""The part of the v3 ActReason is-a hierarchy the node reasons with (child -> parent)."""

TREAT: Final = "TREAT"
ETREAT: Final = "ETREAT"


def purpose_closure(code: str | None) -> frozenset[str]:
    """``code`` and all its ancestors: a permit for any of these covers a request for ``code``.

    The storage layer matches a grant's purpose with ``g.purpose = '*' OR g.purpose IN
    (<purpose_closure(request purpose)>)``.
    """
    out: set[str] = set()
    while code and code not in out:
        out.add(code)
        code = _PURPOSE_PARENT.get(code)
    return frozenset(out)


def intersect_purposes(a: frozenset[str], b: frozenset[str]) -> frozenset[str]:
    """The purposes covered by both ``a`` and ``b`` (each a set meaning "any of these").

    Hierarchy-aware: {TREAT} and {ETREAT} intersect in {ETREAT}, because every request that
    matches ETREAT also matches TREAT.
    """
    return frozenset(
        {x for x in a if purpose_closure(x) & b} | {y for y in b if purpose_closure(y) & a}
    )
