"""What enforcement needs to know about a resource, derived once at write time.

* ``patient_key``: the patient the resource is about. For now the local Patient id
  (the identity service maps it to the regional person later); found in the
  patient-compartment elements most resources use (``subject``, ``patient``, ...).
* ``custodian``: the disclosing facility, from the ``meta.tag`` with system
  :data:`hie.fhir.naming.CUSTODIAN_TAG_SYSTEM`, else the writing principal's facility.
* ``data_class``: :func:`consent.classes.classify`.
* ``security_labels``: the ``meta.security`` codes, space-delimited with sentinels;
  ``sensitive_labels`` the subset consent enforces (v3 ActCode sensitivity codes).
* ``clinical_date`` (epoch microseconds), ``status`` and ``hidden_from_patient`` (JP-CLINS
  ``UNINFORMED`` tag): for data periods, the emergency dataset and the patient portal.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consent.classes import classify
from consent.request import UNINFORMED, clinical_date_of, status_of
from consent.vocab import SENSITIVE_LABELS
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM

# Elements (in order of preference) that point at the patient, per the R4 Patient
# CompartmentDefinition's most common parameters.
_PATIENT_ELEMENTS = ("patient", "subject", "beneficiary", "individual", "for")


@dataclass(frozen=True)
class RowMeta:
    patient_ref: str | None  # local Patient id the resource is about
    custodian: str | None
    data_class: str
    security_labels: str
    sensitive_labels: str
    clinical_date: int | None
    status: str | None
    hidden_from_patient: bool

    def columns(self) -> dict[str, Any]:
        """The enforcement columns, except patient_key (resolved by the repository)."""
        return {
            "custodian": self.custodian, "data_class": self.data_class,
            "security_labels": self.security_labels, "sensitive_labels": self.sensitive_labels,
            "clinical_date": self.clinical_date, "status": self.status,
            "hidden_from_patient": self.hidden_from_patient,
        }


def _patient_id_from(value: Any) -> str | None:
    refs = value if isinstance(value, list) else [value]
    for ref in refs:
        if isinstance(ref, dict):
            r = ref.get("reference")
            if isinstance(r, str):
                parts = r.split("/")
                if len(parts) >= 2 and parts[-2] == "Patient":
                    return parts[-1]
    return None


def patient_of(resource: dict[str, Any]) -> str | None:
    if resource.get("resourceType") == "Patient":
        return resource.get("id")
    for name in _PATIENT_ELEMENTS:
        if name in resource:
            pid = _patient_id_from(resource[name])
            if pid:
                return pid
    if resource.get("resourceType") == "AuditEvent":
        for ent in resource.get("entity") or ():
            pid = _patient_id_from(ent.get("what")) if isinstance(ent, dict) else None
            if pid:
                return pid
    if resource.get("resourceType") == "Provenance":
        pid = _patient_id_from(resource.get("target"))
        if pid:
            return pid
    return None


def custodian_of(resource: dict[str, Any], default: str | None) -> str | None:
    meta = resource.get("meta") or {}
    for tag in meta.get("tag") or ():
        if isinstance(tag, dict) and tag.get("system") == CUSTODIAN_TAG_SYSTEM and tag.get("code"):
            return str(tag["code"])
    return default


def labels_of(resource: dict[str, Any]) -> str:
    meta = resource.get("meta") or {}
    codes = sorted(
        {str(s["code"]) for s in meta.get("security") or () if isinstance(s, dict) and s.get("code")}
    )
    return " " + " ".join(codes) + " " if codes else " "


def _spaced(codes: set[str]) -> str:
    return " " + " ".join(sorted(codes)) + " " if codes else " "


def _tags(resource: dict[str, Any]) -> set[str]:
    meta = resource.get("meta") or {}
    return {str(t["code"]) for t in meta.get("tag") or () if isinstance(t, dict) and t.get("code")}


def row_meta(resource: dict[str, Any], default_custodian: str | None) -> RowMeta:
    meta = resource.get("meta") or {}
    codes = {str(s["code"]) for s in meta.get("security") or () if isinstance(s, dict) and s.get("code")}
    when = clinical_date_of(resource)
    status = status_of(resource)
    return RowMeta(
        patient_ref=patient_of(resource),
        custodian=custodian_of(resource, default_custodian),
        data_class=classify(resource),
        security_labels=_spaced(codes),
        sensitive_labels=_spaced({c for c in codes if c in SENSITIVE_LABELS}),
        clinical_date=int(when.timestamp() * 1_000_000) if when is not None else None,
        status=status[:32] if status else None,
        hidden_from_patient=UNINFORMED in _tags(resource),
    )
