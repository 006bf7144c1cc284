"""Who may write what (issue 11, findings 1, 2, 3 write side, 5, 6, 7), over the running app
with real tokens, on SQLite and PostgreSQL.

The region: hospital H (discloses and views), clinic B (both), a viewing-only facility V,
the region office (viewing; its staff member is the operator), an inactive facility and
a code U nobody registered. Patient p and patient q are the hospital's; p consented to
sharing with every facility. The authorization matrix (:data:`MATRIX`) runs every type group
x actor x interaction against a target of its own; the attack tests reproduce each finding
and show it refused; the oracle tests compare answers for hidden and free ids byte for byte.
Rules: hie/enforcement/writes.py, docs/security.md "Who may write what".
"""

from __future__ import annotations

import re
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from consent import builder
from hie.auth.registry import NETWORK_ROLE_EXT
from hie.auth.service import LOCAL_CLIENT_ID, AuthService, system_token
from hie.auth.users import add_user
from hie.enforcement.writes import PATIENT_SOURCE
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.identity.tables import identity_link
from hie.ingest import ingest_bundle
from hie.storage.db import write_tx
from hie.storage.tables import resource as R
from tests.identity.identity_fixtures import other_person, patient

H, B, V, OFFICE, INACTIVE, U = "1310000011", "1310000029", "1310000037", "1310000045", "1310000052", "1310000060"
BASE = "http://testserver/fhir"
FHIR = {"Content-Type": "application/fhir+json"}
PATCH = {"Content-Type": "application/json-patch+json"}
IDS = "urn:h1:target"  # identifier system of every target (conditional forms)


def _tag(code: str) -> dict[str, Any]:
    return {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": code}]}


def _org(oid: str, code: str, *, role: str = "both", active: bool = True) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": oid, "name": oid, "active": active,
            "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": role}],
            "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]}


def _obs(pid: str, **extra: Any) -> dict[str, Any]:
    return {"resourceType": "Observation", "status": "final", "code": {"text": "HIV-1 antibody"},
            "subject": {"reference": f"Patient/{pid}"}, **extra}


def _consent(cid: str | None, pid: str = "p", **kw: Any) -> dict[str, Any]:
    return builder.all_facilities(cid, f"Patient/{pid}", recorded_by="Organization/org-h",
                                  date_time="2026-01-10T10:00:00+09:00", **kw)


def _ident(value: str) -> list[dict[str, str]]:
    return [{"system": IDS, "value": value}]


# -- the region ----------------------------------------------------------------------------

GROUPS = ("clinical", "Consent", "registry", "conformance")
TYPE = {"clinical": "Observation", "Consent": "Consent", "registry": "Organization", "conformance": "ValueSet"}


def new_resource(group: str, name: str) -> dict[str, Any]:
    """A resource of ``group`` to create, about patient p where it is about a patient."""
    if group == "clinical":
        return _obs("p", identifier=_ident(name))
    if group == "Consent":
        return {**_consent(None), "identifier": _ident(name)}
    if group == "registry":
        return {"resourceType": "Organization", "name": name, "identifier": _ident(name)}
    return {"resourceType": "ValueSet", "status": "active", "name": "Target", "identifier": _ident(name)}


def target(group: str, name: str) -> dict[str, Any]:
    """A stored resource of ``group`` (id = identifier = ``name``), in the hospital's custody."""
    return {**new_resource(group, name), "id": name, "meta": _tag(H)}


def changed(group: str, res: dict[str, Any]) -> dict[str, Any]:
    key = {"clinical": "status", "Consent": "dateTime", "registry": "name", "conformance": "status"}[group]
    value = {"clinical": "amended", "Consent": "2026-02-01T10:00:00+09:00", "registry": "renamed",
             "conformance": "retired"}[group]
    return {**res, key: value}


def patch_ops(group: str) -> list[dict[str, Any]]:
    res = changed(group, {})
    ((key, value),) = res.items()
    return [{"op": "replace", "path": f"/{key}", "value": value}]


def put_all(node: Any, resources: list[dict[str, Any]]) -> None:
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="write-authz-test")


