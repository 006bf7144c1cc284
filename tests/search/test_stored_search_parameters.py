"""Stored SearchParameter resources add parameters (https://hl7.org/fhir/R4/searchparameter.html)."""

from __future__ import annotations

import orjson

from hie.search.indexer import reindex
from hie.storage.db import write_tx

FHIR = {"Content-Type": "application/fhir+json"}

MANAGING_ORG = {
    "resourceType": "SearchParameter", "id": "patient-managing-org", "status": "active",
    "url": "http://hie.example.jp/fhir/SearchParameter/patient-managing-org",
    "name": "managingOrg", "code": "managing-org", "base": ["Patient"], "type": "reference",
    "description": "The facility that manages the patient record",
    "expression": "Patient.managingOrganization", "target": ["Organization"],
}


def put(client, res):
    return client.put(f"/fhir/{res['resourceType']}/{res['id']}", content=orjson.dumps(res), headers=FHIR)


def test_a_stored_search_parameter_is_used_for_new_and_reindexed_resources(client, node):
    old = {"resourceType": "Patient", "id": "sp-old", "managingOrganization": {"reference": "Organization/o1"}}
    assert put(client, {"resourceType": "Organization", "id": "o1", "name": "o1"}).status_code == 201
    assert put(client, old).status_code == 201
    r = client.get("/fhir/Patient?managing-org=Organization/o1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 400  # unknown before it is defined

    assert put(client, MANAGING_ORG).status_code == 201
    with node.engine.connect() as conn:  # what every request does at most every 2 s
        node.stored_search_parameters.refresh(conn, force=True)
    assert put(client, {**old, "id": "sp-new"}).status_code == 201
    r = client.get("/fhir/Patient?managing-org=Organization/o1", headers={"Prefer": "handling=strict"})
    assert r.status_code == 200
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"sp-new"}  # the old one needs a reindex

    reindex(lambda: write_tx(node.engine), node.registry)
    r = client.get("/fhir/Patient?managing-org=Organization/o1")
    assert {e["resource"]["id"] for e in r.json()["entry"]} == {"sp-old", "sp-new"}
    caps = client.get("/fhir/metadata").json()
    patient = next(x for x in caps["rest"][0]["resource"] if x["type"] == "Patient")
    assert "managing-org" in {p["name"] for p in patient["searchParam"]}


def test_a_search_parameter_the_node_cannot_use_is_refused(client):
    bad = {**MANAGING_ORG, "id": "bad-sp", "code": "x", "type": "special"}
    r = put(client, bad)
    assert r.status_code == 400
    assert r.json()["issue"][0]["expression"] == ["SearchParameter.expression"]
