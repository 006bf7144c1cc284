"""A facility-recorded Consent grants only while that facility holds the person (issue 11,
H1 finding W2-1), over the running app with real tokens, on SQLite and PostgreSQL.

The region is that of tests/enforcement/test_write_authz.py: hospital H (patients p and q;
p consented to every facility, q to nobody), clinic B, the region office (the operator).
The attack: B registers a patient z of its own, B's registrar records a Consent on z naming
B, B edits z into a look-alike of q, matching auto-links z into q's person and the Consent
moves along. The Consent must not grant B anything about q while B's only record is linked
by an auto link; a counter link by the operator makes it effective, an unlink ends it again.
Patient-authored Consents are unaffected. Rules: hie/enforcement/grants.py (holding),
hie/identity/linkage.py (listeners after the links are set), docs/consent-profile.md.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import select

from consent import builder
from hie.auth.service import LOCAL_CLIENT_ID, AuthService
from hie.auth.users import add_user
from hie.enforcement.tables import consent_grant as G
from hie.identity.tables import identity_link
from hie.storage.db import write_tx
from hie.storage.tables import resource as R
from tests.enforcement.test_write_authz import BASE, B, H, Caller, _org, put_all, who, world  # noqa: F401
from tests.identity.identity_fixtures import other_person, patient

D = "1310000078"  # a disclosing-only facility (it may not view others' records)


def _unrelated(number: str) -> dict[str, Any]:
    """A Patient of clinic B that matches nobody in the region (its own person)."""
    res = patient("x", B, number, family="無関係", family_kana="ムカンケイ", given="一郎", given_kana="イチロウ",
                  birth="1999-09-09", address="沖縄県那覇市1-1", postal="900-0001", phone="098-000-0000")
    res.pop("id")
    return res


def _ref(name: str, pid: str) -> dict[str, Any]:
    return {"name": name, "valueReference": {"reference": f"Patient/{pid}"}}


def _op(caller: Caller, name: str, *params: dict[str, Any]) -> Any:
    return caller.send("POST", f"/fhir/Patient/${name}", {"resourceType": "Parameters", "parameter": list(params)})


def _patient_caller(world: Any, pid: str) -> Caller:
    """A real token of the patient whose record is ``pid`` (the portal login)."""
    node, client, _toks = world
    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        svc.ensure_local_client(conn)
        user = add_user(conn, svc.box, username=f"h10-patient-{pid}", display_name=pid, kind="patient",
                        organization_code=None, patient_id=pid, roles=[], now_us=node.clock.now_us()).user
        token = svc.tokens.issue(conn, issuer=svc.issuer(BASE), audience=BASE, client_id=LOCAL_CLIENT_ID,
                                 kind="patient", scope=["patient/*.cruds"], expires_in=3600, user=user,
                                 patient_id=pid).token
    return Caller(client, token)


def _link_method(node: Any, pid: str) -> str:
    with node.engine.connect() as conn:
        return conn.execute(select(identity_link.c.method).where(identity_link.c.patient_id == pid)).scalar_one()


def _person(node: Any, res_type: str, res_id: str) -> str:
    with node.engine.connect() as conn:
        return conn.execute(select(R.c.patient_key).where(R.c.res_type == res_type, R.c.res_id == res_id)).scalar_one()


def _grants(node: Any, consent_id: str) -> list[tuple[str, str, str]]:
    with node.engine.connect() as conn:
        return sorted((r.patient_key, r.effect, r.viewer_org) for r in conn.execute(
            select(G.c.patient_key, G.c.effect, G.c.viewer_org).where(G.c.consent_id == consent_id)))


def _total(caller: Caller, query: str) -> tuple[int, list[str]]:
    r = caller.send("GET", f"/fhir/Observation?{query}&_total=accurate")
    assert r.status_code == 200, r.text
    body = r.json()
    return body.get("total", -1), [e["resource"]["id"] for e in body.get("entry") or ()]


def _attack(world: Any) -> tuple[str, str]:
    """Steps 1-4: B's own patient z, B's registrar's Consent on z, z edited into q's look-alike
    and auto-linked into q's person. Returns (z, consent id)."""
    node = world[0]
    b, registrar = who(world, "other facility"), who(world, "registrar (not holding)")
    r = b.send("POST", "/fhir/Patient", _unrelated("b-777"))
    assert r.status_code == 201, r.text
    zid = r.json()["id"]
    r = registrar.send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, f"Patient/{zid}", ["Organization/org-b"], recorded_by="Organization/org-b"))
    assert r.status_code == 201, r.text  # B holds its own record z: allowed
    cid = r.json()["id"]
    assert [e for _k, e, _o in _grants(node, cid)] == ["permit"]  # in force on z's own person
    r = b.send("PUT", f"/fhir/Patient/{zid}", other_person(zid, B, "b-777"))
    assert r.status_code == 200, r.text
    assert _link_method(node, zid) == "auto"
    assert _person(node, "Patient", zid) == _person(node, "Patient", "q")
    assert _person(node, "Consent", cid) == _person(node, "Patient", "q")  # the Consent moved along
    return zid, cid


def test_consent_moved_by_auto_link_grants_nothing(world):
    """Step 5 of the attack: B reads q's HIV result -> 404, and search shows nothing (total 0)."""
    node = world[0]
    b = who(world, "other facility")
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    _zid, cid = _attack(world)
    leaked = b.send("GET", "/fhir/Observation/hiv-q")
    assert leaked.status_code == 404, leaked.text[:300]
    assert b.send("GET", "/fhir/Patient/q").status_code == 404
    assert _total(b, "patient=q") == (0, [])
    total, ids = _total(b, "code:text=HIV")
    assert "hiv-q" not in ids and total == len(ids)
    assert _grants(node, cid) == []  # recompiled for q's person: no permit