def region() -> list[dict[str, Any]]:
    return [
        _org("org-h", H), _org("org-b", B), _org("org-v", V, role="viewing"), _org("org-o", OFFICE, role="viewing"),
        _org("org-i", INACTIVE, active=False),
        {**patient("p", H, "p-001"), "meta": _tag(H)},
        {**other_person("q", H, "q-001"), "meta": _tag(H)},
        {**_obs("p", id="hiv-p", identifier=_ident("hiv-p")), "meta": _tag(H)},
        {**_obs("q", id="hiv-q"), "meta": _tag(H)},
        {**_consent("consent-all"), "meta": _tag(H)},
    ]


ACTORS = ("custodian facility", "other facility", "registrar (holding)", "registrar (not holding)", "operator",
          "patient", "other patient", "system")


#: actor -> (user kind, facility code, patient id, roles)
USERS: dict[str, tuple[str, str | None, str | None, list[str]]] = {
    "custodian facility": ("practitioner", H, None, []),
    "other facility": ("practitioner", B, None, []),
    "registrar (holding)": ("staff", H, None, ["registrar"]),
    "registrar (not holding)": ("staff", B, None, ["registrar"]),
    "operator": ("staff", OFFICE, None, ["operator"]),
    "patient": ("patient", None, "p", []),
    "other patient": ("patient", None, "q", []),
    "viewing facility": ("practitioner", V, None, []),
    "inactive facility": ("practitioner", INACTIVE, None, []),
    "unregistered facility": ("practitioner", U, None, []),
}


class Tokens(dict):  # type: ignore[type-arg]
    """Access tokens per actor, each user enrolled on first use (enrolment hashes passwords)."""

    def __init__(self, node: Any) -> None:
        super().__init__()
        self.node = node

    def __missing__(self, actor: str) -> str:
        node, svc = self.node, AuthService.for_node(self.node)
        if actor == "system":
            token = system_token(node, "system/*.cruds", fhir_base=BASE)
        else:
            kind, org, patient_id, roles = USERS[actor]
            with write_tx(node.engine) as conn:
                svc.ensure_local_client(conn)
                user = add_user(conn, svc.box, username=f"h1-{actor}", display_name=actor, kind=kind,
                                organization_code=org, patient_id=patient_id, roles=roles,
                                now_us=node.clock.now_us()).user
                scope = "patient/*.cruds" if kind == "patient" else "user/*.cruds"
                token = svc.tokens.issue(
                    conn, issuer=svc.issuer(BASE), audience=BASE, client_id=LOCAL_CLIENT_ID,
                    kind="patient" if kind == "patient" else "user", scope=[scope], expires_in=3600, user=user,
                    organization_code=org, patient_id=patient_id, roles=frozenset(roles)).token
        self[actor] = token
        return token


def tokens(node: Any) -> Tokens:
    return Tokens(node)


class Caller:
    def __init__(self, client: TestClient, token: str) -> None:
        self.c, self.h = client, {"Authorization": f"Bearer {token}"}

    def send(self, method: str, url: str, body: Any = None, headers: dict[str, str] | None = None) -> Any:
        content = None if body is None else orjson.dumps(body)
        return self.c.request(method, url, content=content,
                              headers={**self.h, **(FHIR if body is not None else {}), **(headers or {})})


@pytest.fixture
def world(node):
    put_all(node, region())
    toks = tokens(node)
    with TestClient(node.create_app(), base_url="http://testserver") as client:
        yield node, client, toks


def who(world: Any, actor: str) -> Caller:
    _node, client, toks = world
    return Caller(client, toks[actor])


def code_of(resp: Any) -> str:
    return resp.json()["issue"][0]["details"]["coding"][0]["code"]


def custodian(node: Any, res_type: str, res_id: str) -> str | None:
    with node.engine.connect() as conn:
        return conn.execute(select(R.c.custodian).where(R.c.res_type == res_type, R.c.res_id == res_id)).scalar()


