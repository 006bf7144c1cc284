"""The documented error codes are true: the table in docs/integrator-guide.md ("Errors") lists
every ``HIE-NNNN`` code a ``FhirError`` class carries, with the class's status, and nothing
else; every code mentioned anywhere in the docs or the code is in it, with the same status
where a doc names one; and requests that should produce a code produce it, with the documented
status (unknown operations are 501 HIE-3007, unknown types 404 HIE-1003)."""

from __future__ import annotations

import importlib
import pkgutil
import re
from collections.abc import Iterator

import orjson
import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.auth.service import system_token
from hie.errors import NOOP_CODE, FhirError
from tests.support import REPO

GUIDE = REPO / "docs" / "integrator-guide.md"
ROW = re.compile(r"^\| (HIE-\d{4}) \| ([^|]+) \|", re.M)


def documented() -> dict[str, str]:
    """code -> status cell of the guide's error table."""
    text = GUIDE.read_text(encoding="utf-8")
    table = text[text.index("## Errors"):]
    rows = dict(ROW.findall(table))
    assert len(rows) >= 20, rows
    return {code: status.strip() for code, status in rows.items()}


def error_classes() -> list[type[FhirError]]:
    import adapters
    import hie

    for pkg in (hie, adapters):
        for mod in pkgutil.walk_packages(pkg.__path__, pkg.__name__ + "."):
            if ".migrations" not in mod.name:
                importlib.import_module(mod.name)

    def subclasses(cls: type[FhirError]) -> Iterator[type[FhirError]]:
        for sub in cls.__subclasses__():
            yield sub
            yield from subclasses(sub)

    return sorted(set(subclasses(FhirError)), key=lambda c: c.hie_code)


def test_every_error_class_is_documented_with_its_status():
    docs = documented()
    classes = error_classes()
    assert len(classes) >= 25
    for cls in classes:
        assert cls.hie_code in docs, f"{cls.__module__}.{cls.__name__} ({cls.hie_code}) is not in the table"
        assert docs[cls.hie_code] == str(cls.status), (cls.__name__, cls.hie_code, docs[cls.hie_code], cls.status)


def test_every_documented_code_exists():
    docs = documented()
    by_code: dict[str, set[int]] = {}
    for cls in error_classes():
        by_code.setdefault(cls.hie_code, set()).add(cls.status)
    for code, status in docs.items():
        if code == NOOP_CODE:
            assert status == "200"  # information on a no-op write, not an error
        elif code == FhirError.hie_code:
            assert status == "(as given)"  # the generic code keeps the framework's status
        else:
            assert code in by_code, f"{code} is documented but no error class carries it"
            assert by_code[code] == {int(status)}, (code, by_code[code], status)


def test_no_code_is_mentioned_outside_the_table():
    docs = documented()
    places = [*REPO.joinpath("docs").rglob("*.md"), REPO / "README.md"]
    places += [p for d in ("hie", "adapters", "consent") for p in REPO.joinpath(d).rglob("*.py")]
    status_then_code = re.compile(r"\b([1-5]\d\d)\b`?,? (?:code )?`?(HIE-\d{4})")
    for path in places:
        text = path.read_text(encoding="utf-8")
        for code in re.findall(r"HIE-\d{4}", text):
            assert code in docs, f"{path.relative_to(REPO)} mentions {code}, which the table lacks"
        for status, code in status_then_code.findall(text):
            assert docs[code] == status, f"{path.relative_to(REPO)}: {status} {code}, the table says {docs[code]}"


# -- the codes over the API ---------------------------------------------------------------


