"""The interaction table is the one description of what the node serves: every row is
routable over HTTP and as a batch entry (``HEAD`` too, wherever ``GET`` is), has scope
needs that a token must hold, an audit code, and appears in the CapabilityStatement.

Each row has an example request below; a row without one fails the test, so a new row
cannot be added without showing that all five readers handle it.
"""

from __future__ import annotations

import base64
from typing import Any
from urllib.parse import parse_qsl

import orjson
import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.audit.events import build
from hie.auth import enforce
from hie.auth.service import system_token
from hie.interactions.table import PATIENT_COMPARTMENT, ROWS, parse

FHIR = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
PATCH = [{"op": "replace", "path": "/gender", "value": "male"}]
PATIENT = {"resourceType": "Patient", "id": "p1", "gender": "female",
           "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11110000011", "value": "123"}]}
OBS = {"resourceType": "Observation", "id": "o1", "status": "final", "code": {"text": "BP"},
       "subject": {"reference": "Patient/p1"}}

#: R4 http://hl7.org/fhir/restful-interaction codes (the audit subtype).
RESTFUL = {"read", "vread", "update", "patch", "delete", "history", "history-instance", "history-type",
           "history-system", "create", "search", "search-type", "search-system", "search-compartment",
           "capabilities", "transaction", "batch", "operation"}

# row name -> (method, path, query, body): body is a resource, a JSON Patch, a form string or None
EXAMPLES: dict[str, tuple[str, str, str, Any]] = {
    "capabilities": ("GET", "metadata", "", None),
    "batch-transaction": ("POST", "", "", {"resourceType": "Bundle", "type": "batch", "entry": []}),
    "search-system": ("GET", "", "_type=Patient", None),
    "search-system-post": ("POST", "_search", "", "_type=Patient"),
    "history-system": ("GET", "_history", "", None),
    "operation-system": ("GET", "$break-glass-report", "", None),
    "create": ("POST", "Observation", "", {k: v for k, v in OBS.items() if k != "id"}),
    "search-type": ("GET", "Patient", "gender=female", None),
    "search-type-post": ("POST", "Patient/_search", "", "gender=female"),
    "conditional-update": ("PUT", "Patient", "_id=p1", PATIENT),
    "conditional-patch": ("PATCH", "Patient", "_id=p1", PATCH),
    "conditional-delete": ("DELETE", "Observation", "_id=o1", None),
    "history-type": ("GET", "Patient/_history", "", None),
    "operation-type": ("GET", "Patient/$identity-review", "", None),
    "read": ("GET", "Patient/p1", "", None),
    "update": ("PUT", "Patient/p1", "", PATIENT),
    "patch": ("PATCH", "Patient/p1", "", PATCH),
    "delete": ("DELETE", "Observation/o1", "", None),
    "history-instance": ("GET", "Patient/p1/_history", "", None),
    "vread": ("GET", "Patient/p1/_history/1", "", None),
    "operation-instance": ("GET", "Patient/p1/$everything", "", None),
    "search-compartment": ("GET", "Patient/p1/Observation", "", None),
}
NAMES = [row.name for row in ROWS]


def test_every_row_has_an_example_and_every_example_parses_to_its_row():
    assert sorted(EXAMPLES) == sorted(NAMES)
    for name, (method, path, query, _body) in EXAMPLES.items():
        assert parse(method, path, query).row.name == name
        if "GET" in parse(method, path, query).row.methods:
            assert parse("HEAD", path, query).row.name == name


@pytest.fixture
def app(node):
    token = system_token(node, "system/*.cruds", fhir_base="http://testserver/fhir")
    with TestClient(create_app(node, audit=False), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as c:
        for res in (PATIENT, OBS):
            r = c.put(f"/fhir/{res['resourceType']}/{res['id']}", content=orjson.dumps(res),
                      headers={"Content-Type": FHIR})
            assert r.status_code in (200, 201), r.text
        yield c


def _http(c: TestClient, method: str, path: str, query: str, body: Any, token: str | None = None) -> Any:
    headers: dict[str, str] = {} if token is None else {"Authorization": f"Bearer {token}"}
    content = None
    if isinstance(body, str):
        headers["Content-Type"] = FORM
        content = body
    elif body is not None:
        headers["Content-Type"] = "application/json-patch+json" if method == "PATCH" else FHIR
        content = orjson.dumps(body)
    url = f"/fhir/{path}" + (f"?{query}" if query else "")
    return c.request(method, url.replace("/fhir/?", "/fhir?"), content=content, headers=headers)


def _entry(method: str, path: str, query: str, body: Any) -> dict[str, Any]:
    url = (path + (f"?{query}" if query else "")) or "/"  # the base itself
    if isinstance(body, str):  # a form body goes into the entry's URL
        url = path + "?" + "&".join(p for p in (query, body) if p)
    entry: dict[str, Any] = {"request": {"method": method, "url": url}}
    if method == "PATCH":
        entry["resource"] = {"resourceType": "Binary", "contentType": "application/json-patch+json",
                             "data": base64.b64encode(orjson.dumps(body)).decode()}
    elif isinstance(body, dict):
        entry["resource"] = body
    return entry


def _batch(c: TestClient, *entries: dict[str, Any]) -> list[dict[str, Any]]:
    r = c.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": list(entries)}),
               headers={"Content-Type": FHIR})
    assert r.status_code == 200, r.text
    return r.json()["entry"]


