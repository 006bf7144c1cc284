"""Patient-context tokens read and write only their patient's compartment: a patient
token, and a clinician token with a launch patient whose request relies on ``patient/``
scopes. Writes about another patient (or about no patient) are refused with 403
(``HIE-2003``) and leave nothing behind, also inside batch and transaction Bundles; rows
outside the compartment are absent (404), as the consent predicate makes them.

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html#patient-specific-scopes
"""

from __future__ import annotations

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hie.api.app import create_app
from hie.auth.compartment import CompartmentPolicy, compartment_of, confine
from hie.auth.service import AuthService
from hie.auth.users import get_by_username
from hie.principal import Principal
from hie.storage.tables import resource as R
from tests.auth import helpers as h

BASE = "http://testserver/fhir"
FHIR = "application/fhir+json"
PATCH = "application/json-patch+json"


def _obs(patient: str, **extra) -> dict:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
            "subject": {"reference": f"Patient/{patient}"}, **extra}


@pytest.fixture
def env(node):
    h.seed(node)
    with TestClient(create_app(node, audit=False), base_url="http://testserver") as c:
        yield c, AuthService.for_node(node)


def _token(node, svc, *, kind: str, username: str, launch: str, scope: list[str]) -> str:
    if kind == "patient":
        h.user(node, kind="patient", username=username, patient_id=launch)
    else:
        h.user(node, kind="practitioner", username=username)
    app = h.app_client(node)
    with node.engine.begin() as conn:
        u = get_by_username(conn, username).with_launch(launch)
        return svc.tokens.issue(
            conn, issuer="http://testserver/auth", audience=BASE, client_id=app,
            kind="patient" if kind == "patient" else "user", scope=scope, expires_in=300, user=u,
            organization_code=u.organization_code, roles=u.roles, patient_id=launch,
        ).token


def _send(client, method, url, token, body=None, ctype=FHIR):
    headers = {"Authorization": f"Bearer {token}"}
    content = None
    if body is not None:
        headers["Content-Type"] = ctype
        content = orjson.dumps(body)
    return client.request(method, url, content=content, headers=headers)


def _count(node, res_type: str) -> int:
    with node.engine.connect() as conn:
        return conn.execute(select(func.count()).select_from(R).where(R.c.res_type == res_type,
                                                                      R.c.deleted.is_(False))).scalar_one()


def _stored(node, res_type: str, res_id: str) -> dict:
    with node.engine.connect() as conn:
        raw = conn.execute(select(R.c.content).where(R.c.res_type == res_type, R.c.res_id == res_id)).scalar_one()
    return orjson.loads(raw)


def _assert_outside(r, *, about: str = "another patient") -> None:
    assert r.status_code == 403, r.text
    issue = r.json()["issue"][0]
    assert issue["severity"] == "error" and issue["code"] == "forbidden"
    assert issue["details"]["coding"][0]["code"] == "HIE-2003"
    assert "confined to the compartment of Patient/p1" in issue["diagnostics"]
    assert about in issue["diagnostics"]


@pytest.fixture
def patient_token(env, node):
    _, svc = env
    return _token(node, svc, kind="patient", username="yamada", launch="p1", scope=["patient/*.cruds"])


# -- a patient token ------------------------------------------------------------------------


def test_patient_creates_observation_about_themselves(env, node, patient_token):
    client, _ = env
    r = _send(client, "POST", "/fhir/Observation", patient_token, _obs("p1"))
    assert r.status_code == 201, r.text


def test_patient_cannot_create_observation_about_another_patient(env, node, patient_token):
    client, _ = env
    before = _count(node, "Observation")
    r = _send(client, "POST", "/fhir/Observation", patient_token, _obs("p2"))
    _assert_outside(r)
    assert _count(node, "Observation") == before


def test_patient_cannot_create_a_resource_about_no_patient(env, node, patient_token):
    client, _ = env
    before = _count(node, "Organization")
    r = _send(client, "POST", "/fhir/Organization", patient_token, {"resourceType": "Organization", "name": "x"})
    _assert_outside(r, about="no patient")
    assert _count(node, "Organization") == before


def test_patient_cannot_create_another_patient_resource(env, node, patient_token):
    client, _ = env
    before = _count(node, "Patient")
    r = _send(client, "POST", "/fhir/Patient", patient_token, {"resourceType": "Patient", "gender": "male"})
    _assert_outside(r)
    assert _count(node, "Patient") == before


def test_patient_cannot_change_a_shared_administrative_resource(env, node, patient_token):
    client, _ = env
    assert _send(client, "GET", "/fhir/Organization/hosp", patient_token).status_code == 200
    r = _send(client, "PUT", "/fhir/Organization/hosp", patient_token,
              {"resourceType": "Organization", "id": "hosp", "name": "renamed"})
    _assert_outside(r, about="no patient")
    assert _stored(node, "Organization", "hosp")["name"] == "hosp"


