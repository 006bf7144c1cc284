"""A small demo region modeled on the Tone area (とねっと, Saitama): core hospitals, an
imaging centre, a lab centre, a clinic, a dental clinic, a pharmacy and a care facility,
with a few synthetic patients whose records are spread across them.

All names, numbers and codes are fictitious (institution codes follow the 10-digit
layout: prefecture 11 = Saitama, table 1 = medical / 3 = dental / 4 = pharmacy).
The bundle is built in code so ids stay deterministic: loading it twice changes nothing.

For the clinician viewer (``/viewer``, issue 14) 山田太郎 (demo-p1) has metformin from two
prescribers (すぎと内科クリニック, 利根地域中央病院) and the pharmacy that dispensed it (みやしろ
薬局), a stopped drug, a drug with a similar name but another code, a year of HbA1c from two
facilities (利根臨床検査センター monthly, すぎと内科クリニック every three months), a penicillin
allergy, and a Consent recorded at 利根地域中央病院's counter: every participating facility may
see his records except くき歯科医院 (the exclusion hides every facility's data from it).

Network roles (``hie.auth.registry.NETWORK_ROLE_EXT``): the imaging and lab centres only
disclose (they read no other facility's records), the care facility only views, every other
facility does both. ``hie.auth.demo`` enrols one user per role of the region.
"""

from __future__ import annotations

from typing import Any

from consent.builder import all_facilities
from hie.auth.registry import FACILITY_KIND_SYSTEM, NETWORK_ROLE_EXT
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, FACILITY_PATIENT_ID_PREFIX, MEDICAL_INSTITUTION_SYSTEM

JP_PATIENT = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"
JP_ORG = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization"
EN_REP = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
HOT9 = "http://medis.or.jp/CodeSystem/master-HOT9"
MEDIS_DX = "http://medis.or.jp/CodeSystem/master-disease-exCode"
ORG_TYPE = "http://terminology.hl7.org/CodeSystem/organization-type"
FACILITY_KIND = FACILITY_KIND_SYSTEM

# network role per facility id (the registry's default is "both")
NETWORK_ROLE = {"tone-imaging": "disclosing", "tone-lab": "disclosing", "hasuda-care": "viewing"}

# (id, institution code, name, kana, kind, city)
FACILITIES = [
    ("tone-central", "1110000011", "利根地域中央病院", "トネチイキチュウオウビョウイン", "hospital", "加須市"),
    ("hanyu-general", "1110000029", "羽生総合医療センター", "ハニュウソウゴウイリョウセンター", "hospital", "羽生市"),
    ("tone-imaging", "1110000037", "とね画像診断センター", "トネガゾウシンダンセンター", "imaging-centre", "久喜市"),
    ("tone-lab", "1110000045", "利根臨床検査センター", "トネリンショウケンサセンター", "lab-centre", "行田市"),
    ("sugito-clinic", "1110000052", "すぎと内科クリニック", "スギトナイカクリニック", "clinic", "杉戸町"),
    ("kuki-dental", "1130000016", "くき歯科医院", "クキシカイイン", "dental-clinic", "久喜市"),
    ("miyashiro-pharmacy", "1140000013", "みやしろ薬局", "ミヤシロヤッキョク", "pharmacy", "宮代町"),
    ("hasuda-care", "1170000010", "はすだ介護老人保健施設", "ハスダカイゴロウジンホケンシセツ", "care-facility", "蓮田市"),
]

# (id, family kanji, given kanji, family kana, given kana, gender, birthDate, home facility, local no.)
PATIENTS = [
    ("demo-p1", "山田", "太郎", "ヤマダ", "タロウ", "male", "1950-04-12", "tone-central", "0001234"),
    ("demo-p2", "佐藤", "花子", "サトウ", "ハナコ", "female", "1962-11-03", "hanyu-general", "0104567"),
    ("demo-p3", "鈴木", "一郎", "スズキ", "イチロウ", "male", "1978-07-21", "sugito-clinic", "88-17"),
    ("demo-p4", "髙橋", "美咲", "タカハシ", "ミサキ", "female", "1990-02-28", "tone-central", "0007788"),
]


def _code(fid: str) -> str:
    return next(f[1] for f in FACILITIES if f[0] == fid)


