"""FHIRPath Patch (https://hl7.org/fhir/R4/fhirpatch.html) and JSON Merge Patch beside JSON
Patch: each operation type on its own, the errors (400 for a malformed patch, 422 for one
that cannot be applied, each naming the operation and its path), and over the app on SQLite
and PostgreSQL: PATCH, If-Match, conditional PATCH, batch and transaction entries, and a
patch that would change custody or take another person's demographics refused exactly as
the equivalent update is."""

from __future__ import annotations

from typing import Any

import orjson
import pytest

from hie.errors import FhirError
from hie.fhir.fhirpatch import apply_fhirpath_patch
from hie.fhir.patch import apply_merge_patch, apply_patch
from tests.enforcement.test_write_authz import B, _tag, code_of, custodian, stored, who, world  # noqa: F401

FHIR = {"Content-Type": "application/fhir+json"}


def op(kind: str, path: str, **parts: Any) -> dict[str, Any]:
    out = [{"name": "type", "valueCode": kind}, {"name": "path", "valueString": path}]
    for name, value in parts.items():
        if name == "value":
            out.append({"name": "value", **value})
        elif name == "name":
            out.append({"name": "name", "valueString": value})
        else:
            out.append({"name": name, "valueInteger": value})
    return {"name": "operation", "part": out}


def params(*ops: dict[str, Any]) -> dict[str, Any]:
    return {"resourceType": "Parameters", "parameter": list(ops)}


PATIENT = {"resourceType": "Patient", "id": "fp", "gender": "male",
           "name": [{"use": "official", "family": "Yamada", "given": ["Taro", "Ichiro"]},
                    {"use": "nickname", "given": ["Tarochan"]}]}
OBS = {"resourceType": "Observation", "id": "fo", "status": "final", "code": {"text": "BP"},
       "valueQuantity": {"value": 120, "unit": "mmHg"},
       "component": [{"code": {"text": "systolic"}, "valueQuantity": {"value": 120}},
                     {"code": {"text": "diastolic"}, "valueQuantity": {"value": 80}}]}


# -- each operation type -----------------------------------------------------------------------

CASES = [
    ("add a single element", PATIENT, op("add", "Patient", name="birthDate", value={"valueDate": "1970-01-01"}),
     lambda r: r["birthDate"] == "1970-01-01"),
    ("add to a list that is absent", PATIENT,
     op("add", "Patient", name="identifier", value={"valueIdentifier": {"system": "urn:x", "value": "1"}}),
     lambda r: r["identifier"] == [{"system": "urn:x", "value": "1"}]),
    ("add appends to a list", PATIENT, op("add", "Patient.name[0]", name="given", value={"valueString": "Jiro"}),
     lambda r: r["name"][0]["given"] == ["Taro", "Ichiro", "Jiro"]),
    ("where() compares dates", {**PATIENT, "name": [{"family": "Old", "period": {"end": "1999-12-31"}},
                                                    {"family": "New", "period": {"start": "2000-01-01"}}]},
     op("replace", "Patient.name.where(period.start >= @2000-01-01).family", value={"valueString": "Newer"}),
     lambda r: [n["family"] for n in r["name"]] == ["Old", "Newer"]),
    ("add an anonymous element given as parts", PATIENT,
     op("add", "Patient", name="contact", value={"part": [
         {"name": "name", "valueHumanName": {"family": "Yamada", "given": ["Hanako"]}},
         {"name": "telecom", "valueContactPoint": {"system": "phone", "value": "03-0000-0000"}}]}),
     lambda r: r["contact"] == [{"name": {"family": "Yamada", "given": ["Hanako"]},
                                 "telecom": [{"system": "phone", "value": "03-0000-0000"}]}]),
    ("add a choice element by its type", OBS,
     op("add", "Observation", name="effective", value={"valueDateTime": "2026-01-01T09:00:00+09:00"}),
     lambda r: r["effectiveDateTime"] == "2026-01-01T09:00:00+09:00"),
    ("insert into a filtered list", PATIENT,
     op("insert", "Patient.name.where(use = 'official').given", index=1, value={"valueString": "Jiro"}),
     lambda r: r["name"][0]["given"] == ["Taro", "Jiro", "Ichiro"]),
    ("insert at the start", PATIENT,
     op("insert", "Patient.name", index=0, value={"valueHumanName": {"text": "山田太郎"}}),
     lambda r: [n.get("text") for n in r["name"]] == ["山田太郎", None, None]),
    ("delete a list item found by where()", PATIENT, op("delete", "Patient.name.where(use = 'nickname')"),
     lambda r: [n["use"] for n in r["name"]] == ["official"]),
    ("delete a primitive found by where($this)", PATIENT, op("delete", "Patient.name.given.where($this = 'Ichiro')"),
     lambda r: r["name"][0]["given"] == ["Taro"]),
    ("where() knows choice types (the R4 model)", OBS,
     op("replace", "Observation.component.where(value.value < 100).code.text", value={"valueString": "dia"}),
     lambda r: [c["code"]["text"] for c in r["component"]] == ["systolic", "dia"]),
    ("delete the last item removes the array", PATIENT, op("delete", "Patient.name[1].given[0]"),
     lambda r: r["name"][1] == {"use": "nickname"}),
    ("delete of nothing changes nothing", PATIENT, op("delete", "Patient.birthDate"),
     lambda r: r == PATIENT),
    ("replace a primitive", PATIENT, op("replace", "Patient.gender", value={"valueCode": "female"}),
     lambda r: r["gender"] == "female"),
    ("replace a choice element with another type", OBS,
     op("replace", "Observation.value", value={"valueString": "high"}),
     lambda r: r.get("valueString") == "high" and "valueQuantity" not in r),
    ("replace with first()", PATIENT, op("replace", "Patient.name.first().family", value={"valueString": "Sato"}),
     lambda r: r["name"][0]["family"] == "Sato"),
    ("move within a list", PATIENT, op("move", "Patient.name[0].given", source=0, destination=1),
     lambda r: r["name"][0]["given"] == ["Ichiro", "Taro"]),
    ("a path without the type starts at the resource", PATIENT,
     op("insert", "name", index=2, value={"valueHumanName": {"text": "x"}}),
     lambda r: r["name"][2] == {"text": "x"}),
    ("move whole elements", PATIENT, op("move", "Patient.name", source=1, destination=0),
     lambda r: [n["use"] for n in r["name"]] == ["nickname", "official"]),
]


