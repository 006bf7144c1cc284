"""Small readers of clinical resources shared by the IPS sections, the narratives and the
6-information view: codes, statuses, dates and display text, for any R4 type the summary
holds. Pure functions over resource dicts; nothing here reads storage."""

from __future__ import annotations

from typing import Any

from hie.summary.record import PatientRecord

#: Where each type keeps the date that places it in time (first present wins).
DATE_PATHS: dict[str, tuple[str, ...]] = {
    "Condition": ("onsetDateTime", "onsetPeriod.start", "recordedDate", "abatementDateTime"),
    "AllergyIntolerance": ("onsetDateTime", "recordedDate", "lastOccurrence"),
    "MedicationRequest": ("authoredOn",),
    "MedicationStatement": ("effectiveDateTime", "effectivePeriod.start", "dateAsserted"),
    "MedicationDispense": ("whenHandedOver", "whenPrepared"),
    "MedicationAdministration": ("effectiveDateTime", "effectivePeriod.start"),
    "Observation": ("effectiveDateTime", "effectivePeriod.start", "effectiveInstant", "issued"),
    "Immunization": ("occurrenceDateTime", "recorded"),
    "Procedure": ("performedDateTime", "performedPeriod.start"),
    "DeviceUseStatement": ("timingDateTime", "timingPeriod.start", "recordedOn"),
    "CarePlan": ("period.start", "created"),
    "Encounter": ("period.start",),
    "DiagnosticReport": ("effectiveDateTime", "effectivePeriod.start", "issued"),
    "ImagingStudy": ("started",),
    "DocumentReference": ("date", "context.period.start"),
    "Flag": ("period.start",),
    "ClinicalImpression": ("effectiveDateTime", "effectivePeriod.start", "date"),
    "Goal": ("startDate", "statusDate"),
}
#: Where each type keeps what it is about (its code).
CODE_PATHS: dict[str, tuple[str, ...]] = {
    "Condition": ("code",), "AllergyIntolerance": ("code",), "Observation": ("code",),
    "Immunization": ("vaccineCode",), "Procedure": ("code",), "DiagnosticReport": ("code",),
    "Flag": ("code",), "ClinicalImpression": ("code",), "Goal": ("description",),
    "CarePlan": ("category",), "Encounter": ("type",), "DocumentReference": ("type",),
    "ImagingStudy": ("procedureCode",), "Medication": ("code",), "Device": ("type",),
}
MEDICATION_TYPES = ("MedicationRequest", "MedicationStatement", "MedicationDispense", "MedicationAdministration")


def path(res: dict[str, Any], dotted: str) -> Any:
    node: Any = res
    for part in dotted.split("."):
        if isinstance(node, list):
            node = node[0] if node else None
        if not isinstance(node, dict):
            return None
        node = node.get(part)
    return node


def date_of(res: dict[str, Any]) -> str:
    """The clinical date of ``res`` (ISO text as stored), else ``meta.lastUpdated``, else ""."""
    for p in DATE_PATHS.get(str(res.get("resourceType")), ()):
        value = path(res, p)
        if isinstance(value, str) and value:
            return value
    return str(path(res, "meta.lastUpdated") or "")


def codings(concept: Any) -> list[dict[str, Any]]:
    if isinstance(concept, list):
        return [c for item in concept for c in codings(item)]
    if not isinstance(concept, dict):
        return []
    return [c for c in concept.get("coding") or () if isinstance(c, dict)]


def has_code(concept: Any, system: str, codes: set[str] | frozenset[str]) -> bool:
    return any(c.get("system") == system and c.get("code") in codes for c in codings(concept))


def concept_text(concept: Any) -> str:
    """Human text of a CodeableConcept (or a list of them): text, else a display, else a code."""
    if isinstance(concept, list):
        return ", ".join(t for t in (concept_text(c) for c in concept) if t)
    if not isinstance(concept, dict):
        return ""
    if concept.get("text"):
        return str(concept["text"])
    for c in codings(concept):
        if c.get("display"):
            return str(c["display"])
    return next((str(c["code"]) for c in codings(concept) if c.get("code")), "")


