"""REST interactions of the FHIR core, on SQLite and PostgreSQL (https://hl7.org/fhir/R4/http.html)."""

from __future__ import annotations

import orjson
import pytest

FHIR = "application/fhir+json"


def patient(pid: str | None = None, family: str = "山田", **extra) -> dict:
    p = {"resourceType": "Patient", "name": [{"family": family, "given": ["太郎"]}], "gender": "male",
         "birthDate": "1950-04-12", **extra}
    if pid:
        p["id"] = pid
    return p


def post(client, path, body, **headers):
    return client.post(f"/fhir/{path}", content=orjson.dumps(body), headers={"Content-Type": FHIR, **headers})


def put(client, path, body, **headers):
    return client.put(f"/fhir/{path}", content=orjson.dumps(body), headers={"Content-Type": FHIR, **headers})


def issue(resp) -> dict:
    body = resp.json()
    assert body["resourceType"] == "OperationOutcome", body
    return body["issue"][0]


# -- create / read / vread ------------------------------------------------------------


def test_create_assigns_id_version_and_location(client):
    r = post(client, "Patient", patient())
    assert r.status_code == 201
    body = r.json()
    pid = body["id"]
    assert body["meta"]["versionId"] == "1"
    assert r.headers["etag"] == 'W/"1"'
    assert r.headers["location"] == f"http://testserver/fhir/Patient/{pid}/_history/1"
    assert r.headers["last-modified"].endswith("GMT")
    assert r.headers["content-type"].startswith("application/fhir+json")

    got = client.get(f"/fhir/Patient/{pid}")
    assert got.status_code == 200
    assert got.json()["name"][0]["family"] == "山田"
    assert got.headers["etag"] == 'W/"1"'


def test_create_ignores_client_id_and_keeps_content(client):
    r = post(client, "Patient", patient("client-chosen"))
    assert r.status_code == 201
    assert r.json()["id"] != "client-chosen"


def test_read_unknown_is_404_with_outcome(client):
    r = client.get("/fhir/Patient/nope")
    assert r.status_code == 404
    i = issue(r)
    assert i["code"] == "not-found"
    assert i["details"]["coding"][0]["code"] == "HIE-3001"


def test_unknown_resource_type_is_404(client):
    r = client.get("/fhir/Foo/1")
    assert r.status_code == 404
    assert issue(r)["code"] == "not-found"


def test_if_none_match_gives_304(client):
    pid = post(client, "Patient", patient()).json()["id"]
    r = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"1"'})
    assert r.status_code == 304
    r = client.get(f"/fhir/Patient/{pid}", headers={"If-None-Match": 'W/"2"'})
    assert r.status_code == 200


def test_vread_returns_each_version(client):
    pid = post(client, "Patient", patient()).json()["id"]
    put(client, f"Patient/{pid}", patient(pid, family="佐藤"))
    v1 = client.get(f"/fhir/Patient/{pid}/_history/1")
    v2 = client.get(f"/fhir/Patient/{pid}/_history/2")
    assert v1.json()["name"][0]["family"] == "山田"
    assert v2.json()["name"][0]["family"] == "佐藤"
    assert v2.headers["etag"] == 'W/"2"'
    assert client.get(f"/fhir/Patient/{pid}/_history/3").status_code == 404
    assert client.get(f"/fhir/Patient/{pid}/_history/x").status_code == 404


# -- update ---------------------------------------------------------------------------


def test_update_as_create_with_client_id(client):
    r = put(client, "Patient/p-42", patient("p-42"))
    assert r.status_code == 201
    assert r.headers["location"].endswith("/Patient/p-42/_history/1")
    r = put(client, "Patient/p-42", patient("p-42", family="鈴木"))
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "2"


def test_update_with_identical_content_creates_no_version(client):
    put(client, "Patient/same", patient("same"))
    r = put(client, "Patient/same", patient("same"))
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "1"
    hist = client.get("/fhir/Patient/same/_history").json()
    assert hist["total"] == 1