@pytest.mark.parametrize("what,resource,operation,check", CASES, ids=[c[0] for c in CASES])
def test_each_operation(what, resource, operation, check):
    before = orjson.dumps(resource)
    out = apply_fhirpath_patch(resource, params(operation))
    assert check(out), out
    assert orjson.dumps(resource) == before  # the stored resource is never changed in place


def test_operations_apply_in_order():
    out = apply_fhirpath_patch(PATIENT, params(
        op("add", "Patient", name="active", value={"valueBoolean": True}),
        op("replace", "Patient.active", value={"valueBoolean": False}),
        op("delete", "Patient.name.where(use = 'nickname')")))
    assert out["active"] is False and len(out["name"]) == 1


# -- errors: the operation index and its path ---------------------------------------------------

ERRORS = [
    (op("replace", "Patient.name.given", value={"valueString": "X"}), 422, "matches 3 elements"),
    (op("replace", "Patient.birthDate", value={"valueDate": "1970-01-01"}), 422, "matches no element"),
    (op("add", "Patient", name="gender", value={"valueCode": "other"}), 422, "already has a value"),
    (op("add", "Patient", name="bogus", value={"valueString": "x"}), 422, "Patient has no element 'bogus'"),
    (op("insert", "Patient.name", index=3, value={"valueHumanName": {"text": "x"}}), 422, "index 3 is outside 0..2"),
    (op("insert", "Patient.gender", index=0, value={"valueCode": "male"}), 422, "not a repeating element"),
    (op("move", "Patient.name", source=0, destination=2), 422, "destination 2 is outside 0..1"),
    (op("delete", "Patient"), 422, "the resource itself"),
    (op("replace", "Observation.status", value={"valueCode": "final"}), 422, "the resource is a Patient"),
    (op("replace", "Patient.managingOrganization.resolve().name", value={"valueString": "x"}), 400,
     "must not cross resources"),
    (op("replace", "Patient.name.where(use = ).family", value={"valueString": "x"}), 400, "cannot be evaluated"),
    (op("replace", "Patient.name.exists()", value={"valueString": "x"}), 400, "exists() is not supported"),
]


@pytest.mark.parametrize("operation,status,text", ERRORS, ids=[e[2] for e in ERRORS])
def test_errors_name_the_operation_and_its_path(operation, status, text):
    ok = op("replace", "Patient.gender", value={"valueCode": "female"})
    with pytest.raises(FhirError) as exc:
        apply_fhirpath_patch(PATIENT, params(ok, operation))
    err = exc.value
    path = operation["part"][1]["valueString"]
    assert err.status == status and text in err.diagnostics, err.diagnostics
    assert err.issues[0].expression == ["Parameters.parameter[1]", path]
    assert err.issues[0].hie_code == "HIE-1007"


@pytest.mark.parametrize("body,text", [
    ({"resourceType": "Parameters"}, "at least one parameter"),
    (params({"name": "op", "part": []}), "named 'operation'"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "upsert"},
                                           {"name": "path", "valueString": "Patient"}]}), "'upsert' is not one of"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "insert"},
                                           {"name": "path", "valueString": "Patient.name"}]}), "value, index"),
    (params({"name": "operation", "part": [{"name": "type", "valueCode": "delete"},
                                           {"name": "path", "valueString": "Patient"},
                                           {"name": "colour", "valueString": "red"}]}), "unknown part 'colour'"),
])
def test_malformed_patch_is_400(body, text):
    with pytest.raises(FhirError) as exc:
        apply_fhirpath_patch(PATIENT, body)
    assert exc.value.status == 400 and text in exc.value.diagnostics, exc.value.diagnostics


