"""Batch and transaction processing (https://hl7.org/fhir/R4/http.html#transaction)."""

from __future__ import annotations

import base64

import orjson
from sqlalchemy import func, select

from hie.storage.tables import resource, resource_version

FHIR = "application/fhir+json"


def send(client, bundle):
    return client.post("/fhir", content=orjson.dumps(bundle), headers={"Content-Type": FHIR})


def tx(*entries, btype="transaction"):
    return {"resourceType": "Bundle", "type": btype, "entry": list(entries)}


def post_entry(full_url, res):
    return {"fullUrl": full_url, "resource": res, "request": {"method": "POST", "url": res["resourceType"]}}


PAT = {"resourceType": "Patient", "name": [{"family": "佐藤", "given": ["花子"]}]}


def obs(subject_ref, **extra):
    return {"resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
            "subject": {"reference": subject_ref}, **extra}


def count_rows(node, table=resource):
    with node.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(table)).scalar_one()


def test_transaction_rewrites_urn_uuid_references(client):
    r = send(client, tx(
        post_entry("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a", PAT),
        post_entry("urn:uuid:88f151c0-a954-468a-88bd-5ae15c08e059",
                   obs("urn:uuid:61ebe359-bfdc-4613-8bf2-c5e300945f0a")),
    ))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["type"] == "transaction-response"
    statuses = [e["response"]["status"] for e in body["entry"]]
    assert statuses == ["201 Created", "201 Created"]
    pid = body["entry"][0]["response"]["location"].split("/")[1]
    oid = body["entry"][1]["response"]["location"].split("/")[1]
    stored = client.get(f"/fhir/Observation/{oid}").json()
    assert stored["subject"]["reference"] == f"Patient/{pid}"


def test_transaction_with_one_invalid_entry_leaves_nothing(client, node):
    before = count_rows(node), count_rows(node, resource_version)
    bad = {"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "many"}}
    r = send(client, tx(
        post_entry("urn:uuid:a7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e", PAT),
        post_entry("urn:uuid:b7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e", bad),
    ))
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"][0].startswith("Bundle.entry[1].resource.valueQuantity.value")
    assert (count_rows(node), count_rows(node, resource_version)) == before


def test_transaction_fails_whole_when_a_later_write_conflicts(client, node):
    client.put("/fhir/Patient/x1", content=orjson.dumps({**PAT, "id": "x1"}), headers={"Content-Type": FHIR})
    before = count_rows(node, resource_version)
    r = send(client, tx(
        post_entry("urn:uuid:c7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e", PAT),
        {"resource": {**PAT, "id": "x1", "gender": "female"},
         "request": {"method": "PUT", "url": "Patient/x1", "ifMatch": 'W/"7"'}},
    ))
    assert r.status_code == 412
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1]"]
    assert count_rows(node, resource_version) == before


def test_transaction_broken_reference_is_rejected_with_path(client, node):
    r = send(client, tx(post_entry("urn:uuid:d7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e",
                                   obs("urn:uuid:00000000-0000-0000-0000-000000000000"))))
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["Bundle.entry[0].resource.subject.reference"]
    assert issue["details"]["coding"][0]["code"] == "HIE-1006"
    r = send(client, tx(post_entry("urn:uuid:e7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e", obs("Patient/does-not-exist"))))
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[0].resource.subject.reference"]
    assert count_rows(node) == 0


def test_transaction_rejects_two_writes_to_one_resource(client):
    e = {"resource": {**PAT, "id": "dup"}, "request": {"method": "PUT", "url": "Patient/dup"}}
    r = send(client, tx(e, e))
    assert r.status_code == 400
    assert "Bundle.entry[1]" in r.json()["issue"][0]["diagnostics"]


def test_transaction_delete_put_patch_and_get_in_spec_order(client):
    for pid in ("t1", "t2"):
        client.put(f"/fhir/Patient/{pid}", content=orjson.dumps({**PAT, "id": pid}), headers={"Content-Type": FHIR})
    patch = base64.b64encode(orjson.dumps([{"op": "add", "path": "/active", "value": True}])).decode()
    r = send(client, tx(
        {"request": {"method": "GET", "url": "Patient/t2"}},
        {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": patch},
         "request": {"method": "PATCH", "url": "Patient/t2"}},
        {"request": {"method": "DELETE", "url": "Patient/t1"}},
        {"resource": {**PAT, "id": "t3"}, "request": {"method": "PUT", "url": "Patient/t3"}},
    ))
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "200 OK"
    assert entries[0]["resource"]["active"] is True  # GET runs after the writes
    assert entries[1]["response"]["status"] == "200 OK"
    assert entries[2]["response"]["status"].startswith("204")
    assert entries[3]["response"]["status"] == "201 Created"
    assert client.get("/fhir/Patient/t1").status_code == 410


