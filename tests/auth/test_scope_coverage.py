"""Scope checks cover every type a request touches, whatever the transport.

A backend token limited to ``system/Patient.rs`` must not reach Observation data through a
Bundle ``HEAD``/``GET`` entry, a POST ``_search`` whose form body carries ``_revinclude``,
``_has``, chained parameters or ``$everything``; a clinician whose launch-patient token
relies on ``patient/`` scopes for those types stays confined to the launch patient through
all of them. Both hold when ``HIE_BASE_URL`` ends in ``/api/fhir/`` or has no ``/fhir/`` in
it at all (absolute URLs in Bundle entries are resolved against it; a URL for another base
is refused).

Every refusal is shown next to a control: the same request with a token that has the
scope succeeds (so the check is not blanket), and the confined requests are shown to
return the other patient's data to an unconfined token (so confinement is what hides it).

Spec: https://hl7.org/fhir/smart-app-launch/scopes-and-launch-context.html
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient

from hie.api.app import create_app
from hie.auth.service import AuthService, system_token
from hie.auth.users import get_by_username
from hie.config import Settings
from tests.auth import helpers as h

FHIR = "application/fhir+json"
FORM = "application/x-www-form-urlencoded"
AUD = "http://testserver/fhir"
API_BASE = "https://hie.example.jp/api/fhir/"
OTHER_BASE = "https://hie.example.jp/hie/r4/"  # no "/fhir/" in it at all


@pytest.fixture(params=[None, API_BASE, OTHER_BASE], ids=["default-base", "api-fhir-base", "no-fhir-base"])
def env(request: pytest.FixtureRequest, node: Any) -> Iterator[tuple[TestClient, str]]:
    """A client and the base its Bundle entries name absolute URLs with."""
    h.seed(node)
    saved = node.settings
    node.settings = Settings(database_url=saved.database_url, data_dir=saved.data_dir,
                             base_url=request.param, pool_size=saved.pool_size)
    try:
        with TestClient(create_app(node, audit=False), base_url="http://testserver") as c:
            yield c, (request.param or "http://testserver/fhir/").rstrip("/")
    finally:
        node.settings = saved


def _backend(node: Any, scope: str) -> str:
    return system_token(node, scope, fhir_base=AUD)


def _clinician(node: Any, scope: list[str], launch: str = "p1") -> str:
    name = "dr-" + "-".join(s.replace("/", "_").replace("*", "all").replace(".", "_") for s in scope)
    h.user(node, kind="practitioner", username=name)
    app = h.app_client(node)
    svc = AuthService.for_node(node)
    with node.engine.begin() as conn:
        u = get_by_username(conn, name).with_launch(launch)
        return svc.tokens.issue(
            conn, issuer="http://testserver/auth", audience=AUD, client_id=app, kind="user", scope=scope,
            expires_in=300, user=u, organization_code=u.organization_code, roles=u.roles, patient_id=launch,
        ).token


def _get(c: TestClient, token: str, url: str) -> Any:
    return c.get(url, headers={"Authorization": f"Bearer {token}"})


def _post_form(c: TestClient, token: str, url: str, form: str) -> Any:
    return c.post(url, content=form, headers={"Authorization": f"Bearer {token}", "Content-Type": FORM})


def _batch(c: TestClient, token: str, *entries: tuple[str, str]) -> Any:
    bundle = {"resourceType": "Bundle", "type": "batch",
              "entry": [{"request": {"method": m, "url": u}} for m, u in entries]}
    return c.post("/fhir", content=orjson.dumps(bundle),
                  headers={"Authorization": f"Bearer {token}", "Content-Type": FHIR})


def _forbidden(r: Any, *needs: str) -> None:
    assert r.status_code == 403, r.text
    issue = r.json()["issue"][0]
    assert issue["code"] == "forbidden" and issue["details"]["coding"][0]["code"] == "HIE-2002", issue
    for need in needs:
        assert need in issue["diagnostics"], issue["diagnostics"]


def _ids(bundle: dict) -> set[str]:
    return {e["fullUrl"].rsplit("/", 2)[-2] + "/" + e["fullUrl"].rsplit("/", 1)[-1]
            for e in bundle.get("entry", []) if "fullUrl" in e}


# -- a backend token limited to system/Patient.rs -----------------------------------------------


def _refusals(base: str) -> list[tuple[str, Any]]:
    """(what, request) pairs that all touch Observation data; request(c, token) -> response."""
    return [
        ("batch HEAD read", lambda c, t: _batch(c, t, ("HEAD", "Observation/obs-p1"))),
        ("batch HEAD search", lambda c, t: _batch(c, t, ("HEAD", "Observation?subject=Patient/p1"))),
        ("batch GET absolute", lambda c, t: _batch(c, t, ("GET", f"{base}/Observation/obs-p1"))),
        ("batch HEAD absolute", lambda c, t: _batch(c, t, ("HEAD", f"{base}/Observation?status=final"))),
        ("batch GET _revinclude",
         lambda c, t: _batch(c, t, ("GET", f"{base}/Patient?_revinclude=Observation:subject"))),
        ("POST _search _revinclude", lambda c, t: _post_form(c, t, "/fhir/Patient/_search",
                                                              "_revinclude=Observation:subject")),
        ("POST _search _revinclude:iterate", lambda c, t: _post_form(c, t, "/fhir/Patient/_search",
                                                                      "_revinclude:iterate=Observation:subject")),
        ("POST _search _has", lambda c, t: _post_form(c, t, "/fhir/Patient/_search",
                                                       "_has:Observation:subject:status=final")),
        ("GET _has", lambda c, t: _get(c, t, "/fhir/Patient?_has:Observation:subject:status=final")),
        ("batch _has", lambda c, t: _batch(c, t, ("GET", "Patient?_has:Observation:subject:status=final"))),
        ("GET chain", lambda c, t: _get(c, t, "/fhir/Patient?link:Observation.status=final")),
        ("POST _search chain", lambda c, t: _post_form(c, t, "/fhir/Patient/_search", "organization.name=hosp")),
        ("$everything", lambda c, t: _get(c, t, "/fhir/Patient/p1/$everything")),
        ("batch $everything", lambda c, t: _batch(c, t, ("GET", f"{base}/Patient/p1/$everything"))),
        ("compartment *", lambda c, t: _get(c, t, "/fhir/Patient/p1/*")),
        ("compartment Observation", lambda c, t: _get(c, t, "/fhir/Patient/p1/Observation")),
    ]


@pytest.mark.parametrize("case", range(16))
def test_patient_only_token_is_refused_everything_that_touches_observations(env, node, case):
    c, base = env
    what, send = _refusals(base)[case]
    narrow = _backend(node, "system/Patient.rs")
    broad = _backend(node, "system/*.rs")
    r = send(c, narrow)
    # The diagnostics name what is missing (at most eight of it: a compartment lists more).
    needle = {"POST _search chain": "system/Organization.s", "$everything": "", "batch $everything": "",
              "compartment *": ""}.get(what, "system/Observation.")
    _forbidden(r, needle)
    ok = send(c, broad)
    assert ok.status_code == 200, (what, ok.text)


def test_the_patient_only_token_still_reads_patients_by_every_transport(env, node):
    c, base = env
    narrow = _backend(node, "system/Patient.rs")
    assert _get(c, narrow, "/fhir/Patient?gender=female").json()["total"] == 2
    assert _post_form(c, narrow, "/fhir/Patient/_search", "gender=female").json()["total"] == 2
    r = _batch(c, narrow, ("HEAD", f"{base}/Patient/p1"), ("GET", "Patient/p2"))
    assert r.status_code == 200, r.text
    head, get = r.json()["entry"]
    assert head["response"]["status"].startswith("200") and "resource" not in head
    assert get["resource"]["id"] == "p2"
    assert _get(c, narrow, "/fhir/Patient/p1/$everything?_type=Patient").status_code == 200


def test_a_chain_through_a_reference_to_any_type_needs_star(env, node):
    c, _ = env
    token = _backend(node, "system/Observation.rs system/Patient.rs")
    _forbidden(_get(c, token, "/fhir/Observation?focus.name=x"), "system/*.s")
    assert _get(c, token, "/fhir/Observation?subject:Patient.gender=female").json()["total"] == 2


def test_an_absolute_url_for_another_base_is_refused(env, node):
    c, base = env
    token = _backend(node, "system/*.rs")
    for url in ("https://elsewhere.example/fhir/Observation/obs-p1", base.rsplit("/", 1)[0] + "/other/Patient/p1"):
        r = _batch(c, token, ("GET", url))
        assert r.status_code == 400, r.text
        issue = r.json()["issue"][0]
        assert issue["details"]["coding"][0]["code"] == "HIE-1005"
        assert issue["expression"] == ["Bundle.entry[0].request.url"]


# -- a clinician with a launch patient, relying on patient/ scopes ---------------------------------


P2 = {"Patient/p2", "Observation/obs-p2"}
PATIENT_ONLY = ["user/Patient.rs", "patient/*.rs"]
OBSERVATION_ONLY = ["user/Observation.rs", "patient/*.rs"]


def _leaks(base: str) -> list[tuple[str, Any, Any, list[str]]]:
    """(what, request, what the answer shows of p2, the confined clinician's scopes): the
    clinician's ``user/`` scope covers the request's own type, a ``patient/`` scope the
    types its parameters (or entries) touch."""

    def searchset(r: Any) -> set[str]:
        if r.status_code == 404:
            return set()
        assert r.status_code == 200, r.text
        return _ids(r.json()) & P2

    def entry(r: Any) -> set[str]:
        assert r.status_code == 200, r.text
        e = r.json()["entry"][0]
        if not e["response"]["status"].startswith("200"):
            return set()
        res = e.get("resource")
        if res is None:  # HEAD: the status alone tells that the resource is there
            return {"Observation/obs-p2"}
        return _ids(res) & P2 if res["resourceType"] == "Bundle" else {f"{res['resourceType']}/{res['id']}"} & P2

    return [
        ("batch HEAD", lambda c, t: _batch(c, t, ("HEAD", f"{base}/Observation/obs-p2")), entry, PATIENT_ONLY),
        ("batch GET", lambda c, t: _batch(c, t, ("GET", f"{base}/Observation/obs-p2")), entry, PATIENT_ONLY),
        ("batch GET search", lambda c, t: _batch(c, t, ("GET", "Observation?status=final")), entry, PATIENT_ONLY),
        ("POST _search _revinclude", lambda c, t: _post_form(c, t, "/fhir/Patient/_search",
                                                              "_revinclude=Observation:subject"), searchset,
         PATIENT_ONLY),
        ("POST _search _has", lambda c, t: _post_form(c, t, "/fhir/Patient/_search",
                                                       "_has:Observation:subject:status=final"), searchset,
         PATIENT_ONLY),
        ("GET _has", lambda c, t: _get(c, t, "/fhir/Patient?_has:Observation:subject:status=final"), searchset,
         PATIENT_ONLY),
        ("GET chain", lambda c, t: _get(c, t, "/fhir/Observation?subject:Patient.gender=female"), searchset,
         OBSERVATION_ONLY),
        ("batch chain", lambda c, t: _batch(c, t, ("GET", f"{base}/Observation?subject:Patient.gender=female")),
         entry, OBSERVATION_ONLY),
        ("$everything", lambda c, t: _get(c, t, "/fhir/Patient/p2/$everything"), searchset, PATIENT_ONLY),
        ("compartment", lambda c, t: _get(c, t, "/fhir/Patient/p2/*"), searchset, PATIENT_ONLY),
    ]


@pytest.mark.parametrize("case", range(10))
def test_a_launch_patient_token_stays_confined(env, node, case):
    c, base = env
    what, send, shows, scopes = _leaks(base)[case]
    unconfined = _clinician(node, ["user/*.rs"])
    assert shows(send(c, unconfined)), what  # the control: p2's data is visible to the facility
    confined = _clinician(node, scopes)
    assert shows(send(c, confined)) == set(), what
    patient = _clinician(node, ["patient/*.rs"])
    assert shows(send(c, patient)) == set(), what


def test_the_confined_token_still_sees_its_own_patient(env, node):
    c, base = env
    confined = _clinician(node, ["user/Patient.rs", "patient/*.rs"])
    r = _post_form(c, confined, "/fhir/Patient/_search", "_revinclude=Observation:subject")
    assert _ids(r.json()) == {"Patient/p1", "Observation/obs-p1"}
    r = _batch(c, confined, ("HEAD", f"{base}/Observation/obs-p1"), ("HEAD", f"{base}/Observation/obs-p2"))
    own, other = r.json()["entry"]
    assert own["response"]["status"].startswith("200") and other["response"]["status"].startswith("404")
    assert _ids(_get(c, confined, "/fhir/Patient/p1/$everything").json()) == {"Patient/p1", "Observation/obs-p1"}


# -- the needs themselves, for the shapes the HTTP tests above do not send -------------------


@pytest.mark.parametrize(("method", "url", "form", "wanted"), [
    ("GET", "Patient?_has:Observation:subject:_has:Provenance:target:agent=Practitioner/x", None,
     {("Patient", "s"), ("Observation", "s"), ("Provenance", "s")}),
    ("GET", "Observation?subject:Patient.organization.name=x", None,
     {("Observation", "s"), ("Patient", "s"), ("Organization", "s")}),
    ("GET", "Patient?_has:Observation:subject:performer:Practitioner.name=x", None,
     {("Patient", "s"), ("Observation", "s"), ("Practitioner", "s")}),
    ("POST", "Observation/_search", "_include:iterate=Encounter:service-provider",
     {("Observation", "s"), ("Organization", "r")}),
    ("POST", "_search", "_type=Patient&_revinclude=*", {("Patient", "s"), ("*", "r")}),
    ("HEAD", "Observation?code=x", None, {("Observation", "s")}),
    ("GET", "Patient/p1/$everything", "_type=Condition", {("Patient", "r"), ("Condition", "r")}),
    ("GET", "Observation?focus.name=x", None, {("Observation", "s"), ("*", "s")}),
])
def test_needs_cover_every_type_the_parameters_touch(method, url, form, wanted):
    from urllib.parse import parse_qsl

    from hie.auth import enforce
    from hie.interactions.table import parse
    from hie.search.registry import SearchRegistry

    path, _, query = url.partition("?")
    parsed = parse(method, path, query, parse_qsl(form) if form else None)
    assert set(enforce.needs(parsed, SearchRegistry.load_default())) == wanted


def test_a_conditional_reference_in_a_transaction_needs_search_on_its_type(env, node):
    c, _ = env
    obs = {"resourceType": "Observation", "status": "final", "code": {"text": "BP"},
           "subject": {"reference": "Patient?_id=p1"}}
    bundle = orjson.dumps({"resourceType": "Bundle", "type": "transaction",
                           "entry": [{"resource": obs, "request": {"method": "POST", "url": "Observation"}}]})

    def send(scope: str) -> Any:
        return c.post("/fhir", content=bundle, headers={"Authorization": f"Bearer {_backend(node, scope)}",
                                                        "Content-Type": FHIR})

    _forbidden(send("system/Observation.c"), "system/Patient.s")
    r = send("system/Observation.c system/Patient.s")
    assert r.status_code == 200, r.text
    assert r.json()["entry"][0]["response"]["status"].startswith("201")
