"""Wave-2 attack findings over the running app (real tokens, FastAPI TestClient).

Each test reproduces one leak or bypass confirmed at 21:50-22:10 UTC and asserts the answer the
project's rules require, so it fails until the responsible code is fixed. W2-1 (fixed by
021be8a) and W2-2/W2-2b (fixed by uncommitted work in the tree: hie/storage/dependents.py)
failed when found and pass now; they stay as regression tests from the attacker's side. Not
committed on purpose (the attacker/reviewer brief): the lead decides who fixes what. Region and helpers are those of
tests/enforcement/test_write_authz.py (hospital H, clinic B, patients p and q of H; p
consented to every facility, q to nobody).
"""

from __future__ import annotations

import pytest

from consent import builder
from tests.enforcement.test_write_authz import who, world  # noqa: F401  (fixture)
from tests.identity.identity_fixtures import other_person, patient


def _unrelated_patient(number: str) -> dict:
    res = patient("x", "1310000029", number, family="無関係", family_kana="ムカンケイ", given="一郎",
                  given_kana="イチロウ", birth="1999-09-09", address="沖縄県那覇市1-1", postal="900-0001",
                  phone="098-000-0000")
    res.pop("id")
    return res


def test_consent_on_own_record_then_look_alike_update_reads_hidden_patient(world):
    """Finding W2-1 (leak; docs/security.md calls it an 'open gap'). Clinic B registers a
    patient who matches nobody (own person: a vouched holding), its registrar records a Consent
    for that record naming B, then B (custodian) updates the record into a look-alike of the
    hospital's patient q. Matching on the custodian's update auto-links it into q's person, the
    re-key carries B's Consent along, and B reads q's HIV result although q consented to
    nobody. Expected: 404 for Observation/hiv-q (the moved Consent must not grant anything:
    its patient record is linked only by an auto link)."""
    b, registrar = who(world, "other facility"), who(world, "registrar (not holding)")
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    r = b.send("POST", "/fhir/Patient", _unrelated_patient("b-777"))
    assert r.status_code == 201, r.text
    xid = r.json()["id"]
    r = registrar.send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, f"Patient/{xid}", ["Organization/org-b"], recorded_by="Organization/org-b"))
    assert r.status_code == 201, r.text  # B holds its own record: allowed
    r = b.send("PUT", f"/fhir/Patient/{xid}", other_person(xid, "1310000029", "b-777"))
    assert r.status_code == 200, r.text
    leaked = b.send("GET", "/fhir/Observation/hiv-q")
    assert leaked.status_code == 404, f"B reads q's record through its own moved Consent: {leaked.text[:300]}"
    assert b.send("GET", "/fhir/Patient/q").status_code == 404


PSY = {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "PSY"}


def _document_with_binary(h) -> tuple[str, str, dict]:
    doc = {"resourceType": "DocumentReference", "status": "current", "subject": {"reference": "Patient/p"},
           "description": "psychiatric discharge letter", "content": [{"attachment": {"contentType": "text/plain"}}]}
    r = h.send("POST", "/fhir/DocumentReference", doc)
    assert r.status_code == 201, r.text
    doc = r.json()
    r = h.send("POST", "/fhir/Binary", {"resourceType": "Binary", "contentType": "text/plain",
                                         "securityContext": {"reference": f"DocumentReference/{doc['id']}"},
                                         "data": "U2VjcmV0IGxldHRlcg=="})
    assert r.status_code == 201, r.text
    return doc["id"], r.json()["id"], doc


