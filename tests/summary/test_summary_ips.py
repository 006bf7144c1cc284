"""``Patient/$summary`` on the demo region: a valid IPS document per demo patient, sections
by LOINC with resolvable entries, every entry traceable to its source facility, the
instance and type (identifier) forms over GET and POST, 404 for a hidden patient exactly
as for an unknown one, the scope check and the audit trail (SQLite and PostgreSQL)."""

from __future__ import annotations

from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hie.api.app import create_app
from hie.audit.recorder import AuditRecorder
from hie.auth.service import system_token
from hie.demo import PATIENTS, demo_bundle
from hie.fhir.naming import FACILITY_PATIENT_ID_PREFIX, MEDICAL_INSTITUTION_SYSTEM
from hie.ingest import ingest_bundle
from hie.principal import Principal
from hie.storage.tables import resource as R
from hie.summary.record import collect, institution_codes
from tests.summary.summary_support import BASE, check_document, custodian_tag, section_refs

FHIR = {"Content-Type": "application/fhir+json"}


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def demo(request: pytest.FixtureRequest) -> Any:
    """The demo region, loaded once per database for this module (the tests only add
    records of their own beside it)."""
    from tests.conftest import _truncate

    node = request.getfixturevalue("_sqlite_node" if request.param == "sqlite" else "_pg_node")
    _truncate(node)
    ingest_bundle(node, demo_bundle(), source="demo:test")
    return node


def _client(node: Any, scope: str = "system/*.rs", audit: Any = False) -> TestClient:
    token = system_token(node, scope, fhir_base=BASE)
    return TestClient(create_app(node, audit=audit), base_url="http://testserver",
                      headers={"Authorization": f"Bearer {token}"})


def test_every_demo_patient_gets_a_valid_traceable_ips_document(demo: Any) -> None:
    with _client(demo) as c:
        for pid, *_rest in PATIENTS:
            r = c.get(f"/fhir/Patient/{pid}/$summary")
            assert r.status_code == 200, r.text
            doc = r.json()
            comp = check_document(doc, pid)
            by_url = {e["fullUrl"]: e["resource"] for e in doc["entry"]}
            orgs = [res for res in by_url.values() if res["resourceType"] == "Organization"]
            for refs in section_refs(comp).values():
                for ref in refs:
                    res = by_url[f"{BASE}/{ref}"]
                    code = custodian_tag(res)
                    assert code, f"{ref} names no source facility"
                    assert res["meta"]["source"] == "demo:test"
                    org = next(o for o in orgs if code in institution_codes(o))
                    assert org["name"] in comp["section"][0]["text"]["div"] + "".join(
                        s["text"]["div"] for s in comp["section"])
    # the demo's first patient has data in the three required sections and in results
    with _client(demo) as c:
        comp = c.get("/fhir/Patient/demo-p1/$summary").json()["entry"][0]["resource"]
    refs = section_refs(comp)
    assert "Condition/demo-c1" in refs["11450-4"]
    assert "AllergyIntolerance/demo-a1" in refs["48765-2"]
    assert any(r.startswith("Medication") for r in refs["10160-0"])
    assert refs["30954-2"], "lab results"
    assert "ペニシリン系抗菌薬" in comp["section"][1]["text"]["div"]
    assert "貴施設に共有が許可された情報のみを表示しています" in comp["text"]["div"]


def test_empty_required_sections_say_no_information(demo: Any) -> None:
    ingest_bundle(demo, {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "id": "sum-empty", "gender": "female"},
        "request": {"method": "PUT", "url": "Patient/sum-empty"}}]}, source="test")
    with _client(demo) as c:
        doc = c.get("/fhir/Patient/sum-empty/$summary").json()
    comp = check_document(doc, "sum-empty")
    assert [s["code"]["coding"][0]["code"] for s in comp["section"]] == ["11450-4", "48765-2", "10160-0"]
    assert all(s["emptyReason"]["coding"][0]["code"] == "unavailable" for s in comp["section"])
    assert all("記録された情報はありません" in s["text"]["div"] for s in comp["section"])


