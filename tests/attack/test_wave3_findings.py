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
from tests.web.conftest import web_node  # noqa: F401  (fixture)

SQLITE_ONLY = pytest.mark.parametrize("node", ["sqlite"], indirect=True)
MERGE = {"Content-Type": "application/json"}
JSON_PATCH = {"Content-Type": "application/json-patch+json"}


def _raw(caller: Any, method: str, url: str, text: str, headers: dict[str, str]) -> Any:
    return caller.c.request(method, url, content=text.encode(), headers={**caller.h, **headers})


def _nested(depth: int) -> str:
    return '{"a":' * depth + '"x"' + "}" * depth


# -- H5: patch ---------------------------------------------------------------------------


@SQLITE_ONLY
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


@SQLITE_ONLY
@pytest.mark.parametrize("kind", ["batch", "transaction"])
def test_deeply_nested_patch_in_a_bundle_entry_is_refused(world, kind):
    """Finding 1 inside bundles: a Binary entry's base64 JSON Patch is decoded after the
    Bundle's own depth check, so hie/fhir/patch.py apply_patch bounds it itself (400)."""
    h = who(world, "custodian facility")
    ops = '[{"op": "add", "path": "/note", "value": [{"text": "x", "x": ' + _nested(1000) + '}]}]'
    entry = {"resource": {"resourceType": "Binary", "contentType": "application/json-patch+json",
                          "data": base64.b64encode(ops.encode()).decode()},
             "request": {"method": "PATCH", "url": "Observation/hiv-p"}}
    try:
        r = h.send("POST", "/fhir", {"resourceType": "Bundle", "type": kind, "entry": [entry]})
    except RecursionError:
        pytest.fail("RecursionError escaped the request (500)")
    status = r.json()["entry"][0]["response"]["status"] if kind == "batch" else str(r.status_code)
    assert status.startswith("400"), r.text[:300]


@SQLITE_ONLY
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


@SQLITE_ONLY
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


@SQLITE_ONLY
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


@SQLITE_ONLY
@pytest.mark.parametrize("body", [{"name": [{"family": "X"}]}, {"link": None},
                                  {"meta": {"security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode",
                                                          "code": "PSY"}]}}])
def test_patient_merge_patch_changes_only_contact_elements(world, body):
    """Probe (passes): the patient's merge patch of their own Patient outside telecom,
    address, contact, communication is 403 HIE-2006, as the update is."""
    r = who(world, "patient").send("PATCH", "/fhir/Patient/p", body, MERGE)
    assert r.status_code == 403 and "HIE-2006" in r.text, r.text[:300]


# -- H6: request limits on the /auth and /viewer form routes ------------------------------

LOOPBACK = "http://127.0.0.1"  # the authorization server refuses plain http elsewhere
FORM = {"Content-Type": "application/x-www-form-urlencoded"}


@pytest.fixture
def anonymous(sqlite_node):
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.api.limits import Limits

    app = create_app(sqlite_node, audit=False, limits=Limits(100_000, 1000))
    with TestClient(app, base_url=LOOPBACK, raise_server_exceptions=False) as c:
        yield c


@pytest.mark.parametrize("path", ["/auth/token", "/auth/login", "/auth/revoke", "/auth/introspect"])
def test_non_utf8_form_body_on_auth_routes_is_a_client_error(anonymous, path):
    """``_AuthEndpoints.hie_request`` decodes the form with ``raw.decode('utf-8')``: one byte
    0xff from an anonymous caller is a 500 (an OAuth error 400 is the answer for a bad request)."""
    r = anonymous.post(path, content=b"grant_type=\xff\xfe", headers=FORM)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", (r.status_code, r.text[:200])


@pytest.mark.parametrize("path", ["/auth/token", "/auth/login"])
def test_auth_forms_have_a_field_cap(anonymous, path):
    """Finding 4's field cap: a form of 65 fields is 400 invalid_request before authlib sees it."""
    from hie.api.auth_routes import MAX_FORM_FIELDS

    body = "&".join(f"f{i}=x" for i in range(MAX_FORM_FIELDS + 1)).encode()
    r = anonymous.post(path, content=body, headers=FORM)
    assert r.status_code == 400 and r.json()["error"] == "invalid_request", (r.status_code, r.text[:200])
    assert f"more than {MAX_FORM_FIELDS} fields" in r.json()["error_description"]


def test_auth_form_value_over_the_element_limit_is_413(anonymous):
    """8582c5b: 'form values over HIE_MAX_ELEMENT_BYTES are 413 HIE-1013 with the element path';
    the /auth routes parse their forms themselves (hie_request), so a value 5x the limit
    reaches authlib (and /auth/login's password hashing) unchecked."""
    body = b"grant_type=client_credentials&client_assertion=" + b"a" * 5000
    r = anonymous.post("/auth/token", content=body, headers=FORM)
    assert r.status_code == 413 and "HIE-1013" in r.text, (r.status_code, r.text[:200])


