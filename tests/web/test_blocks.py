"""The patient page's blocks as pure functions of a collected record: names in kanji and kana,
the timeline per facility (newest first, capped), facility names from the custodian."""

from __future__ import annotations

from datetime import date

from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.summary.record import PatientRecord
from hie.web import pages

EN = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"


def enc(eid: str, when: str, code: str) -> dict:
    return {"resourceType": "Encounter", "id": eid, "status": "finished", "period": {"start": when},
            "type": [{"text": f"外来 {eid}"}], "meta": {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": code}]}}


def test_header_names_kanji_and_kana_and_age():
    patient = {"resourceType": "Patient", "id": "p", "gender": "female", "birthDate": "1990-02-28", "name": [
        {"extension": [{"url": EN, "valueCode": "SYL"}], "text": "タカハシ ミサキ"},
        {"extension": [{"url": EN, "valueCode": "IDE"}], "family": "髙橋", "given": ["美咲"]}]}
    h = pages.header(patient, "ja", date(2026, 12, 2))
    assert (h["kanji"], h["kana"], h["sex"], h["age"]) == ("髙橋 美咲", "タカハシ ミサキ", "女性", 36)
    assert h["birth"] == "1990年2月28日（平成2年2月28日）"
    plain = pages.header({"resourceType": "Patient", "name": [{"family": "Doe", "given": ["Jane"]}]}, "en",
                         date(2026, 1, 1))
    assert (plain["kanji"], plain["kana"], plain["age"]) == ("Doe Jane", "", None)


def test_timeline_is_per_facility_newest_first_and_capped():
    orgs = {"Organization/a": {"resourceType": "Organization", "id": "a", "name": "A病院",
                               "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": "1110000011"}]}}
    record = PatientRecord(patient={"resourceType": "Patient", "id": "p"}, organizations=orgs, by_type={
        "Encounter": [enc(f"a{i}", f"2026-0{i}-01", "1110000011") for i in range(1, 6)]
        + [enc("b1", "2025-01-01", "1110000052")]})
    lines = pages.timeline(record, "ja", limit=2)
    assert list(lines) == ["A病院", "1110000052"]  # a facility without a visible Organization: its code
    assert [ln.ref for ln in lines["A病院"]] == ["Encounter/a5", "Encounter/a4"]
    assert [ln.ref for ln in lines["1110000052"]] == ["Encounter/b1"]
    assert len(pages.timeline(record, "ja", limit=None)["A病院"]) == 5
    view = pages.patient_view(record, "ja", date(2026, 12, 2), 1_796_000_000_000_000)
    assert "Encounter/a1" in view["shown"] and "Encounter/b1" in view["shown"]  # 5 per facility < 50