def test_type_level_by_identifier_get_and_post_and_english(demo: Any) -> None:
    pid, home, number = PATIENTS[0][0], PATIENTS[0][7], PATIENTS[0][8]
    code = next(o["identifier"][0]["value"] for o in _orgs(demo) if o["id"] == home)
    system = f"{FACILITY_PATIENT_ID_PREFIX}{code}"
    with _client(demo) as c:
        r = c.get("/fhir/Patient/$summary", params={"identifier": f"{system}|{number}", "language": "en"})
        assert r.status_code == 200, r.text
        comp = check_document(r.json(), pid)
        assert comp["section"][0]["title"] == "Problem list" and comp["language"] == "en"
        body = {"resourceType": "Parameters", "parameter": [
            {"name": "identifier", "valueIdentifier": {"system": system, "value": number}},
            {"name": "profile", "valueCanonical": "http://hl7.org/fhir/uv/ips/StructureDefinition/Bundle-uv-ips"}]}
        r = c.post("/fhir/Patient/$summary", content=orjson.dumps(body), headers=FHIR)
        assert r.status_code == 200, r.text
        check_document(r.json(), pid)
        r = c.post(f"/fhir/Patient/{pid}/$summary", content=orjson.dumps({"resourceType": "Parameters"}),
                   headers=FHIR)
        assert r.status_code == 200 and r.json()["entry"][0]["resource"]["language"] == "ja"
        assert c.get("/fhir/Patient/$summary", params={"identifier": f"{system}|no-such"}).status_code == 404
        assert c.get("/fhir/Patient/$summary").status_code == 400
        assert c.get(f"/fhir/Patient/{pid}/$summary", params={"profile": "http://example.org/x"}).status_code == 400
        assert c.get(f"/fhir/Patient/{pid}/$summary", params={"language": "fr"}).status_code == 400


def _orgs(node: Any) -> list[dict[str, Any]]:
    with node.engine.connect() as conn:
        rows = conn.execute(select(R.c.content).where(R.c.res_type == "Organization")).scalars().all()
    return [orjson.loads(r) for r in rows]


def test_hidden_patient_answers_like_an_unknown_one(demo: Any) -> None:
    """A viewing facility with no consent sees nothing of demo-p2: 404, same text as for an id
    that never existed."""
    viewer = next(o for o in _orgs(demo) if o["id"] == "hasuda-care")
    code = next(iter(institution_codes(viewer)))
    principal = Principal(kind="user", name="v", user_id="v", organization_id=code)
    from hie.errors import NotFound

    outcomes = []
    for pid in ("demo-p2", "never-existed"):
        with demo.context(principal, write=False) as ctx, pytest.raises(NotFound) as err:
            collect(ctx.repo, pid)
        outcomes.append((err.value.status, err.value.diagnostics.replace(pid, "<id>")))
    assert outcomes[0] == outcomes[1]


def test_scope_needs_every_type_the_document_carries(demo: Any) -> None:
    with _client(demo, scope="system/Patient.rs system/Condition.rs") as c:
        assert c.get("/fhir/Patient/demo-p1/$summary").status_code == 403
    # _type would narrow the scope check to the types named, while the document holds them all
    narrow = "system/Patient.rs system/Observation.rs system/Organization.rs system/Medication.rs system/Device.rs"
    with _client(demo, scope=narrow) as c:
        assert c.get("/fhir/Patient/demo-p1/$summary", params={"_type": "Observation"}).status_code in (400, 403)
    with _client(demo) as c:
        assert c.get("/fhir/Patient/demo-p1/$summary", params={"_type": "Observation"}).status_code == 400


def test_audit_names_patient_resources_and_sections(demo: Any) -> None:
    rec = AuditRecorder(demo, interval=None)
    with _client(demo, audit=rec) as c:
        doc = c.get("/fhir/Patient/demo-p1/$summary").json()
    assert rec.flush() == 1
    with demo.engine.connect() as conn:
        events = [orjson.loads(x) for x in conn.execute(
            select(R.c.content).where(R.c.res_type == "AuditEvent")).scalars()]
    (event,) = [e for e in events if e["subtype"][0]["code"] == "operation"]
    whats = [e.get("what", {}).get("reference") for e in event["entity"]]
    assert whats[0] == "Patient/demo-p1"
    comp = doc["entry"][0]["resource"]
    for refs in section_refs(comp).values():
        assert set(refs) <= set(whats)
    query = next(e for e in event["entity"] if e["role"]["code"] == "24")
    sections = next(d["valueString"] for d in query["detail"] if d["type"] == "sections")
    assert sections.split() == [s["code"]["coding"][0]["code"] for s in comp["section"]]