def test_viewer_form_routes_survive_non_utf8_bodies(anonymous):
    """Probe (passes): the viewer's own forms decode with errors='replace' (no 500)."""
    for path in ("/viewer/logout", "/viewer/patient/x/glass", "/viewer/launch-context"):
        r = anonymous.post(path, content=b"csrf=\xff\xfe", headers=FORM, follow_redirects=False)
        assert r.status_code < 500, (path, r.status_code)


# -- H8: the viewer ----------------------------------------------------------------------


@pytest.fixture
def viewer(web_node):
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from tests.web import viewer_helpers as vh

    vh.load_demo(web_node)
    with TestClient(create_app(web_node, audit=False), base_url=LOOPBACK) as c:
        yield c, web_node


def test_viewer_session_id_changes_at_login(viewer):
    """Finding 5 (fixed by 57c57ee; regression test). The session cookie is set when the
    login starts (anonymous) and the same id became the logged-in session at /viewer/callback:
    whoever planted or read the pre-login cookie (a shared kiosk, a cookie set from a sibling
    host) held the clinician's session. OWASP: renew the session id on any privilege change.
    Expected: a new id at the callback."""
    import re
    from urllib.parse import urlsplit

    from tests.web import viewer_helpers as vh

    c, node = viewer
    dr = vh.enrol(node, "h9-dr")
    r = c.get("/viewer/", follow_redirects=False)
    before = c.cookies.get("hie_viewer")
    page = c.get(r.headers["location"])
    fields = dict(re.findall(r'<input type="hidden" name="([^"]+)" value="([^"]*)">', page.text))
    fields = {k: v.replace("&amp;", "&").replace("&#34;", '"') for k, v in fields.items()}
    form = {**fields, "username": "h9-dr", "password": dr.password, "otp": vh.totp(dr), "decision": "allow"}
    r = c.post("/auth/login", data=form, follow_redirects=False)
    assert urlsplit(r.headers["location"]).path == "/viewer/callback"
    r = c.get(r.headers["location"], follow_redirects=False)
    assert r.status_code == 303 and c.get("/viewer/").status_code == 200  # logged in
    assert before and c.cookies.get("hie_viewer") != before, "the pre-login session id is the logged-in session"


def test_viewer_escapes_patient_names_and_codes(viewer):
    """Probe (passes): markup in a Patient's name and an Observation's code and unit is shown
    as text on the search and patient pages (Jinja autoescape, charts escape)."""
    from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM
    from hie.ingest import ingest_bundle
    from tests.web import viewer_helpers as vh

    c, node = viewer
    xss = '<script>alert(1)</script>"\'><img src=x onerror=alert(2)>'
    tag = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": vh.TONE_CENTRAL}]}
    res = [{"resourceType": "Patient", "id": "xss-p", "meta": tag, "name": [{"family": xss, "given": [xss]}],
            "birthDate": "1970-01-01", "gender": "male"},
           {"resourceType": "Observation", "id": "xss-o", "meta": tag, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4", "display": xss}], "text": xss},
            "subject": {"reference": "Patient/xss-p"}, "effectiveDateTime": "2026-01-01",
            "valueQuantity": {"value": 7.1, "unit": xss, "system": "http://unitsofmeasure.org", "code": "%"}}]
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in res]},
        source="h9")
    dr = vh.enrol(node, "h9-dr")
    vh.login(c, dr, "h9-dr")
    page = c.get("/viewer/patient/xss-p")
    assert page.status_code == 200 and "&lt;script&gt;alert(1)" in page.text
    assert "<script>alert" not in page.text and "<img src=x" not in page.text


# -- H7: $summary --------------------------------------------------------------------------

def _ident(value: str) -> str:
    from tests.identity.identity_fixtures import FACILITY

    return f"{FACILITY}1310000011|{value}"