def status_code(res: dict[str, Any]) -> str:
    """``clinicalStatus`` code where the type has one, else ``status``."""
    clinical = res.get("clinicalStatus")
    if clinical is not None:
        return next((str(c.get("code")) for c in codings(clinical) if c.get("code")), "")
    return str(res.get("status") or "")


def verification_code(res: dict[str, Any]) -> str:
    return next((str(c.get("code")) for c in codings(res.get("verificationStatus")) if c.get("code")), "")


def code_key(res: dict[str, Any]) -> str:
    """A key for "the same kind of thing": the first coding's system|code, else the text."""
    for p in CODE_PATHS.get(str(res.get("resourceType")), ()):
        for c in codings(res.get(p)):
            if c.get("code"):
                return f"{c.get('system', '')}|{c['code']}"
        text = concept_text(res.get(p))
        if text:
            return f"text|{text}"
    return f"id|{res.get('id')}"


def medication_concept(res: dict[str, Any], record: PatientRecord | None) -> Any:
    """The medication a medication resource names: its CodeableConcept, or the code of the
    referenced Medication when the caller sees it."""
    if res.get("medicationCodeableConcept") is not None:
        return res["medicationCodeableConcept"]
    ref = path(res, "medicationReference.reference")
    med = record.get(ref) if record is not None and isinstance(ref, str) else None
    if med is not None:
        return med.get("code")
    display = path(res, "medicationReference.display")
    return {"text": display} if display else None


def display_of(res: dict[str, Any], record: PatientRecord | None = None) -> str:
    """What ``res`` is about, as one line of text."""
    rtype = res.get("resourceType")
    if rtype in MEDICATION_TYPES:
        return concept_text(medication_concept(res, record))
    if rtype == "DeviceUseStatement":
        ref = path(res, "device.reference")
        dev = record.get(ref) if record is not None and isinstance(ref, str) else None
        names = [n.get("name") for n in (dev or {}).get("deviceName") or () if n.get("name")]
        if names:
            return str(names[0])
        return concept_text((dev or {}).get("type")) or str(path(res, "device.display") or "")
    if rtype == "CarePlan" and res.get("title"):
        return str(res["title"])
    if rtype == "ImagingStudy":
        return str(res.get("description") or concept_text(res.get("procedureCode"))
                   or ", ".join(str(m.get("code")) for m in res.get("modality") or () if m.get("code")))
    for p in CODE_PATHS.get(str(rtype), ()):
        text = concept_text(res.get(p))
        if text:
            return text
    return str(res.get("description") or "")


def value_of(res: dict[str, Any]) -> str:
    """An Observation's value as text (components joined, e.g. blood pressure ``120/80 mm[Hg]``)."""
    if res.get("resourceType") != "Observation":
        return ""
    own = _value(res)
    if own:
        return own
    parts = [_value(c) for c in res.get("component") or () if isinstance(c, dict)]
    return " / ".join(p for p in parts if p)


def _value(node: dict[str, Any]) -> str:
    q = node.get("valueQuantity")
    if isinstance(q, dict) and q.get("value") is not None:
        unit = q.get("unit") or q.get("code") or ""
        return f"{q.get('comparator', '')}{q['value']} {unit}".strip()
    if node.get("valueCodeableConcept") is not None:
        return concept_text(node["valueCodeableConcept"])
    for key in ("valueString", "valueBoolean", "valueInteger", "valueDateTime", "valueTime"):
        if node.get(key) is not None:
            return str(node[key])
    return ""


def category_codes(res: dict[str, Any]) -> set[str]:
    cats = res.get("category")
    if isinstance(cats, list) and cats and isinstance(cats[0], str):  # AllergyIntolerance: codes
        return {str(c) for c in cats}
    return {str(c.get("code")) for c in codings(cats) if c.get("code")}


def newest_first(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sorted(items, key=date_of, reverse=True)


def latest_per_code(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The newest resource of each :func:`code_key`, newest first."""
    out: dict[str, dict[str, Any]] = {}
    for res in newest_first(items):
        out.setdefault(code_key(res), res)
    return list(out.values())