def test_facility_written_entry_carries_its_custodian(demo: Any) -> None:
    """A record a facility wrote through the API has its custody only on the stored row; the
    document's copy names it (custodian tag) and carries the facility's Organization."""
    from tests.facility_fixtures import register

    node = demo
    code = "1110000094"
    register(node, code)
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [{
        "resource": {"resourceType": "Patient", "id": "sum-fac", "meta": {"tag": [
            {"system": "http://hie.example.jp/fhir/CodeSystem/custodian", "code": code}]}},
        "request": {"method": "PUT", "url": "Patient/sum-fac"}}]}, source="test")
    author = Principal(kind="user", name="w", user_id="w", organization_id=code)
    with node.context(author, write=True) as ctx:
        ctx.repo.create({"resourceType": "Condition", "subject": {"reference": "Patient/sum-fac"},
                         "code": {"text": "高血圧症"}})
    with node.context(author, write=False) as ctx:
        record = collect(ctx.repo, "sum-fac", base_url=BASE)
    from hie.summary.ips import build_ips

    doc = build_ips(record, now=node.clock.now_us(), base_url=BASE)
    comp = check_document(doc, "sum-fac")
    (ref,) = section_refs(comp)["11450-4"]
    res = next(e["resource"] for e in doc["entry"] if e["fullUrl"] == f"{BASE}/{ref}")
    assert custodian_tag(res) == code
    assert any(e["resource"].get("identifier") == [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]
               for e in doc["entry"] if e["resource"]["resourceType"] == "Organization")
    assert f"facility {code}" in comp["section"][0]["text"]["div"]


def test_referenced_medication_and_device_travel_with_their_entries(demo: Any) -> None:
    tag = {"tag": [{"system": "http://hie.example.jp/fhir/CodeSystem/custodian", "code": "1110000011"}]}
    resources = [
        {"resourceType": "Patient", "id": "sum-ref", "meta": tag},
        {"resourceType": "Medication", "id": "sum-med", "meta": tag, "code": {"text": "アムロジピン錠5mg"}},
        {"resourceType": "MedicationRequest", "id": "sum-mr", "meta": tag, "status": "active", "intent": "order",
         "subject": {"reference": "Patient/sum-ref"}, "medicationReference": {"reference": "Medication/sum-med"}},
        {"resourceType": "Device", "id": "sum-dev", "meta": tag, "deviceName": [{"name": "ペースメーカー",
                                                                                "type": "user-friendly-name"}]},
        {"resourceType": "DeviceUseStatement", "id": "sum-dus", "meta": tag, "status": "active",
         "subject": {"reference": "Patient/sum-ref"}, "device": {"reference": "Device/sum-dev"}},
    ]
    ingest_bundle(demo, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="test")
    with _client(demo) as c:
        doc = c.get("/fhir/Patient/sum-ref/$summary").json()
    comp = check_document(doc, "sum-ref")
    urls = {e["fullUrl"] for e in doc["entry"]}
    assert {f"{BASE}/Medication/sum-med", f"{BASE}/Device/sum-dev"} <= urls
    refs = section_refs(comp)
    assert refs["10160-0"] == ["MedicationRequest/sum-mr"] and refs["46264-8"] == ["DeviceUseStatement/sum-dus"]
    text = "".join(s["text"]["div"] for s in comp["section"])
    assert "アムロジピン錠5mg" in text and "ペースメーカー" in text


def test_one_person_across_facilities(demo: Any) -> None:
    """Two facilities' records of one person (linked by identity through the insurance member
    id) make one summary; a facility without consent gets only its own part."""
    from tests.facility_fixtures import register
    from tests.identity.identity_fixtures import observation, patient

    a, b = "1110000110", "1110000128"
    register(demo, a, b)
    tag = {c: {"tag": [{"system": "http://hie.example.jp/fhir/CodeSystem/custodian", "code": c}]} for c in (a, b)}
    records = [{**patient("sum-pa", a, "001", member="87654321:1:2:01"), "meta": tag[a]},
               {**patient("sum-pb", b, "777", member="87654321:1:2:01"), "meta": tag[b]},
               {**observation("sum-oa", "sum-pa"), "meta": tag[a]},
               {**observation("sum-ob", "sum-pb", 7.0), "meta": tag[b], "effectiveDateTime": "2024-05-01"}]
    for r in records:  # one transaction each: identity links the second Patient on arrival
        ingest_bundle(demo, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"Patient/{r['id']}"
                                        if r["resourceType"] == "Patient" else f"Observation/{r['id']}"}}]},
            source="test")
    with _client(demo) as c:
        doc = c.get("/fhir/Patient/sum-pa/$summary").json()
    comp = check_document(doc, "sum-pa")
    assert section_refs(comp)["30954-2"] == ["Observation/sum-ob"]  # the newer HbA1c, from facility b
    assert f"{BASE}/Patient/sum-pb" in {e["fullUrl"] for e in doc["entry"]}  # what the entry is about
    own = Principal(kind="user", name="a", user_id="a", organization_id=a)
    with demo.context(own, write=False) as ctx:
        record = collect(ctx.repo, "sum-pa", base_url=BASE)
    assert [p["id"] for p in record.patients] == ["sum-pa"]
    assert [o["id"] for o in record.by_type["Observation"]] == ["sum-oa"]
