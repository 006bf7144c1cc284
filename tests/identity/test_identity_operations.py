"""Patient/$match (FHIR, IHE PDQm ITI-119), Patient/$ihe-pix (IHE PIXm ITI-83), the review
queue and the identity tables' migration, through the REST API on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from identity_fixtures import (CLINIC_B, CLINIC_C, FACILITY, HOSPITAL_A, key_of, op, other_person, param, patient,
                               put, ref)
from sqlalchemy import select

from hie.identity import store
from hie.identity.score import MATCH_GRADE_URL
from hie.identity.tables import ALL_IDENTITY_TABLES, identity_event
from hie.principal import Principal

PIX = "/fhir/Patient/$ihe-pix"


def _match(client, resource, *extra, expect=200):
    r = client.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "resource", "resource": resource}, *extra]})
    assert r.status_code == expect, r.text
    return r.json()


def _grade(entry):
    return next(e["valueCode"] for e in entry["search"]["extension"] if e["url"] == MATCH_GRADE_URL)


def test_match_returns_the_regional_person_graded_certain_with_score(client, node):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("b1", CLINIC_B, "88-17"))
    put(client, other_person("x1", CLINIC_C, "1"))
    key = key_of(node, "a1")
    query = patient("q", "0799999990", "1")
    del query["id"]
    bundle = _match(client, query)
    assert bundle["resourceType"] == "Bundle" and bundle["type"] == "searchset"
    assert bundle["total"] == 1
    entry = bundle["entry"][0]
    assert entry["resource"]["id"] == key  # one entry per person: the regional Patient
    assert entry["fullUrl"] == f"http://testserver/fhir/Patient/{key}"
    assert entry["search"]["mode"] == "match" and _grade(entry) == "certain"
    assert 0.99 <= entry["search"]["score"] <= 1.0


def test_match_grades_a_married_name_probable_and_only_certain_matches_drops_it(client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    query = patient("q", CLINIC_B, "5", family="佐藤", family_kana="サトウ")
    bundle = _match(client, query)
    assert [(_grade(e), e["resource"]["id"]) for e in bundle["entry"]] == [("probable", "a1")]
    assert 0.5 <= bundle["entry"][0]["search"]["score"] < 0.99
    assert _match(client, query, {"name": "onlyCertainMatches", "valueBoolean": True}) == {
        "resourceType": "Bundle", "type": "searchset", "total": 0}


def test_match_count_limits_entries_and_bad_input_is_an_outcome(client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("t1", CLINIC_B, "2", given="健一", given_kana="ケンイチ"))  # a brother: probable at best
    query = patient("q", CLINIC_C, "5")
    assert len(_match(client, query)["entry"]) == 2
    assert len(_match(client, query, {"name": "count", "valueInteger": 1})["entry"]) == 1
    out = client.post("/fhir/Patient/$match", json={"resourceType": "Parameters", "parameter": [
        {"name": "count", "valueInteger": 1}]})
    assert out.status_code == 400
    assert out.json()["issue"][0]["code"] == "invalid"
    assert out.json()["issue"][0]["expression"] == ["resource"]
    assert client.get("/fhir/Patient/$match").status_code == 405


def test_pix_returns_the_other_facilities_identifiers_of_the_person(client, node):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("b1", CLINIC_B, "88-17"))
    put(client, other_person("x1", CLINIC_C, "1"))
    key = key_of(node, "a1")
    r = client.get(PIX, params={"sourceIdentifier": f"{FACILITY}{HOSPITAL_A}|0001234"})
    assert r.status_code == 200, r.text
    got = r.json()["parameter"]
    ids = [p["valueIdentifier"] for p in got if p["name"] == "targetIdentifier"]
    refs = {p["valueReference"]["reference"] for p in got if p["name"] == "targetId"}
    assert {"system": f"{FACILITY}{CLINIC_B}", "value": "88-17"} in ids
    assert {(i["system"], i["value"]) for i in ids} == {
        (f"{FACILITY}{CLINIC_B}", "88-17"), ("http://hie.example.jp/fhir/sid/regional-person", key)}
    assert refs == {"Patient/b1", f"Patient/{key}"}

    only_b = client.get(PIX, params={"sourceIdentifier": f"{FACILITY}{HOSPITAL_A}|0001234",
                                     "targetSystem": f"{FACILITY}{CLINIC_B}"}).json()
    assert only_b["parameter"] == [
        {"name": "targetIdentifier", "valueIdentifier": {"system": f"{FACILITY}{CLINIC_B}", "value": "88-17"}},
        {"name": "targetId", "valueReference": {"reference": "Patient/b1"}}]
    alone = client.get(PIX, params={"sourceIdentifier": f"{FACILITY}{CLINIC_C}|1"}).json()
    assert alone == {"resourceType": "Parameters"}


@pytest.mark.parametrize(("params", "status", "code"), [
    ({"sourceIdentifier": f"{FACILITY}{HOSPITAL_A}|no-such"}, 404, "not-found"),
    ({"sourceIdentifier": "urn:example:unknown|1"}, 400, "invalid"),
    ({"sourceIdentifier": f"{FACILITY}{HOSPITAL_A}|0001234", "targetSystem": "urn:example:unknown"}, 403, "forbidden"),
    ({"sourceIdentifier": "no-bar"}, 400, "invalid"),
])
def test_pix_errors_follow_iti_83(client, params, status, code):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    r = client.get(PIX, params=params)
    assert r.status_code == status, r.text
    assert r.json()["issue"][0]["code"] == code


def test_review_band_is_queued_and_a_link_decision_rekeys(client, node):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("m1", CLINIC_B, "3", family="佐藤", family_kana="サトウ"))  # married name: probable
    assert key_of(node, "m1") != key_of(node, "a1")
    queue = client.get("/fhir/Patient/$identity-review").json()
    items = [p for p in queue["parameter"] if p["name"] == "item"]
    assert len(items) == 1
    parts = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in items[0]["part"]
             if p["name"] != "level"}
    assert parts["patient"] == {"reference": "Patient/m1"} and parts["candidate"] == {"reference": "Patient/a1"}
    assert parts["grade"] == "probable" and parts["status"] == "open"

    out = op(client, "identity-review", {"name": "item", "valueInteger": parts["id"]},
             {"name": "action", "valueCode": "link"})
    assert param(out, "action") == "review-link"
    assert key_of(node, "m1") == key_of(node, "a1")
    assert client.get("/fhir/Patient/$identity-review").json() == {"resourceType": "Parameters"}
    op(client, "identity-review", {"name": "item", "valueInteger": parts["id"]},
       {"name": "action", "valueCode": "link"}, expect=409)


def test_not_a_match_is_remembered_and_not_proposed_again(client, node):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("m1", CLINIC_B, "3", family="佐藤", family_kana="サトウ"))
    with node.engine.connect() as conn:
        (item,) = store.review_items(conn)
    op(client, "identity-review", {"name": "item", "valueInteger": item.pk},
       {"name": "action", "valueCode": "not-a-match"})
    put(client, patient("m1", CLINIC_B, "3", family="佐藤", family_kana="サトウ", phone="080-1111-2222"))
    with node.engine.connect() as conn:
        assert store.review_items(conn) == []
        assert [i.status for i in store.review_items(conn, status=None)] == ["not-a-match"]
        actions = list(conn.execute(select(identity_event.c.action)).scalars())
    assert actions == ["not-a-match"]
    assert key_of(node, "m1") != key_of(node, "a1")


def test_staff_actions_need_a_staff_role(node):
    """Merging is region-wide identity work: a clerk, and facility identity staff, get 403;
    the operator merges, and the event names the operator's authority."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app

    scopes = frozenset({"user/Patient.cruds"})
    clerk = Principal(kind="user", name="clerk", user_id="clerk", organization_id="org-a", scopes=scopes)
    staff = Principal(kind="user", name="staff", user_id="staff", organization_id=HOSPITAL_A,
                      roles=frozenset({"identity-staff"}), scopes=scopes)
    operator = Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"}), scopes=scopes)
    with node.context(Principal(kind="system", name="feed"), write=True) as ctx:
        ctx.repo.create(patient("a1", HOSPITAL_A, "0001234"), res_id="a1")
        ctx.repo.create(other_person("x1", CLINIC_B, "1"), res_id="x1")
    for principal, status in ((clerk, 403), (staff, 403), (operator, 200)):
        app = create_app(node, authenticate=lambda _r, p=principal: p, audit=False)
        with TestClient(app, base_url="http://testserver") as c:
            r = c.post("/fhir/Patient/$merge", json={"resourceType": "Parameters", "parameter": [
                ref("source-patient", "x1"), ref("target-patient", "a1")]})
            assert r.status_code == status, r.text
            if status == 403:
                assert r.json()["issue"][0]["diagnostics"].count("operator") >= 1
    with node.engine.connect() as conn:
        (actor,) = conn.execute(select(identity_event.c.actor)).scalars()
    assert actor == "op (operator)"


def test_identity_tables_match_the_migration(node):
    from alembic.autogenerate import compare_metadata
    from alembic.runtime.migration import MigrationContext

    from hie.storage.schema import metadata

    names = {t.name for t in ALL_IDENTITY_TABLES}
    with node.engine.connect() as conn:
        diff = compare_metadata(MigrationContext.configure(conn), metadata)

    def about_identity(d):
        item = d[0] if isinstance(d, list) else d
        return any(getattr(x, "name", None) in names or getattr(getattr(x, "table", None), "name", None) in names
                   for x in item[1:] if x is not None)

    assert [d for d in diff if about_identity(d)] == []