def test_update_id_mismatch_names_the_element(client):
    r = put(client, "Patient/a", patient("b"))
    assert r.status_code == 400
    i = issue(r)
    assert i["code"] == "invalid"
    assert i["expression"] == ["Patient.id"]
    assert i["details"]["coding"][0]["code"] == "HIE-1004"


def test_update_without_id_in_body_is_rejected(client):
    r = put(client, "Patient/a", patient())
    assert r.status_code == 400
    assert issue(r)["expression"] == ["Patient.id"]


def test_if_match_mismatch_is_412(client):
    put(client, "Patient/m", patient("m"))
    put(client, "Patient/m", patient("m", family="佐藤"))
    r = put(client, "Patient/m", patient("m", family="高橋"), **{"If-Match": 'W/"1"'})
    assert r.status_code == 412
    assert issue(r)["code"] == "conflict"
    r = put(client, "Patient/m", patient("m", family="高橋"), **{"If-Match": 'W/"2"'})
    assert r.status_code == 200
    assert r.json()["meta"]["versionId"] == "3"


def test_prefer_return_minimal_and_operation_outcome(client):
    r = post(client, "Patient", patient(), Prefer="return=minimal")
    assert r.status_code == 201
    assert r.content == b""
    assert "location" in r.headers
    r = post(client, "Patient", patient(), Prefer="return=OperationOutcome")
    assert r.status_code == 201
    assert r.json()["resourceType"] == "OperationOutcome"


# -- validation ----------------------------------------------------------------------


def test_invalid_json_is_400(client):
    r = client.post("/fhir/Patient", content=b'{"resourceType": "Patient",', headers={"Content-Type": FHIR})
    assert r.status_code == 400
    i = issue(r)
    assert i["code"] == "structure"
    assert i["details"]["coding"][0]["code"] == "HIE-1001"


def test_unknown_element_is_rejected_with_path(client):
    r = post(client, "Patient", {**patient(), "favouriteColour": "blue"})
    assert r.status_code == 400
    i = issue(r)
    assert i["expression"] == ["Patient.favouriteColour"]
    assert "Unknown element" in i["diagnostics"]


def test_wrong_type_is_rejected_with_path(client):
    r = post(client, "Patient", {"resourceType": "Patient", "name": [{"given": "太郎"}]})
    assert r.status_code == 400
    assert issue(r)["expression"] == ["Patient.name[0].given"]
    r = post(client, "Patient", {"resourceType": "Patient", "birthDate": "12/04/1950"})
    assert r.status_code == 400
    assert issue(r)["expression"] == ["Patient.birthDate"]


def test_body_type_must_match_url_type(client):
    r = post(client, "Observation", patient())
    assert r.status_code == 400
    assert issue(r)["expression"] == ["Patient.resourceType"]


def test_unsupported_content_type_is_415(client):
    r = client.post("/fhir/Patient", content=b"<Patient/>", headers={"Content-Type": "application/fhir+xml"})
    assert r.status_code == 415


def test_xml_only_accept_is_406(client):
    r = client.get("/fhir/metadata", headers={"Accept": "application/fhir+xml"})
    assert r.status_code == 406


# -- patch / delete --------------------------------------------------------------------