def stored(node: Any, res_type: str, res_id: str) -> dict[str, Any] | None:
    with node.engine.connect() as conn:
        raw = conn.execute(select(R.c.content).where(R.c.res_type == res_type, R.c.res_id == res_id)).scalar()
    return orjson.loads(raw) if raw else None


# -- the authorization matrix --------------------------------------------------------------

OPS = ("create", "update", "patch", "delete", "cond-create", "cond-update", "cond-delete")
OK = ("201", "200", "200", "200", "201", "200", "200")
FACILITY_ON_OTHERS = ("201", "403:2004", "403:2004", "403:2004", "201", "403:2004", "403:2004")
REFUSED = ("403:2004",) * 7
OUTSIDE = ("403:2003",) * 7
UNSEEN_CONSENT = ("403:2004", "404", "404", "200", "403:2004", "403:2004", "200")
STRANGER = ("403:2003", "404", "404", "200", "403:2003", "403:2003", "200")

#: Expected answers, "status" or "status:HIE code", in the order of OPS. Conditional update
#: and delete match the target by identifier; a conditional update that matches nothing the
#: writer can see creates (and is judged as a create); a delete of what the writer cannot
#: see answers like a delete of nothing.
MATRIX: dict[tuple[str, str], tuple[str, ...]] = {
    ("clinical", "custodian facility"): OK,
    ("clinical", "other facility"): FACILITY_ON_OTHERS,
    ("clinical", "registrar (holding)"): OK,
    ("clinical", "registrar (not holding)"): FACILITY_ON_OTHERS,
    ("clinical", "operator"): ("403:2004", "200", "200", "200", "403:2004", "200", "200"),  # the office is viewing-only
    ("clinical", "patient"): ("201", "403:2004", "403:2004", "403:2004", "201", "403:2004", "403:2004"),
    ("clinical", "other patient"): STRANGER,
    ("clinical", "system"): OK,
    ("Consent", "custodian facility"): REFUSED,  # the recording facility, but no registrar
    ("Consent", "other facility"): UNSEEN_CONSENT,  # never sees a patient's Consents
    ("Consent", "registrar (holding)"): OK,
    ("Consent", "registrar (not holding)"): UNSEEN_CONSENT,
    ("Consent", "operator"): OK,
    ("Consent", "patient"): OK,
    ("Consent", "other patient"): STRANGER,
    ("Consent", "system"): OK,
    **{(g, a): REFUSED for g in ("registry", "conformance")
       for a in ("custodian facility", "other facility", "registrar (holding)", "registrar (not holding)")},
    **{(g, a): OUTSIDE for g in ("registry", "conformance") for a in ("patient", "other patient")},
    **{(g, a): OK for g in ("registry", "conformance") for a in ("operator", "system")},
}


