"""Identity follows custody (issue 11, findings 3 and 4; issue 10, the regional Patient and
``require_staff``), over the running app on SQLite and PostgreSQL:

* a patient who copies another person's demographics into their own Patient is not moved
  onto that person (matching runs only on writes of the custodian facility or the system),
  and the compartment write check is the first write listener;
* facility identity staff act only on their facility's records and review items;
  region-wide work (links across facilities, the whole queue, merge) is the operator's;
  anonymous and unknown principals are refused;
* a hidden id gets exactly the answer of an unknown one in every identity operation;
* the regional Patient lists a local record only where the caller may see it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import replace
from typing import Any

import orjson
import pytest
from fastapi.testclient import TestClient
from identity_fixtures import FACILITY, key_of, observation, other_person, patient, ref
from sqlalchemy import select

from hie.api.app import create_app
from hie.auth.compartment import check_writes
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.identity import authz, store
from hie.identity.matching import drives_matching
from hie.identity.model import IdentityForbidden
from hie.identity.service import IdentityService
from hie.identity.tables import identity_event
from hie.principal import SYSTEM, Principal
from hie.storage.repository import Write, WriteResult

builder = pytest.importorskip("consent.builder")

A, B, C, D = "1110000011", "1110000029", "1110000037", "1110000052"  # hospital, clinic, psychiatry, viewer
USER_SCOPES = frozenset({"user/*.cruds"})
MEMBER_ID = "06139992:12:3456:01"


def _tag(res: dict[str, Any], code: str, *, labels: tuple[str, ...] = ()) -> dict[str, Any]:
    meta: dict[str, Any] = {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": code}]}
    if labels:
        meta["security"] = [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": c} for c in labels]
    return {**res, "meta": meta}


def _org(oid: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": oid, "name": oid,
            "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]}


def _feed(node: Any, *resources: dict[str, Any]) -> None:
    """Write as a feed does (the system principal, custody from the tag)."""
    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([Write("update", r["resourceType"], r["id"], r) for r in resources])


def _stranger(pid: str, facility: str, number: str) -> dict[str, Any]:
    return patient(pid, facility, number, family="田中", family_kana="タナカ", given="一郎", given_kana="イチロウ",
                   birth="1955-06-06", address="大阪府大阪市北区1-1", postal="530-0001", phone="06-0000-0000")


def _staff(org: str | None, name: str = "staff") -> Principal:
    return Principal(kind="user", name=name, user_id=f"{name}-{org}", organization_id=org,
                     roles=frozenset({"identity-staff"}), scopes=USER_SCOPES)


def _clinician(org: str) -> Principal:
    return Principal(kind="user", name="dr", user_id=f"dr-{org}", organization_id=org, scopes=USER_SCOPES)


OPERATOR = Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"}), scopes=USER_SCOPES)


@contextmanager
def _as(node: Any, principal: Principal) -> Iterator[TestClient]:
    app = create_app(node, authenticate=lambda _r: principal, audit=False)
    with TestClient(app, base_url="http://testserver") as c:
        yield c


def _op(c: TestClient, name: str, *params: dict[str, Any]) -> Any:
    return c.post(f"/fhir/Patient/${name}", json={"resourceType": "Parameters", "parameter": list(params)})


def _same(hidden: Any, unknown: Any, hidden_id: str, unknown_id: str) -> None:
    """Byte-identical answers, ids aside (and event numbers, which are ids)."""
    assert hidden.status_code == unknown.status_code, (hidden.text, unknown.text)
    assert hidden.headers.get("content-type") == unknown.headers.get("content-type")
    def norm(content: bytes, rid: str) -> bytes:
        content = re.sub(rb'"valueInteger":\d+', b'"valueInteger":0', content)
        return re.sub(rb"(?<![\w-])" + re.escape(rid.encode()) + rb"(?![\w-])", b"<id>", content) if rid else content

    assert norm(hidden.content, hidden_id) == norm(unknown.content, unknown_id)


def _events(node: Any) -> list[tuple[str, str | None]]:
    with node.engine.connect() as conn:
        return [(a, p) for a, p in conn.execute(select(identity_event.c.action, identity_event.c.patient_id)
                                                .order_by(identity_event.c.pk))]


@pytest.fixture
def region(node):
    _feed(node, _org("org-a", A), _org("org-b", B), _org("org-c", C), _org("org-d", D))
    _feed(node, _tag(patient("a1", A, "0001234"), A), _tag(observation("oa1", "a1"), A))
    return node


# --- finding 3: a patient's self-edit never moves them onto another person ----------------


def _look_alike(pid: str = "p1") -> dict[str, Any]:
    # Same name and birth date as a1, another address and phone: the review band, not a link.
    return _tag(patient(pid, B, "77", address="東京都千代田区丸の内1-1", postal="100-0001", phone="03-1111-2222"), B)


def test_a_patient_copying_a_victims_details_stays_their_own_person(region):
    node = region
    _feed(node, _look_alike())
    own, victim = key_of(node, "p1"), key_of(node, "a1")
    assert own != victim
    me = Principal(kind="patient", name="pt", user_id="pt", patient_id="p1",
                   scopes=frozenset({"patient/*.cruds"}))
    with _as(node, me) as c:
        body = c.get("/fhir/Patient/p1").json()
        victim_copy = patient("a1", A, "0001234")
        contact = {**body, "address": victim_copy["address"], "telecom": victim_copy["telecom"]}
        r = c.put("/fhir/Patient/p1", json=contact)  # contact details only: a patient's own edit
        assert r.status_code == 200, r.text
        assert c.get("/fhir/Observation/oa1").status_code == 404
        assert c.get("/fhir/Patient/a1").status_code == 404
    # Another patient, whose record differs in name and birth date, copies everything: the
    # write guard may refuse the name change; whether or not, no link follows.
    _feed(node, _tag(other_person("p2", B, "78"), B))
    other_own = key_of(node, "p2")
    with _as(node, Principal(kind="patient", name="pt2", user_id="pt2", patient_id="p2",
                             scopes=frozenset({"patient/*.cruds"}))) as c:
        body = c.get("/fhir/Patient/p2").json()
        full = {**body, **{k: victim_copy[k] for k in ("name", "birthDate", "gender", "address", "telecom")}}
        r = c.put("/fhir/Patient/p2", json=full)
        assert r.status_code in (200, 403), r.text
        assert c.get("/fhir/Observation/oa1").status_code == 404
    assert key_of(node, "p1") == own and key_of(node, "p2") == other_own and key_of(node, "a1") == victim
    assert [a for a, _ in _events(node)] == []


def test_the_custodian_facilitys_same_edit_does_link(region):
    """The control: the very edit by the record's custodian facility drives matching."""
    node = region
    _feed(node, _look_alike())
    clinic = Principal(kind="client", name="clinic-b", client_id="clinic-b", organization_id=B,
                       scopes=frozenset({"system/*.cruds"}))
    with _as(node, clinic) as c:
        body = c.get("/fhir/Patient/p1").json()
        victim_copy = patient("a1", A, "0001234")
        r = c.put("/fhir/Patient/p1", json={**body, "address": victim_copy["address"],
                                            "telecom": victim_copy["telecom"]})
        assert r.status_code == 200, r.text
    assert key_of(node, "p1") == key_of(node, "a1")
    assert [a for a, _ in _events(node)] == ["auto-link"]