@pytest.fixture
def api(sqlite_node) -> Iterator[TestClient]:
    token = system_token(sqlite_node, "system/*.cruds", fhir_base="http://testserver/fhir")
    with TestClient(create_app(sqlite_node, audit=False), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as c:
        yield c


FHIR = "application/fhir+json"
PATIENT = orjson.dumps({"resourceType": "Patient", "id": "other"})

CASES = [
    ("GET", "/fhir/Patient/$no-such-operation", {}, None, "HIE-3007"),
    ("GET", "/fhir/$no-such-operation", {}, None, "HIE-3007"),
    ("POST", "/fhir/Patient/x/$no-such-operation", {"Content-Type": FHIR}, b"{}", "HIE-3007"),
    ("GET", "/fhir/Observation?code:in=http://example.org/vs", {}, None, "HIE-3007"),
    ("GET", "/fhir/NotAType", {}, None, "HIE-1003"),
    ("GET", "/fhir/Patient/none", {}, None, "HIE-3001"),
    ("GET", "/fhir/no/such/endpoint/here", {}, None, "HIE-3001"),
    ("POST", "/fhir/Patient", {"Content-Type": FHIR}, b"{not json", "HIE-1001"),
    ("POST", "/fhir/Patient", {"Content-Type": FHIR}, b'{"resourceType": "Patient", "bogus": 1}', "HIE-1002"),
    ("PUT", "/fhir/Patient/one", {"Content-Type": FHIR}, PATIENT, "HIE-1004"),
    ("POST", "/fhir/Patient", {"Content-Type": "text/plain"}, PATIENT, "HIE-1009"),
    ("GET", "/fhir/Patient", {"Accept": "application/fhir+xml"}, None, "HIE-1010"),
    ("GET", "/fhir/Patient?birthdate=bad", {}, None, "HIE-1008"),
    ("GET", "/fhir/Patient", {"Authorization": ""}, None, "HIE-2001"),
    ("POST", "/fhir/AuditEvent", {"Content-Type": FHIR}, b'{"resourceType": "AuditEvent"}', "HIE-3003"),
    ("DELETE", "/fhir/metadata", {}, None, "HIE-3003"),
]


@pytest.mark.parametrize(("method", "url", "headers", "body", "code"), CASES, ids=[f"{c[0]} {c[1]}" for c in CASES])
def test_requests_answer_the_documented_code_and_status(api, method, url, headers, body, code):
    r = api.request(method, url, headers=headers, content=body)
    issue = r.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == code, r.text
    assert str(r.status_code) == documented()[code], (code, r.status_code)


def test_an_error_inside_a_chain_names_the_parameter_as_sent(api):
    for url, name in (("/fhir/Observation?subject:Patient.name:bad=x", "subject:Patient.name:bad"),
                      ("/fhir/Patient?_has:Observation:patient:bad=x", "_has:Observation:patient:bad"),
                      ("/fhir/Observation?subject:NoType.name=x", "subject:NoType.name"),
                      ("/fhir/Observation?subject:Patient.birthdate=bad", "subject:Patient.birthdate")):
        issue = api.get(url).json()["issue"][0]
        assert issue["expression"] == [name], (url, issue)
        assert name in issue["diagnostics"], (url, issue)


def test_everything_since_error_names_since_as_sent(api):
    pid = api.post("/fhir/Patient", content=b'{"resourceType": "Patient"}', headers={"Content-Type": FHIR}).json()["id"]
    r = api.get(f"/fhir/Patient/{pid}/$everything?_since=bad")
    assert r.status_code == 400
    issue = r.json()["issue"][0]
    assert issue["expression"] == ["_since"] and "'bad'" in issue["diagnostics"]
    assert "gebad" not in r.text and "_lastUpdated" not in r.text


def test_everything_paging_links_page_the_operation_as_sent(api):
    pid = api.post("/fhir/Patient", content=b'{"resourceType": "Patient"}', headers={"Content-Type": FHIR}).json()["id"]
    for _ in range(2):
        api.post("/fhir/Observation", headers={"Content-Type": FHIR}, content=orjson.dumps({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "subject": {"reference": f"Patient/{pid}"}}))
    first = api.get(f"/fhir/Patient/{pid}/$everything?_since=2020-01-01T00:00:00Z&_count=2").json()
    links = {lnk["relation"]: lnk["url"] for lnk in first["link"]}
    assert set(links) >= {"self", "next"}
    for url in links.values():
        assert f"/Patient/{pid}/$everything?" in url and "_since=2020" in url and "_lastUpdated" not in url, url
    second = api.get(links["next"].removeprefix("http://testserver")).json()
    assert second["total"] == 3 and len(second["entry"]) == 1
