"""Link, unlink and merge re-key every row of the affected local patients, on SQLite and
PostgreSQL: ``resource``, ``resource_version`` and every search-index table, in one
transaction (acceptance 2 of the "Patient identity" issue)."""

from __future__ import annotations

from identity_fixtures import (CLINIC_B, CLINIC_C, HOSPITAL_A, assert_keyed, key_of, observation, op, param,
                               other_person, patient, put, ref, resources_under_key, row_keys)
from sqlalchemy import select

from hie.identity import store
from hie.identity.rekey import rekey_patients
from hie.identity.tables import identity_event


def _events(node):
    with node.engine.connect() as conn:
        return [tuple(r) for r in conn.execute(select(identity_event.c.action, identity_event.c.patient_id,
                                                      identity_event.c.from_key, identity_event.c.to_key)
                                               .order_by(identity_event.c.pk))]


def test_unknown_patient_gets_a_key_of_its_own_and_clinical_rows_carry_it(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, observation("oa1", "a1"))
    put(client, other_person("x1", CLINIC_B, "77"))
    ka, kx = key_of(node, "a1"), key_of(node, "x1")
    assert ka and kx and ka != kx and ka.startswith("rp-")
    assert_keyed(node, {("Patient", "a1"): ka, ("Observation", "oa1"): ka, ("Patient", "x1"): kx})
    # An Observation written before its Patient still gets a key (the resolver creates the person).
    put(client, observation("early", "later"))
    assert row_keys(node)[("Observation", "early")][0] not in (None, ka, kx)


def test_auto_link_rekeys_the_second_facilitys_rows_and_links_both_ways(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, observation("oa1", "a1"))
    put(client, observation("ob-before", "b1"))  # clinic B sent a result before the patient
    put(client, patient("b1", CLINIC_B, "88-17"))
    put(client, observation("ob1", "b1"))
    key = key_of(node, "a1")
    assert_keyed(node, {("Patient", "a1"): key, ("Observation", "oa1"): key, ("Patient", "b1"): key,
                        ("Observation", "ob-before"): key, ("Observation", "ob1"): key, ("Patient", key): key})
    assert resources_under_key(node, key) == {("Patient", "a1"), ("Patient", "b1"), ("Patient", key),
                                              ("Observation", "oa1"), ("Observation", "ob-before"),
                                              ("Observation", "ob1")}
    regional = client.get(f"/fhir/Patient/{key}").json()
    assert regional["identifier"][0]["system"] == "http://hie.example.jp/fhir/sid/regional-person"
    # The stored regional Patient names no local record (their readers differ); the local
    # records refer to it, so a search finds exactly the linked records the caller may see.
    assert "link" not in regional
    linked = client.get("/fhir/Patient", params={"link": f"Patient/{key}"}).json()
    assert {e["resource"]["id"] for e in linked["entry"]} == {"a1", "b1"}
    for pid in ("a1", "b1"):
        assert client.get(f"/fhir/Patient/{pid}").json()["link"] == [
            {"other": {"reference": f"Patient/{key}"}, "type": "refer"}]
    assert [e[0] for e in _events(node)] == ["auto-link"]


def test_facility_update_of_a_linked_patient_keeps_the_link_and_the_key(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("b1", CLINIC_B, "88-17"))
    key = key_of(node, "a1")
    # Clinic B re-sends its record without Patient.link (a full replace, new phone number).
    put(client, patient("b1", CLINIC_B, "88-17", phone="080-9999-0000"))
    body = client.get("/fhir/Patient/b1").json()
    assert body["link"] == [{"other": {"reference": f"Patient/{key}"}, "type": "refer"}]
    assert body["telecom"][0]["value"] == "080-9999-0000"
    assert key_of(node, "b1") == key


