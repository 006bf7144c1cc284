"""The JP-CLINS 6 information: which records land in which panel, with their source facility;
on the demo region through the repository as the system and as a facility without consent."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from hie.demo import demo_bundle
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.ingest import ingest_bundle
from hie.principal import SYSTEM, Principal
from hie.summary.record import PatientRecord, collect
from hie.summary.sixinfo import JLAC10, six_info

NOW = datetime(2026, 12, 1, tzinfo=UTC)
CODE = "1110000011"
LAB = [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}]}]


def _obs(rid: str, system: str, code: str, when: str, **kw: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "id": rid, "status": "final", "category": LAB,
            "code": {"coding": [{"system": system, "code": code}], "text": rid}, "effectiveDateTime": when,
            "valueQuantity": {"value": 1, "unit": "mg/dL"}, **kw}


def _record() -> PatientRecord:
    clinical = "http://terminology.hl7.org/CodeSystem/condition-clinical"
    by_type = {
        "AllergyIntolerance": [
            {"resourceType": "AllergyIntolerance", "id": "pen", "category": ["medication"], "criticality": "high",
             "code": {"text": "ペニシリン"}},
            {"resourceType": "AllergyIntolerance", "id": "egg", "category": ["food"], "code": {"text": "卵"}},
            {"resourceType": "AllergyIntolerance", "id": "err", "code": {"text": "誤登録"}, "verificationStatus": {
                "coding": [{"code": "entered-in-error"}]}},
        ],
        "Condition": [
            {"resourceType": "Condition", "id": "old", "code": {"text": "虫垂炎"}, "onsetDateTime": "2026-01-01",
             "clinicalStatus": {"coding": [{"system": clinical, "code": "resolved"}]}},
            {"resourceType": "Condition", "id": "dm", "code": {"text": "2型糖尿病"}, "onsetDateTime": "2019-05-10",
             "clinicalStatus": {"coding": [{"system": clinical, "code": "active"}]}},
        ],
        "Observation": [
            _obs("a1c-new", JLAC10, "3D045000001906202", "2026-11-01"),
            _obs("a1c-old", JLAC10, "3D045000001906202", "2026-06-01"),
            _obs("cre-ancient", JLAC10, "3C015000002327101", "2023-01-01"),
            _obs("hbs", JLAC10, "5F016141002301101", "2026-10-01"),
            _obs("hcv", "http://loinc.org", "16128-1", "2026-10-02"),
            _obs("bad", JLAC10, "3D045000001906202", "2026-11-30", status="entered-in-error"),
            {**_obs("bp", "http://loinc.org", "8480-6", "2026-11-01"), "category": []},
        ],
        "MedicationRequest": [
            {"resourceType": "MedicationRequest", "id": "m-new", "status": "active", "intent": "order",
             "medicationCodeableConcept": {"text": "メトホルミン"}, "authoredOn": "2026-10-06"},
            {"resourceType": "MedicationRequest", "id": "m-old", "status": "completed", "intent": "order",
             "medicationCodeableConcept": {"text": "アムロジピン"}, "authoredOn": "2025-01-06"},
            {"resourceType": "MedicationRequest", "id": "m-cancel", "status": "cancelled", "intent": "order",
             "medicationCodeableConcept": {"text": "取消"}, "authoredOn": "2026-11-06"},
        ],
    }
    record = PatientRecord(patient={"resourceType": "Patient", "id": "p"}, by_type=by_type)
    record.organizations = {"Organization/h": {"resourceType": "Organization", "id": "h", "name": "中央病院",
                                               "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": CODE}]}}
    record.custodians = {f"{r['resourceType']}/{r['id']}": CODE for items in by_type.values() for r in items}
    return record


def _ids(panel: Any) -> list[str]:
    return [i.reference.split("/", 1)[1] for i in panel.items]


def test_records_land_in_their_panels() -> None:
    info = six_info(_record(), now=NOW)
    assert _ids(info.contraindications) == ["pen"]
    assert _ids(info.allergies) == ["egg"]
    assert _ids(info.problems) == ["dm", "old"]  # active first
    assert _ids(info.infections) == ["hcv", "hbs"]
    assert _ids(info.labs) == ["a1c-new"]  # newest per analyte, within the year, no infections
    assert _ids(info.medications) == ["m-new", "m-old"]
    item = info.labs.items[0]
    assert (item.value, item.source.display, item.source.organization) == ("1 mg/dL", "中央病院", "Organization/h")
    assert [p.key for p in info.panels()][:2] == ["contraindications", "allergies"]
    assert info.panels()[0].title("en") == "Drug contraindications" and info.panels()[0].title("ja") == "薬剤禁忌"


def test_the_lab_window_follows_now() -> None:
    info = six_info(_record(), now=datetime(2023, 6, 1, tzinfo=UTC))
    assert "cre-ancient" in _ids(info.labs)
    assert "cre-ancient" not in _ids(six_info(_record(), now=NOW).labs)


@pytest.fixture
def demo(sqlite_node: Any) -> Any:
    ingest_bundle(sqlite_node, demo_bundle(), source="demo:test")
    return sqlite_node


def test_demo_patient_through_the_repository(demo: Any) -> None:
    with demo.context(SYSTEM, write=False) as ctx:
        info = six_info(collect(ctx.repo, "demo-p1"), now=NOW)
    contra = info.contraindications.items
    assert [i.text for i in contra] == ["ペニシリン系抗菌薬"] and contra[0].source.display == "利根地域中央病院"
    assert any(i.text == "HbA1c" for i in info.labs.items)
    assert info.problems.items and info.medications.items
    assert all(i.source.custodian for p in info.panels() for i in p.items)
    # a viewing facility without the patient's consent (demo-p2) gets no record at all
    viewer = Principal(kind="user", name="v", user_id="v", organization_id="1170000010")
    with demo.context(viewer, write=False) as ctx:
        from hie.errors import NotFound

        with pytest.raises(NotFound):
            collect(ctx.repo, "demo-p2")


def test_custodian_tag_is_the_fallback_source() -> None:
    record = _record()
    record.custodians = {}
    res = {"resourceType": "Condition", "id": "x", "meta": {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": CODE}]}}
    assert record.source_of(res).display == "中央病院"
