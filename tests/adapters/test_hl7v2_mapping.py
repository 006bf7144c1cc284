"""SS-MIX2 sample messages -> FHIR: every file mapped or rejected, round-trip facts,
R4B validation, JP Core identifiers, code systems, custodian and stable ids."""

from __future__ import annotations

import pytest
from fhir.resources.R4B import get_fhir_model_class

from adapters.hl7v2 import codesystems as cs
from adapters.hl7v2.bundle import CUSTODIAN_EXTENSION, validate_bundle
from adapters.hl7v2.errors import V2Error
from adapters.hl7v2.ids import facility_org_id, patient_system
from adapters.hl7v2.mapping import map_message
from adapters.ssmix2.importer import map_storage_bytes
from adapters.ssmix2.storage import StorageNameError, parse_path, walk

from .corpus import FACILITY, IDS, storage_file, storage_root

pytestmark = pytest.mark.corpus


def _map(kind: str):
    path = storage_file(kind)
    return map_storage_bytes(path.read_bytes(), path, FACILITY, ids=IDS, root=storage_root())


def _resources(result, rtype: str) -> list[dict]:
    return [e["resource"] for e in result.bundle["entry"] if e["resource"]["resourceType"] == rtype]


def test_every_sample_file_is_mapped_or_rejected_with_a_reason() -> None:
    root = storage_root()
    outcomes: dict[str, str] = {}
    for path in walk(root):
        rel = str(path.relative_to(root))
        try:
            result = map_storage_bytes(path.read_bytes(), path, FACILITY, ids=IDS, root=root)
            validate_bundle(result.bundle)
            outcomes[rel] = "mapped"
        except (V2Error, StorageNameError) as err:
            assert str(err), f"{rel} rejected without a reason"
            outcomes[rel] = "rejected"
    assert len(outcomes) == 22
    rejected = sorted(k for k, v in outcomes.items() if v == "rejected")
    assert rejected == sorted(k for k in outcomes if k.startswith("000/000/0000001/"))
    assert sum(v == "mapped" for v in outcomes.values()) == 19


def test_broken_files_are_rejected_for_the_right_reason() -> None:
    root = storage_root()
    broken = sorted((root / "000" / "000" / "0000001").rglob("*"))
    files = [p for p in broken if p.is_file()]
    assert len(files) == 3
    for path in files:
        if path.parent.name == "ADT-31":
            with pytest.raises(StorageNameError, match="does not match its folders"):
                parse_path(root, path)
        else:
            with pytest.raises(V2Error) as exc:
                map_storage_bytes(path.read_bytes(), path, FACILITY, ids=IDS, root=root)
            assert exc.value.location.startswith("TQ1")


def test_patient_kanji_and_kana_names_round_trip() -> None:
    patient = _resources(_map("ADT-00"), "Patient")[0]
    by_rep = {n["extension"][0]["valueCode"]: n for n in patient["name"]}
    assert by_rep["IDE"]["family"] == "患者" and by_rep["IDE"]["given"] == ["太郎"]
    assert by_rep["SYL"]["family"] == "カンジャ" and by_rep["SYL"]["given"] == ["タロウ"]
    assert patient["identifier"] == [{"system": "urn:oid:1.2.392.100495.20.3.51.1" + FACILITY, "value": "9999013"}]
    assert patient["birthDate"] == "1948-04-05" and patient["gender"] == "male"
    assert patient["managingOrganization"] == {"reference": f"Organization/{facility_org_id(FACILITY)}"}


def test_lab_value_with_jlac10_code_unit_and_reference_range() -> None:
    result = _map("OML-11")
    obs = {o["code"]["coding"][0]["code"]: o for o in _resources(result, "Observation")}
    tp = obs["3A010000002327101"]
    assert tp["code"]["coding"][0]["system"] == cs.JLAC10
    assert tp["code"]["coding"][0]["display"] == "総蛋白"
    assert tp["valueQuantity"]["value"] == 7.2
    assert tp["valueQuantity"]["unit"] == "g/dl"
    assert tp["referenceRange"][0]["low"]["value"] == 6.7 and tp["referenceRange"][0]["high"]["value"] == 8.3
    assert tp["effectiveDateTime"] == "2011-12-19T15:00:00+09:00"
    report = _resources(result, "DiagnosticReport")[0]
    assert {r["reference"] for r in report["result"]} == {f"Observation/{o['id']}" for o in obs.values()}


def test_prescription_drug_code_dose_and_days() -> None:
    reqs = _resources(_map("OMP-01"), "MedicationRequest")
    assert len(reqs) == 3
    alepiatin = next(r for r in reqs if r["medicationCodeableConcept"]["coding"][0]["code"] == "100607002")
    assert alepiatin["medicationCodeableConcept"]["coding"][0]["system"] == cs.HOT9
    dosage = alepiatin["dosageInstruction"][0]
    dose = dosage["doseAndRate"][0]["doseQuantity"]
    assert (dose["value"], dose["code"], dose["system"]) == (50, "MG", cs.MERIT9_UNIT)
    days = next(e for e in dosage["extension"] if e["url"].endswith("UsageDuration"))
    assert days["valueDuration"]["value"] == 14
    assert dosage["timing"]["code"]["coding"][0] == {
        "system": cs.JAMI_USAGE, "code": "1012040400000000", "display": "内服・経口・１日２回朝夕食後"}
    rp = {i["system"]: i["value"] for i in alepiatin["identifier"]}
    assert rp["http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber"] == "2"