def _slug(actor: str, op: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", f"{actor}-{op}").strip("-")


def run_cell(caller: Caller, group: str, actor: str, op: str) -> Any:
    rtype, name = TYPE[group], _slug(actor, op)
    query = f"identifier={IDS}|{name}"
    if op == "create":
        return caller.send("POST", f"/fhir/{rtype}", new_resource(group, f"new-{name}"))
    if op == "cond-create":
        return caller.send("POST", f"/fhir/{rtype}", new_resource(group, f"new-{name}"),
                           {"If-None-Exist": f"identifier={IDS}|new-{name}"})
    if op == "update":
        return caller.send("PUT", f"/fhir/{rtype}/{name}", changed(group, target(group, name)))
    if op == "patch":
        return caller.send("PATCH", f"/fhir/{rtype}/{name}", patch_ops(group), PATCH)
    if op == "delete":
        return caller.send("DELETE", f"/fhir/{rtype}/{name}")
    if op == "cond-update":
        body = changed(group, target(group, name))
        body.pop("id")
        return caller.send("PUT", f"/fhir/{rtype}?{query}", body)
    return caller.send("DELETE", f"/fhir/{rtype}?{query}")


def test_authorization_matrix(world):
    """Every type group x actor x interaction, with the answer in one table (MATRIX)."""
    node = world[0]
    assert set(MATRIX) == {(g, a) for g in GROUPS for a in ACTORS}
    put_all(node, [target(g, _slug(a, op)) for g in GROUPS for a in ACTORS for op in OPS if "create" not in op])
    wrong = []
    for (group, actor), expected in MATRIX.items():
        caller = who(world, actor)
        for op, want in zip(OPS, expected, strict=True):
            r = run_cell(caller, group, actor, op)
            got = str(r.status_code)
            if r.status_code == 403:
                got += ":" + code_of(r).removeprefix("HIE-")
            if got != want:
                wrong.append(f"{group} x {actor} x {op}: expected {want}, got {got} {r.text[:200]}")
    assert not wrong, "\n".join(wrong)
    # refused writes left their targets as they were
    assert stored(node, "Organization", _slug("other facility", "update"))["name"] == _slug("other facility", "update")
    assert stored(node, "Observation", _slug("patient", "delete")) is not None
    assert custodian(node, "Observation", _slug("operator", "update")) == H


def test_custody_recorded_at_creation(world):
    node = world[0]
    r = who(world, "other facility").send("POST", "/fhir/Observation", _obs("p"))
    assert r.status_code == 201 and custodian(node, "Observation", r.json()["id"]) == B
    r = who(world, "patient").send("POST", "/fhir/Observation", _obs("p"))
    assert r.status_code == 201 and custodian(node, "Observation", r.json()["id"]) == PATIENT_SOURCE
    oid = r.json()["id"]
    r = who(world, "patient").send("PUT", f"/fhir/Observation/{oid}", _obs("p", id=oid, status="amended"))
    assert r.status_code == 200 and custodian(node, "Observation", oid) == PATIENT_SOURCE
    r = who(world, "patient").send("POST", "/fhir/Consent", _consent(None))
    assert r.status_code == 201 and custodian(node, "Consent", r.json()["id"]) == PATIENT_SOURCE
    r = who(world, "registrar (holding)").send("POST", "/fhir/Consent", _consent(None))
    assert r.status_code == 201 and custodian(node, "Consent", r.json()["id"]) == H


# -- finding 1: Consent authorship -----------------------------------------------------------


def test_clinic_cannot_write_a_consent_for_a_patient_it_cannot_see(world):
    node = world[0]
    b = who(world, "registrar (not holding)")
    answers = []
    for pid in ("q", "no-such-patient"):  # hidden and nonexistent: the same refusal
        r = b.send("POST", "/fhir/Consent", _consent(None, pid))
        assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text
        answers.append(r)
    _same(*answers, "q", "no-such-patient")
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    with node.engine.connect() as conn:
        assert conn.execute(select(R.c.res_id).where(R.c.res_type == "Consent")).scalars().all() == ["consent-all"]


def test_look_alike_patient_does_not_make_a_holding_facility(world):
    """B registers a look-alike of the hospital's patient p, auto-link joins it to p's person,
    and B's registrar records a Consent on its own record: refused (an auto link is no holding)."""
    node = world[0]
    b = who(world, "other facility")
    r = b.send("POST", "/fhir/Patient", {k: v for k, v in patient("x", B, "b-001").items() if k != "id"})
    assert r.status_code == 201, r.text
    copy_id = r.json()["id"]
    with node.engine.connect() as conn:
        rows = dict(conn.execute(select(identity_link.c.patient_id, identity_link.c.method)
                                 .where(identity_link.c.patient_id == copy_id)).all())
    assert rows[copy_id] == "auto", rows
    r = who(world, "registrar (not holding)").send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, f"Patient/{copy_id}", ["Organization/org-b"], recorded_by="Organization/org-b"))
    assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text


def test_clinic_cannot_rewrite_a_consent_to_add_a_sensitive_permit(world):
    node = world[0]
    c = stored(node, "Consent", "consent-all")
    psy = {**c, "provision": {**c["provision"], "securityLabel": [
        {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}]}}
    for actor in ("other facility", "registrar (not holding)"):
        r = who(world, actor).send("PUT", "/fhir/Consent/consent-all", psy)
        assert r.status_code == 404, r.text  # a viewer never sees the Consent: like a free id
    r = who(world, "custodian facility").send("PUT", "/fhir/Consent/consent-all", psy)
    assert r.status_code == 403 and code_of(r) == "HIE-2004"  # staff without the registrar role
    assert stored(node, "Consent", "consent-all")["meta"]["versionId"] == "1"


