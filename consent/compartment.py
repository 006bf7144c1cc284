"""The R4 Patient compartment, as data: which elements put a resource in a patient's compartment.

Vendored from the official CompartmentDefinition ``http://hl7.org/fhir/CompartmentDefinition/patient``
(FHIR R4 4.0.1, https://hl7.org/fhir/R4/compartmentdefinition-patient.html; FHIR is published
by HL7 under Creative Commons "No Rights Reserved", CC0) and the element paths of the
SearchParameters it names (``search-parameters.json`` of the same release, with
``.where(resolve() is Patient)`` dropped: the reader keeps only references to a Patient).
``tests/enforcement/test_classification.py`` derives this table again from the copies of both
files in ``hie/definitions`` and fails if they disagree.

Kept here, as plain data, so that :mod:`consent` stays free of ``hie`` imports; the storage
layer (:mod:`hie.storage.rowmeta`) reads it to find the patient a resource is about.
"""

from __future__ import annotations

from typing import Final

#: type -> {compartment parameter code: element paths (relative to the resource)}, in the
#: CompartmentDefinition's order.
PATIENT_COMPARTMENT: Final[dict[str, dict[str, tuple[str, ...]]]] = {
    "Account": {"subject": ("subject",)},
    "AdverseEvent": {"subject": ("subject",)},
    "AllergyIntolerance": {"patient": ("patient",), "recorder": ("recorder",), "asserter": ("asserter",)},
    "Appointment": {"actor": ("participant.actor",)},
    "AppointmentResponse": {"actor": ("actor",)},
    "AuditEvent": {"patient": ("agent.who", "entity.what")},
    "Basic": {"patient": ("subject",), "author": ("author",)},
    "BodyStructure": {"patient": ("patient",)},
    "CarePlan": {"patient": ("subject",), "performer": ("activity.detail.performer",)},
    "CareTeam": {"patient": ("subject",), "participant": ("participant.member",)},
    "ChargeItem": {"subject": ("subject",)},
    "Claim": {"patient": ("patient",), "payee": ("payee.party",)},
    "ClaimResponse": {"patient": ("patient",)},
    "ClinicalImpression": {"subject": ("subject",)},
    "Communication": {"subject": ("subject",), "sender": ("sender",), "recipient": ("recipient",)},
    "CommunicationRequest": {
        "subject": ("subject",),
        "sender": ("sender",),
        "recipient": ("recipient",),
        "requester": ("requester",),
    },
    "Composition": {"subject": ("subject",), "author": ("author",), "attester": ("attester.party",)},
    "Condition": {"patient": ("subject",), "asserter": ("asserter",)},
    "Consent": {"patient": ("patient",)},
    "Coverage": {
        "policy-holder": ("policyHolder",),
        "subscriber": ("subscriber",),
        "beneficiary": ("beneficiary",),
        "payor": ("payor",),
    },
    "CoverageEligibilityRequest": {"patient": ("patient",)},
    "CoverageEligibilityResponse": {"patient": ("patient",)},
    "DetectedIssue": {"patient": ("patient",)},
    "DeviceRequest": {"subject": ("subject",), "performer": ("performer",)},
    "DeviceUseStatement": {"subject": ("subject",)},
    "DiagnosticReport": {"subject": ("subject",)},
    "DocumentManifest": {"subject": ("subject",), "author": ("author",), "recipient": ("recipient",)},
    "DocumentReference": {"subject": ("subject",), "author": ("author",)},
    "Encounter": {"patient": ("subject",)},
    "EnrollmentRequest": {"subject": ("candidate",)},
    "EpisodeOfCare": {"patient": ("patient",)},
    "ExplanationOfBenefit": {"patient": ("patient",), "payee": ("payee.party",)},
    "FamilyMemberHistory": {"patient": ("patient",)},
    "Flag": {"patient": ("subject",)},
    "Goal": {"patient": ("subject",)},
    "Group": {"member": ("member.entity",)},
    "ImagingStudy": {"patient": ("subject",)},
    "Immunization": {"patient": ("patient",)},
    "ImmunizationEvaluation": {"patient": ("patient",)},
    "ImmunizationRecommendation": {"patient": ("patient",)},
    "Invoice": {"subject": ("subject",), "patient": ("subject",), "recipient": ("recipient",)},
    "List": {"subject": ("subject",), "source": ("source",)},
    "MeasureReport": {"patient": ("subject",)},
    "Media": {"subject": ("subject",)},
    "MedicationAdministration": {
        "patient": ("subject",),
        "performer": ("performer.actor",),
        "subject": ("subject",),
    },
    "MedicationDispense": {"subject": ("subject",), "patient": ("subject",), "receiver": ("receiver",)},
    "MedicationRequest": {"subject": ("subject",)},
    "MedicationStatement": {"subject": ("subject",)},
    "MolecularSequence": {"patient": ("patient",)},
    "NutritionOrder": {"patient": ("patient",)},
    "Observation": {"subject": ("subject",), "performer": ("performer",)},
    "Patient": {"link": ("link.other",)},
    "Person": {"patient": ("link.target",)},
    "Procedure": {"patient": ("subject",), "performer": ("performer.actor",)},
    "Provenance": {"patient": ("target",)},
    "QuestionnaireResponse": {"subject": ("subject",), "author": ("author",)},
    "RelatedPerson": {"patient": ("patient",)},
    "RequestGroup": {"subject": ("subject",), "participant": ("action.participant",)},
    "ResearchSubject": {"individual": ("individual",)},
    "RiskAssessment": {"subject": ("subject",)},
    "Schedule": {"actor": ("actor",)},
    "ServiceRequest": {"subject": ("subject",), "performer": ("performer",)},
    "Specimen": {"subject": ("subject",)},
    "SupplyDelivery": {"patient": ("patient",)},
    "SupplyRequest": {"subject": ("deliverTo",)},
    "VisionPrescription": {"patient": ("patient",)},
}

#: Compartment parameters that name someone who acted on the record (author, performer,
#: recipient, ...), not whom it is about. A patient found only through one of them (a
#: patient who authored a QuestionnaireResponse without a subject) is still the patient
#: the record belongs to, but any parameter outside this set wins.
ROLE_PARAMS: Final = frozenset({
    "recorder", "asserter", "author", "performer", "participant", "payee", "sender", "recipient",
    "requester", "attester", "policy-holder", "subscriber", "payor", "receiver", "source",
})


def about_paths(res_type: str) -> tuple[tuple[str, ...], ...]:
    """Element paths of ``res_type`` in order of preference: groups of paths, the subject-like
    parameters first, then the role parameters (empty if the type is not in the compartment)."""
    params = PATIENT_COMPARTMENT.get(res_type, {})
    about = tuple(paths for code, paths in params.items() if code not in ROLE_PARAMS)
    roles = tuple(paths for code, paths in params.items() if code in ROLE_PARAMS)
    return about + roles