def test_batch_entries_fail_independently(client, node):
    r = send(client, tx(
        {"resource": {**PAT, "id": "b1"}, "request": {"method": "PUT", "url": "Patient/b1"}},
        {"resource": {**PAT, "unknownThing": 1}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/b1"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        btype="batch",
    ))
    assert r.status_code == 200
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"] == "201 Created"
    assert entries[1]["response"]["status"] == "400 Bad Request"
    assert entries[1]["response"]["outcome"]["issue"][0]["expression"] == ["Bundle.entry[1].resource.unknownThing"]
    assert entries[2]["response"]["status"] == "200 OK"
    assert entries[3]["response"]["status"] == "404 Not Found"
    assert count_rows(node) == 1


def test_bundle_of_other_type_is_rejected(client):
    r = send(client, {"resourceType": "Bundle", "type": "collection", "entry": []})
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["Bundle.type"]


def test_conditional_create_in_transaction_and_rest(client):
    ident = {"system": "urn:oid:1.2.392.100495.20.3.51.11110000011", "value": "0001234"}
    pat = {**PAT, "identifier": [ident]}
    q = "identifier=urn:oid:1.2.392.100495.20.3.51.11110000011|0001234"
    r1 = client.post("/fhir/Patient", content=orjson.dumps(pat), headers={"Content-Type": FHIR, "If-None-Exist": q})
    assert r1.status_code == 201
    r2 = client.post("/fhir/Patient", content=orjson.dumps(pat), headers={"Content-Type": FHIR, "If-None-Exist": q})
    assert r2.status_code == 200
    assert r2.headers["location"] == r1.headers["location"]
    r = send(client, tx(
        {"fullUrl": "urn:uuid:f7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e", "resource": pat,
         "request": {"method": "POST", "url": "Patient", "ifNoneExist": q}},
        post_entry("urn:uuid:a8d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e",
                   obs("urn:uuid:f7d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e")),
    ))
    assert r.status_code == 200, r.text
    e0, e1 = r.json()["entry"]
    assert e0["response"]["status"] == "200 OK"
    oid = e1["response"]["location"].split("/")[1]
    pid = r1.headers["location"].split("/")[-3]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == f"Patient/{pid}"


def test_conditional_reference_resolves_to_one_match(client):
    ident = {"system": "urn:oid:1.2.392.100495.20.3.51.11110000029", "value": "55"}
    client.put("/fhir/Patient/cr", content=orjson.dumps({**PAT, "id": "cr", "identifier": [ident]}),
               headers={"Content-Type": FHIR})
    r = send(client, tx(post_entry(
        "urn:uuid:b8d0a0a2-7c39-4b6f-8a0e-2c1a2b3c4d5e",
        obs("Patient?identifier=urn:oid:1.2.392.100495.20.3.51.11110000029|55"))))
    assert r.status_code == 200, r.text
    oid = r.json()["entry"][0]["response"]["location"].split("/")[1]
    assert client.get(f"/fhir/Observation/{oid}").json()["subject"]["reference"] == "Patient/cr"


def test_conditional_update_and_delete(client):
    ident = {"system": "urn:oid:1.2.392.100495.20.3.51.11110000052", "value": "88-17"}
    q = "identifier=urn:oid:1.2.392.100495.20.3.51.11110000052|88-17"
    body = orjson.dumps({**PAT, "identifier": [ident]})
    r = client.put(f"/fhir/Patient?{q}", content=body, headers={"Content-Type": FHIR})
    assert r.status_code == 201
    pid = r.json()["id"]
    body2 = orjson.dumps({**PAT, "identifier": [ident], "gender": "female"})
    r = client.put(f"/fhir/Patient?{q}", content=body2, headers={"Content-Type": FHIR})
    assert r.status_code == 200
    assert r.json()["id"] == pid and r.json()["meta"]["versionId"] == "2"
    r = client.delete(f"/fhir/Patient?{q}")
    assert r.status_code == 200
    assert client.get(f"/fhir/Patient/{pid}").status_code == 410


def test_conditional_update_with_multiple_matches_is_412(client):
    for pid in ("mm1", "mm2"):
        client.put(f"/fhir/Patient/{pid}", content=orjson.dumps({**PAT, "id": pid, "gender": "other"}),
                   headers={"Content-Type": FHIR})
    r = client.put("/fhir/Patient?gender=other", content=orjson.dumps(PAT), headers={"Content-Type": FHIR})
    assert r.status_code == 412
    assert r.json()["issue"][0]["code"] == "multiple-matches"