def test_binary_stays_readable_after_its_document_is_relabelled(world):
    """Finding W2-2 (leak; ADR 0006 'Known limits'). The hospital stores a DocumentReference
    about p and its Binary (securityContext -> the document); clinic B reads both under p's
    consent. The hospital then labels the document PSY (which p's consent does not permit):
    B loses the DocumentReference but still reads the Binary's content. Expected: 404 for the
    Binary as for its document (its labels are the target's)."""
    h, b = who(world, "custodian facility"), who(world, "other facility")
    doc_id, bin_id, doc = _document_with_binary(h)
    assert b.send("GET", f"/fhir/Binary/{bin_id}").status_code == 200  # consented, unlabelled
    r = h.send("PUT", f"/fhir/DocumentReference/{doc_id}", {**doc, "meta": {"security": [PSY]}})
    assert r.status_code == 200, r.text
    assert b.send("GET", f"/fhir/DocumentReference/{doc_id}").status_code == 404
    leaked = b.send("GET", f"/fhir/Binary/{bin_id}")
    assert leaked.status_code == 404, f"the Binary of a PSY document is still readable: {leaked.text[:200]}"


def test_binary_follows_its_document_to_another_patient(world):
    """Finding W2-2b (leak). The hospital files the document under the wrong patient p and
    corrects it to q (who consented to nobody): B loses the DocumentReference but the Binary
    keeps p's key and B still reads it. Expected: 404 for the Binary."""
    h, b = who(world, "custodian facility"), who(world, "other facility")
    doc_id, bin_id, doc = _document_with_binary(h)
    assert b.send("GET", f"/fhir/Binary/{bin_id}").status_code == 200
    r = h.send("PUT", f"/fhir/DocumentReference/{doc_id}", {**doc, "subject": {"reference": "Patient/q"}})
    assert r.status_code == 200, r.text
    assert b.send("GET", f"/fhir/DocumentReference/{doc_id}").status_code == 404
    leaked = b.send("GET", f"/fhir/Binary/{bin_id}")
    assert leaked.status_code == 404, f"the Binary of q's document is readable by B: {leaked.text[:200]}"


def test_document_bundle_carrying_another_patients_entry_is_shared_as_the_subjects(world):
    """Finding W2-3 (leak, lower severity: needs a mis-composed document). A document Bundle
    is keyed only by its Composition.subject (p); an entry inside it about q (who consented to
    nobody) is shared with every facility p consented to and with p. Collection Bundles that
    span patients get no single patient (custodian only); a document should too, or carry the
    strictest answer of its entries. Expected: 404 for B and for patient p."""
    h = who(world, "custodian facility")
    comp = {"resourceType": "Composition", "status": "final", "type": {"text": "discharge summary"},
            "subject": {"reference": "Patient/p"}, "date": "2026-01-01", "title": "Discharge",
            "author": [{"reference": "Organization/org-h"}]}
    q_lab = {"resourceType": "Observation", "status": "final", "code": {"text": "HIV-1 antibody"},
             "subject": {"reference": "Patient/q"}, "valueString": "positive"}
    bundle = {"resourceType": "Bundle", "type": "document", "timestamp": "2026-01-01T00:00:00Z",
              "identifier": {"system": "urn:h1:doc", "value": "mixed"},
              "entry": [{"fullUrl": "urn:uuid:c0000000-0000-0000-0000-000000000001", "resource": comp},
                        {"fullUrl": "urn:uuid:c0000000-0000-0000-0000-000000000003", "resource": q_lab}]}
    r = h.send("POST", "/fhir/Bundle", bundle)
    assert r.status_code == 201, r.text
    bid = r.json()["id"]
    for actor in ("other facility", "patient"):
        got = who(world, actor).send("GET", f"/fhir/Bundle/{bid}")
        assert got.status_code == 404, f"{actor} reads q's HIV result inside p's document: {got.text[:160]}"