def test_patient_updates_own_contact_details_and_own_observation(env, node, patient_token):
    """Within the compartment the write rules apply too (tests/enforcement/test_write_authz.py):
    a patient changes contact details of their Patient and what they entered themself."""
    client, _ = env
    mine = _stored(node, "Patient", "p1")
    r = _send(client, "PUT", "/fhir/Patient/p1", patient_token,
              {**mine, "telecom": [{"system": "phone", "value": "090-0000-0000"}]})
    assert r.status_code == 200, r.text
    r = _send(client, "POST", "/fhir/Observation", patient_token, _obs("p1"))
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    r = _send(client, "PUT", f"/fhir/Observation/{oid}", patient_token, _obs("p1", id=oid, status="amended"))
    assert r.status_code == 200, r.text


def test_patient_cannot_move_own_observation_to_another_patient(env, node, patient_token):
    client, _ = env
    r = _send(client, "PUT", "/fhir/Observation/obs-p1", patient_token, _obs("p2", id="obs-p1"))
    _assert_outside(r)
    assert _stored(node, "Observation", "obs-p1")["subject"]["reference"] == "Patient/p1"


def test_patient_cannot_patch_own_observation_onto_another_patient(env, node, patient_token):
    client, _ = env
    ops = [{"op": "replace", "path": "/subject/reference", "value": "Patient/p2"}]
    r = _send(client, "PATCH", "/fhir/Observation/obs-p1", patient_token, ops, PATCH)
    _assert_outside(r)
    assert _stored(node, "Observation", "obs-p1")["subject"]["reference"] == "Patient/p1"


def test_patient_cannot_update_patch_or_delete_another_patients_observation(env, node, patient_token):
    client, _ = env
    r = _send(client, "PATCH", "/fhir/Observation/obs-p2", patient_token,
              [{"op": "replace", "path": "/status", "value": "amended"}], PATCH)
    assert r.status_code == 404, r.text
    assert r.json()["issue"][0]["code"] == "not-found"
    for url in ("/fhir/Observation/obs-p2", "/fhir/Observation?_id=obs-p2"):
        r = _send(client, "PUT", url, patient_token, _obs("p2", id="obs-p2", status="amended"))
        assert r.status_code == 404, (url, r.text)
        issue = r.json()["issue"][0]
        assert issue["code"] == "not-found" and issue["diagnostics"] == "Resource Observation/obs-p2 is not known"
    _send(client, "DELETE", "/fhir/Observation/obs-p2", patient_token)
    _send(client, "DELETE", "/fhir/Observation?_id=obs-p2", patient_token)
    stored = _stored(node, "Observation", "obs-p2")
    assert stored["status"] == "final" and stored["meta"]["versionId"] == "1"


def test_patient_transaction_with_an_entry_about_another_patient_is_refused_whole(env, node, patient_token):
    client, _ = env
    before = _count(node, "Observation")
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}},
    ]}
    r = _send(client, "POST", "/fhir", patient_token, bundle)
    # The transaction's referential check already finds no visible Patient/p2.
    assert r.status_code == 400, r.text
    assert r.json()["issue"][0]["expression"] == ["Bundle.entry[1].resource.subject.reference"]
    assert _count(node, "Observation") == before
    # A new Patient with an Observation about it: both are outside the compartment.
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"fullUrl": "urn:uuid:0b6a3c8e-9d4f-4f6b-8a53-1d2f6c7e9a10", "resource": {"resourceType": "Patient"},
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {**_obs("p1"), "subject": {"reference": "urn:uuid:0b6a3c8e-9d4f-4f6b-8a53-1d2f6c7e9a10"}},
         "request": {"method": "POST", "url": "Observation"}},
    ]}
    patients = _count(node, "Patient")
    _assert_outside(_send(client, "POST", "/fhir", patient_token, bundle))
    assert _count(node, "Observation") == before and _count(node, "Patient") == patients


def test_patient_batch_refuses_only_the_entry_about_another_patient(env, node, patient_token):
    client, _ = env
    before = _count(node, "Observation")
    bundle = {"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": _obs("p1"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": _obs("p2", id="obs-p2"), "request": {"method": "PUT", "url": "Observation/obs-p2"}},
    ]}
    r = _send(client, "POST", "/fhir", patient_token, bundle)
    assert r.status_code == 200, r.text
    entries = r.json()["entry"]
    assert entries[0]["response"]["status"].startswith("201")
    assert entries[1]["response"]["status"].startswith("403")
    issue = entries[1]["response"]["outcome"]["issue"][0]
    assert issue["code"] == "forbidden" and issue["details"]["coding"][0]["code"] == "HIE-2003"
    assert issue["diagnostics"].startswith("Bundle.entry[1]")
    assert not entries[2]["response"]["status"].startswith("2")
    assert _count(node, "Observation") == before + 1
    assert _stored(node, "Observation", "obs-p2")["meta"]["versionId"] == "1"


# -- a clinician with a launch patient ----------------------------------------------------