def test_json_patch(client):
    put(client, "Patient/pt", patient("pt"))
    ops = [{"op": "replace", "path": "/gender", "value": "female"}, {"op": "add", "path": "/active", "value": True}]
    r = client.patch("/fhir/Patient/pt", content=orjson.dumps(ops),
                     headers={"Content-Type": "application/json-patch+json", "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "female"
    assert r.json()["active"] is True
    assert r.json()["meta"]["versionId"] == "2"


def test_json_patch_that_breaks_the_resource_is_rejected(client):
    put(client, "Patient/pt2", patient("pt2"))
    ops = [{"op": "add", "path": "/bogus", "value": 1}]
    r = client.patch("/fhir/Patient/pt2", content=orjson.dumps(ops),
                     headers={"Content-Type": "application/json-patch+json"})
    assert r.status_code == 400
    assert issue(r)["expression"] == ["Patient.bogus"]
    assert client.get("/fhir/Patient/pt2").json()["meta"]["versionId"] == "1"


def test_delete_then_read_is_410_and_history_keeps_versions(client):
    put(client, "Patient/d", patient("d"))
    r = client.delete("/fhir/Patient/d")
    assert r.status_code == 200
    assert client.get("/fhir/Patient/d").status_code == 410
    hist = client.get("/fhir/Patient/d/_history").json()
    assert hist["total"] == 2
    assert hist["entry"][0]["request"]["method"] == "DELETE"
    assert "resource" not in hist["entry"][0]
    assert client.get("/fhir/Patient/d/_history/1").status_code == 200
    # re-create after delete continues the version sequence
    r = put(client, "Patient/d", patient("d"))
    assert r.status_code == 201 or r.status_code == 200
    assert r.json()["meta"]["versionId"] == "3"


def test_delete_of_unknown_resource_is_idempotent(client):
    assert client.delete("/fhir/Patient/never").status_code == 200


# -- history ---------------------------------------------------------------------------


def test_history_type_and_system_with_paging(client):
    for i in range(5):
        put(client, f"Patient/h{i}", patient(f"h{i}"))
    put(client, "Patient/h0", patient("h0", family="佐藤"))
    page = client.get("/fhir/Patient/_history?_count=2").json()
    assert page["type"] == "history"
    assert page["total"] == 6
    assert len(page["entry"]) == 2
    seen = [e["fullUrl"] + "@" + e["response"]["etag"] for e in page["entry"]]
    nxt = next(lnk["url"] for lnk in page["link"] if lnk["relation"] == "next")
    # a write between pages must not shift the pages (snapshot paging)
    put(client, "Patient/h9", patient("h9"))
    while nxt:
        page = client.get(nxt.replace("http://testserver", "")).json()
        seen += [e["fullUrl"] + "@" + e["response"]["etag"] for e in page["entry"]]
        nxt = next((lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"), None)
    assert len(seen) == 6 and len(set(seen)) == 6
    assert client.get("/fhir/_history").json()["total"] == 7


def test_history_since(client):
    put(client, "Patient/s1", patient("s1"))
    first = client.get("/fhir/Patient/s1").json()["meta"]["lastUpdated"]
    put(client, "Patient/s2", patient("s2"))
    later = client.get("/fhir/Patient/s2").json()["meta"]["lastUpdated"]
    hist = client.get(f"/fhir/Patient/_history?_since={later}").json()
    ids = {e["resource"]["id"] for e in hist["entry"]}
    assert "s2" in ids and ("s1" not in ids or first == later)


def test_history_bad_since_is_400(client):
    r = client.get("/fhir/_history?_since=yesterday")
    assert r.status_code == 400
    assert issue(r)["expression"] == ["_since"]


# -- capabilities ---------------------------------------------------------------------


def test_capability_statement_lists_real_interactions(client):
    cs = client.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    assert cs["fhirVersion"] == "4.0.1"
    rest = cs["rest"][0]
    assert {i["code"] for i in rest["interaction"]} == {"transaction", "batch", "history-system", "search-system"}
    pat = next(r for r in rest["resource"] if r["type"] == "Patient")
    codes = {i["code"] for i in pat["interaction"]}
    assert {"read", "vread", "update", "patch", "delete", "create", "search-type"} <= codes
    assert not any(r["type"] == "MedicinalProduct" for r in rest["resource"])


@pytest.mark.parametrize("body, path", [
    ({"resourceType": "Patient", "active": "true"}, "Patient.active"),
    ({"resourceType": "Patient", "multipleBirthInteger": True}, "Patient.multipleBirthInteger"),
    ({"resourceType": "Patient", "name": [{"given": [7]}]}, "Patient.name[0].given[0]"),
    ({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueQuantity": {"value": "7.2"}},
     "Observation.valueQuantity.value"),
])
def test_primitives_of_the_wrong_json_type_are_rejected(client, body, path):
    r = post(client, body["resourceType"], body)
    assert r.status_code == 400
    assert issue(r)["expression"] == [path]
    assert issue(r)["details"]["coding"][0]["code"] == "HIE-1002"