def test_records_of_a_facility_that_may_not_disclose_are_shared_through_grants(world):
    """Finding W2-4 (leak; issue 11 finding 7, read side of the custodian). Records in the
    custody of a viewing-only facility V, of an inactive facility, or of a code U nobody
    registered (stored by a feed, which names its facility by tag) were shared with clinic B
    under p's consent, and B's $ihe-pix listed p's record number at U. Facility.may_disclose
    ('its records may be shared with other facilities') is false for all three. Fixed at the
    write side: the write guard refuses such custody to the system principal too (a feed
    dead-letters the message), with the tag's path. Expected: each write refused, 404 for each."""
    from hie.errors import CustodyForbidden
    from tests.enforcement.test_write_authz import INACTIVE, U, V, _obs, _tag, put_all
    from tests.identity.identity_fixtures import FACILITY

    node = world[0]
    writes = {
        "lab-at-viewer": {**_obs("p", id="lab-at-viewer"), "meta": _tag(V)},
        "lab-at-inactive": {**_obs("p", id="lab-at-inactive"), "meta": _tag(INACTIVE)},
        "lab-at-unregistered": {**_obs("p", id="lab-at-unregistered"), "meta": _tag(U)},
        "p-at-u": {**patient("p-at-u", U, "u-001"), "meta": _tag(U)},  # same person as p (auto-linked)
    }
    for oid, res in writes.items():
        with pytest.raises(CustodyForbidden) as refused:
            put_all(node, [res])
        issue = refused.value.issues[0]
        assert issue.hie_code == "HIE-2005" and issue.expression[0].endswith(".meta.tag"), (oid, issue)
    b = who(world, "other facility")
    assert b.send("GET", "/fhir/Observation/hiv-p").status_code == 200  # H discloses: shared
    shown = {oid: b.send("GET", f"/fhir/Observation/{oid}").status_code
             for oid in ("lab-at-viewer", "lab-at-inactive", "lab-at-unregistered")}
    shown["Patient/p-at-u"] = b.send("GET", "/fhir/Patient/p-at-u").status_code
    assert shown == dict.fromkeys(shown, 404), shown
    pix = b.send("GET", f"/fhir/Patient/$ihe-pix?sourceIdentifier={FACILITY}1310000011|p-001")
    assert "u-001" not in pix.text, pix.text[:300]
    with pytest.raises(CustodyForbidden):  # an update cannot re-home a record to such custody either
        put_all(node, [{**_obs("p", id="hiv-p"), "meta": _tag(V)}])
    assert b.send("GET", "/fhir/Observation/hiv-p").status_code == 200


def _own_view(b, body: dict) -> tuple[str, list[int]]:
    r = b.send("POST", "/fhir/Patient", body)
    assert r.status_code == 201, r.text
    own = b.send("GET", f"/fhir/Patient/{r.json()['id']}").json()
    links = [b.send("GET", "/fhir/" + ln["other"]["reference"]).status_code for ln in own.get("link", [])]
    return own["meta"]["versionId"], links


def test_own_record_reveals_that_a_hidden_look_alike_exists(world):
    """Finding W2-5 (existence oracle). Clinic B registers a Patient with the demographics of a
    person it guesses (here the hospital's hidden patient q) and reads its own record back:
    auto-link rewrote it (versionId 2) with Patient.link to a regional person B cannot read
    (404). A Patient whose demographics match nobody stays at versionId 1 without a link. So
    any facility learns whether someone with given name/birth date/address is a patient
    anywhere in the region. Expected: B's own record reads the same in both cases."""
    b = who(world, "other facility")
    hidden = _own_view(b, {k: v for k, v in other_person("x", "1310000029", "b-1").items() if k != "id"})
    nobody = _own_view(b, _unrelated_patient("b-2"))
    assert hidden == nobody, f"look-alike of a hidden patient: {hidden}; of nobody: {nobody}"


def _registrar_token(node, username: str, org: str, roles: tuple[str, ...]) -> str:
    from hie.auth.service import LOCAL_CLIENT_ID, AuthService
    from hie.auth.users import add_user
    from hie.storage.db import write_tx
    from tests.enforcement.test_write_authz import BASE

    svc = AuthService.for_node(node)
    with write_tx(node.engine) as conn:
        svc.ensure_local_client(conn)
        kind = "staff" if roles else "practitioner"
        user = add_user(conn, svc.box, username=username, display_name=username, kind=kind,
                        organization_code=org, patient_id=None, roles=list(roles), now_us=node.clock.now_us()).user
        return svc.tokens.issue(conn, issuer=svc.issuer(BASE), audience=BASE, client_id=LOCAL_CLIENT_ID,
                                kind="user", scope=["user/*.cruds"], expires_in=3600, user=user,
                                organization_code=org, patient_id=None, roles=frozenset(roles)).token