def test_only_the_custodian_or_the_system_drives_matching(region):
    node = region
    _feed(node, _look_alike())
    own = key_of(node, "p1")
    clinic_b = Principal(kind="client", name="b", client_id="b", organization_id=B)
    clinic_d = Principal(kind="client", name="d", client_id="d", organization_id=D)
    me = Principal(kind="patient", name="pt", user_id="pt", patient_id="p1")
    assert drives_matching(SYSTEM, B) and drives_matching(clinic_b, B)
    assert not drives_matching(clinic_d, B) and not drives_matching(me, B) and not drives_matching(clinic_b, None)
    # The listener itself, handed a certain-match version of p1 written by D or the patient:
    victim_copy = patient("a1", A, "0001234")
    for writer in (clinic_d, me):
        with node.context(writer, write=True) as ctx:
            st = node.repository(ctx.repo.conn, SYSTEM).current("Patient", "p1")
            body = {**st.resource(), "address": victim_copy["address"], "telecom": victim_copy["telecom"]}
            node.identity(ctx.repo, [WriteResult("updated", replace(st, content=orjson.dumps(body)))])
        assert key_of(node, "p1") == own
    with node.context(clinic_b, write=True) as ctx:  # the control: the custodian's write links
        st = node.repository(ctx.repo.conn, SYSTEM).current("Patient", "p1")
        body = {**st.resource(), "address": victim_copy["address"], "telecom": victim_copy["telecom"]}
        node.identity(ctx.repo, [WriteResult("updated", replace(st, content=orjson.dumps(body)))])
    assert key_of(node, "p1") == key_of(node, "a1")