def test_disease_with_medis_codes_and_icd10() -> None:
    cond = _resources(_map("PPR-01"), "Condition")[0]
    codings = {c["system"]: c["code"] for c in cond["code"]["coding"]}
    assert codings[cs.MEDIS_DISEASE_EXCODE] == "TSQF"
    assert codings[cs.MEDIS_DISEASE_KEYNUMBER] == "20054174"
    assert codings[cs.ICD10_2013] == "K297"
    assert cond["code"]["text"] == "胃炎"
    assert cond["onsetDateTime"] == "2011-08-31" and cond["abatementDateTime"] == "2011-09-15"
    assert cond["clinicalStatus"]["coding"][0]["code"] == "inactive"
    assert cond["meta"]["security"] == [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality",
                                         "code": "V"}]


def test_injection_components_become_ingredients() -> None:
    req = _resources(_map("OMP-02"), "MedicationRequest")[0]
    med = req["contained"][0]
    assert [i["itemCodeableConcept"]["coding"][0]["code"] for i in med["ingredient"]] == ["620007329", "620002559"]
    assert req["dosageInstruction"][0]["doseAndRate"][0]["rateQuantity"]["value"] == 102


@pytest.mark.parametrize("kind", ["ADT-00", "ADT-61", "PPR-01", "OMP-01", "OMP-02", "OMP-11", "OMP-12", "OMD",
                                  "ADT-22", "ADT-42", "ADT-52", "OML-01", "OML-11", "OMG-01", "OMG-02", "OMG-03",
                                  "OMG-11", "OMG-12", "OMG-13"])
def test_every_resource_validates_and_carries_source_custodian_and_patient(kind: str) -> None:
    result = _map(kind)
    for entry in result.bundle["entry"]:
        res = entry["resource"]
        get_fhir_model_class(res["resourceType"]).model_validate(res)
        assert entry["request"] == {"method": "PUT", "url": f"{res['resourceType']}/{res['id']}"}
        assert res["meta"]["source"].endswith(storage_file(kind).name)
        assert {"system": cs.CUSTODIAN_TAG_SYSTEM, "code": FACILITY} in res["meta"]["tag"]
        assert {"url": CUSTODIAN_EXTENSION,
                "valueReference": {"reference": f"Organization/{facility_org_id(FACILITY)}"}} in res["extension"]
        if res["resourceType"] == "Patient":
            assert res["identifier"][0]["system"] == patient_system(FACILITY)
        else:
            ref = res.get("subject") or res.get("patient") or res.get("beneficiary")
            assert ref["identifier"] == {"system": patient_system(FACILITY), "value": "9999013"}


def test_mapping_is_deterministic_so_resends_update() -> None:
    a, b = _map("OMG-12"), _map("OMG-12")
    assert a.bundle == b.bundle
    other = map_message(storage_file("OMG-12").read_bytes(), facility="1312345670", source="x", ids=IDS, kind="OMG-12")
    assert {e["request"]["url"] for e in other.bundle["entry"]}.isdisjoint(
        {e["request"]["url"] for e in a.bundle["entry"]})


def test_imaging_study_from_performed_radiology() -> None:
    study = _resources(_map("OMG-11"), "ImagingStudy")[0]
    assert study["identifier"][0] == {"system": "urn:dicom:uid", "value": "urn:oid:1.2.392.1114.20045.43233.5.300001"}
    assert study["modality"] == [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "US"}]


def test_deleted_file_maps_to_delete_entries_for_the_same_ids() -> None:
    path = storage_file("OMP-01")
    put = map_message(path.read_bytes(), facility=FACILITY, source="x", ids=IDS,
                      kind="OMP-01", storage_patient_id="9999013")
    delete = map_message(path.read_bytes(), facility=FACILITY, source="x", ids=IDS,
                         kind="OMP-01", storage_patient_id="9999013",
                         delete=True)
    assert [e["request"] for e in delete.bundle["entry"]] == [
        {"method": "DELETE", "url": e["request"]["url"]} for e in put.bundle["entry"]]


def test_storage_patient_id_wins_over_pid3_with_a_warning_or_rejects_when_strict() -> None:
    path = storage_file("OML-11")
    result = map_message(path.read_bytes(), facility=FACILITY, source="x", ids=IDS,
                         kind="OML-11", storage_patient_id="9999013")
    assert result.patient_number == "9999013"
    assert any("PID-3" in w for w in result.warnings)
    with pytest.raises(V2Error) as exc:
        map_message(path.read_bytes(), facility=FACILITY, source="x", ids=IDS,
                    kind="OML-11", storage_patient_id="9999013",
                    strict_patient_id=True)
    assert exc.value.location == "PID-3"


def test_wrong_message_for_the_storage_kind_is_rejected() -> None:
    with pytest.raises(V2Error, match="not a valid message for SS-MIX2 kind"):
        map_message(storage_file("OML-11").read_bytes(), facility=FACILITY, source="x", ids=IDS, kind="OMP-01")


def test_bad_field_value_names_its_location() -> None:
    raw = storage_file("ADT-00").read_bytes().replace(b"|19480405|M|", b"|19481305|M|")
    with pytest.raises(V2Error) as exc:
        map_message(raw, facility=FACILITY, source="x", ids=IDS, kind="ADT-00")
    assert exc.value.location == "PID-7"


def test_facility_code_must_be_ten_digits() -> None:
    with pytest.raises(V2Error):
        facility_org_id("12345")
    assert facility_org_id(FACILITY) == "mi-2212345670"
