"""Access requests as values: who asks, why, and the enforcement facts of the resource asked for.

The facts are what the storage layer keeps on every stored row (see ARCHITECTURE.md, "Data the
node keeps per stored resource"): the regional patient key, the custodian organization, the
data class (:func:`consent.classes.classify`), the sensitive security labels
(``meta.security``, https://hl7.org/fhir/R4/security-labels.html), the clinical date and the
``meta.tag`` codes (JP-CLINS ``UNINFORMED``). :meth:`ResourceFacts.from_resource` derives them
from a FHIR R4 resource dict (https://hl7.org/fhir/R4/resource.html#Meta). Pure code.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from consent.classes import classify
from consent.model import ConsentError, parse_datetime
from consent.vocab import SENSITIVE_LABELS, TREAT

UNINFORMED: Final = "UNINFORMED"
"""JP-CLINS meta.tag: diagnosis not yet told to the patient; never shown to the patient."""

# Where each resource type keeps the date the data is about ("clinical date"), in order of
# preference. The first present element wins; Period-typed elements use their start.
_DATE_ELEMENTS: Final[dict[str, tuple[str, ...]]] = {
    "Observation": ("effectiveDateTime", "effectivePeriod", "effectiveInstant", "issued"),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod", "issued"),
    "Condition": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "AllergyIntolerance": ("onsetDateTime", "onsetPeriod", "recordedDate"),
    "MedicationRequest": ("authoredOn",),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod"),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod", "dateAsserted"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Procedure": ("performedDateTime", "performedPeriod"),
    "ImagingStudy": ("started",),
    "Encounter": ("period",),
    "EpisodeOfCare": ("period",),
    "DocumentReference": ("date",),
    "Composition": ("date",),
    "ServiceRequest": ("occurrenceDateTime", "occurrencePeriod", "authoredOn"),
    "Specimen": ("receivedTime", "collection"),
    "CarePlan": ("period", "created"),
}


@dataclass(frozen=True)
class ResourceFacts:
    """What enforcement knows about one stored resource."""

    patient: str
    custodian: str
    data_class: str
    security_labels: frozenset[str] = frozenset()
    clinical_date: datetime | None = None
    tags: frozenset[str] = frozenset()
    status: str | None = None
    resource_type: str | None = None

    @property
    def sensitive_labels(self) -> frozenset[str]:
        """The labels consent enforces; other security labels (confidentiality, ...) do not
        take part in consent decisions."""
        return frozenset(label for label in self.security_labels if label in SENSITIVE_LABELS)

    @classmethod
    def from_resource(cls, resource: dict[str, Any], *, patient: str, custodian: str) -> ResourceFacts:
        """Facts of a FHIR R4 resource; ``patient`` and ``custodian`` come from identity and
        ingest (who disclosed it), not from the resource itself."""
        meta = resource.get("meta") or {}
        labels = frozenset(str(c["code"]) for c in meta.get("security") or () if isinstance(c, dict) and c.get("code"))
        tags = frozenset(str(c["code"]) for c in meta.get("tag") or () if isinstance(c, dict) and c.get("code"))
        return cls(
            patient=patient,
            custodian=custodian,
            data_class=classify(resource),
            security_labels=labels,
            clinical_date=clinical_date_of(resource),
            tags=tags,
            status=status_of(resource),
            resource_type=resource.get("resourceType"),
        )


def status_of(resource: dict[str, Any]) -> str | None:
    """``clinicalStatus`` code (Condition, AllergyIntolerance) or ``status``."""
    clinical = resource.get("clinicalStatus")
    if isinstance(clinical, dict):
        for coding in clinical.get("coding") or ():
            if isinstance(coding, dict) and coding.get("code"):
                return str(coding["code"])
    status = resource.get("status")
    return status if isinstance(status, str) else None


def clinical_date_of(resource: dict[str, Any]) -> datetime | None:
    """The date the data is about, or ``None`` when the resource has none (or an invalid one)."""
    for element in _DATE_ELEMENTS.get(resource.get("resourceType", ""), ()):
        value = resource.get(element)
        if isinstance(value, dict):
            value = value.get("start") or value.get("collectedDateTime")
        if isinstance(value, str):
            try:  # written without a zone: read in the node's zone (consent.periods' rule)
                return parse_datetime(value, element, require_zone=False)
            except ConsentError:
                return None
    return None


@dataclass(frozen=True)
class BreakGlass:
    """A user's break-the-glass declaration: when it was made and the reason they gave."""

    declared_at: datetime
    reason: str


@dataclass(frozen=True)
class AccessRequest:
    """One viewer asking to see one resource at ``now``.

    A facility user has ``viewer_org`` (and optionally ``viewer_practitioner``); a patient in the
    portal has ``viewer_patient`` (their regional patient key) and no organization.
    ``purpose`` is a v3 ActReason code (TREAT, ETREAT, ...). ``viewer_may_view`` and
    ``viewer_may_disclose`` are the viewer facility's network role as the registry states it
    (registered, active, role ``viewing``/``both`` resp. ``disclosing``/``both``); a facility
    that may not view sees no other facility's data, one that may not disclose not even its own.
    """

    resource: ResourceFacts
    now: datetime
    viewer_org: str | None = None
    viewer_practitioner: str | None = None
    roles: frozenset[str] = frozenset()
    purpose: str | None = TREAT
    viewer_patient: str | None = None
    break_glass: BreakGlass | None = None
    viewer_may_view: bool = True
    viewer_may_disclose: bool = True
