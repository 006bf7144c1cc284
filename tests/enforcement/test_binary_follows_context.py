"""A Binary follows its securityContext after the target changes (hie/storage/dependents.py).

Hospital D stores DocumentReference X (no label) and Binary Y (``securityContext`` = X);
facility A has the patient's consent and reads both. Then X is relabelled ``PSY``, tagged
``UNINFORMED``, moved to another patient, deleted, or its patient is merged into / unlinked
from another regional person. After each change, every viewer (A, B, the discloser D, the
patient, another patient) sees Y exactly as it sees X: over read, vread, search by ``_id``
and instance history, with real tokens over the running app; hidden answers exactly like
an id that never existed. Which viewers see X comes from the access predicate (proven
against the consent semantics by test_sql_matches_reference); the test also checks that the
change is not vacuous (someone's view of X changes). SQLite and PostgreSQL.
"""

from __future__ import annotations

from typing import Any

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from hie.api.app import create_app
from hie.ingest import ingest_bundle
from hie.principal import SYSTEM
from hie.storage.db import write_tx
from hie.storage.tables import resource as R
from tests.enforcement.test_leaks import Prober, _meta, consent_state, entries_of, put_all, region
from tests.enforcement.test_leaks_versions import VIEWERS, absent_like, all_tokens, expected_versions, shapes

DOC, BIN = "DocumentReference/leakdocref-1", "Binary/leakbin-1"
UNINFORMED = {"system": "http://jpfhir.jp/fhir/clins/CodeSystem/JP_ehrshrs_indication", "code": "UNINFORMED"}
#: A second local patient of D (another person until merged; demographics unlike leakpat-1's).
PAT3 = {"resourceType": "Patient", "id": "leakpat-3", "meta": _meta("1110000011"), "gender": "female",
        "birthDate": "1988-02-03", "name": [{"family": "第三", "given": ["三子"]}]}


def doc(**changes: Any) -> dict[str, Any]:
    return {**shapes()[0], **changes}


def binary() -> dict[str, Any]:
    return shapes()[1]


def _identity(node: Any, action: str) -> None:
    with write_tx(node.engine) as conn:
        if action == "merge":
            node.identity.merge(conn, "leakpat-3", "leakpat-1", actor="test-operator")
        else:
            node.identity.unlink(conn, "leakpat-3", actor="test-operator")


def setup_state(node: Any, state: str) -> None:
    """Region, consent for A, X and Y; for the identity states X is about leakpat-3."""
    put_all(node, region())
    put_all(node, consent_state("a-only"))
    if state in ("merge", "unlink"):
        put_all(node, [PAT3])
        put_all(node, [doc(subject={"reference": "Patient/leakpat-3"}), binary()])
        if state == "unlink":
            _identity(node, "merge")
    else:
        put_all(node, [doc(), binary()])


def apply_state(node: Any, state: str) -> None:
    if state == "label":
        put_all(node, [doc(meta=_meta("1110000011", "PSY"))])
    elif state == "uninformed":
        meta = _meta("1110000011")
        meta["tag"].append(UNINFORMED)
        put_all(node, [doc(meta=meta)])
    elif state == "moved":
        put_all(node, [doc(subject={"reference": "Patient/leakpat-2"})])
    elif state == "deleted":
        ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"request": {"method": "DELETE", "url": DOC}}]}, source="leak-test")
    else:
        _identity(node, state)


#: Whose view of X the change flips (so the state is not vacuous): (lose, gain).
FLIPS = {
    "label": ({"facility-a"}, set()),
    "uninformed": ({"patient"}, set()),
    "moved": ({"facility-a", "patient"}, {"other-patient"}),
    "deleted": ({"facility-a", "patient"}, set()),
    "merge": (set(), {"facility-a", "patient"}),
    "unlink": ({"facility-a", "patient"}, set()),
}


def seen(node: Any, viewer: str) -> tuple[bool, bool]:
    """(X's current row visible, tombstone included; Y visible) by the access predicate and
    the deletion rule (ADR 0006)."""
    current = expected_versions(node, viewer)[0]
    return DOC in current, BIN in current