def test_the_compartment_check_is_the_first_write_listener(node):
    assert node.write_listeners[0] is check_writes
    assert any(isinstance(x, IdentityService) for x in node.write_listeners[1:])


# --- finding 4: facility identity staff act on their own facility's records -----------------


def test_staff_cannot_link_another_facilitys_hidden_patient(region):
    node = region
    _feed(node, _tag(other_person("b1", B, "1"), B))
    before = key_of(node, "a1")
    with _as(node, _staff(B)) as c:
        hidden = _op(c, "link", ref("patient", "a1"), ref("target", "b1"))
        unknown = _op(c, "link", ref("patient", "no-such"), ref("target", "b1"))
        assert hidden.status_code == 404
        _same(hidden, unknown, "a1", "no-such")
        hidden = _op(c, "link", ref("patient", "b1"), ref("target", "a1"))
        unknown = _op(c, "link", ref("patient", "b1"), ref("target", "no-such"))
        assert hidden.status_code == 404
        _same(hidden, unknown, "a1", "no-such")
    assert key_of(node, "a1") == before and key_of(node, "b1") != before
    assert _events(node) == []


def _consent_for(node: Any, pid: str, org: str, cid: str = "c1") -> None:
    _feed(node, builder.chosen_facilities(cid, f"Patient/{pid}", [f"Organization/{org}"],
                                          recorded_by="Organization/org-a", date_time="2026-01-10T10:00:00+09:00"))


def test_staff_cannot_link_a_visible_record_of_another_facility(region):
    """The attack of finding 4: the person consented to clinic B; B's staff try to pull
    the hospital's record into B's person, or B's record into the hospital's."""
    node = region
    _consent_for(node, "a1", "org-b")
    _feed(node, _tag(other_person("b1", B, "1"), B))
    with _as(node, _staff(B)) as c:
        assert c.get("/fhir/Patient/a1").status_code == 200  # visible through the consent
        for params in ((ref("patient", "a1"), ref("target", "b1")), (ref("patient", "b1"), ref("target", "a1"))):
            r = _op(c, "link", *params)
            assert r.status_code == 403, r.text
            assert r.json()["issue"][0]["code"] == "forbidden"
        assert _op(c, "unlink", ref("patient", "a1")).status_code == 403
    assert key_of(node, "a1") != key_of(node, "b1")
    assert _events(node) == []


def test_staff_link_inside_their_facility_but_not_across(region):
    node = region
    _feed(node, _tag(other_person("b1", B, "1"), B), _tag(_stranger("b2", B, "2"), B))
    with _as(node, _staff(B)) as c:
        r = _op(c, "link", ref("patient", "b2"), ref("target", "b1"))
        assert r.status_code == 200, r.text
        assert key_of(node, "b2") == key_of(node, "b1")
        # b3 is auto-linked with the hospital's a1: joining it is linking across facilities.
        _feed(node, _tag(patient("b3", B, "3"), B))
        assert key_of(node, "b3") == key_of(node, "a1")
        r = _op(c, "link", ref("patient", "b1"), ref("target", "b3"))
        assert r.status_code == 403, r.text
        assert "operator" in r.json()["issue"][0]["diagnostics"]
    with _as(node, OPERATOR) as c:
        assert _op(c, "link", ref("patient", "b1"), ref("target", "b3")).status_code == 200
    assert key_of(node, "b1") == key_of(node, "a1")
    with node.engine.connect() as conn:
        actors = list(conn.execute(select(identity_event.c.actor).where(identity_event.c.action == "counter-link")
                                   .order_by(identity_event.c.pk)).scalars())
    assert actors == [f"staff-{B} (identity-staff@{B})", "op (operator)"]