def test_consent_recorded_at_a_viewing_only_facility_escapes_the_holding_rule(world):
    """Finding W2-6 (leak; the holding rule of 021be8a exempted viewing-only recorders).
    Facility V, disclosing then, has a patient record vx from its feed (matching nobody: a
    vouched holding); V's registrar records a Consent for vx naming V. V's role then changes
    A correction from V's feed carries demographics that match the hospital's patient q:
    auto-link joins vx to q's person (the holding rule stops the Consent's permits while V
    discloses). V's role then changes to viewing only (its feed's later messages are refused:
    W2-4), and q's person changes again (the hospital registers q a second time), so the
    Consent is compiled again. Because
    hie.enforcement.grants.recording_facility treated every registered viewing-only code as the
    operator's office (no holding rule), it kept granting: V's clinician read q's HIV result.
    The holding rule now applies to every facility code; only Consents the operator wrote
    (custodian marked by the write guard) are exempt. Expected: 404."""
    from hie.errors import CustodyForbidden
    from tests.enforcement.test_write_authz import H, V, Caller, _org, _tag, custodian, put_all

    node, client, _ = world
    put_all(node, [_org("org-v", V, role="both")])
    vx = {**_unrelated_patient("v-1"), "id": "vx", "meta": _tag(V)}
    put_all(node, [vx])
    registrar = Caller(client, _registrar_token(node, "w2-v-registrar", V, ("registrar",)))
    clinician = Caller(client, _registrar_token(node, "w2-v-clinician", V, ()))
    r = registrar.send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, "Patient/vx", ["Organization/org-v"], recorded_by="Organization/org-v"))
    assert r.status_code == 201, r.text
    assert custodian(node, "Consent", r.json()["id"]) == V
    assert clinician.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    put_all(node, [{**other_person("vx", V, "v-1"), "meta": _tag(V)}])  # the feed's correction
    assert clinician.send("GET", "/fhir/Observation/hiv-q").status_code == 404  # V discloses: holding rule
    put_all(node, [_org("org-v", V, role="viewing")])
    with pytest.raises(CustodyForbidden):  # the feed of a facility that no longer discloses
        put_all(node, [{**_unrelated_patient("v-2"), "id": "vy", "meta": _tag(V)}])
    # the hospital registers q again: q's person changes, its Consents are compiled again
    put_all(node, [{**other_person("q2", H, "q-002"), "meta": _tag(H)}])
    leaked = clinician.send("GET", "/fhir/Observation/hiv-q")
    assert leaked.status_code == 404, f"V reads q's record through its own registrar's Consent: {leaked.text[:200]}"


def test_operator_recorded_consent_is_marked_and_exempt_from_the_holding_rule(world):
    """The other side of W2-6: a Consent the operator records is marked by who wrote it
    (custodian ``operator-recorded``, whatever the operator's facility) and grants without
    the holding rule, as the patient's own Consents do: clinic B (holding nobody) reads q's
    record once the operator records q's consent naming B."""
    from hie.enforcement.writes import OPERATOR_SOURCE
    from tests.enforcement.test_write_authz import custodian

    b = who(world, "other facility")
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 404
    r = who(world, "operator").send("POST", "/fhir/Consent", builder.chosen_facilities(
        None, "Patient/q", ["Organization/org-b"], recorded_by="Organization/org-o"))
    assert r.status_code == 201, r.text
    assert custodian(world[0], "Consent", r.json()["id"]) == OPERATOR_SOURCE
    assert b.send("GET", "/fhir/Observation/hiv-q").status_code == 200