@SQLITE_ONLY
def test_summary_of_a_hidden_patient_reads_as_an_unknown_one(world):
    """Probe (passes): clinic B's $summary of q (hidden) and of an id nobody has, by id, by
    identifier (GET and POST) and with a bad input, answer alike."""
    b = who(world, "other facility")

    def same(hidden: Any, absent: Any) -> None:
        assert hidden.status_code == absent.status_code, (hidden.text[:200], absent.text[:200])
        assert hidden.text.replace("Patient/q", "Patient/nope") == absent.text

    same(b.send("GET", "/fhir/Patient/q/$summary"), b.send("GET", "/fhir/Patient/nope/$summary"))
    same(b.send("GET", "/fhir/Patient/q/$summary?language=xx"),
         b.send("GET", "/fhir/Patient/nope/$summary?language=xx"))
    same(b.send("GET", f"/fhir/Patient/$summary?identifier={_ident('q-001')}"),
         b.send("GET", f"/fhir/Patient/$summary?identifier={_ident('zz-001')}"))
    post = [{"resourceType": "Parameters", "parameter": [{"name": "identifier", "valueIdentifier": {
        "system": _ident(v).split("|")[0], "value": v}}]} for v in ("q-001", "zz-001")]
    same(b.send("POST", "/fhir/Patient/$summary", post[0]), b.send("POST", "/fhir/Patient/$summary", post[1]))
    shown = b.send("GET", "/fhir/Patient/p/$summary")
    assert shown.status_code == 200 and "hiv-q" not in shown.text and "Patient/q" not in shown.text


@SQLITE_ONLY
def test_summary_by_identifier_needs_a_value(world):
    """hie/summary/operation.py summary_type passes the identifier to an ordinary token search,
    where ``system|`` means 'any identifier in that system': clinic B asking for the hospital's
    record-number system with no number gets p's IPS document (the only patient of that
    system B may see). The IPS operation names one patient by one identifier: a token
    without a value should be 400 (or treated as no match), not a wildcard."""
    b = who(world, "other facility")
    r = b.send("GET", f"/fhir/Patient/$summary?identifier={_ident('')}")
    assert r.status_code in (400, 404), r.text[:200]


def _peak_kib(client: Any, path: str, body: bytes, ctype: str) -> tuple[int, int]:
    import tracemalloc

    tracemalloc.start()
    try:
        r = client.post(path, content=body, headers={"Content-Type": ctype})
        return r.status_code, tracemalloc.get_traced_memory()[1] // 1024
    finally:
        tracemalloc.stop()