def _tag(fid: str) -> dict[str, Any]:
    return {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": _code(fid)}]}


def _organization(fid: str, code: str, name: str, kana: str, kind: str, city: str) -> dict[str, Any]:
    return {
        "resourceType": "Organization",
        "id": fid,
        "meta": {"profile": [JP_ORG]},
        "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": NETWORK_ROLE.get(fid, "both")}],
        "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}],
        "active": True,
        "type": [
            {"coding": [{"system": ORG_TYPE, "code": "prov"}]},
            {"coding": [{"system": FACILITY_KIND, "code": kind}]},
        ],
        "name": name,
        "alias": [kana],
        "address": [{"state": "埼玉県", "city": city, "country": "JP"}],
    }


def _patient(pid: str, fk: str, gk: str, fkana: str, gkana: str, gender: str, birth: str, fid: str,
             local: str) -> dict[str, Any]:
    return {
        "resourceType": "Patient",
        "id": pid,
        "meta": {"profile": [JP_PATIENT], **_tag(fid)},
        "identifier": [{"system": FACILITY_PATIENT_ID_PREFIX + _code(fid), "value": local}],
        "name": [
            {"extension": [{"url": EN_REP, "valueCode": "IDE"}], "use": "official", "text": f"{fk} {gk}",
             "family": fk, "given": [gk]},
            {"extension": [{"url": EN_REP, "valueCode": "SYL"}], "use": "official", "text": f"{fkana} {gkana}",
             "family": fkana, "given": [gkana]},
        ],
        "gender": gender,
        "birthDate": birth,
        "address": [{"state": "埼玉県", "city": next(f[5] for f in FACILITIES if f[0] == fid), "country": "JP"}],
        "managingOrganization": {"reference": f"Organization/{fid}"},
    }


def _lab(oid: str, pid: str, fid: str, code: str, text: str, value: float, unit: str, when: str,
         low: float | None = None, high: float | None = None) -> dict[str, Any]:
    obs: dict[str, Any] = {
        "resourceType": "Observation",
        "id": oid,
        "meta": _tag(fid),
        "status": "final",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                  "code": "laboratory"}]}],
        "code": {"coding": [{"system": JLAC10, "code": code, "display": text}], "text": text},
        "subject": {"reference": f"Patient/{pid}"},
        "effectiveDateTime": when,
        "performer": [{"reference": f"Organization/{fid}"}],
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit},
    }
    if low is not None and high is not None:
        obs["referenceRange"] = [{"low": {"value": low, "unit": unit}, "high": {"value": high, "unit": unit}}]
    return obs


def _med(rid: str, fid: str, rtype: str, code: str, text: str, when: str, status: str,
         extra: dict[str, Any] | None = None, system: str = HOT9) -> dict[str, Any]:
    field = {"MedicationRequest": "authoredOn", "MedicationDispense": "whenHandedOver"}.get(rtype, "effectiveDateTime")
    out: dict[str, Any] = {
        "resourceType": rtype, "id": rid, "meta": _tag(fid), "status": status,
        "medicationCodeableConcept": {"coding": [{"system": system, "code": code, "display": text}], "text": text},
        "subject": {"reference": "Patient/demo-p1"}, field: when, **(extra or {}),
    }
    if rtype == "MedicationRequest":
        out["intent"] = "order"
    return out


def viewer_resources() -> list[dict[str, Any]]:
    """demo-p1's cross-facility record for the viewer (see the module docstring)."""
    metformin, met_text = "103835401", "メトホルミン塩酸塩錠250mg"
    dose = {"dosageInstruction": [{"text": "1回1錠 1日2回 朝夕食後"}]}
    out = [
        _med("demo-m2", "tone-central", "MedicationRequest", metformin, met_text, "2026-09-01", "active",
             {"dosageInstruction": [{"text": "1回2錠 1日2回 朝夕食後"}]}),
        _med("demo-m3", "miyashiro-pharmacy", "MedicationDispense", metformin, met_text,
             "2026-10-06T17:20:00+09:00", "completed",
             {"quantity": {"value": 56, "unit": "錠"}, "daysSupply": {"value": 28, "unit": "日"}, **dose}),
        _med("demo-m4", "tone-central", "MedicationRequest", "610406079", "ロキソプロフェンNa錠60mg",
             "2026-03-10", "stopped", {"dosageInstruction": [{"text": "1回1錠 疼痛時"}]}),
        _med("demo-m5", "sugito-clinic", "MedicationRequest", "103835402", "メトホルミン塩酸塩錠500mg",
             "2026-10-06", "active", dose),
        all_facilities("demo-consent-p1", "Patient/demo-p1", exclude=["Organization/kuki-dental"],
                       date_time="2026-04-01T10:00:00+09:00", recorded_by="Organization/tone-central",
                       scanned_form_url="https://tone-central.example.jp/consent/demo-p1.pdf"),
    ]
    out[-1]["meta"] = {**out[-1]["meta"], **_tag("tone-central")}
    months = ["2025-12", "2026-01", "2026-02", "2026-03", "2026-04", "2026-05", "2026-06", "2026-07", "2026-08"]
    values = [7.9, 7.8, 7.6, 7.7, 7.5, 7.4, 7.4, 7.3, 7.2]
    for i, (month, value) in enumerate(zip(months, values, strict=True)):
        out.append(_lab(f"demo-h{i + 1}", "demo-p1", "tone-lab", "3D010000001926101", "HbA1c", value, "%",
                        f"{month}-05T09:00:00+09:00", 4.6, 6.2))
    for i, (when, value) in enumerate((("2026-01-20", 7.7), ("2026-04-21", 7.5), ("2026-07-21", 7.3),
                                       ("2026-10-20", 6.9))):
        out.append(_lab(f"demo-hc{i + 1}", "demo-p1", "sugito-clinic", "3D010000001926101", "HbA1c", value, "%",
                        f"{when}T10:30:00+09:00", 4.9, 6.0))
    return out


