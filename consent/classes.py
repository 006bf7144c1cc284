"""Data classes: the coarse categories a patient grants or withholds.

Every stored resource is put in exactly one data class at write time; the consent
engine's grants and the storage layer's access predicate both speak this vocabulary.
Pure code: it looks at a resource as a plain dict and imports nothing from ``hie``.

The categories follow what Japanese regional networks let patients choose between
(medication, lab, imaging, documents, ...) plus the classes the emergency dataset
needs (allergy, problem). ``administrative`` holds resources that cannot be about a
patient (facilities, practitioners, definitional resources); consent does not apply, and
any principal may read them. Everything else is patient data: a row of it that names no
single patient (a Group of several patients, a Binary whose target is not visible to its
writer) is visible to its custodian only (hie/storage/rowmeta.py finds the patient).
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
    "Person": DEMOGRAPHICS,
    "ChargeItem": FINANCIAL,
    "CoverageEligibilityRequest": FINANCIAL,
    "CoverageEligibilityResponse": FINANCIAL,
    "EnrollmentRequest": FINANCIAL,
}

#: Types that cannot hold patient data: the registry (facilities, practitioners, places),
#: products and definitions, conformance and terminology resources. Every other R4 type can
#: (tests/enforcement/test_classification.py walks them all).
ADMINISTRATIVE_TYPES: Final = frozenset({
    # registry
    "Organization", "OrganizationAffiliation", "Practitioner", "PractitionerRole", "Location",
    "HealthcareService", "Endpoint", "InsurancePlan", "Slot",
    # products and their definitions
    "Medication", "MedicationKnowledge", "Substance", "DeviceDefinition", "DeviceMetric",
    "MedicinalProduct", "MedicinalProductAuthorization", "MedicinalProductContraindication",
    "MedicinalProductIndication", "MedicinalProductIngredient", "MedicinalProductInteraction",
    "MedicinalProductManufactured", "MedicinalProductPackaged", "MedicinalProductPharmaceutical",
    "MedicinalProductUndesirableEffect", "SubstanceNucleicAcid", "SubstancePolymer", "SubstanceProtein",
    "SubstanceReferenceInformation", "SubstanceSourceMaterial", "SubstanceSpecification",
    # definitional artifacts and knowledge
    "ActivityDefinition", "PlanDefinition", "Questionnaire", "Library", "Measure", "EventDefinition",
    "ObservationDefinition", "SpecimenDefinition", "ResearchDefinition", "ResearchElementDefinition",
    "ResearchStudy", "ChargeItemDefinition", "Evidence", "EvidenceVariable", "EffectEvidenceSynthesis",
    "RiskEvidenceSynthesis", "CatalogEntry",
    # conformance and terminology
    "CapabilityStatement", "StructureDefinition", "ImplementationGuide", "SearchParameter",
    "MessageDefinition", "OperationDefinition", "CompartmentDefinition", "StructureMap",
    "GraphDefinition", "ExampleScenario", "CodeSystem", "ValueSet", "ConceptMap", "NamingSystem",
    "TerminologyCapabilities", "TestScript", "TestReport", "Subscription", "SubscriptionStatus",
    "OperationOutcome",
})

#: Types outside the Patient compartment that can hold patient data, and their class
#: (how their patient is found: hie.storage.rowmeta.EXPLICIT).
_OUTSIDE_COMPARTMENT: Final[dict[str, str]] = {
    "Binary": DOCUMENT,  # takes the class of its securityContext's target
    "BiologicallyDerivedProduct": CLINICAL,
    "Contract": FINANCIAL,
    "EnrollmentResponse": FINANCIAL,
    "GuidanceResponse": CLINICAL,
    "Linkage": DEMOGRAPHICS,
    "MessageHeader": CLINICAL,
    "PaymentNotice": FINANCIAL,
    "PaymentReconciliation": FINANCIAL,
    "Task": CLINICAL,
    "VerificationResult": CLINICAL,
}

#: Group.type values whose members are people (or animals): a Group of them is patient data.
_PEOPLE_GROUPS: Final = frozenset({"person", "animal"})

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


def _content_class(resource: dict[str, Any]) -> str:
    """Bundle, Parameters, Group and Device: administrative only when what they hold or
    point at is not about a patient."""
    rtype = resource.get("resourceType")
    if rtype == "Bundle":
        if resource.get("type") == "document":
            return DOCUMENT
        inner = [e.get("resource") for e in resource.get("entry") or () if isinstance(e, dict)]
    elif rtype == "Parameters":
        inner = list(_parameter_resources(resource.get("parameter")))
    elif rtype == "Group":
        people = resource.get("type") in _PEOPLE_GROUPS or not resource.get("type")
        return CLINICAL if people or _names_patient(resource.get("member")) else ADMINISTRATIVE
    else:  # Device: patient data when it is a patient's (an implant, a home device)
        return CLINICAL if resource.get("patient") else ADMINISTRATIVE
    held = {classify(r) for r in inner if isinstance(r, dict)} - {ADMINISTRATIVE}
    return DOCUMENT if held else ADMINISTRATIVE


def _names_patient(members: Any) -> bool:
    for m in members if isinstance(members, list) else ():
        ref = (m.get("entity") or {}).get("reference") if isinstance(m, dict) else None
        if isinstance(ref, str) and "Patient/" in ref:
            return True
    return False


def _parameter_resources(params: Any) -> Any:
    for p in params if isinstance(params, list) else ():
        if isinstance(p, dict):
            if isinstance(p.get("resource"), dict):
                yield p["resource"]
            yield from _parameter_resources(p.get("part"))


def classify(resource: dict[str, Any]) -> str:
    """The data class of ``resource`` (a FHIR resource as a dict).

    Administrative only for :data:`ADMINISTRATIVE_TYPES` and for a Bundle, Parameters, Group
    or Device that holds nothing about a patient; every type of the Patient compartment and
    every type of ``_OUTSIDE_COMPARTMENT`` is patient data whatever it contains."""
    rtype = resource.get("resourceType", "")
    if rtype in _BY_TYPE:
        return _BY_TYPE[rtype]
    if rtype in ADMINISTRATIVE_TYPES:
        return ADMINISTRATIVE
    if rtype in _OUTSIDE_COMPARTMENT:
        return _OUTSIDE_COMPARTMENT[rtype]
    if rtype in ("Bundle", "Parameters", "Group", "Device"):
        return _content_class(resource)
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
