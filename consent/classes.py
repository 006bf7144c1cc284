"""Data classes: the coarse categories a patient grants or withholds.

Every stored resource is put in exactly one data class at write time; the consent
engine's grants and the storage layer's access predicate both speak this vocabulary.
Pure code: it looks at a resource as a plain dict and imports nothing from ``hie``.

The categories follow what Japanese regional networks let patients choose between
(medication, lab, imaging, documents, ...) plus the classes the emergency dataset
needs (allergy, problem). ``administrative`` holds resources that are not about one
patient (facilities, practitioners, definitional resources); consent does not apply.
"""

from __future__ import annotations

from typing import Any, Final

DEMOGRAPHICS: Final = "demographics"
ALLERGY: Final = "allergy"
PROBLEM: Final = "problem"
MEDICATION: Final = "medication"
LAB: Final = "lab"
VITALS: Final = "vitals"
IMAGING: Final = "imaging"
DOCUMENT: Final = "document"
ENCOUNTER: Final = "encounter"
CLINICAL: Final = "clinical"
FINANCIAL: Final = "financial"
CONSENT: Final = "consent"
AUDIT: Final = "audit"
ADMINISTRATIVE: Final = "administrative"

ALL_CLASSES: Final = (
    DEMOGRAPHICS, ALLERGY, PROBLEM, MEDICATION, LAB, VITALS, IMAGING, DOCUMENT,
    ENCOUNTER, CLINICAL, FINANCIAL, CONSENT, AUDIT, ADMINISTRATIVE,
)

_BY_TYPE: Final[dict[str, str]] = {
    "Patient": DEMOGRAPHICS,
    "RelatedPerson": DEMOGRAPHICS,
    "AllergyIntolerance": ALLERGY,
    "Condition": PROBLEM,
    "MedicationRequest": MEDICATION,
    "MedicationDispense": MEDICATION,
    "MedicationAdministration": MEDICATION,
    "MedicationStatement": MEDICATION,
    "Immunization": MEDICATION,
    "Specimen": LAB,
    "ImagingStudy": IMAGING,
    "Media": IMAGING,
    "DocumentReference": DOCUMENT,
    "Composition": DOCUMENT,
    "DocumentManifest": DOCUMENT,
    "Encounter": ENCOUNTER,
    "EpisodeOfCare": ENCOUNTER,
    "Claim": FINANCIAL,
    "ClaimResponse": FINANCIAL,
    "ExplanationOfBenefit": FINANCIAL,
    "Coverage": FINANCIAL,
    "Account": FINANCIAL,
    "Invoice": FINANCIAL,
    "Consent": CONSENT,
    "AuditEvent": AUDIT,
    "Provenance": AUDIT,
}

_ADMINISTRATIVE_TYPES: Final = frozenset({
    "Organization", "Practitioner", "PractitionerRole", "Location", "HealthcareService",
    "Endpoint", "Device", "Medication", "Substance", "Group", "Library", "Measure",
    "ValueSet", "CodeSystem", "ConceptMap", "StructureDefinition", "SearchParameter",
    "CapabilityStatement", "OperationDefinition", "CompartmentDefinition", "NamingSystem",
    "Questionnaire", "ActivityDefinition", "PlanDefinition", "Subscription",
    "TerminologyCapabilities", "ImplementationGuide", "MessageDefinition", "GraphDefinition",
    "StructureMap", "Bundle", "Binary", "Parameters", "OperationOutcome",
})

_IMAGING_REPORT_CODES: Final = frozenset({"RAD", "CT", "MR", "NMR", "US", "XR", "RX", "NM", "CUS", "VUS", "OUS"})


def _category_codes(resource: dict[str, Any]) -> set[str]:
    codes: set[str] = set()
    cats = resource.get("category")
    if isinstance(cats, dict):
        cats = [cats]
    for cat in cats or ():
        if isinstance(cat, dict):
            for coding in cat.get("coding") or ():
                if isinstance(coding, dict) and coding.get("code"):
                    codes.add(str(coding["code"]))
    return codes


def classify(resource: dict[str, Any]) -> str:
    """The data class of ``resource`` (a FHIR resource as a dict)."""
    rtype = resource.get("resourceType", "")
    if rtype in _BY_TYPE:
        return _BY_TYPE[rtype]
    if rtype in _ADMINISTRATIVE_TYPES:
        return ADMINISTRATIVE
    cats = _category_codes(resource)
    if rtype == "Observation":
        if "vital-signs" in cats:
            return VITALS
        if "imaging" in cats:
            return IMAGING
        if "laboratory" in cats or not cats:
            return LAB if "laboratory" in cats else CLINICAL
        return CLINICAL
    if rtype == "DiagnosticReport":
        if cats & _IMAGING_REPORT_CODES or "imaging" in cats or "radiology" in cats:
            return IMAGING
        return LAB
    if rtype == "ServiceRequest":
        if "363679005" in cats or "imaging" in cats:
            return IMAGING
        if "108252007" in cats or "laboratory" in cats:
            return LAB
        return CLINICAL
    return CLINICAL