def test_unlink_moves_back_only_that_patients_rows_and_is_remembered(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, observation("oa1", "a1"))
    put(client, patient("b1", CLINIC_B, "88-17"))
    own_b = next(e for e in _events(node) if e[0] == "auto-link")[2]
    put(client, observation("ob1", "b1"))
    put(client, observation("ob1", "b1", value=6.1))  # a second version
    put(client, observation("ob-gone", "b1"))
    assert client.delete("/fhir/Observation/ob-gone").status_code in (200, 204)
    key = key_of(node, "a1")
    assert key_of(node, "b1") == key

    out = op(client, "unlink", ref("patient", "b1"))
    assert out["parameter"][0] == {"name": "action", "valueCode": "unlink"}
    # b1 goes back to the key it had before the link; a1 and its rows stay.
    assert_keyed(node, {("Patient", "b1"): own_b, ("Observation", "ob1"): own_b, ("Observation", "ob-gone"): own_b,
                        ("Patient", "a1"): key, ("Observation", "oa1"): key, ("Patient", key): key})
    assert resources_under_key(node, own_b) == {("Patient", "b1"), ("Observation", "ob1")}
    assert resources_under_key(node, key) == {("Patient", "a1"), ("Observation", "oa1"), ("Patient", key)}
    # Its link names its own person again (which has no regional Patient yet).
    assert client.get("/fhir/Patient/b1").json()["link"] == [{"other": {"reference": f"Patient/{own_b}"},
                                                              "type": "refer"}]
    linked = client.get("/fhir/Patient", params={"link": f"Patient/{key}"}).json()
    assert {e["resource"]["id"] for e in linked["entry"]} == {"a1"}
    # Not proposed or auto-linked again when clinic B updates the record.
    put(client, patient("b1", CLINIC_B, "88-17", phone="080-9999-0000"))
    assert key_of(node, "b1") == own_b
    with node.engine.connect() as conn:
        assert store.not_a_match(conn, "b1") == {"a1"}
        assert store.review_items(conn) == []
    assert [e[0] for e in _events(node)] == ["auto-link", "unlink"]