def probe(p: Prober, viewer: str, doc_seen: bool) -> None:
    """Y answers over every path as X's visibility says; X answers as the predicate says."""
    status, _ = p.get(f"/fhir/{DOC}")
    assert (status in (200, 410)) == doc_seen, (viewer, DOC, status)
    absent = "Binary/leakabsent-1"
    for suffix in ("", "/_history/1", "/_history"):
        if doc_seen:
            status, body = p.get(f"/fhir/{BIN}{suffix}")
            assert status == 200, (viewer, suffix, status, body)
            if suffix == "/_history":
                assert body["total"] == 1 and [e["resource"]["id"] for e in body["entry"]] == ["leakbin-1"]
        else:
            absent_like(p, f"/fhir/{BIN}{suffix}", f"/fhir/{absent}{suffix}", BIN, absent)
    status, body = p.get("/fhir/Binary?_id=leakbin-1")
    s_absent, b_absent = p.get("/fhir/Binary?_id=leakabsent-1")
    assert status == s_absent, (viewer, status, s_absent)
    if status == 200:
        assert entries_of(body, "match") == ({BIN} if doc_seen else set()), (viewer, body)
        assert body["total"] == (1 if doc_seen else 0) and b_absent["total"] == 0, (viewer, body["total"])


@pytest.mark.parametrize("state", ["label", "uninformed", "moved", "deleted", "merge", "unlink"])
def test_binary_is_seen_as_its_security_context(node, state):
    setup_state(node, state)
    before = {v: seen(node, v) for v in VIEWERS}
    assert all(d == b for d, b in before.values()), before  # at write time Y took X's columns
    apply_state(node, state)
    after = {v: seen(node, v) for v in VIEWERS}
    lose, gain = FLIPS[state]
    assert {v for v in VIEWERS if before[v][0] and not after[v][0]} == lose, (state, before, after)
    assert {v for v in VIEWERS if after[v][0] and not before[v][0]} == gain, (state, before, after)
    assert after["disclosing-d"][0], state  # the custodian keeps X (a tombstone) and Y
    for v, (d, b) in after.items():
        assert b == d, (state, v, after)  # a deleted X: the tombstone and Y only for D
    toks = all_tokens(node)
    with TestClient(create_app(node, audit=False), base_url="http://testserver") as client:
        for viewer in VIEWERS:
            doc_seen = after[viewer][0]
            hidden = set() if doc_seen else {DOC, BIN}
            p = Prober(client, toks[viewer], hidden, {DOC, BIN} - hidden, node, viewer)
            probe(p, viewer, doc_seen)


def _columns(node: Any, ref: str) -> dict[str, Any]:
    rtype, rid = ref.split("/")
    with node.context(SYSTEM, write=False) as ctx:
        row = ctx.repo.conn.execute(select(R.c.patient_key, R.c.custodian, R.c.data_class, R.c.sensitive_labels,
                                           R.c.hidden_from_patient)
                                    .where(R.c.res_type == rtype, R.c.res_id == rid)).one()
    return dict(row._mapping)


def test_binary_takes_its_target_again_when_the_deleted_target_is_written_again(node):
    put_all(node, region())
    put_all(node, [doc(), binary()])
    taken = _columns(node, BIN)
    assert taken["patient_key"] == _columns(node, DOC)["patient_key"] is not None
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"request": {"method": "DELETE", "url": DOC}}]}, source="leak-test")
    assert _columns(node, BIN)["patient_key"] is None  # a deleted target gives nothing: custodian only
    put_all(node, [doc(meta=_meta("1110000011", "PSY"))])  # written again, now labelled
    doc_cols, bin_cols = _columns(node, DOC), _columns(node, BIN)
    assert bin_cols["patient_key"] == doc_cols["patient_key"] == taken["patient_key"]
    assert bin_cols["sensitive_labels"] == " PSY " and bin_cols["data_class"] == doc_cols["data_class"]


def test_binary_of_another_custodian_takes_nothing_from_a_target_it_cannot_see(node):
    """Facility B (no consent) points its own Binary at D's DocumentReference: at write time
    it takes nothing, and a later change of the target does not give it the patient either
    (the recompute resolves the target as B sees it, not as the system)."""
    put_all(node, region())
    put_all(node, [doc()])
    toks = all_tokens(node)
    other = {k: v for k, v in binary().items() if k not in ("id", "meta")}
    with TestClient(create_app(node, audit=False), base_url="http://testserver") as client:
        resp = client.post("/fhir/Binary", json=other,
                           headers={"Authorization": f"Bearer {toks['facility-b-writer']}",
                                    "Content-Type": "application/fhir+json"})
        assert resp.status_code == 201, resp.text
    ref = "/".join(resp.headers["location"].split("/_history/")[0].split("/")[-2:])
    first = _columns(node, ref)
    assert first["patient_key"] is None and first["custodian"] == "1110000052", first
    put_all(node, [doc(meta=_meta("1110000011", "PSY"))])  # D changes X: the dependents are recomputed
    cols = _columns(node, ref)
    assert cols["patient_key"] is None and cols["sensitive_labels"].strip() == "", cols