def test_staff_identification_goes_to_the_operator_and_answers_alike(region):
    node = region
    with _as(node, OPERATOR) as c:
        assert _op(c, "link", ref("patient", "a1"), {"name": "memberId", "valueString": MEMBER_ID}).status_code == 200
    _feed(node, _tag(other_person("b1", B, "1"), B), _tag(_stranger("b2", B, "2"), B))
    k1, k2 = key_of(node, "b1"), key_of(node, "b2")
    with _as(node, _staff(B)) as c:
        held = _op(c, "link", ref("patient", "b1"), {"name": "memberId", "valueString": MEMBER_ID})
        free = _op(c, "link", ref("patient", "b2"), {"name": "memberId", "valueString": "06139992:12:9999:01"})
        assert held.status_code == 200, held.text
        _same(held, free, "b1", "b2")
        assert c.get("/fhir/Patient/$identity-review").json() == {"resourceType": "Parameters"}  # not B's
    assert (key_of(node, "b1"), key_of(node, "b2")) == (k1, k2)  # nothing linked
    with _as(node, OPERATOR) as c:
        queue = c.get("/fhir/Patient/$identity-review").json()
    pairs = [{p["name"]: p.get("valueReference", {}).get("reference") for p in item["part"]}
             for item in queue["parameter"]]
    assert [(p["patient"], p["candidate"]) for p in pairs] == [("Patient/b1", "Patient/a1")]


def test_review_queue_per_facility_for_staff_region_wide_for_the_operator(region):
    node = region
    married = {"family": "佐藤", "family_kana": "サトウ"}
    _feed(node, _tag(patient("m1", B, "3", **married), B))  # probable with a1 (hospital): cross-facility
    _feed(node, _tag(other_person("b1", B, "1"), B))
    _feed(node, _tag(patient("b9", B, "9", family="佐藤", family_kana="サトウ", given="花子", given_kana="ハナコ",
                             birth="1980-05-05", address="東京都千代田区丸の内1-1", postal="100-0001",
                             phone="03-1111-2222"), B))  # married name, probable with b1: inside clinic B
    with node.engine.connect() as conn:
        items = {(i.patient_id, i.candidate_id): i.pk for i in store.review_items(conn)}
    assert set(items) == {("m1", "a1"), ("b9", "b1")}
    cross = items[("m1", "a1")]
    with _as(node, _staff(B)) as c:
        seen = c.get("/fhir/Patient/$identity-review").json()
        ids = [p["valueInteger"] for item in seen["parameter"] for p in item["part"] if p["name"] == "id"]
        assert ids == [items[("b9", "b1")]]
        hidden = _op(c, "identity-review", {"name": "item", "valueInteger": cross},
                     {"name": "action", "valueCode": "link"})
        unknown = _op(c, "identity-review", {"name": "item", "valueInteger": 999999},
                      {"name": "action", "valueCode": "link"})
        assert hidden.status_code == 404
        _same(hidden, unknown, str(cross), "999999")
        ok = _op(c, "identity-review", {"name": "item", "valueInteger": items[("b9", "b1")]},
                 {"name": "action", "valueCode": "link"})
        assert ok.status_code == 200, ok.text
    with _as(node, OPERATOR) as c:
        assert len(c.get("/fhir/Patient/$identity-review").json()["parameter"]) == 1
        assert _op(c, "identity-review", {"name": "item", "valueInteger": cross},
                   {"name": "action", "valueCode": "link"}).status_code == 200
    assert key_of(node, "m1") == key_of(node, "a1") and key_of(node, "b9") == key_of(node, "b1")


