"""Network roles and consent actors over the running app (issue 11, findings 5 and 7 read side).

A consent without actors reaches only registered, active, viewing facilities; a disclosing-only
facility sees no other facility's data; a viewing-only facility sees what consents grant but
never a patient's Consents, which the patient, the recording facility and the operator see; a
Consent naming an unknown, inactive or non-viewing actor is refused with 422 and the actor's
element path. Real tokens, real HTTP, SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient

from consent import builder
from hie.api.app import create_app
from hie.auth.registry import NETWORK_ROLE_EXT
from hie.auth.service import LOCAL_CLIENT_ID, AuthService, system_token
from hie.auth.users import add_user
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.ingest import ingest_bundle
from hie.storage.db import write_tx

BASE = "http://testserver/fhir"
A, V, D, X, U = "1110000011", "1110000029", "1110000037", "1110000045", "1119999990"
ROLES = {"nr-a": (A, None), "nr-v": (V, "viewing"), "nr-d": (D, "disclosing"), "nr-x": (X, None)}
KW = {"recorded_by": "Organization/nr-a", "date_time": "2026-01-10T10:00:00+09:00"}


def organization(oid: str, role: str | None = None) -> dict[str, Any]:
    code, default = ROLES[oid]
    res: dict[str, Any] = {"resourceType": "Organization", "id": oid, "name": oid,
                           "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}],
                           "active": oid != "nr-x"}
    if role or default:
        res["extension"] = [{"url": NETWORK_ROLE_EXT, "valueCode": role or default}]
    return res


def held(res: dict[str, Any], code: str) -> dict[str, Any]:
    return {**res, "meta": {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": code}]}}


def lab(oid: str, code: str) -> dict[str, Any]:
    return held({"resourceType": "Observation", "id": oid, "status": "final", "code": {"text": "HbA1c"},
                 "subject": {"reference": "Patient/nr-p1"}, "effectiveDateTime": "2026-10-01T09:00:00+09:00",
                 "valueQuantity": {"value": 7.0, "unit": "%"}}, code)


def put_all(node: Any, resources: list[dict[str, Any]]) -> None:
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="network-roles-test")


def setup_region(node: Any, consent: dict[str, Any] | None) -> None:
    put_all(node, [organization(o) for o in ROLES] + [
        held({"resourceType": "Patient", "id": "nr-p1", "name": [{"family": "山田", "given": ["太郎"]}]}, A),
        lab("nr-lab-a", A), lab("nr-lab-d", D)])
    if consent is not None:
        put_all(node, [held(consent, A)])  # recorded at A's counter


def tokens(node: Any) -> dict[str, str]:
    svc = AuthService.for_node(node)
    out = {}
    with write_tx(node.engine) as conn:
        svc.ensure_local_client(conn)
        for name, kind, org, patient, roles, scope in (
            ("a", "practitioner", A, None, [], "user/*.rs"),
            ("viewing", "practitioner", V, None, [], "user/*.rs"),
            ("disclosing", "practitioner", D, None, [], "user/*.rs"),
            ("inactive", "practitioner", X, None, [], "user/*.rs"),
            ("unregistered", "practitioner", U, None, [], "user/*.rs"),
            ("operator", "operator", None, None, [], "user/*.rs"),
            ("patient", "patient", None, "nr-p1", [], "patient/*.rs"),
        ):
            enrol = add_user(conn, svc.box, username=f"nr-{name}", display_name=name, kind=kind,
                             organization_code=org, patient_id=patient, roles=roles, now_us=node.clock.now_us())
            out[name] = svc.tokens.issue(
                conn, issuer=svc.issuer(BASE), audience=BASE, client_id=LOCAL_CLIENT_ID,
                kind="patient" if patient else "user", scope=[scope], expires_in=3600, user=enrol.user,
                organization_code=org, patient_id=patient, roles=enrol.user.roles).token
    out["system"] = system_token(node, "system/*.cruds", fhir_base=BASE)
    return out


@pytest.fixture
def app(node):  # noqa: ANN201
    with TestClient(create_app(node, audit=False), base_url="http://testserver") as c:
        yield c


def get(app: TestClient, token: str, url: str) -> Any:
    return app.get(f"/fhir/{url}", headers={"Authorization": f"Bearer {token}"})


def ids(app: TestClient, token: str, query: str) -> tuple[set[str], int]:
    r = get(app, token, query)
    assert r.status_code == 200, r.text
    body = r.json()
    return {e["resource"]["id"] for e in body.get("entry", [])}, body["total"]


def test_a_consent_without_actors_reaches_only_registered_active_viewing_facilities(node, app):
    setup_region(node, builder.all_facilities("nr-c1", "Patient/nr-p1", **KW))
    t = tokens(node)
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 200
    for who in ("unregistered", "inactive", "disclosing"):
        r = get(app, t[who], "Observation/nr-lab-a")
        assert r.status_code == 404, who
        missing = get(app, t[who], "Observation/nr-never-existed")
        assert r.json() == {**missing.json(), "issue": [
            {**i, "diagnostics": i["diagnostics"].replace("nr-never-existed", "nr-lab-a")}
            for i in missing.json()["issue"]]}, who  # hidden answers exactly like nonexistent
    assert ids(app, t["viewing"], "Observation?subject=Patient/nr-p1") == ({"nr-lab-a", "nr-lab-d"}, 2)
    assert ids(app, t["unregistered"], "Observation?subject=Patient/nr-p1") == (set(), 0)
    assert ids(app, t["inactive"], "Observation") == (set(), 0)
    assert ids(app, t["unregistered"], "Patient") == (set(), 0)
    # a disclosing-only facility sees what it disclosed, nothing of anyone else's
    assert ids(app, t["disclosing"], "Observation") == ({"nr-lab-d"}, 1)
    assert get(app, t["disclosing"], "Patient/nr-p1").status_code == 404


def test_viewer_facilities_never_see_consents_patient_custodian_and_operator_do(node, app):
    setup_region(node, builder.chosen_facilities("nr-c1", "Patient/nr-p1", ["Organization/nr-v"], **KW))
    t = tokens(node)
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 200  # the grant works
    assert get(app, t["viewing"], "Consent/nr-c1").status_code == 404
    assert ids(app, t["viewing"], "Consent") == (set(), 0)
    assert ids(app, t["viewing"], "Consent?patient=Patient/nr-p1") == (set(), 0)
    assert get(app, t["viewing"], "Consent/nr-c1/_history").json().get("total") in (0, None)
    for who in ("a", "operator", "patient"):
        assert get(app, t[who], "Consent/nr-c1").status_code == 200, who
    assert ids(app, t["operator"], "Consent") == ({"nr-c1"}, 1)
    # the operator's Consent branch does not open clinical data
    assert get(app, t["operator"], "Observation/nr-lab-a").status_code == 404


def test_a_role_change_in_the_registry_applies_to_the_next_request(node, app):
    setup_region(node, builder.chosen_facilities("nr-c1", "Patient/nr-p1", ["Organization/nr-v"], **KW))
    t = tokens(node)
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 200
    put_all(node, [organization("nr-v", "disclosing")])
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 404
    put_all(node, [{**organization("nr-v"), "active": False}])
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 404
    put_all(node, [organization("nr-v", "both")])
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 200


@pytest.mark.parametrize("actor,why", [
    ("Organization/nr-nobody", "not a registered facility"),
    ("Organization/nr-x", "not an active facility"),
    ("Organization/nr-d", "network role 'disclosing'"),
])
def test_a_consent_naming_an_actor_the_registry_does_not_allow_is_refused(node, app, actor, why):
    setup_region(node, None)
    t = tokens(node)
    consent = held(builder.consent("nr-c2", "Patient/nr-p1", builder.provision("permit", provisions=[
        builder.provision("permit", actors=["Organization/nr-v", actor])]), **KW), A)
    for method, url in (("PUT", "Consent/nr-c2"), ("POST", "Consent")):
        body = consent if method == "PUT" else {k: v for k, v in consent.items() if k != "id"}
        r = app.request(method, f"/fhir/{url}", json=body, headers={"Authorization": f"Bearer {t['system']}"})
        assert r.status_code == 422, r.text
        issue = r.json()["issue"][0]
        assert issue["code"] == "business-rule" and why in issue["diagnostics"]
        assert issue["expression"] == ["Consent.provision.provision[0].actor[1].reference"]
        assert any(c.get("code") == "HIE-1011" for c in issue["details"]["coding"])
    assert get(app, t["a"], "Consent/nr-c2").status_code == 404  # nothing was stored
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 404  # nothing was granted


def test_an_exclusion_may_name_any_registered_facility_but_not_an_unknown_one(node, app):
    setup_region(node, None)
    t = tokens(node)
    auth = {"Authorization": f"Bearer {t['system']}"}
    ok = held(builder.all_facilities("nr-c3", "Patient/nr-p1", exclude=["Organization/nr-d", "Organization/nr-x"],
                                     **KW), A)
    assert app.put("/fhir/Consent/nr-c3", json=ok, headers=auth).status_code in (200, 201)
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 200
    # the exclusion of D holds once D may view
    put_all(node, [organization("nr-d", "both")])
    assert get(app, t["disclosing"], "Observation/nr-lab-a").status_code == 404
    bad = held(builder.all_facilities("nr-c3", "Patient/nr-p1", exclude=["Organization/nr-typo"], **KW), A)
    r = app.put("/fhir/Consent/nr-c3", json=bad, headers=auth)
    assert r.status_code == 422
    assert r.json()["issue"][0]["expression"] == ["Consent.provision.provision[0].actor[0].reference"]
    # a revoked Consent may keep naming a facility that left the network
    put_all(node, [{**organization("nr-v"), "active": False}])
    revoked = held(builder.chosen_facilities("nr-c4", "Patient/nr-p1", ["Organization/nr-v"], status="inactive",
                                             **KW), A)
    assert app.put("/fhir/Consent/nr-c4", json=revoked, headers=auth).status_code in (200, 201)


def test_the_demo_region_loads_with_network_roles_and_a_user_per_role(node):
    from hie.auth.demo import HOSPITAL_CODE, USERS, provision
    from hie.auth.users import get_by_username
    from hie.demo import FACILITIES, NETWORK_ROLE, demo_bundle
    from hie.enforcement.facilities import lookup
    from hie.principal import SYSTEM

    ingest_bundle(node, demo_bundle(), source="demo:tone-region")
    again = ingest_bundle(node, demo_bundle(), source="demo:tone-region")  # loading twice changes nothing
    assert {e["response"]["status"][:3] for e in again["entry"]} == {"200"}
    with node.context(SYSTEM, write=False) as ctx:
        roles = {fid: lookup(ctx.repo.conn, code) for fid, code, *_ in FACILITIES}
    assert {fid: f.network_role for fid, f in roles.items() if f} == {
        fid: NETWORK_ROLE.get(fid, "both") for fid, *_ in FACILITIES}
    assert {"disclosing", "viewing", "both"} == {f.network_role for f in roles.values() if f}
    text = provision(node).read_text()
    with node.engine.connect() as conn:
        for username, _name, kind, code, _pr, _pat, extra in USERS:
            user = get_by_username(conn, username)
            assert user is not None and user.kind == kind and user.organization_code == code, username
            assert set(extra) <= set(user.roles), username
            assert f"user {username} (" in text
        assert "registrar" in get_by_username(conn, "demo-registrar").roles  # type: ignore[union-attr]
        assert get_by_username(conn, "demo-registrar").organization_code == HOSPITAL_CODE  # type: ignore[union-attr]
        assert "identity-staff" in get_by_username(conn, "demo-identity").roles  # type: ignore[union-attr]


def test_grants_follow_an_organization_whose_code_changes_and_permits_go_with_a_deleted_one(node, app):
    setup_region(node, builder.chosen_facilities("nr-c1", "Patient/nr-p1", ["Organization/nr-v"], **KW))
    new_code = "1110000060"
    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        svc.ensure_local_client(conn)
        enrol = add_user(conn, svc.box, username="nr-renamed", display_name="r", kind="practitioner",
                         organization_code=new_code, now_us=node.clock.now_us())
        renamed = svc.tokens.issue(conn, issuer=svc.issuer(BASE), audience=BASE, client_id=LOCAL_CLIENT_ID,
                                   kind="user", scope=["user/*.rs"], expires_in=3600, user=enrol.user,
                                   organization_code=new_code).token
    t = tokens(node)
    moved = organization("nr-v")
    moved["identifier"] = [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": new_code}]
    put_all(node, [moved])
    assert get(app, renamed, "Observation/nr-lab-a").status_code == 200
    assert get(app, t["viewing"], "Observation/nr-lab-a").status_code == 404  # the old code is no facility now
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": "Organization/nr-v"}}]}, source="network-roles-test")
    put_all(node, [{**organization("nr-v"), "id": "nr-v2", "identifier": moved["identifier"]}])  # code reused
    assert get(app, renamed, "Observation/nr-lab-a").status_code == 404  # a new facility inherits no permit


def test_every_network_role_shares_one_compiled_shape_that_reads_the_role_row(node):
    """The role is data the statement reads (the facility's role row, ADR 0007), not a shape:
    one compilation answers all four principals, each with its own rights."""
    from sqlalchemy import select

    from hie.principal import Principal
    from hie.storage.tables import resource

    setup_region(node, builder.all_facilities("nr-c1", "Patient/nr-p1", **KW))

    def run(code: str) -> tuple[set[str], str]:
        who = Principal(kind="user", name=code, user_id=code, organization_id=code)
        with node.context(who, write=False) as ctx:
            result = ctx.repo.conn.execute(select(resource.c.res_id).where(
                resource.c.res_type == "Observation", ctx.access(resource)))
            return set(result.scalars()), str(result.context.compiled)

    for _ in range(2):  # the second round runs on cached compilations
        seen_a, sql_a = run(A)
        seen_d, sql_d = run(D)
        seen_v, sql_v = run(V)
        seen_u, sql_u = run(U)
        assert seen_a == {"nr-lab-a", "nr-lab-d"} and seen_v == {"nr-lab-a", "nr-lab-d"}
        assert seen_d == {"nr-lab-d"} and seen_u == set()
        assert sql_a == sql_d == sql_v == sql_u
        assert "consent_grant" in sql_a and "facility_role:" in sql_a


def test_hand_derived_visibility_of_the_network_roles_scenario(node):
    """The scenario the SQL-equals-reference test runs, with its answers derived by hand (so
    that comparison cannot agree on a wrong answer for the new branches)."""
    from hie.clock import FixedClock
    from tests.enforcement.scenario import consents, region, store_network_region
    from tests.enforcement.test_sql_matches_reference import NOW_US, VIEWERS, visible_ids, write_all

    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    write_all(node, region())
    store_network_region(node)
    write_all(node, consents()["all-facilities"])
    admin = {f"Organization/{o}" for o in ("org-a", "org-b", "org-c", "org-v", "org-d", "org-x")}
    assert visible_ids(node, VIEWERS["unregistered"]) == admin
    assert visible_ids(node, VIEWERS["facility-x-inactive"]) == admin
    assert visible_ids(node, VIEWERS["facility-d-disclosing"]) == admin | {"Observation/lab-d-2026"}
    seen_v = visible_ids(node, VIEWERS["facility-v-viewing"])
    assert {"Observation/lab-a-2026", "Observation/lab-d-2026", "Patient/p1"} <= seen_v
    assert "Consent/c1" not in seen_v and "Observation/lab-a-hiv" not in seen_v
    assert "Consent/c1" in visible_ids(node, VIEWERS["facility-a"])  # recorded at A
    assert "Consent/c1" not in visible_ids(node, VIEWERS["facility-b"])
    assert "Consent/c1" in visible_ids(node, VIEWERS["patient-p1"])
    assert visible_ids(node, VIEWERS["operator"]) == admin | {"Consent/c1"}