def test_consent_author_is_recorded_and_audited(node):
    from hie.audit.recorder import AuditRecorder

    put_all(node, region())
    toks = tokens(node)
    rec = AuditRecorder(node, interval=None)
    with TestClient(_app(node, rec), base_url="http://testserver") as client:
        r = Caller(client, toks["registrar (holding)"]).send("POST", "/fhir/Consent", _consent(None))
        assert r.status_code == 201, r.text
    rec.flush()
    cid = r.json()["id"]
    assert custodian(node, "Consent", cid) == H
    with node.engine.connect() as conn:
        events = [orjson.loads(x) for x in conn.execute(
            select(R.c.content).where(R.c.res_type == "AuditEvent")).scalars()]
    (ev,) = [e for e in events if any(en.get("what", {}).get("reference") == f"Consent/{cid}"
                                      for en in e.get("entity", []))]
    assert ev["subtype"][0]["code"] == "create" and ev["outcome"] == "0"
    facility = [a for a in ev["agent"] if a["type"]["coding"][0]["code"] == "PROV"]
    assert facility[0]["who"]["identifier"]["value"] == H
    roles = [c["code"] for a in ev["agent"] for r_ in a.get("role", []) for c in r_["coding"]]
    assert "registrar" in roles


def _app(node: Any, rec: Any) -> Any:
    from hie.api.app import create_app

    return create_app(node, audit=rec)


# -- finding 2: custody does not follow the writer --------------------------------------------


def test_viewer_put_keeps_custody_and_access_ends_with_revocation(world):
    node = world[0]
    b = who(world, "other facility")
    hiv = stored(node, "Observation", "hiv-p")
    assert b.send("GET", "/fhir/Observation/hiv-p").status_code == 200  # consented
    r = b.send("PUT", "/fhir/Observation/hiv-p", {**hiv, "status": "amended"})
    assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text
    assert "Custody is fixed at creation" in r.json()["issue"][0]["diagnostics"]
    assert custodian(node, "Observation", "hiv-p") == H
    r = b.send("DELETE", "/fhir/Observation/hiv-p")
    assert r.status_code == 403 and stored(node, "Observation", "hiv-p") is not None
    # the patient revokes: B loses access; the hospital keeps its own record
    consent = stored(node, "Consent", "consent-all")
    r = who(world, "patient").send("PUT", "/fhir/Consent/consent-all", {**consent, "status": "inactive"})
    assert r.status_code == 200, r.text
    assert b.send("GET", "/fhir/Observation/hiv-p").status_code == 404
    assert who(world, "custodian facility").send("GET", "/fhir/Observation/hiv-p").status_code == 200
    assert custodian(node, "Consent", "consent-all") == H  # still the recording facility's


def test_custodian_tag_naming_another_facility_is_refused(world):
    node = world[0]
    b = who(world, "other facility")
    r = b.send("POST", "/fhir/Observation", {**_obs("p"), "meta": _tag(H)})
    assert r.status_code == 403 and code_of(r) == "HIE-2005", r.text
    assert r.json()["issue"][0]["expression"] == ["Observation.meta.tag"]
    mine = b.send("POST", "/fhir/Observation", {**_obs("p"), "meta": _tag(B)})
    assert mine.status_code == 201
    oid = mine.json()["id"]
    r = b.send("PUT", f"/fhir/Observation/{oid}", {**_obs("p", id=oid), "meta": _tag(H)})
    assert r.status_code == 403 and code_of(r) == "HIE-2005"
    assert custodian(node, "Observation", oid) == B
    r = who(world, "custodian facility").send("PUT", "/fhir/Observation/hiv-p",
                                               {**stored(node, "Observation", "hiv-p"), "meta": _tag(B)})
    assert r.status_code == 403 and code_of(r) == "HIE-2005"