def test_clinician_patient_scopes_read_only_the_launch_patients_compartment(env, node):
    client, svc = env
    tok = _token(node, svc, kind="practitioner", username="dr-a", launch="p1", scope=["patient/*.rs"])
    assert _send(client, "GET", "/fhir/Observation/obs-p1", tok).status_code == 200
    r = _send(client, "GET", "/fhir/Observation/obs-p2", tok)
    assert r.status_code == 404 and r.json()["issue"][0]["code"] == "not-found"
    assert _send(client, "GET", "/fhir/Patient/p2", tok).status_code == 404
    bundle = _send(client, "GET", "/fhir/Observation", tok).json()
    assert bundle["total"] == 1
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["obs-p1"]
    assert _send(client, "GET", "/fhir/Patient/p2/Observation", tok).json()["total"] == 0
    # Shared administrative rows stay readable.
    assert _send(client, "GET", "/fhir/Organization/hosp", tok).status_code == 200


def test_the_same_clinician_with_user_scopes_sees_the_facilitys_data(env, node):
    client, svc = env
    tok = _token(node, svc, kind="practitioner", username="dr-b", launch="p1", scope=["user/*.rs"])
    assert _send(client, "GET", "/fhir/Observation/obs-p2", tok).status_code == 200
    assert _send(client, "GET", "/fhir/Observation", tok).json()["total"] == 2


def test_clinician_request_covered_by_user_scopes_is_not_confined(env, node):
    client, svc = env
    tok = _token(node, svc, kind="practitioner", username="dr-c", launch="p1",
                 scope=["user/Observation.rs", "patient/*.rs"])
    assert _send(client, "GET", "/fhir/Observation/obs-p2", tok).status_code == 200
    # Patient is granted only through patient/ scopes: confined.
    assert _send(client, "GET", "/fhir/Patient/p2", tok).status_code == 404
    assert _send(client, "GET", "/fhir/Patient/p1", tok).status_code == 200


def test_clinician_patient_scoped_writes_stay_in_the_launch_patients_compartment(env, node):
    client, svc = env
    tok = _token(node, svc, kind="practitioner", username="dr-d", launch="p1",
                 scope=["user/*.rs", "patient/Observation.cu"])
    before = _count(node, "Observation")
    _assert_outside(_send(client, "POST", "/fhir/Observation", tok, _obs("p2")))
    assert _count(node, "Observation") == before
    # Visible through user/ scopes, but the update relies on patient/Observation.u.
    r = _send(client, "PUT", "/fhir/Observation/obs-p2", tok, _obs("p2", id="obs-p2", status="amended"))
    assert r.status_code == 404, r.text
    assert _stored(node, "Observation", "obs-p2")["status"] == "final"
    assert _send(client, "POST", "/fhir/Observation", tok, _obs("p1")).status_code == 201
    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("p2"), "request": {"method": "POST", "url": "Observation"}}]}
    r = _send(client, "POST", "/fhir", tok, bundle)
    assert r.status_code == 400, r.text  # Patient/p2 is outside the confined view: no such target
    assert _count(node, "Observation") == before + 1


def test_clinician_with_user_write_scopes_may_write_for_any_patient(env, node):
    client, svc = env
    tok = _token(node, svc, kind="practitioner", username="dr-e", launch="p1", scope=["user/*.cruds"])
    assert _send(client, "POST", "/fhir/Observation", tok, _obs("p2")).status_code == 201


# -- the pieces --------------------------------------------------------------------------


def test_confine_marks_only_requests_relying_on_patient_scopes():
    clin = Principal(kind="user", name="dr", user_id="u", organization_id=h.HOSPITAL, patient_id="p1",
                     scopes=frozenset({"user/Observation.rs", "patient/*.cruds"}))
    assert compartment_of(confine(clin, [("Observation", "r")])) is None
    assert compartment_of(confine(clin, [("Observation", "c")])) == "p1"
    assert compartment_of(confine(clin, [("Observation", "s"), ("Patient", "r")])) == "p1"
    no_launch = Principal(kind="user", name="dr", user_id="u", scopes=frozenset({"patient/*.rs"}))
    assert compartment_of(confine(no_launch, [("Observation", "r")])) is None
    pat = Principal(kind="patient", name="pt", user_id="v", patient_id="p1")
    assert compartment_of(pat) == "p1" and compartment_of(confine(pat, [])) == "p1"
    assert compartment_of(Principal(kind="patient", name="nobody")) == ""
    assert compartment_of(Principal(kind="system", name="s", patient_compartment="p1")) is None


def test_node_policy_is_wrapped_and_write_check_installed(node):
    from hie.auth.compartment import check_writes

    assert isinstance(node.policy, CompartmentPolicy)
    assert check_writes in node.write_listeners


def test_the_wrapped_policy_stays_configurable(node):
    from hie.clock import FixedClock

    clock = FixedClock(1_000_000)
    node.policy.clock = clock
    assert node.policy.inner.clock is clock
