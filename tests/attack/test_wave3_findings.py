"""Wave-3 attack findings (H9) over this session's changes, with real tokens (FastAPI TestClient).

Each ``xfail(strict=True)`` test reproduces one CONFIRMED finding and asserts the answer the
project's rules require: it fails today and XPASSes (an error under strict) once fixed, so
whoever fixes it removes the marker. The other tests are attacks that failed (passing
probes): they guard against regressions. Region and callers: tests/enforcement/test_write_authz.py
(hospital H, clinic B, patients p and q of H; p consented to every facility, q to nobody).
"""

from __future__ import annotations

import base64
from typing import Any

import orjson
import pytest

from tests.enforcement.test_write_authz import who, world  # noqa: F401  (fixture)

MERGE = {"Content-Type": "application/json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _raw(caller: Any, method: str, url: str, text: str, headers: dict[str, str]) -> Any:
    return caller.c.request(method, url, content=text.encode(), headers={**caller.h, **headers})


def _nested(depth: int) -> str:
    return '{"a":' * depth + '"x"' + "}" * depth


# -- H5: patch ---------------------------------------------------------------------------


@pytest.mark.xfail(strict=True, reason="finding 1: PATCH bodies (merge patch, JSON Patch) are not depth-checked: "
                   "RecursionError (500) instead of 400 beyond 128 levels")
@pytest.mark.parametrize("headers,body", [
    (MERGE, '{"note": [{"text": "x", "x": %s}]}'),
    (JSON_PATCH, '[{"op": "add", "path": "/note", "value": [{"text": "x", "x": %s}]}]'),
], ids=["merge-patch", "json-patch"])
def test_deeply_nested_patch_body_is_refused_as_a_deep_resource_is(world, headers, body):
    """A PUT nested 1000 levels deep is 400 HIE-1002 ('nested deeper than 128 levels', 4b4b2b1);
    the same nesting in a PATCH body (Content-Type application/json or json-patch+json, loaded
    with fhir=False in hie/api/app.py _body) reaches hie/fhir/patch.py _merge / jsonpatch's
    deepcopy and raises RecursionError: a 500 to any caller allowed to patch one resource."""
    h = who(world, "custodian facility")
    try:
        r = _raw(h, "PATCH", "/fhir/Observation/hiv-p", body % _nested(1000), headers)
    except RecursionError:
        pytest.fail("RecursionError escaped the request (500)")
    assert r.status_code == 400, r.text[:300]


@pytest.mark.xfail(strict=True, reason="finding 2: a transaction's PATCH entry ignores request.ifMatch "
                   "(hie/interactions/bundle.py _patch_write)")
def test_transaction_patch_entry_honours_if_match(world):
    """PATCH with If-Match W/"99" is 412 directly and inside a batch; inside a transaction the
    entry's ifMatch is dropped (_patch_write uses the version it just read) and the stale
    patch is applied: a lost update the precondition was sent to prevent."""
    h = who(world, "custodian facility")
    ops = base64.b64encode(orjson.dumps([{"op": "replace", "path": "/status", "value": "amended"}])).decode()
    entry = {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json", "data": ops},
             "request": {"method": "PATCH", "url": "Observation/hiv-p", "ifMatch": 'W/"99"'}}
    batch = h.send("POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [entry]})
    assert batch.json()["entry"][0]["response"]["status"].startswith("412")
    r = h.send("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [entry]})
    assert r.status_code == 412, r.text[:300]
    assert h.send("GET", "/fhir/Observation/hiv-p").json()["status"] == "final"


def _op(kind: str, path: str) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]}]}


@pytest.mark.parametrize("body,headers", [
    ({"status": "amended"}, MERGE),
    ({"status": "amended"}, {**MERGE, "If-Match": 'W/"9"'}),
    (_op("delete", "Observation.status"), None),
    ([{"op": "test", "path": "/status", "value": "final"}], JSON_PATCH),
], ids=["merge", "merge-if-match", "fhirpath", "json-patch-test"])
def test_patch_of_a_hidden_id_answers_as_an_absent_one(world, body, headers):
    """Probe (passes): a PATCH of q's hidden Observation reads exactly as one of an id that
    does not exist (status, code; the text differs only by the id sent)."""
    b = who(world, "other facility")
    hidden = b.send("PATCH", "/fhir/Observation/hiv-q", body, headers)
    absent = b.send("PATCH", "/fhir/Observation/hiv-x", body, headers)
    assert hidden.status_code == absent.status_code == 404
    assert hidden.text.replace("hiv-q", "hiv-x") == absent.text


@pytest.mark.parametrize("actor,body", [
    ("other facility", {"meta": {"tag": [{"system": "http://hie.example.jp/fhir/CodeSystem/custodian",
                                          "code": "1310000029"}]}}),
    ("other facility", {"status": "amended"}),
    ("patient", {"status": "amended"}),
])
def test_merge_patch_is_refused_where_the_update_is(world, actor, body):
    """Probe (passes): a merge patch of the hospital's record by clinic B (re-homing its
    custody or not) or by the patient is refused (403) and changes nothing."""
    r = who(world, actor).send("PATCH", "/fhir/Observation/hiv-p", body, MERGE)
    assert r.status_code == 403, r.text[:300]
    assert who(world, "custodian facility").send("GET", "/fhir/Observation/hiv-p").json()["meta"]["versionId"] == "1"


@pytest.mark.parametrize("body", [{"name": [{"family": "X"}]}, {"link": None},
                                  {"meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                          "code": "PSY"}]}}])
def test_patient_merge_patch_changes_only_contact_elements(world, body):
    """Probe (passes): the patient's merge patch of their own Patient outside telecom,
    address, contact, communication is 403 HIE-2006, as the update is."""
    r = who(world, "patient").send("PATCH", "/fhir/Patient/p", body, MERGE)
    assert r.status_code == 403 and "HIE-2006" in r.text, r.text[:300]