def test_patient_editing_their_phone_keeps_the_hospitals_custody(world):
    node = world[0]
    mine = stored(node, "Patient", "p")
    r = who(world, "patient").send("PUT", "/fhir/Patient/p", {**mine, "telecom": [{"system": "phone",
                                                                                 "value": "080-9999-0000"}]})
    assert r.status_code == 200, r.text
    assert custodian(node, "Patient", "p") == H
    assert stored(node, "Patient", "p")["telecom"][0]["value"] == "080-9999-0000"


# -- finding 3 (write side): a patient cannot take over another person's record ---------------


def test_patient_cannot_copy_another_persons_demographics(world):
    node = world[0]
    victim = stored(node, "Patient", "q")
    with node.engine.connect() as conn:
        key_before = conn.execute(select(R.c.patient_key).where(R.c.res_type == "Patient", R.c.res_id == "p")).scalar()
    mine = stored(node, "Patient", "p")
    stolen = {**mine, "name": victim["name"], "birthDate": victim["birthDate"], "address": victim["address"]}
    r = who(world, "patient").send("PUT", "/fhir/Patient/p", stolen)
    assert r.status_code == 403 and code_of(r) == "HIE-2006", r.text
    assert r.json()["issue"][0]["expression"] == ["Patient.birthDate"]
    r = who(world, "patient").send("PATCH", "/fhir/Patient/p", [{"op": "replace", "path": "/name",
                                                                 "value": victim["name"]}], PATCH)
    assert r.status_code == 403 and r.json()["issue"][0]["expression"] == ["Patient.name"]
    assert stored(node, "Patient", "p")["name"] == mine["name"]
    with node.engine.connect() as conn:
        assert conn.execute(select(R.c.patient_key).where(R.c.res_type == "Patient", R.c.res_id == "p")
                            ).scalar() == key_before
    assert who(world, "patient").send("GET", "/fhir/Observation/hiv-q").status_code == 404


# -- finding 5: the registry is the operator's ---------------------------------------------------


def test_facilities_cannot_edit_the_registry_or_search_parameters(world):
    node = world[0]
    b = who(world, "other facility")
    org = stored(node, "Organization", "org-v")
    r = b.send("PUT", "/fhir/Organization/org-v", {**org, "identifier": [
        {"system": MEDICAL_INSTITUTION_SYSTEM, "value": B}]})
    assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text
    sp = {"resourceType": "SearchParameter", "url": "http://example.org/sp/x", "name": "x", "status": "active",
          "description": "x", "code": "identifier", "base": ["Patient"], "type": "token",
          "expression": "Patient.gender"}
    r = b.send("POST", "/fhir/SearchParameter", sp)
    assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text
    assert stored(node, "Organization", "org-v")["identifier"][0]["value"] == V
    r = who(world, "operator").send("POST", "/fhir/Organization",
                                    {k: v for k, v in _org("x", "1310000094").items() if k != "id"})
    assert r.status_code == 201, r.text


# -- finding 7: network roles on writes ---------------------------------------------------------


@pytest.mark.parametrize("actor,why", [("viewing facility", "viewing only"),
                                        ("inactive facility", "not a registered, active facility"),
                                        ("unregistered facility", "not a registered, active facility")])
def test_facility_without_disclosing_role_cannot_write_clinical_data(world, actor, why):
    r = who(world, actor).send("POST", "/fhir/Observation", _obs("p"))
    assert r.status_code == 403 and code_of(r) == "HIE-2004", r.text
    assert why in r.json()["issue"][0]["diagnostics"]


# -- finding 6: no existence oracle for client-assigned ids ---------------------------------------


def _same(a: Any, b: Any, *ids: str) -> None:
    """Status and body identical once the ids named are blanked."""
    def norm(resp: Any) -> tuple[int, str]:
        text = resp.text
        for i in ids:
            text = text.replace(i, "<id>")
        return resp.status_code, text
    assert norm(a) == norm(b)