def test_counter_link_by_insured_person_id_then_unlink(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234", member="06139999:記号1:1234:01"))
    put(client, observation("oa1", "a1"))
    # Clinic C has the person under a name typed from the card in kana only, other phone/address.
    c1 = patient("c1", CLINIC_C, "5", family="ヤマダ", given="タロー", birth="1970-02-01",
                 address="福島県郡山市1-1", postal="963-8001", phone="024-000-0000")
    put(client, c1)
    put(client, observation("oc1", "c1"))
    kc = key_of(node, "c1")
    assert kc != key_of(node, "a1")

    out = op(client, "link", ref("patient", "c1"),
             {"name": "identifier", "valueIdentifier": {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID",
                                                        "value": "06139999:記号1:1234:01"}})
    key = key_of(node, "a1")
    assert param(out, "regionalPatient") == {"reference": f"Patient/{key}"}
    assert_keyed(node, {("Patient", "c1"): key, ("Observation", "oc1"): key, ("Observation", "oa1"): key})
    regional = client.get(f"/fhir/Patient/{key}").json()
    assert {"system": "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID",
            "value": "06139999:記号1:1234:01"} in regional["identifier"]

    op(client, "unlink", ref("patient", "c1"))
    assert_keyed(node, {("Patient", "c1"): kc, ("Observation", "oc1"): kc, ("Observation", "oa1"): key})


def test_counter_link_without_branch_number_is_refused(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    out = op(client, "link", ref("patient", "a1"), {"name": "memberId", "valueString": "06139999:記号1:1234"},
             expect=400)
    assert out["issue"][0]["code"] == "invalid"
    assert "branch" in out["issue"][0]["diagnostics"]


def test_regional_card_number_links_records_of_two_facilities(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, other_person("x1", CLINIC_B, "1"))  # different demographics: never matched
    op(client, "link", ref("patient", "a1"), {"name": "regionalId", "valueString": "TONE-0000123"})
    op(client, "link", ref("patient", "x1"), {"name": "regionalId", "valueString": "TONE-0000123"})
    key = key_of(node, "a1")
    assert key_of(node, "x1") == key
    regional = client.get(f"/fhir/Patient/{key}").json()
    assert regional["identifier"][0]["value"] == "TONE-0000123"
    assert [e[0] for e in _events(node)] == ["counter-link", "counter-link"]


def test_merge_rekeys_the_whole_person_and_unmerge_restores_it(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("b1", CLINIC_B, "88-17"))  # auto-linked to a1
    put(client, observation("oa1", "a1"))
    put(client, other_person("x1", CLINIC_C, "9"))
    put(client, observation("ox1", "x1"))
    op(client, "link", ref("patient", "x1"), {"name": "regionalId", "valueString": "CARD-9"})
    k_ab, k_x = key_of(node, "a1"), key_of(node, "x1")
    assert k_ab != k_x

    out = op(client, "merge", ref("source-patient", "x1"), ref("target-patient", "a1"))
    event = param(out, "event")
    assert_keyed(node, {("Patient", "x1"): k_ab, ("Observation", "ox1"): k_ab, ("Patient", k_x): k_ab,
                        ("Patient", "a1"): k_ab, ("Patient", "b1"): k_ab, ("Observation", "oa1"): k_ab})
    assert resources_under_key(node, k_x) == set()
    merged = client.get(f"/fhir/Patient/{k_x}").json()
    assert merged["active"] is False
    assert merged["link"] == [{"other": {"reference": f"Patient/{k_ab}"}, "type": "replaced-by"}]
    survivor = client.get(f"/fhir/Patient/{k_ab}").json()
    assert {"other": {"reference": f"Patient/{k_x}"}, "type": "replaces"} in survivor["link"]
    assert client.get("/fhir/Patient/x1").json()["link"] == [{"other": {"reference": f"Patient/{k_ab}"},
                                                              "type": "refer"}]

    op(client, "unmerge", {"name": "event", "valueInteger": event})
    assert_keyed(node, {("Patient", "x1"): k_x, ("Observation", "ox1"): k_x, ("Patient", k_x): k_x,
                        ("Patient", "a1"): k_ab, ("Patient", "b1"): k_ab, ("Observation", "oa1"): k_ab})
    assert client.get(f"/fhir/Patient/{k_x}").json()["active"] is True
    assert client.get("/fhir/Patient/x1").json()["link"] == [{"other": {"reference": f"Patient/{k_x}"},
                                                              "type": "refer"}]
    assert [e[0] for e in _events(node)] == ["auto-link", "counter-link", "merge", "unmerge"]
    op(client, "unmerge", {"name": "event", "valueInteger": event}, expect=409)


def test_partial_rekey_follows_each_version_of_a_resource_whose_subject_changed(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, patient("b1", CLINIC_B, "88-17"))
    key = key_of(node, "a1")
    put(client, observation("moved", "a1"))
    put(client, observation("moved", "b1"))  # corrected: it was b1's result
    with node.engine.begin() as conn:
        count = rekey_patients(conn, key, ["b1"], "rp-test-other")
    assert count.resources == 2  # Patient b1 and the Observation's current row
    keys = row_keys(node)
    assert keys[("Observation", "moved")][0] == "rp-test-other"
    assert keys[("Observation", "moved")][1] == {key, "rp-test-other"}  # version 1 was about a1
    assert keys[("Observation", "moved")][2] == {"rp-test-other"}
    assert keys[("Patient", "a1")][0] == key


def test_rekey_is_atomic_with_the_link_change(node, client):
    put(client, patient("a1", HOSPITAL_A, "0001234"))
    put(client, other_person("x1", CLINIC_B, "1"))
    put(client, observation("ox1", "x1"))
    before = row_keys(node)
    service = node.identity
    try:
        with node.engine.begin() as conn:
            service.link_at_counter(conn, "x1", actor="test", target="a1")
            raise RuntimeError("fail after the link, before commit")
    except RuntimeError:
        pass
    assert row_keys(node) == before
    with node.engine.connect() as conn:
        assert store.link(conn, "x1").method == "own"
