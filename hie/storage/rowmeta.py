"""What enforcement needs to know about a resource, derived once at write time.

* ``patient_key``: the patient the resource is about. For now the local Patient id
  (the identity service maps it to the regional person later); found in the
  patient-compartment elements most resources use (``subject``, ``patient``, ...).
* ``custodian``: the disclosing facility, from the ``meta.tag`` with system
  :data:`hie.fhir.naming.CUSTODIAN_TAG_SYSTEM`, else the writing principal's facility.
* ``data_class``: :func:`consent.classes.classify`.
* ``security_labels``: the ``meta.security`` codes, space-delimited with sentinels.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from consent.classes import classify
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


def row_meta(resource: dict[str, Any], default_custodian: str | None) -> RowMeta:
    return RowMeta(
        patient_ref=patient_of(resource),
        custodian=custodian_of(resource, default_custodian),
        data_class=classify(resource),
        security_labels=labels_of(resource),
    )
