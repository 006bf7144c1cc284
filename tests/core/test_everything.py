"""Patient/$everything (https://hl7.org/fhir/R4/patient-operation-everything.html)."""

from __future__ import annotations

from urllib.parse import urlsplit

import orjson

FHIR = {"Content-Type": "application/fhir+json"}


def test_everything_pages_hold_the_patient_once_and_first(client):
    client.put("/fhir/Patient/ev1", content=orjson.dumps({"resourceType": "Patient", "id": "ev1"}), headers=FHIR)
    for i in range(4):
        obs = {"resourceType": "Observation", "id": f"ev-o{i}", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/ev1"}}
        client.put(f"/fhir/Observation/ev-o{i}", content=orjson.dumps(obs), headers=FHIR)
    seen: list[str] = []
    page = client.get("/fhir/Patient/ev1/$everything?_count=2").json()
    assert page["entry"][0]["resource"]["resourceType"] == "Patient"
    while True:
        assert len(page["entry"]) <= 2
        seen += [f"{e['resource']['resourceType']}/{e['resource']['id']}" for e in page["entry"]]
        nxt = next((lnk["url"] for lnk in page["link"] if lnk["relation"] == "next"), None)
        if not nxt:
            break
        parts = urlsplit(nxt)
        page = client.get(f"{parts.path}?{parts.query}").json()
    assert sorted(seen) == sorted(["Patient/ev1"] + [f"Observation/ev-o{i}" for i in range(4)])
    assert client.get("/fhir/Patient/missing/$everything").status_code == 404
