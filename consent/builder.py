"""Build Consent JSON in the node's profile, including the four Japanese consent patterns.

Produces FHIR R4 Consent resources (https://hl7.org/fhir/R4/consent.html) that
:func:`consent.model.parse_consent` accepts: what the patient portal and the facility
counter's consent form write. The patterns (DOMAIN.md, "Consent"):

- :func:`all_facilities`: every participating facility, optionally minus an exclusion list
  (root permit without actors, one nested deny naming the excluded facilities);
- :func:`chosen_facilities`: a list of facilities (root permit naming them);
- :func:`per_facility`: one consent per facility (call once per facility);
- :func:`per_individual`: named practitioners, wherever they work.

Pure code: returns plain dicts.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any

from consent.vocab import (
    ACT_CODE_SYSTEM,
    ACT_REASON_SYSTEM,
    CONSENT_PROFILE,
    CONSENT_SCOPE_SYSTEM,
    DATA_CLASS_SYSTEM,
    LOINC_SYSTEM,
    OPT_IN,
    PARTICIPATION_TYPE_SYSTEM,
    PATIENT_CONSENT_LOINC,
    PATIENT_PRIVACY,
    ROLE_CLASS_SYSTEM,
)

Json = dict[str, Any]


def actor(reference: str) -> Json:
    """A provision actor: ``Organization/<id>`` (role PROV) or ``Practitioner/<id>`` (role IRCP)."""
    if reference.startswith("Organization/"):
        role = {"system": ROLE_CLASS_SYSTEM, "code": "PROV", "display": "healthcare provider"}
    else:
        role = {"system": PARTICIPATION_TYPE_SYSTEM, "code": "IRCP", "display": "information recipient"}
    return {"role": {"coding": [role]}, "reference": {"reference": reference}}


def period(start: str | None = None, end: str | None = None) -> Json:
    out: Json = {}
    if start:
        out["start"] = start
    if end:
        out["end"] = end
    return out


def provision(
    type: str = "permit",
    *,
    actors: Iterable[str] = (),
    classes: Iterable[str] = (),
    labels: Iterable[str] = (),
    purposes: Iterable[str] = (),
    in_force: Json | None = None,
    data_period: Json | None = None,
    provisions: Sequence[Json] = (),
) -> Json:
    """One provision; ``in_force`` is ``provision.period``, ``data_period`` ``provision.dataPeriod``."""
    out: Json = {"type": type}
    if in_force:
        out["period"] = in_force
    if actors:
        out["actor"] = [actor(a) for a in actors]
    if labels:
        out["securityLabel"] = [{"system": ACT_CODE_SYSTEM, "code": c} for c in labels]
    if purposes:
        out["purpose"] = [{"system": ACT_REASON_SYSTEM, "code": c} for c in purposes]
    if classes:
        out["class"] = [{"system": DATA_CLASS_SYSTEM, "code": c} for c in classes]
    if data_period:
        out["dataPeriod"] = data_period
    if provisions:
        out["provision"] = list(provisions)
    return out


def consent(
    consent_id: str | None,
    patient: str,
    root: Json,
    *,
    status: str = "active",
    date_time: str | None = None,
    recorded_by: str | None = None,
    scanned_form_url: str | None = None,
    policy_uri: str | None = None,
) -> Json:
    """A Consent resource; ``recorded_by`` (``Organization/<id>``) becomes performer and
    organization, ``scanned_form_url`` the sourceAttachment (a PDF of the paper form)."""
    out: Json = {"resourceType": "Consent"}
    if consent_id:
        out["id"] = consent_id
    out["meta"] = {"profile": [CONSENT_PROFILE]}
    out["status"] = status
    out["scope"] = {"coding": [{"system": CONSENT_SCOPE_SYSTEM, "code": PATIENT_PRIVACY}]}
    out["category"] = [{"coding": [{"system": LOINC_SYSTEM, "code": PATIENT_CONSENT_LOINC}]}]
    out["patient"] = {"reference": patient}
    if date_time:
        out["dateTime"] = date_time
    if recorded_by:
        out["performer"] = [{"reference": recorded_by}]
        out["organization"] = [{"reference": recorded_by}]
    if scanned_form_url:
        out["sourceAttachment"] = {"contentType": "application/pdf", "url": scanned_form_url,
                                   "title": "Signed consent form (scan)"}
    if policy_uri:
        out["policy"] = [{"uri": policy_uri}]
    out["policyRule"] = {"coding": [{"system": ACT_CODE_SYSTEM, "code": OPT_IN}]}
    out["provision"] = root
    return out


def all_facilities(consent_id: str | None, patient: str, *, exclude: Iterable[str] = (),
                   provision_kw: Json | None = None, **consent_kw: Any) -> Json:
    """Pattern 1: all participating facilities, minus ``exclude`` (Organization references)."""
    excluded = list(exclude)
    nested = [provision("deny", actors=excluded)] if excluded else []
    return consent(consent_id, patient, provision("permit", provisions=nested, **(provision_kw or {})), **consent_kw)


def chosen_facilities(consent_id: str | None, patient: str, facilities: Iterable[str], *,
                      provision_kw: Json | None = None, **consent_kw: Any) -> Json:
    """Pattern 2: a chosen list of facilities (Organization references)."""
    return consent(consent_id, patient, provision("permit", actors=list(facilities), **(provision_kw or {})),
                   **consent_kw)


def per_facility(consent_id: str | None, patient: str, facility: str, *,
                 provision_kw: Json | None = None, **consent_kw: Any) -> Json:
    """Pattern 3: one consent for one facility."""
    return chosen_facilities(consent_id, patient, [facility], provision_kw=provision_kw, **consent_kw)


def per_individual(consent_id: str | None, patient: str, practitioners: Iterable[str], *,
                   provision_kw: Json | None = None, **consent_kw: Any) -> Json:
    """Pattern 4: named practitioners (Practitioner references), at whichever facility they work."""
    return consent(consent_id, patient, provision("permit", actors=list(practitioners), **(provision_kw or {})),
                   **consent_kw)