def test_merge_patch_and_the_format_chosen_by_shape():
    out = apply_merge_patch(PATIENT, {"gender": "female", "name": None, "telecom": [{"system": "phone", "value": "1"}]})
    assert out["gender"] == "female" and "name" not in out and out["telecom"][0]["value"] == "1"
    assert apply_patch(PATIENT, [{"op": "replace", "path": "/gender", "value": "other"}])["gender"] == "other"
    assert apply_patch(PATIENT, params(op("delete", "Patient.gender"))).get("gender") is None
    with pytest.raises(FhirError):
        apply_patch(PATIENT, "gender=female")


# -- over the app: the same path as an update ------------------------------------------------


def _put(client, resource):
    r = client.put(f"/fhir/{resource['resourceType']}/{resource['id']}", content=orjson.dumps(resource), headers=FHIR)
    assert r.status_code in (200, 201), r.text


def test_patch_over_http_with_if_match(client):
    _put(client, PATIENT)
    body = orjson.dumps(params(op("replace", "Patient.gender", value={"valueCode": "female"})))
    stale = client.patch("/fhir/Patient/fp", content=body, headers={**FHIR, "If-Match": 'W/"9"'})
    assert stale.status_code == 412
    r = client.patch("/fhir/Patient/fp", content=body, headers={**FHIR, "If-Match": 'W/"1"'})
    assert r.status_code == 200, r.text
    assert r.json()["gender"] == "female" and r.json()["meta"]["versionId"] == "2"
    bad = client.patch("/fhir/Patient/fp", content=orjson.dumps(params(
        op("add", "Patient", name="birthDate", value={"valueString": "not a date"}))), headers=FHIR)
    assert bad.status_code == 400, bad.text  # the patched resource is validated like an update
    failed = client.patch("/fhir/Patient/fp", content=orjson.dumps(params(
        op("replace", "Patient.name.given", value={"valueString": "X"}))), headers=FHIR)
    assert failed.status_code == 422
    assert failed.json()["issue"][0]["expression"] == ["Parameters.parameter[0]", "Patient.name.given"]
    assert client.get("/fhir/Patient/fp").json()["meta"]["versionId"] == "2"


def test_conditional_patch_batch_and_transaction(client):
    _put(client, {**PATIENT, "identifier": [{"system": "urn:fp", "value": "42"}]})
    r = client.patch("/fhir/Patient?identifier=urn:fp|42", headers=FHIR,
                     content=orjson.dumps(params(op("add", "Patient", name="active", value={"valueBoolean": True}))))
    assert r.status_code == 200, r.text
    assert r.json()["active"] is True

    def bundle(kind: str, operation: dict[str, Any]) -> dict[str, Any]:
        return {"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": params(operation), "request": {"method": "PATCH", "url": "Patient/fp"}}]}

    r = client.post("/fhir", headers=FHIR, content=orjson.dumps(bundle(
        "transaction", op("replace", "Patient.gender", value={"valueCode": "other"}))))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    r = client.post("/fhir", headers=FHIR, content=orjson.dumps(bundle(
        "batch", op("move", "Patient.name", source=0, destination=1))))
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("200")
    current = client.get("/fhir/Patient/fp").json()
    assert current["gender"] == "other" and current["name"][0]["use"] == "nickname"
    r = client.post("/fhir", headers=FHIR, content=orjson.dumps(bundle(
        "transaction", op("delete", "Patient"))))
    assert r.status_code == 422, r.text
    assert client.get("/fhir/Patient/fp").json()["meta"]["versionId"] == current["meta"]["versionId"]


def test_patch_that_moves_custody_is_refused_as_the_update_is(world):
    node = world[0]
    tag_b = params(op("replace", "Observation.meta", value={"valueMeta": _tag(B)}))
    put = who(world, "custodian facility").send("PUT", "/fhir/Observation/hiv-p",
                                                 {**stored(node, "Observation", "hiv-p"), "meta": _tag(B)})
    patch = who(world, "custodian facility").send("PATCH", "/fhir/Observation/hiv-p", tag_b)
    assert put.status_code == patch.status_code == 403
    assert code_of(put) == code_of(patch) == "HIE-2005"
    assert custodian(node, "Observation", "hiv-p") != B


def test_patch_that_takes_another_persons_demographics_is_refused_as_the_update_is(world):
    node = world[0]
    victim, mine = stored(node, "Patient", "q"), stored(node, "Patient", "p")
    put = who(world, "patient").send("PUT", "/fhir/Patient/p", {**mine, "name": victim["name"]})
    patch = who(world, "patient").send("PATCH", "/fhir/Patient/p", params(
        op("replace", "Patient.name[0]", value={"valueHumanName": victim["name"][0]})))
    assert put.status_code == patch.status_code == 403
    assert code_of(put) == code_of(patch) == "HIE-2006"
    assert put.json()["issue"][0]["expression"] == patch.json()["issue"][0]["expression"] == ["Patient.name"]
    assert stored(node, "Patient", "p")["name"] == mine["name"]