def test_anonymous_registration_body_is_not_parsed_before_the_401(anonymous):
    """Issue 19 item 3 for the one /auth route that needs a bearer token: 1.5 MB of ``[{},{},...]``
    without a token allocates ~54 MB (36x) before the 401; at HIE_MAX_BODY_BYTES (16 MiB) ~0.5 GB
    per request. The FHIR data route answers the same anonymous body 401 with ~0.3 MB. Expected:
    the registration route authenticates first, as the data routes do."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.api.limits import Limits

    body = b"[" + b"{}," * 500_000 + b"{}]"
    app = create_app(anonymous.app.state.node, audit=False, limits=Limits(10**7, 10**6))
    with TestClient(app, base_url=LOOPBACK) as c:
        data_status, data_peak = _peak_kib(c, "/fhir/Patient", body, "application/fhir+json")
        reg_status, reg_peak = _peak_kib(c, "/auth/register", body, "application/json")
    assert data_status == reg_status == 401
    assert data_peak < 4 * len(body) // 1024  # the data route: unread
    assert reg_peak < 4 * len(body) // 1024, f"anonymous registration body parsed: peak {reg_peak} KiB"


# -- H6: error texts and codes true (paging parameters) ---------------------------------------


def test_numbers_out_of_range_are_client_errors(node):
    """``raw.isdigit()`` is true for '²' (int() then raises ValueError) and for any length
    (SQLite: OverflowError; PostgreSQL: integer/bigint out of range). Any caller with a read
    scope gets a 500 instead of the 400 "must be a non-negative integer" (or the vread's 404).
    A fix: ``raw.isascii() and raw.isdigit()`` and a bound (2**63 - 1; version ids 2**31 - 1)."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.auth.service import system_token

    token = system_token(node, "system/*.rs", fhir_base="http://testserver/fhir")
    cases = {"Observation?_count=%C2%B2": 400, "Observation?_offset=%C2%B2": 400,
             "Observation?_offset=99999999999999999999999": 400, "_history?_offset=99999999999999999999999": 400,
             "_history?_snapshot=%C2%B2": 400, "_history?_snapshot=99999999999999999999999": 400,
             "Patient/nope/_history/%C2%B2": 404, "Patient/nope/_history/99999999999999999999999": 404}
    with TestClient(create_app(node, audit=False), base_url="http://testserver", raise_server_exceptions=False,
                    headers={"Authorization": f"Bearer {token}"}) as c:
        got = {query: c.get(f"/fhir/{query}").status_code for query in cases}
    assert got == cases


def test_viewer_document_read_is_audited_when_it_is_not_a_document(web_node):
    """Finding 10 (fixed by H8: the read is audited before rendering; regression test).
    document_page reads the Bundle through the clinician's principal, and returns the 422
    page (naming the element, e.g. its type) before audit.record: a read of stored data with
    no trace. Every other page audits what it read (the 404 reads nothing). Expected: an
    AuditEvent of the viewer naming Bundle/{id}, whatever the rendering outcome."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.audit.recorder import AuditRecorder
    from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM
    from hie.ingest import ingest_bundle
    from tests.web import viewer_helpers as vh

    node = web_node
    vh.load_demo(node)
    tag = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": vh.TONE_CENTRAL}]}
    kept = {"resourceType": "Bundle", "id": "h9-collection", "meta": tag, "type": "collection",
            "entry": [{"fullUrl": "urn:uuid:c0000000-0000-0000-0000-0000000000a1", "resource": {
                "resourceType": "Observation", "status": "final", "code": {"text": "HbA1c"},
                "subject": {"reference": "Patient/demo-p1"}, "valueString": "7.9 %"}}]}
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": kept, "request": {"method": "PUT", "url": "Bundle/h9-collection"}}]}, source="h9")
    recorder = AuditRecorder(node, interval=None)
    with TestClient(create_app(node, audit=recorder), base_url=LOOPBACK) as c:
        dr = vh.enrol(node, "h9-dr")
        vh.login(c, dr, "h9-dr")
        page = c.get("/viewer/document/h9-collection")
        assert page.status_code == 422, page.text[:200]
    recorder.flush()
    from sqlalchemy import select

    from hie.storage.tables import resource

    with node.engine.connect() as conn:
        events = [orjson.loads(x) for x in conn.execute(
            select(resource.c.content).where(resource.c.res_type == "AuditEvent")).scalars()]
    named = [e for e in events if any(en.get("what", {}).get("reference") == "Bundle/h9-collection"
                                      for en in e.get("entity", []))]
    assert named, "the viewer read Bundle/h9-collection without an audit record"


def test_anonymous_viewer_requests_write_nothing(web_node):
    """Finding 11 (fixed by H8: the pending login is sealed in the cookie; regression test).
    GET /viewer/patient/x without a cookie starts a login: SessionStore.new() runs a write
    transaction (SQLite: BEGIN IMMEDIATE, the node's one writer lock) and inserts a row kept
    12 hours. 25 anonymous requests = 25 rows and 25 turns of the writer lock, so a flood
    of unauthenticated GETs fills the table and queues every FHIR write behind it. Expected:
    nothing stored before the login completes (pending state sealed in the cookie, or a row
    only at the callback)."""
    from fastapi.testclient import TestClient
    from sqlalchemy import func, select

    from hie.api.app import create_app
    from hie.web.tables import viewer_session

    with TestClient(create_app(web_node, audit=False), base_url=LOOPBACK) as c:
        for _ in range(25):
            fresh = TestClient(c.app, base_url=LOOPBACK)
            assert fresh.get("/viewer/patient/x", follow_redirects=False).status_code == 303
    with web_node.engine.connect() as conn:
        rows = conn.execute(select(func.count()).select_from(viewer_session)).scalar()
    assert rows == 0, f"{rows} session rows written by anonymous requests"


@SQLITE_ONLY
def test_registrar_cannot_rewrite_a_patient_authored_consent(world):
    """Probe (passes): a patient-authored Consent (custody patient-source, exempt from the
    holding rule) cannot be turned by a holding facility's registrar into a grant for
    another facility that would outlive the holding: the registrar does not see it (404)."""
    import json

    from consent import builder
    from tests.enforcement.test_write_authz import custodian

    q, reg, b = who(world, "other patient"), who(world, "registrar (holding)"), who(world, "other facility")
    r = q.send("POST", "/fhir/Consent", builder.chosen_facilities(None, "Patient/q", ["Organization/org-h"]))
    assert r.status_code == 201, r.text[:200]
    cid = r.json()["id"]
    assert custodian(world[0], "Consent", cid) == "patient-source"
    moved = json.loads(json.dumps(r.json()).replace("Organization/org-h", "Organization/org-b"))
    assert reg.send("PUT", f"/fhir/Consent/{cid}", moved).status_code == 404
    assert reg.send("PATCH", f"/fhir/Consent/{cid}", {"status": "inactive"}, MERGE).status_code == 404
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404


@pytest.mark.parametrize("code", ["13100000²9", "１３１０００００２９", "131000002٩"])
def test_facility_codes_take_ascii_digits_only(code):
    """Finding 9's pattern in the registry and the CLI: ``str.isdigit`` takes superscripts,
    fullwidth and Arabic-Indic digits; a medical-institution code is 10 ASCII digits."""
    from hie.auth.registry import facility
    from hie.cli_support import CliError, facility_code

    assert code.isdigit() and len(code) == 10
    with pytest.raises(ValueError, match="10 digits"):
        facility(fid="f", code=code, name="n", kind="hospital", role="both", region="r")
    with pytest.raises(CliError):
        facility_code("--facility", code)
    facility_code("--facility", "1310000029")  # an ASCII code passes