@pytest.mark.parametrize("name", NAMES)
def test_every_row_is_routable_over_http_and_in_a_batch(app, name):
    method, path, query, body = EXAMPLES[name]
    r = _http(app, method, path, query, body)
    assert 200 <= r.status_code < 300, (name, r.status_code, r.text)
    if "GET" in parse(method, path, query).row.methods:
        head = _http(app, "HEAD", path, query, body)
        assert head.status_code == r.status_code and head.content == b"", name
    if name == "batch-transaction":  # routed, and refused: a Bundle cannot nest a batch
        nested = app.post("/fhir", content=orjson.dumps({"resourceType": "Bundle", "type": "batch", "entry": [
            _entry(method, path, query, body)]}), headers={"Content-Type": FHIR})
        issue = nested.json()["issue"][0]
        assert nested.status_code == 400 and "cannot be nested" in issue["diagnostics"], nested.text
        assert issue["expression"] == ["Bundle.entry[0].request.url"]
        return
    (e,) = _batch(app, _entry(method, path, query, body))
    status = int(e["response"]["status"].split()[0])
    assert 200 <= status < 300, (name, e)
    if "GET" in parse(method, path, query).row.methods:
        (h,) = _batch(app, _entry("HEAD", path, query, body))
        assert h["response"]["status"] == e["response"]["status"] and "resource" not in h, (name, h)


@pytest.mark.parametrize("name", NAMES)
def test_every_row_has_scope_needs_that_a_token_must_hold(node, app, name):
    method, path, query, body = EXAMPLES[name]
    form = parse_qsl(body) if isinstance(body, str) else None
    parsed = parse(method, path, query, form)
    needs = enforce.needs(parsed, node.registry)
    if name == "capabilities":
        assert needs is None  # public: the CapabilityStatement
        return
    if name == "batch-transaction":
        assert needs == []  # each entry is checked as its own request (tests/auth/test_scope_coverage.py)
        return
    assert needs and all(letter in "cruds" and len(letter) == 1 for _t, letter in needs), needs
    exact = " ".join(sorted({f"system/{t}.{ch}" for t, ch in needs}))
    r = _http(app, method, path, query, body, token=system_token(node, exact, fhir_base="http://testserver/fhir"))
    assert r.status_code != 403, (name, exact, r.text)
    t0, ch0 = needs[0]
    fewer = " ".join(sorted({f"system/{t}.{ch}" for t, ch in needs if (t, ch) != (t0, ch0)})) or "system/Basic.r"
    r = _http(app, method, path, query, body, token=system_token(node, fewer, fhir_base="http://testserver/fhir"))
    assert r.status_code == 403, (name, fewer, r.text)


@pytest.mark.parametrize("name", NAMES)
def test_every_row_has_an_audit_code(name):
    method, path, query, _body = EXAMPLES[name]
    row = parse(method, path, query).row
    assert row.code in RESTFUL
    event = build(principal=None, method=method, path=f"/{path}", query=query, status=200, recorded_us=0)
    assert event["subtype"][0]["code"] == row.code


def test_every_row_appears_in_the_capability_statement(app):
    cs = app.get("/fhir/metadata").json()
    assert cs["resourceType"] == "CapabilityStatement"
    rest = cs["rest"][0]
    patient = next(r for r in rest["resource"] if r["type"] == "Patient")
    system_codes = {i["code"] for i in rest["interaction"]}
    type_codes = {i["code"] for i in patient["interaction"]}
    system_ops = {o["name"] for o in rest.get("operation", [])}
    patient_ops = {o["name"] for o in patient.get("operation", [])}
    for name, (method, path, query, _body) in EXAMPLES.items():
        p = parse(method, path, query)
        where = p.row.capability
        if where == "statement":
            continue  # the CapabilityStatement itself
        if where == "system":
            assert set(p.row.capability_codes) <= system_codes, name
        elif where == "resource":
            assert p.row.code in type_codes, name
        elif where == "compartment":
            assert PATIENT_COMPARTMENT in rest["compartment"], name
        else:
            assert p.operation.name in (system_ops if p.row.level == "system" else patient_ops), name


@pytest.mark.parametrize("path", ["Patient", "Patient/_history", "_history", "Patient/p1/_history", "Patient/p1/*"])
def test_one_pager_for_search_and_history(app, path):
    zero = app.get(f"/fhir/{path}?_count=0")
    assert zero.status_code == 200, zero.text
    body = zero.json()
    assert body["total"] >= 1 and body.get("entry", []) == []
    assert [lnk["relation"] for lnk in body["link"]] == ["self"]
    page = app.get(f"/fhir/{path}?_count=1").json()
    relations = [lnk["relation"] for lnk in page["link"]]
    assert relations[:2] == ["self", "first"] and "last" in relations
    assert ("next" in relations) == (page["total"] > 1)
    for bad in ("-1", "x"):
        r = app.get(f"/fhir/{path}?_count={bad}")
        assert r.status_code == 400 and r.json()["issue"][0]["expression"] == ["_count"], r.text
