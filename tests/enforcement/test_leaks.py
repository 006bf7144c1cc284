"""Leak test suite over the running application (issue: consent enforcement, acceptance 2).

For each consent state of patient p1, viewers at facility A, facility B, the disclosing
facility D, and the patient p1 probe every path a query can take: read, vread, instance /
type / system history, type and system search, `_summary=count`, `_total`, chained
parameters, `_has`, `_include`, `_revinclude` (with `:iterate`), compartment search,
`$everything`, paging links, batch GET entries, POST `_search`, and conditional create and
update. Nothing hidden may appear anywhere in what comes back (bodies, ids, includes,
totals, history entries, paging links, error texts), and "hidden" must answer exactly like
"does not exist".

The set of rows each viewer may see comes from the storage predicate, which
``test_sql_matches_reference`` proves equal to the pure consent semantics.
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consent import builder
from hie.auth.service import LOCAL_CLIENT_ID, AuthService
from hie.auth.users import add_user
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.ingest import ingest_bundle
from hie.principal import Principal
from hie.storage.db import write_tx
from hie.storage.tables import resource

D, A, B = "1110000011", "1110000029", "1110000052"
ORGS = {"leakorg-d": D, "leakorg-a": A, "leakorg-b": B}
FHIR = {"Content-Type": "application/fhir+json"}
LAB = {"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "laboratory"}
LOINC_A1C = "http://loinc.org|4548-4"

PROBES = {"count": 0}


def _meta(custodian: str, *labels: str) -> dict[str, Any]:
    m: dict[str, Any] = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": custodian}]}
    if labels:
        m["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c} for c in labels]
    return m


def region() -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = [
        {"resourceType": "Organization", "id": oid, "name": oid,
         "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]} for oid, code in ORGS.items()]
    out += [
        {"resourceType": "Patient", "id": "leakpat-1", "meta": _meta(D), "gender": "male", "birthDate": "1950-04-12",
         "identifier": [{"system": "urn:oid:1.2.392.100495.20.3.51.11110000011", "value": "leakmrn-1"}],
         "name": [{"family": "漏洩", "given": ["太郎"]}]},
        {"resourceType": "Patient", "id": "leakpat-2", "meta": _meta(B), "gender": "female",
         "name": [{"family": "別人", "given": ["花子"]}]},
    ]
    for i, (when, custodian, labels) in enumerate([
        ("2026-10-01T09:00:00+09:00", D, ()), ("2026-11-01T09:00:00+09:00", D, ()),
        ("2026-11-02T09:00:00+09:00", D, ("PSY",)), ("2026-11-03T09:00:00+09:00", A, ())]):
        out.append({"resourceType": "Observation", "id": f"leakobs-{i}", "meta": _meta(custodian, *labels),
                    "status": "final", "category": [{"coding": [LAB]}],
                    "identifier": [{"system": "urn:leak", "value": f"leakident-{i}"}],
                    "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                    "subject": {"reference": "Patient/leakpat-1"}, "effectiveDateTime": when,
                    "performer": [{"reference": "Organization/leakorg-d"}],
                    "valueQuantity": {"value": 7 + i, "unit": "%"}})
    out.append({"resourceType": "Condition", "id": "leakcond-1", "meta": _meta(D),
                "code": {"text": "高血圧"}, "subject": {"reference": "Patient/leakpat-1"},
                "onsetDateTime": "2020-01-01",
                "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical",
                                               "code": "active"}]}})
    out.append({"resourceType": "Provenance", "id": "leakprov-1", "meta": _meta(D),
                "target": [{"reference": "Observation/leakobs-0"}], "recorded": "2026-10-01T10:00:00+09:00",
                "agent": [{"who": {"reference": "Organization/leakorg-d"}}]})
    out.append({"resourceType": "Observation", "id": "leakobs-p2", "meta": _meta(B), "status": "final",
                "category": [{"coding": [LAB]}], "code": {"coding": [{"system": "http://loinc.org", "code": "4548-4"}]},
                "subject": {"reference": "Patient/leakpat-2"}, "effectiveDateTime": "2026-11-01T09:00:00+09:00"})
    return out


def consent_state(name: str) -> list[dict[str, Any]]:
    P = "Patient/leakpat-1"
    kw = {"recorded_by": "Organization/leakorg-d", "date_time": "2026-01-10T10:00:00+09:00"}
    return {
        "none": [],
        "a-only": [builder.chosen_facilities("leakconsent-1", P, ["Organization/leakorg-a"], **kw)],
        "all-except-a": [builder.all_facilities("leakconsent-1", P, exclude=["Organization/leakorg-a"], **kw)],
        "labs-excluded": [builder.consent("leakconsent-1", P, builder.provision("permit", provisions=[
            builder.provision("deny", classes=["lab"])]), **kw)],
        "expired": [builder.chosen_facilities("leakconsent-1", P, ["Organization/leakorg-a", "Organization/leakorg-b"],
                                              provision_kw={"in_force": builder.period("2025-01-01", "2025-12-31")},
                                              **kw)],
        "revoked": [builder.chosen_facilities("leakconsent-1", P, ["Organization/leakorg-a", "Organization/leakorg-b"],
                                              status="inactive", **kw)],
        "sensitive-denied": [builder.consent("leakconsent-1", P, builder.provision("permit", provisions=[
            builder.provision("deny", labels=["PSY"])]), **kw)],
    }[name]


STATES = ["none", "a-only", "all-except-a", "labs-excluded", "expired", "revoked", "sensitive-denied"]


def put_all(node: Any, resources: list[dict[str, Any]]) -> None:
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="leak-test")


def tokens(node: Any) -> dict[str, str]:
    svc = AuthService.for_node(node)
    base = "http://testserver/fhir"
    out = {}
    with write_tx(node.engine) as conn:  # BEGIN IMMEDIATE on SQLite: the audit flusher writes too
        svc.ensure_local_client(conn)
        for name, kind, org, patient, scope in (
            ("facility-a", "practitioner", A, None, "user/*.rs"),
            ("facility-b", "practitioner", B, None, "user/*.rs"),
            ("facility-b-writer", "practitioner", B, None, "user/*.cruds"),
            ("disclosing-d", "practitioner", D, None, "user/*.rs"),
            ("patient", "patient", None, "leakpat-1", "patient/*.rs"),
        ):
            enrol = add_user(conn, svc.box, username=f"leak-{name}", display_name=name, kind=kind,
                             organization_code=org, patient_id=patient, now_us=node.clock.now_us())
            user = enrol.user
            out[name] = svc.tokens.issue(conn, issuer=svc.issuer(base), audience=base, client_id=LOCAL_CLIENT_ID,
                                         kind="patient" if patient else "user", scope=[scope], expires_in=3600,
                                         user=user, organization_code=org, patient_id=patient).token
    return out


def allowed_ids(node: Any, viewer: str) -> set[str]:
    """What the storage predicate lets this viewer see (proven against the reference)."""
    principal = {
        "facility-a": Principal(kind="user", name="a", user_id="x", organization_id=A),
        "facility-b": Principal(kind="user", name="b", user_id="x", organization_id=B),
        "disclosing-d": Principal(kind="user", name="d", user_id="x", organization_id=D),
        "patient": Principal(kind="patient", name="p", user_id="x", patient_id="leakpat-1"),
    }[viewer]
    with node.context(principal, write=False) as ctx:
        rows = ctx.repo.conn.execute(select(resource.c.res_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), ctx.access(resource))).all()
    return {f"{t}/{i}" for t, i in rows}


ID_RE = re.compile(r"\bleak[a-z]+-[0-9a-z]+\b")


class Prober:
    def __init__(self, client: TestClient, token: str, hidden: set[str], allowed: set[str],
                 node: Any = None, viewer: str | None = None) -> None:
        self.node, self.viewer = node, viewer
        self.c = client
        self.h = {"Authorization": f"Bearer {token}"}
        self.hidden_ids = {h.split("/", 1)[1] for h in hidden}
        self.allowed = allowed

    def _check(self, resp: Any, url: str) -> Any:
        """What the answer reveals: entry identities (fullUrl, resource type/id), links and
        error texts may not name a hidden resource. (References inside a resource the viewer
        may see are part of that consented content.)"""
        PROBES["count"] += 1
        echoed = set(ID_RE.findall(url))
        body = orjson.loads(resp.text) if resp.text else None
        if not isinstance(body, dict):
            return body
        self._scan(body, echoed, url)
        return body

    def _scan(self, body: dict[str, Any], echoed: set[str], url: str) -> None:
        rtype = body.get("resourceType")
        if rtype == "OperationOutcome":
            leaked = set(ID_RE.findall(orjson.dumps(body).decode())) & self.hidden_ids - echoed
            assert not leaked, f"{url}: error text names hidden {leaked}"
        elif rtype == "Bundle":
            for link in body.get("link", []):
                leaked = set(ID_RE.findall(link["url"])) & self.hidden_ids - echoed
                assert not leaked, f"{url}: link names hidden {leaked}"
            for e in body.get("entry", []):
                for where in (e.get("fullUrl", ""), (e.get("response") or {}).get("location", "")):
                    leaked = set(ID_RE.findall(where)) & self.hidden_ids
                    assert not leaked, f"{url}: entry names hidden {leaked}"
                res = e.get("resource")
                if isinstance(res, dict):
                    self._scan(res, echoed, url)
                outcome = (e.get("response") or {}).get("outcome")
                if isinstance(outcome, dict):
                    self._scan(outcome, echoed, url)
        elif "id" in body:
            assert body["id"] not in self.hidden_ids, f"{url}: returned hidden {rtype}/{body['id']}"

    def get(self, url: str, **kw: Any) -> tuple[int, Any]:
        resp = self.c.get(url, headers=self.h, **kw)
        return resp.status_code, self._check(resp, url)

    def send(self, method: str, url: str, body: Any, headers: dict[str, str] | None = None) -> tuple[int, Any]:
        resp = self.c.request(method, url, content=orjson.dumps(body), headers={**self.h, **FHIR, **(headers or {})})
        # ids the caller itself sent (e.g. batch entry URLs) may be echoed in error texts
        return resp.status_code, self._check(resp, url + " " + orjson.dumps(body).decode())


def subset(p: Prober, got: set[str]) -> bool:
    """``got`` holds only rows the viewer may see. AuditEvents are written while the suite
    runs (one per request), so they are judged by the predicate at the time they show up."""
    extra = got - p.allowed
    if extra and all(e.startswith("AuditEvent/") for e in extra) and p.node is not None:
        return extra <= allowed_ids(p.node, p.viewer)
    return not extra


def entries_of(bundle: Any, mode: str | None = None) -> set[str]:
    out = set()
    for e in bundle.get("entry", []):
        if mode and e.get("search", {}).get("mode") != mode:
            continue
        r = e.get("resource")
        if r and r.get("resourceType") not in ("OperationOutcome",):
            out.add(f"{r['resourceType']}/{r['id']}")
    return out


def follow_pages(p: Prober, url: str) -> tuple[set[str], int | None]:
    seen: set[str] = set()
    status, body = p.get(url)
    assert status == 200
    total = body.get("total")
    while True:
        seen |= entries_of(body, "match")
        nxt = next((lnk["url"] for lnk in body.get("link", []) if lnk["relation"] == "next"), None)
        if not nxt:
            return seen, total
        status, body = p.get(nxt.replace("http://testserver", ""))
        assert status == 200


def probe_everything(node: Any, p: Prober, viewer: str) -> None:
    allowed = p.allowed  # hidden ids are checked by every p.get
    all_ids = [f"{r['resourceType']}/{r['id']}" for r in region()]
    missing_text = None
    for ref in ["Observation/leakobs-nonexistent", *all_ids]:
        rtype, rid = ref.split("/")
        st, body = p.get(f"/fhir/{ref}")
        if ref in allowed:
            assert st == 200, (viewer, ref, st)
        else:
            assert st == 404, (viewer, ref, st)
            # hidden answers exactly like absent: same status, code and text (but for the id)
            issue = body["issue"][0]
            text = (issue["code"], issue["details"]["coding"][0]["code"],
                    issue["diagnostics"].replace(f"{rtype}/{rid}", "<ref>"))
            missing_text = missing_text or text
            assert text == missing_text, (viewer, ref, text, missing_text)
        st, _ = p.get(f"/fhir/{ref}/_history/1")
        assert st == (200 if ref in allowed else 404), (viewer, ref, "vread", st)
        st, body = p.get(f"/fhir/{ref}/_history")
        assert st == (200 if ref in allowed else 404), (viewer, ref, "history", st)

    visible_obs = {i for i in allowed if i.startswith("Observation/")}
    # type and system history: entries and totals only of visible versions
    st, body = p.get("/fhir/Observation/_history")
    assert subset(p, entries_of(body)) and body["total"] == len(visible_obs)
    st, body = p.get("/fhir/_history?_count=500")
    assert subset(p, entries_of(body)), (viewer, entries_of(body) - allowed)

    # searches, totals, counts
    for url in ("/fhir/Observation?subject=Patient/leakpat-1", "/fhir/Observation?code=" + LOINC_A1C,
                "/fhir/Observation?patient.identifier=urn:oid:1.2.392.100495.20.3.51.11110000011|leakmrn-1",
                "/fhir/Observation?subject:Patient.name=漏洩", "/fhir/Observation?_total=accurate",
                "/fhir/Observation?identifier=urn:leak|leakident-2"):
        st, body = p.get(url)
        assert st == 200, (url, body)
        got = entries_of(body, "match")
        assert got <= allowed, (viewer, url, got - allowed)
        assert body["total"] == len(got), (viewer, url)
        st, cbody = p.get(url + ("&" if "?" in url else "?") + "_summary=count")
        assert cbody["total"] == len(got) and not cbody.get("entry"), (viewer, url)
    st, body = p.get("/fhir/Observation?subject=Patient/leakpat-1")
    p1_obs = {i for i in visible_obs if i != "Observation/leakobs-p2"}
    assert entries_of(body, "match") == p1_obs, (viewer, entries_of(body, "match"), p1_obs)
    # _has: the Patient appears only if it is visible and has a visible matching Observation
    st, body = p.get("/fhir/Patient?_has:Observation:subject:code=" + LOINC_A1C)
    expect = {"Patient/leakpat-1"} if "Patient/leakpat-1" in allowed and p1_obs else set()
    if "Patient/leakpat-2" in allowed and "Observation/leakobs-p2" in allowed:
        expect.add("Patient/leakpat-2")
    assert entries_of(body, "match") == expect, (viewer, entries_of(body))
    # includes and revincludes (with :iterate)
    for url in ("/fhir/Observation?_include=Observation:subject&_include=Observation:performer",
                "/fhir/Patient?_revinclude=Observation:subject&_revinclude:iterate=Provenance:target",
                "/fhir/Observation?_revinclude=Provenance:target",
                "/fhir/Condition?_include=Condition:subject"):
        st, body = p.get(url)
        assert st == 200 and subset(p, entries_of(body)), (viewer, url, entries_of(body) - allowed)
    # paging: follow every next link; nothing hidden, totals consistent
    seen, total = follow_pages(p, "/fhir/Observation?_count=1&_sort=date")
    assert seen == visible_obs and total == len(visible_obs), (viewer, seen, visible_obs)
    # compartment and $everything
    st, body = p.get("/fhir/Patient/leakpat-1/Observation")
    if st == 200:
        assert subset(p, entries_of(body))
    else:
        assert st == 404
    st, body = p.get("/fhir/Patient/leakpat-1/$everything")
    if "Patient/leakpat-1" in allowed:
        assert st == 200 and subset(p, entries_of(body)) and entries_of(body) >= p1_obs | {"Patient/leakpat-1"}
    else:
        assert st == 404
    # POST _search
    resp = p.c.post("/fhir/Observation/_search", content="subject=Patient/leakpat-1",
                    headers={**p.h, "Content-Type": "application/x-www-form-urlencoded"})
    body = p._check(resp, "/fhir/Observation/_search?subject=Patient/leakpat-1")
    assert entries_of(body, "match") == p1_obs, (viewer,)
    # batch with GET entries answers exactly like the direct reads
    st, body = p.send("POST", "/fhir", {"resourceType": "Bundle", "type": "batch", "entry": [
        {"request": {"method": "GET", "url": ref}} for ref in all_ids]})
    for ref, e in zip(all_ids, body["entry"], strict=True):
        assert e["response"]["status"].startswith("200" if ref in allowed else "404"), (viewer, ref)


@pytest.mark.parametrize("state", STATES)
def test_nothing_hidden_leaks_on_any_path(node, state):
    put_all(node, region())
    if consent_state(state):
        put_all(node, consent_state(state))
    toks = tokens(node)
    everything_ids = ({f"{r['resourceType']}/{r['id']}" for r in region()}
                      | {f"Consent/{c['id']}" for c in consent_state(state)})
    with TestClient(node.create_app(), base_url="http://testserver") as client:
        for viewer in ("facility-a", "facility-b", "disclosing-d", "patient"):
            allowed = allowed_ids(node, viewer)
            hidden = everything_ids - allowed
            probe_everything(node, Prober(client, toks[viewer], hidden, allowed, node, viewer), viewer)
    print(f"\nleak probes so far: {PROBES['count']}")


def test_expected_visibility_shape(node):
    """Sanity: the states really differ (the suite is not vacuous)."""
    put_all(node, region())
    assert "Observation/leakobs-0" not in allowed_ids(node, "facility-a")
    put_all(node, consent_state("a-only"))
    a = allowed_ids(node, "facility-a")
    assert {"Observation/leakobs-0", "Observation/leakobs-1", "Patient/leakpat-1"} <= a
    assert "Observation/leakobs-2" not in a  # PSY-labelled
    assert "Observation/leakobs-0" not in allowed_ids(node, "facility-b")
    assert "Observation/leakobs-0" in allowed_ids(node, "disclosing-d")


def test_conditional_create_does_not_reveal_hidden_matches(node):
    put_all(node, region())
    toks = tokens(node)
    with TestClient(node.create_app(), base_url="http://testserver") as client:
        h = {"Authorization": f"Bearer {toks['facility-b-writer']}", **FHIR}
        # as B, leakobs-0 (identifier leakident-0) is hidden: a conditional create must create
        obs = {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
               "identifier": [{"system": "urn:leak", "value": "leakident-0"}]}
        r = client.post("/fhir/Observation", content=orjson.dumps(obs),
                        headers={**h, "If-None-Exist": "identifier=urn:leak|leakident-0"})
        assert r.status_code == 201 and "leakobs-0" not in r.text
        # and a conditional update creates too, never touching the hidden one
        r = client.put("/fhir/Observation?identifier=urn:leak|leakident-1", content=orjson.dumps(obs), headers=h)
        assert r.status_code == 201 and "leakobs-1" not in r.text
    with node.engine.connect() as conn:
        v = conn.execute(select(resource.c.version_id).where(resource.c.res_id == "leakobs-1")).scalar_one()
    assert v == 1