@pytest.mark.parametrize("who", [
    Principal(kind="anonymous", name="anon", scopes=USER_SCOPES),
    Principal(kind="user", name="no-facility", user_id="nf", roles=frozenset({"identity-staff"}), scopes=USER_SCOPES),
    Principal(kind="patient", name="pt", user_id="pt", patient_id="a1", roles=frozenset({"identity-staff"}),
              scopes=frozenset({"patient/*.cruds"})),
    _clinician(A),
], ids=["anonymous", "staff-without-facility", "patient", "clerk"])
def test_identity_changes_fail_closed(region, who):
    node = region
    with pytest.raises(IdentityForbidden):
        authz.require_staff(who)
    with _as(node, who) as c:
        for name, params in (("link", [ref("patient", "a1"), {"name": "memberId", "valueString": MEMBER_ID}]),
                             ("unlink", [ref("patient", "a1")]),
                             ("merge", [ref("source-patient", "a1"), ref("target-patient", "a1")]),
                             ("identity-review", [{"name": "item", "valueInteger": 1},
                                                  {"name": "action", "valueCode": "link"}])):
            r = _op(c, name, *params)
            assert r.status_code == 403, (name, r.text)
        assert c.get("/fhir/Patient/$identity-review").status_code == 403
    assert _events(node) == []


# --- hidden answers like unknown, in every identity operation -----------------------------


def _requests(hidden: str) -> dict[str, tuple[str, list[dict[str, Any]]]]:
    return {
        "link-patient": ("link", [ref("patient", hidden), {"name": "memberId", "valueString": MEMBER_ID}]),
        "link-target": ("link", [ref("patient", "b1"), ref("target", hidden)]),
        "unlink": ("unlink", [ref("patient", hidden)]),
        "merge": ("merge", [ref("source-patient", hidden), ref("target-patient", "b1")]),
        "unmerge": ("unmerge", [{"name": "event", "valueInteger": 1}]),
    }


@pytest.mark.parametrize("who", [_staff(B), _clinician(B)], ids=["staff", "clinician"])
@pytest.mark.parametrize("what", list(_requests("x")))
def test_hidden_and_unknown_ids_answer_alike(region, who, what):
    node = region
    _feed(node, _tag(other_person("b1", B, "1"), B))
    with _as(node, who) as c:
        name, params = _requests("a1")[what]
        hidden = _op(c, name, *params)
        name, params = _requests("zz")[what]
        unknown = _op(c, name, *params)
    assert hidden.status_code in (403, 404), hidden.text
    _same(hidden, unknown, "a1", "zz")
    assert _events(node) == []


def test_match_and_pix_answer_a_hidden_patient_like_none(region):
    node = region
    with _as(node, _clinician(B)) as c:
        query = patient("q", B, "5")
        del query["id"]
        nobody = patient("q", B, "5", family="存在", family_kana="ソンザイ", given="無", given_kana="ナイ",
                         birth="1901-01-01", address="北海道", postal="000-0000", phone="000")
        del nobody["id"]
        hidden = _op(c, "match", {"name": "resource", "resource": query})
        unknown = _op(c, "match", {"name": "resource", "resource": nobody})
        assert hidden.status_code == 200 and hidden.json()["total"] == 0
        _same(hidden, unknown, "", "")
        hidden = c.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{FACILITY}{A}|0001234"})
        unknown = c.get("/fhir/Patient/$ihe-pix", params={"sourceIdentifier": f"{FACILITY}{A}|9999999"})
        assert hidden.status_code == 404
        _same(hidden, unknown, "0001234", "9999999")


# --- the regional Patient lists only what the caller may see -------------------------------


def test_the_regional_patient_lists_only_records_the_viewer_may_see(region):
    node = region
    _feed(node, _tag(patient("b1", B, "88-17"), B), _tag(patient("c1", C, "5"), C, labels=("PSY",)))
    key = key_of(node, "a1")
    assert key_of(node, "b1") == key_of(node, "c1") == key
    _consent_for(node, "a1", "org-d")
    query = patient("q", D, "1")
    del query["id"]

    def regional_links(c: TestClient) -> set[str]:
        bundle = _op(c, "match", {"name": "resource", "resource": query}).json()
        (entry,) = [e for e in bundle["entry"] if e["resource"]["id"] == key]
        return {ln["other"]["reference"] for ln in entry["resource"].get("link", ()) if ln["type"] == "seealso"}

    with _as(node, _clinician(D)) as c:
        assert c.get("/fhir/Patient/c1").status_code == 404  # PSY needs its own permit
        stored = c.get(f"/fhir/Patient/{key}").json()
        assert "link" not in stored
        assert regional_links(c) == {"Patient/a1", "Patient/b1"}
        linked = c.get("/fhir/Patient", params={"link": f"Patient/{key}"}).json()
        assert {e["resource"]["id"] for e in linked.get("entry", ())} == {"a1", "b1"}
    with _as(node, Principal(kind="system", name="feed", scopes=frozenset({"system/*.cruds"}))) as c:
        assert regional_links(c) == {"Patient/a1", "Patient/b1", "Patient/c1"}


