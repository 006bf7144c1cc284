"""A small hand-made data set whose search results are derived by hand in the tests."""

from __future__ import annotations

LOINC = "http://loinc.org"
UCUM = "http://unitsofmeasure.org"
V2_0203 = "http://terminology.hl7.org/CodeSystem/v2-0203"


def _obs(id_: str, subject: str, **kw):
    return {"resourceType": "Observation", "id": id_, "status": kw.pop("status", "final"),
            "subject": {"reference": subject}, **kw}


def _code(code: str, display: str | None = None, system: str = LOINC):
    c = {"system": system, "code": code}
    if display:
        c["display"] = display
    return {"coding": [c]}


RESOURCES = [
    {"resourceType": "Organization", "id": "o1", "name": "General Hospital", "active": True},
    {"resourceType": "Organization", "id": "o2", "name": "Clinic Tone", "partOf": {"reference": "Organization/o1"}},
    {"resourceType": "Practitioner", "id": "d1", "name": [{"family": "Suzuki", "given": ["Ichiro"]}]},
    {"resourceType": "Patient", "id": "p1", "active": True, "gender": "male", "birthDate": "1970-05-20",
     "name": [{"family": "Yamada", "given": ["Taro"]}, {"family": "ヤマダ", "given": ["タロウ"]}],
     "identifier": [{"system": "urn:mrn", "value": "001",
                     "type": {"coding": [{"system": V2_0203, "code": "MR"}], "text": "Medical record"}}],
     "telecom": [{"system": "phone", "value": "03-1234"}, {"system": "email", "value": "taro@example.jp"}],
     "address": [{"city": "Tokyo", "postalCode": "100-0001"}],
     "managingOrganization": {"reference": "Organization/o1"},
     "meta": {"tag": [{"system": "http://example.org/tags", "code": "vip"}]}},
    {"resourceType": "Patient", "id": "p2", "gender": "male", "birthDate": "1985",
     "name": [{"family": "Müller", "given": ["Jürgen"]}], "deceasedDateTime": "2020-01-01",
     "generalPractitioner": [{"reference": "Practitioner/d1"}],
     "managingOrganization": {"reference": "Organization/o2"}},
    {"resourceType": "Patient", "id": "p3", "gender": "female", "birthDate": "1970-05-21",
     "name": [{"family": "ﾔﾏﾀﾞ", "given": ["はなこ"]}, {"text": "Smith, Anna"}],
     "identifier": [{"system": "urn:mrn", "value": "003"}]},
    {"resourceType": "Group", "id": "g1", "type": "person", "actual": True},
    _obs("obs1", "Patient/p1", code=_code("2345-7", "Glucose"), category=[_code("laboratory", None, "http://terminology.hl7.org/CodeSystem/observation-category")],
         valueQuantity={"value": 95, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
         effectiveDateTime="2021-03-01T10:00:00Z", encounter={"reference": "Encounter/e1"},
         meta={"tag": [{"system": "http://example.org/tags", "code": "urgent"}],
               "profile": ["http://example.org/StructureDefinition/lab"],
               "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
               "source": "http://lab.example/src"}),
    _obs("obs2", "Patient/p1", code=_code("2345-7", "Glucose"),
         valueQuantity={"value": 110, "unit": "mg/dL", "system": UCUM, "code": "mg/dL"},
         effectiveDateTime="2021-06-15"),
    _obs("obs3", "Patient/p2", status="amended", code=_code("85354-9", "Blood pressure panel"),
         effectivePeriod={"start": "2020-01-01", "end": "2020-01-31"},
         component=[
             {"code": _code("8480-6", "Systolic"),
              "valueQuantity": {"value": 120, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
             {"code": _code("8462-4", "Diastolic"),
              "valueQuantity": {"value": 80, "unit": "mmHg", "system": UCUM, "code": "mm[Hg]"}},
         ]),
    _obs("obs4", "Patient/p3", status="preliminary", code={"text": "Free text only"},
         valueString="Positive result", effectiveDateTime="2019"),
    _obs("obs5", "Patient/p3", code=_code("29463-7", "Body weight"),
         valueQuantity={"value": 5400, "unit": "g", "system": UCUM, "code": "g"},
         effectiveDateTime="2022-02-02T09:00:00+09:00", performer=[{"reference": "Practitioner/d1"}]),
    _obs("obs6", "Group/g1", code=_code("2345-7"), dataAbsentReason={"text": "not done"}),
    {"resourceType": "Encounter", "id": "e1", "status": "finished", "class": {"code": "AMB"},
     "subject": {"reference": "Patient/p1"},
     "period": {"start": "2021-03-01T09:00:00Z", "end": "2021-03-01T12:00:00Z"},
     "serviceProvider": {"reference": "Organization/o1"}},
    {"resourceType": "MedicationRequest", "id": "m1", "status": "active", "intent": "order",
     "medicationCodeableConcept": _code("197361", "Amlodipine", "http://www.nlm.nih.gov/research/umls/rxnorm"),
     "subject": {"reference": "Patient/p1"}, "authoredOn": "2021-01-10"},
    {"resourceType": "MedicationRequest", "id": "m2", "status": "stopped", "intent": "order",
     "medicationCodeableConcept": _code("314076", "Lisinopril", "http://www.nlm.nih.gov/research/umls/rxnorm"),
     "subject": {"reference": "Patient/p1"}, "authoredOn": "2020-01-10"},
    {"resourceType": "MedicationRequest", "id": "m3", "status": "active", "intent": "order",
     "medicationCodeableConcept": _code("197361", "Amlodipine", "http://www.nlm.nih.gov/research/umls/rxnorm"),
     "subject": {"reference": "Patient/p2"}, "authoredOn": "2021-02-01",
     "requester": {"identifier": {"system": "urn:license", "value": "L-77"}}},
    {"resourceType": "Provenance", "id": "pv1", "target": [{"reference": "Observation/obs1"}],
     "recorded": "2021-03-01T10:05:00Z", "agent": [{"who": {"reference": "Practitioner/d1"}}]},
    {"resourceType": "List", "id": "l1", "status": "current", "mode": "working",
     "entry": [{"item": {"reference": "Observation/obs2"}}, {"item": {"reference": "Observation/obs5"}}]},
    {"resourceType": "RiskAssessment", "id": "ra1", "status": "final", "subject": {"reference": "Patient/p1"},
     "prediction": [{"probabilityDecimal": 0.25}]},
    {"resourceType": "RiskAssessment", "id": "ra2", "status": "final", "subject": {"reference": "Patient/p2"},
     "prediction": [{"probabilityDecimal": 0.8}]},
    {"resourceType": "ValueSet", "id": "vs1", "status": "active", "url": "http://example.org/fhir/ValueSet/abc"},
    {"resourceType": "ValueSet", "id": "vs2", "status": "active", "url": "http://example.org/fhir/ValueSet/abc/def"},
    {"resourceType": "ValueSet", "id": "vs3", "status": "draft", "url": "http://other.org/ValueSet/x"},
    {"resourceType": "Questionnaire", "id": "q1", "status": "active", "url": "http://example.org/Questionnaire/q1"},
    {"resourceType": "QuestionnaireResponse", "id": "qr1", "status": "completed",
     "questionnaire": "http://example.org/Questionnaire/q1|2.0", "subject": {"reference": "Patient/p1"}},
]
