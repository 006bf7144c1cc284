"""What a viewing facility can see follows links and unlinks, through the consent access
predicate (:mod:`hie.enforcement.policy`): a consent is granted for the regional person, so
a newly linked facility's records become visible to the consented viewer, and stop being
visible after the unlink. Also: grants compiled from a Consent recorded for a record follow
that record when it is linked."""

from __future__ import annotations

from typing import Any

import pytest
from identity_fixtures import key_of, patient
from sqlalchemy import select

from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, MEDICAL_INSTITUTION_SYSTEM
from hie.principal import SYSTEM, Principal
from hie.storage.repository import Write
from hie.storage.tables import resource

builder = pytest.importorskip("consent.builder")
pytest.importorskip("hie.enforcement.policy")

A, B, C = "1110000011", "1110000029", "1110000052"  # hospital A, clinic B, viewing clinic C
VIEWER_C = Principal(kind="user", name="dr-c", user_id="dr-c", organization_id=C)
KW = {"recorded_by": "Organization/org-a", "date_time": "2026-01-10T10:00:00+09:00"}


def _tag(res: dict[str, Any], code: str) -> dict[str, Any]:
    return {**res, "meta": {"tag": [{"system": CUSTODIAN_TAG_SYSTEM, "code": code}]}}


def _org(oid: str, code: str) -> dict[str, Any]:
    return {"resourceType": "Organization", "id": oid, "name": oid,
            "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]}


def _lab(oid: str, pid: str, code: str) -> dict[str, Any]:
    return _tag({"resourceType": "Observation", "id": oid, "status": "final",
                 "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category",
                                           "code": "laboratory"}]}],
                 "code": {"text": "HbA1c"}, "subject": {"reference": f"Patient/{pid}"},
                 "effectiveDateTime": "2026-10-01T09:00:00+09:00", "valueQuantity": {"value": 7.0, "unit": "%"}}, code)


def _write(node, *resources: dict[str, Any]) -> None:
    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([Write("update", r["resourceType"], r["id"], r) for r in resources])


def _visible(node, principal: Principal) -> set[str]:
    with node.context(principal, write=False) as ctx:
        rows = ctx.repo.conn.execute(select(resource.c.res_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), ctx.access(resource))).all()
    return {f"{t}/{i}" for t, i in rows if t in ("Observation", "Patient")}


@pytest.fixture
def region(node):
    _write(node, _org("org-a", A), _org("org-b", B), _org("org-c", C))
    _write(node, _tag(patient("a1", A, "0001234"), A), _lab("lab-a", "a1", A))
    return node


def test_consented_viewer_sees_a_newly_linked_facilitys_records_until_unlink(region):
    node = region
    _write(node, builder.chosen_facilities("c1", "Patient/a1", ["Organization/org-c"], **KW))
    assert {"Observation/lab-a", "Patient/a1"} <= _visible(node, VIEWER_C)

    # Clinic B registers the same person (auto-linked) and sends a lab result.
    _write(node, _tag(patient("b1", B, "88-17"), B), _lab("lab-b", "b1", B))
    assert key_of(node, "b1") == key_of(node, "a1")
    assert {"Observation/lab-a", "Observation/lab-b", "Patient/b1"} <= _visible(node, VIEWER_C)

    with node.context(SYSTEM, write=True) as ctx:
        node.identity.unlink(ctx.repo.conn, "b1", actor="staff")
    seen = _visible(node, VIEWER_C)
    assert "Observation/lab-b" not in seen and "Patient/b1" not in seen
    assert "Observation/lab-a" in seen


def test_an_unconsented_viewer_sees_nothing_of_the_person_before_or_after_linking(region):
    node = region
    _write(node, _tag(patient("b1", B, "88-17"), B), _lab("lab-b", "b1", B))
    assert key_of(node, "b1") == key_of(node, "a1")
    assert _visible(node, VIEWER_C) == set()


def test_grants_of_a_consent_recorded_for_a_record_follow_it_into_the_person(region):
    node = region
    # Clinic B's record is different enough not to be auto-linked; the consent names viewer C.
    _write(node, _tag(patient("b1", B, "88-17", family="ヤマダ", given="タロー", birth="1970-02-01",
                              address="福島県郡山市1-1", postal="963-8001", phone="024-000-0000"), B),
           _lab("lab-b", "b1", B))
    _write(node, builder.chosen_facilities("cb", "Patient/b1", ["Organization/org-c"],
                                           **{**KW, "recorded_by": "Organization/org-b"}))
    assert key_of(node, "b1") != key_of(node, "a1")
    assert "Observation/lab-b" in _visible(node, VIEWER_C)
    assert "Observation/lab-a" not in _visible(node, VIEWER_C)

    # At the counter, staff link B's record to the regional person (a1's): the consent
    # now covers the person, and its records at A.
    with node.context(SYSTEM, write=True) as ctx:
        node.identity.link_at_counter(ctx.repo.conn, "b1", actor="staff", target="a1")
    assert {"Observation/lab-a", "Observation/lab-b"} <= _visible(node, VIEWER_C)

    with node.context(SYSTEM, write=True) as ctx:
        node.identity.unlink(ctx.repo.conn, "b1", actor="staff")
    seen = _visible(node, VIEWER_C)
    assert "Observation/lab-b" in seen and "Observation/lab-a" not in seen