def demo_resources() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [_organization(*f) for f in FACILITIES]
    out += [_patient(*p) for p in PATIENTS]
    out += [
        _lab("demo-o1", "demo-p1", "tone-lab", "3D010000001926101", "HbA1c", 7.2, "%", "2026-09-01T09:30:00+09:00", 4.6, 6.2),
        _lab("demo-o2", "demo-p1", "tone-lab", "3D010000001926101", "HbA1c", 6.9, "%", "2026-10-06T09:10:00+09:00", 4.6, 6.2),
        _lab("demo-o3", "demo-p1", "tone-central", "3C015000002327101", "クレアチニン", 1.1, "mg/dL", "2026-10-06T09:10:00+09:00", 0.65, 1.07),
        _lab("demo-o4", "demo-p2", "hanyu-general", "3F015000002327101", "LDLコレステロール", 152, "mg/dL", "2026-08-20T10:00:00+09:00", 65, 139),
        {
            "resourceType": "Condition", "id": "demo-c1", "meta": _tag("sugito-clinic"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
            "code": {"coding": [{"system": MEDIS_DX, "code": "20060934", "display": "２型糖尿病"}], "text": "2型糖尿病"},
            "subject": {"reference": "Patient/demo-p1"}, "onsetDateTime": "2019-05-10",
        },
        {
            "resourceType": "AllergyIntolerance", "id": "demo-a1", "meta": _tag("tone-central"),
            "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
            "category": ["medication"], "criticality": "high",
            "code": {"text": "ペニシリン系抗菌薬"}, "patient": {"reference": "Patient/demo-p1"},
        },
        {
            "resourceType": "MedicationRequest", "id": "demo-m1", "meta": _tag("sugito-clinic"),
            "status": "active", "intent": "order",
            "medicationCodeableConcept": {"coding": [{"system": HOT9, "code": "103835401", "display": "メトホルミン塩酸塩錠２５０ｍｇ"}],
                                          "text": "メトホルミン塩酸塩錠250mg"},
            "subject": {"reference": "Patient/demo-p1"}, "authoredOn": "2026-10-06",
            "dosageInstruction": [{"text": "1回1錠 1日2回 朝夕食後",
                                   "doseAndRate": [{"doseQuantity": {"value": 1, "unit": "錠"}}]}],
            "dispenseRequest": {"expectedSupplyDuration": {"value": 28, "unit": "日", "system": "http://unitsofmeasure.org", "code": "d"}},
        },
        {
            "resourceType": "ImagingStudy", "id": "demo-i1", "meta": _tag("tone-imaging"), "status": "available",
            "subject": {"reference": "Patient/demo-p2"}, "started": "2026-09-15T14:00:00+09:00",
            "modality": [{"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "CT"}],
            "description": "胸部CT", "numberOfSeries": 1, "numberOfInstances": 120,
        },
    ]
    return out + viewer_resources()


def demo_bundle() -> dict[str, Any]:
    return {
        "resourceType": "Bundle",
        "type": "transaction",
        "entry": [
            {"fullUrl": f"{r['resourceType']}/{r['id']}", "resource": r,
             "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}}
            for r in demo_resources()
        ],
    }