# --- the identity-operations authorization matrix (one table) -------------------------------

_ACTORS: dict[str, Principal] = {
    "system": Principal(kind="system", name="feed", scopes=frozenset({"system/*.cruds"})),
    "operator": OPERATOR,
    "identity staff (own facility)": _staff(B),
    "identity staff (other facility)": _staff(A),
    "custodian facility clinician": _clinician(B),
    "other facility clinician": _clinician(A),
    "patient": Principal(kind="patient", name="pt", user_id="pt", patient_id="b2",
                         scopes=frozenset({"patient/*.cruds"})),
    "other patient": Principal(kind="patient", name="pt-a", user_id="pt-a", patient_id="a1",
                               scopes=frozenset({"patient/*.cruds"})),
}
_OPS = ("link", "unlink", "merge", "unmerge", "review list", "review decide")
# Expected status per actor, in the order of _OPS. The records acted on are clinic B's.
MATRIX: dict[str, tuple[int, ...]] = {
    "system":                          (200, 200, 200, 200, 200, 200),
    "operator":                        (200, 200, 200, 200, 200, 200),
    "identity staff (own facility)":   (200, 200, 403, 403, 200, 200),
    "identity staff (other facility)": (404, 404, 403, 403, 200, 404),
    "custodian facility clinician":    (403, 403, 403, 403, 403, 403),
    "other facility clinician":        (403, 403, 403, 403, 403, 403),
    "patient":                         (403, 403, 403, 403, 403, 403),
    "other patient":                   (403, 403, 403, 403, 403, 403),
}


def _matrix_request(node: Any, op: str) -> tuple[str, str, list[dict[str, Any]]]:
    """(method, operation, parameters) of ``op`` on clinic B's records, after its set-up."""
    if op == "link":
        return "POST", "link", [ref("patient", "b2"), ref("target", "b1")]
    if op == "unlink":
        return "POST", "unlink", [ref("patient", "b3")]  # auto-linked with the hospital's a1
    if op == "merge":
        return "POST", "merge", [ref("source-patient", "b2"), ref("target-patient", "b1")]
    if op == "unmerge":
        with node.context(SYSTEM, write=True) as ctx:
            event = node.identity.merge(ctx.repo.conn, "b2", "b1", actor="setup").event
        return "POST", "unmerge", [{"name": "event", "valueInteger": event}]
    if op == "review list":
        return "GET", "identity-review", []
    with node.engine.connect() as conn:
        (item,) = [i for i in store.review_items(conn) if {i.patient_id, i.candidate_id} == {"b9", "b1"}]
    return "POST", "identity-review", [{"name": "item", "valueInteger": item.pk},
                                       {"name": "action", "valueCode": "link"}]


@pytest.mark.parametrize("op", _OPS)
@pytest.mark.parametrize("actor", list(MATRIX))
def test_identity_operations_matrix(region, actor, op):
    node = region
    _feed(node, _tag(other_person("b1", B, "1"), B), _tag(_stranger("b2", B, "2"), B),
          _tag(patient("b3", B, "3"), B))
    _feed(node, _tag(patient("b9", B, "9", family="佐藤", family_kana="サトウ", given="花子", given_kana="ハナコ",
                             birth="1980-05-05", address="東京都千代田区丸の内1-1", postal="100-0001",
                             phone="03-1111-2222"), B))
    assert key_of(node, "b3") == key_of(node, "a1")
    method, name, params = _matrix_request(node, op)
    before = _events(node)
    with _as(node, _ACTORS[actor]) as c:
        r = c.get(f"/fhir/Patient/${name}") if method == "GET" else _op(c, name, *params)
    expected = MATRIX[actor][_OPS.index(op)]
    assert r.status_code == expected, r.text
    if expected != 200:
        assert _events(node) == before  # a refusal changes nothing