def test_hidden_and_free_ids_answer_alike(world):
    b = who(world, "other facility")
    hidden, free = "hiv-q", "free-id-1"  # hiv-q exists (custody H, no consent for q)
    for method, body, headers in (
        ("PUT", lambda i: _obs("p", id=i), None),
        ("PATCH", lambda i: [{"op": "replace", "path": "/status", "value": "amended"}], PATCH),
    ):
        r1 = b.send(method, f"/fhir/Observation/{hidden}", body(hidden), headers)
        r2 = b.send(method, f"/fhir/Observation/{free}", body(free), headers)
        assert r1.status_code == 404, r1.text
        _same(r1, r2, hidden, free)
    # conditional update with the id in the body, conditional patch and delete by a hidden match
    r1 = b.send("PUT", "/fhir/Observation?identifier=urn:none|x", _obs("p", id=hidden))
    r2 = b.send("PUT", "/fhir/Observation?identifier=urn:none|x", _obs("p", id=free))
    assert r1.status_code == 404
    _same(r1, r2, hidden, free)
    put_all(world[0], [{**_obs("q", id="hiv-q2", identifier=_ident("secret")), "meta": _tag(H)}])
    for method, body, headers in (("PATCH", [{"op": "replace", "path": "/status", "value": "amended"}], PATCH),
                                  ("DELETE", None, None)):
        r1 = b.send(method, f"/fhir/Observation?identifier={IDS}|secret", body, headers)
        r2 = b.send(method, f"/fhir/Observation?identifier={IDS}|nothing", body, headers)
        _same(r1, r2, "secret", "nothing")
    # If-None-Exist matching a hidden resource creates, as when nothing matches
    r1 = b.send("POST", "/fhir/Observation", _obs("p"), {"If-None-Exist": f"identifier={IDS}|secret"})
    assert r1.status_code == 201
    assert stored(world[0], "Observation", "hiv-q2")["meta"]["versionId"] == "1"


def test_transaction_and_batch_answer_hidden_like_free(world):
    b = who(world, "other facility")

    def tx(btype: str, rid: str) -> Any:
        return b.send("POST", "/fhir", {"resourceType": "Bundle", "type": btype, "entry": [
            {"resource": _obs("p", id=rid), "request": {"method": "PUT", "url": f"Observation/{rid}"}}]})

    for btype in ("transaction", "batch"):
        r1, r2 = tx(btype, "hiv-q"), tx(btype, "free-id-2")
        _same(r1, r2, "hiv-q", "free-id-2")
        status = r1.status_code if btype == "transaction" else int(r1.json()["entry"][0]["response"]["status"][:3])
        assert status == 404, r1.text
    # a transaction reference to a hidden resource answers like one to a nonexistent one
    def ref(rid: str) -> Any:
        return b.send("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": {**_obs("p"), "hasMember": [{"reference": f"Observation/{rid}"}]},
             "request": {"method": "POST", "url": "Observation"}}]})
    r1, r2 = ref("hiv-q"), ref("free-id-3")
    assert r1.status_code == 400
    _same(r1, r2, "hiv-q", "free-id-3")
    # the conditional update entry that matches nothing creates, in a transaction too
    r = b.send("POST", "/fhir", {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": _obs("p"), "request": {"method": "PUT", "url": f"Observation?identifier={IDS}|none"}}]})
    assert r.status_code == 200 and r.json()["entry"][0]["response"]["status"].startswith("201"), r.text


def test_operator_and_system_may_update_as_create(world):
    node = world[0]
    r = who(world, "operator").send("PUT", "/fhir/Organization/org-new", {"resourceType": "Organization",
                                                                         "id": "org-new", "name": "new"})
    assert r.status_code == 201, r.text
    r = who(world, "system").send("PUT", "/fhir/Observation/sys-obs", {**_obs("p", id="sys-obs"), "meta": _tag(B)})
    assert r.status_code == 201 and custodian(node, "Observation", "sys-obs") == B
    r = who(world, "custodian facility").send("PUT", "/fhir/Observation/h-obs", _obs("p", id="h-obs"))
    assert r.status_code == 404
    caps = who(world, "system").send("GET", "/fhir/metadata").json()
    assert not any(res.get("updateCreate") for res in caps["rest"][0]["resource"])