def test_operator_counter_link_makes_the_facility_consent_effective(world):
    """The operator links z to q at the counter (same person, method counter, no re-key): B now
    holds q's person and its Consent grants; search agrees."""
    node = world[0]
    b = who(world, "other facility")
    zid, cid = _attack(world)
    r = _op(who(world, "operator"), "link", _ref("patient", zid), _ref("target", "q"))
    assert r.status_code == 200, r.text
    assert _link_method(node, zid) == "counter"
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 200
    assert _total(b, "patient=q") == (1, ["hiv-q"])
    assert _grants(node, cid) == [(_person(node, "Patient", "q"), "permit", B)]


def test_unlink_removes_the_grants_again(world):
    """After the counter link, the operator unlinks z: the Consent goes with z to a person of
    its own and B sees nothing of q any more."""
    node = world[0]
    b = who(world, "other facility")
    zid, cid = _attack(world)
    assert _op(who(world, "operator"), "link", _ref("patient", zid), _ref("target", "q")).status_code == 200
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 200
    r = _op(who(world, "operator"), "unlink", _ref("patient", zid))
    assert r.status_code == 200, r.text
    q_key, z_key = _person(node, "Patient", "q"), _person(node, "Patient", zid)
    assert q_key != z_key
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    assert _total(b, "patient=q") == (0, [])
    assert _grants(node, cid) == [(z_key, "permit", B)]  # B holds z again (own record)


def test_patient_authored_consent_keeps_working_after_an_auto_link(world):
    """z's patient consents to H themself (custodian patient-source); an auto link moves z into
    q's person: H still reads B's record about z, now under the new person."""
    node = world[0]
    b, h = who(world, "other facility"), who(world, "custodian facility")
    r = b.send("POST", "/fhir/Patient", _unrelated("b-778"))
    assert r.status_code == 201, r.text
    zid = r.json()["id"]
    r = b.send("POST", "/fhir/Observation", {"resourceType": "Observation", "status": "final",
                                             "code": {"text": "body weight"},
                                             "subject": {"reference": f"Patient/{zid}"}})
    assert r.status_code == 201, r.text
    oid = r.json()["id"]
    assert h.send("GET", f"/fhir/Observation/{oid}").status_code == 404  # no consent yet
    own = builder.chosen_facilities(None, f"Patient/{zid}", ["Organization/org-h"])
    own["performer"] = [{"reference": f"Patient/{zid}"}]
    r = _patient_caller(world, zid).send("POST", "/fhir/Consent", own)
    assert r.status_code == 201, r.text
    cid = r.json()["id"]
    assert h.send("GET", f"/fhir/Observation/{oid}").status_code == 200
    r = b.send("PUT", f"/fhir/Patient/{zid}", other_person(zid, B, "b-778"))
    assert r.status_code == 200, r.text
    assert _link_method(node, zid) == "auto"
    q_key = _person(node, "Patient", "q")
    assert _person(node, "Observation", oid) == q_key
    assert h.send("GET", f"/fhir/Observation/{oid}").status_code == 200
    assert _grants(node, cid) == [(q_key, "permit", H)]


def test_consent_explain_follows_the_network_role(world):
    """$consent-explain resolves the viewer in the facility directory and passes its network
    role: a disclosing-only facility is explained as denied, as the predicate answers."""
    node = world[0]
    put_all(node, [_org("org-d", D, role="disclosing")])
    op = who(world, "operator")

    def decision(code: str) -> str:
        r = op.send("GET", f"/fhir/Patient/p/$consent-explain?facility={code}&resource=Observation/hiv-p")
        assert r.status_code == 200, r.text
        return next(p["valueCode"] for p in r.json()["parameter"] if p["name"] == "decision")

    assert decision(B) == "permit"
    assert who(world, "other facility").send("GET", "/fhir/Observation/hiv-p").status_code == 200
    assert decision(D) == "deny"
    r = op.send("GET", "/fhir/Patient/p/$consent-explain?facility=1310000052")  # the inactive facility
    assert r.status_code == 404, r.text


def test_deleting_the_facility_record_ends_its_consent(world):
    """After the counter link B holds q's person through z; B deletes z: it holds nothing any
    more and its Consent grants nothing (its exclusions would stay)."""
    node = world[0]
    b = who(world, "other facility")
    zid, cid = _attack(world)
    assert _op(who(world, "operator"), "link", _ref("patient", zid), _ref("target", "q")).status_code == 200
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 200
    r = b.send("DELETE", f"/fhir/Patient/{zid}")
    assert r.status_code in (200, 204), r.text
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    assert _total(b, "patient=q") == (0, [])
    assert _grants(node, cid) == []


def test_operator_recorded_consent_is_unaffected(world):
    """The operator (the region office, which holds nobody) records q's Consent for B: it grants."""
    node = world[0]
    b = who(world, "other facility")
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    r = who(world, "operator").send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, "Patient/q", ["Organization/org-b"], recorded_by="Organization/org-o"))
    assert r.status_code == 201, r.text
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 200
    assert _grants(node, r.json()["id"]) == [(_person(node, "Patient", "q"), "permit", B)]
