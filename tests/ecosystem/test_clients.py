"""Real third-party FHIR clients against a live node (issue 13, acceptance 3):

* ``fhirclient`` (SMART on FHIR's Python client) discovers the token endpoint from the
  CapabilityStatement's oauth-uris extension, gets a token with SMART Backend Services
  (client_credentials + a private_key_jwt assertion) and reads a Patient with it;
* ``fhirpy`` creates, reads, updates, patches (its own ``patch()``, which sends the changed
  elements as a JSON merge patch, and a FHIRPath Patch sent through it), deletes, searches
  and pages through ``next`` links.

Spec: https://hl7.org/fhir/smart-app-launch/backend-services.html ; https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import httpx
import pytest
from authlib.oauth2.rfc7523.assertion import private_key_jwt_sign
from fhirclient import client as smart_client
from fhirclient.models.patient import Patient as SmartPatient
from fhirpy import SyncFHIRClient
from fhirpy.base.exceptions import OperationOutcome, ResourceNotFound

from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM
from tests.auth import helpers as h


def assertion(b: h.Backend, token_url: str) -> str:
    return private_key_jwt_sign(b.key, client_id=b.client_id, token_endpoint=token_url, alg=b.alg,
                                claims={"exp": int(time.time()) + 240, "jti": uuid.uuid4().hex},
                                header={"kid": b.key.kid})


def backend_token(live: Any, b: h.Backend, scope: str) -> str:
    r = httpx.post(live.token_url, data={
        "grant_type": "client_credentials", "scope": scope, "client_assertion": assertion(b, live.token_url),
        "client_assertion_type": "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"})
    assert r.status_code == 200, r.text
    return r.json()["access_token"]


def test_fhirclient_discovers_smart_from_the_capability_statement_and_reads_a_patient(live):
    h.seed(live.node)
    b = h.backend(live.node, alg="RS384", scope="system/Patient.rs")
    smart = smart_client.FHIRClient(settings={
        "app_id": b.client_id, "api_base": live.fhir + "/", "scope": "system/Patient.rs",
        "jwt_token": assertion(b, live.token_url)}, save_func=lambda _state: None)
    smart.wants_patient = False  # a backend client asks for no launch context
    assert not smart.ready
    smart.prepare()  # reads /metadata: the oauth-uris extension names the token endpoint
    assert smart.server.auth.auth_type == "oauth2"
    assert smart.server.auth._token_uri == live.token_url  # noqa: SLF001 - what discovery found
    smart.authorize()
    assert smart.ready
    patient = SmartPatient.read("p1", smart.server)
    assert patient.id == "p1" and patient.gender == "female"
    with pytest.raises(Exception) as exc:  # noqa: PT011 - fhirclient raises requests' HTTPError
        SmartPatient.read("nobody", smart.server)
    assert "404" in str(exc.value)
    anonymous = httpx.get(f"{live.fhir}/Patient/p1")
    assert anonymous.status_code == 401  # the token is what made the read possible


def test_fhirpy_crud_patch_search_and_paging(live):
    h.seed(live.node)
    b = h.backend(live.node, alg="ES384", scope="system/*.cruds")
    fhir = SyncFHIRClient(live.fhir, authorization=f"Bearer {backend_token(live, b, 'system/*.cruds')}")
    tag = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": h.HOSPITAL}]}

    patient = fhir.resource("Patient", meta=tag, gender="male", name=[{"family": "Suzuki", "given": ["Ichiro"]}])
    patient.save()  # create
    pid = patient.id
    assert pid and patient["meta"]["versionId"] == "1"
    patient["birthDate"] = "1950-04-01"
    patient.save()  # update
    assert fhir.reference("Patient", pid).to_resource()["birthDate"] == "1950-04-01"

    patient.patch(active=True)  # fhirpy's patch: the changed elements (JSON merge patch)
    got = fhir.reference("Patient", pid).to_resource()
    assert got["active"] is True and got["birthDate"] == "1950-04-01" and got["meta"]["versionId"] == "3"
    fhir.patch("Patient", pid, birthDate=None)  # null removes
    assert "birthDate" not in fhir.reference("Patient", pid).to_resource()

    fhirpath_patch = {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "insert"}, {"name": "path", "valueString": "Patient.name[0].given"},
        {"name": "index", "valueInteger": 0}, {"name": "value", "valueString": "Taro"}]}]}
    patched = fhir.execute(f"Patient/{pid}", method="patch", data=fhirpath_patch)
    assert patched["name"][0]["given"] == ["Taro", "Ichiro"]
    with pytest.raises(OperationOutcome) as exc:
        fhir.execute(f"Patient/{pid}", method="patch", data={**fhirpath_patch, "parameter": [
            {"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                           {"name": "path", "valueString": "Patient.name.given"}]}]})
    assert "Parameters.parameter[0]" in str(exc.value)

    for i in range(7):
        fhir.resource("Observation", meta=tag, status="final", code={"text": f"BP {i}"},
                      subject={"reference": f"Patient/{pid}"}).save()
    search = fhir.resources("Observation").search(subject=f"Patient/{pid}").limit(3)
    assert len(search.fetch()) == 3  # one page
    every = search.fetch_all()  # follows the next links
    assert sorted(o["code"]["text"] for o in every) == [f"BP {i}" for i in range(7)]
    assert len({o.id for o in every}) == 7
    assert fhir.resources("Patient").search(family="Suzuki").first().id == pid

    for o in every:
        o.delete()
    patient.delete()
    with pytest.raises((ResourceNotFound, OperationOutcome)):
        fhir.reference("Patient", pid).to_resource()
