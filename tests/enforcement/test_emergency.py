"""Break-the-glass, disaster mode and $consent-explain (repository and operation level)."""

from __future__ import annotations

import pytest

from hie.clock import FixedClock
from hie.errors import Forbidden, InvalidRequest
from hie.interactions import operations as ops
from hie.principal import SYSTEM, Principal
from tests.enforcement.scenario import ORGS, consents, region
from tests.enforcement.test_sql_matches_reference import NOW_US, visible_ids, write_all

ADMIN = {"Organization/org-a", "Organization/org-b", "Organization/org-c"}
ER = Principal(kind="user", name="er", user_id="er-doc", organization_id=ORGS["org-c"],
               roles=frozenset({"emergency-clinician"}))
DISASTER = Principal(kind="user", name="dmat", user_id="dmat", organization_id=ORGS["org-c"],
                     roles=frozenset({"disaster-response"}))
OPERATOR = Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"}))
#: p1's emergency dataset at NOW (2026-11-21): demographics, active problems (not PSY),
#: medications of the last 90 days, labs of the last 30 days; sensitive data excluded.
P1_EMERGENCY = {"Patient/p1", "Condition/cond-a", "Condition/cond-a-uninformed", "MedicationRequest/med-a",
                "Observation/lab-b-2026"}


def call(node, principal, name, level, res_type=None, res_id=None, params=(), method="POST", body=None):
    op = ops.find(name, level, res_type)
    with node.context(principal, write=op.write) as ctx:
        return op.fn(ctx, ops.OperationCall(name, level, res_type, res_id, list(params), body, method))


@pytest.fixture
def region_node(node):
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    write_all(node, region())
    return node


def test_break_glass_opens_the_emergency_dataset_for_that_patient_only(region_node):
    node = region_node
    assert visible_ids(node, ER) == ADMIN
    res = call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "意識障害で救急搬送")])
    assert res.status == 200
    seen = visible_ids(node, ER)
    assert seen - ADMIN == P1_EMERGENCY
    assert "Observation/lab-p2-b" not in seen
    log = call(node, SYSTEM, "break-glass-log", "instance", "Patient", "p1", method="GET").body
    assert log["parameter"][0]["part"][3]["valueString"] == "意識障害で救急搬送"


def test_break_glass_expires(region_node):
    node = region_node
    call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    node.clock.t += 24 * 3600 * 1_000_000 + 1
    assert visible_ids(node, ER) == ADMIN


def test_break_glass_needs_role_and_reason(region_node):
    node = region_node
    with pytest.raises(InvalidRequest):
        call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "  ")])
    plain = Principal(kind="user", name="x", user_id="x", organization_id=ORGS["org-c"])
    with pytest.raises(Forbidden):
        call(node, plain, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    assert visible_ids(node, plain) == ADMIN


def test_patient_sees_break_glass_uses_about_them_and_others_do_not(region_node):
    node = region_node
    call(node, ER, "break-glass", "instance", "Patient", "p1", [("reason", "救急")])
    p1 = Principal(kind="patient", name="p1", user_id="pp1", patient_id="p1")
    p2 = Principal(kind="patient", name="p2", user_id="pp2", patient_id="p2")
    assert len(call(node, p1, "break-glass-log", "instance", "Patient", "p1", method="GET").body["parameter"]) == 1
    from hie.errors import NotFound

    with pytest.raises(NotFound):
        call(node, p2, "break-glass-log", "instance", "Patient", "p1", method="GET")
    report = call(node, OPERATOR, "break-glass-report", "system", method="GET").body
    assert len(report["parameter"]) == 1


def test_disaster_mode_opens_emergency_data_to_disaster_accounts_only_while_on(region_node):
    node = region_node
    assert visible_ids(node, DISASTER) == ADMIN
    with pytest.raises(Forbidden):
        call(node, DISASTER, "disaster-mode", "system", params=[("mode", "on")])
    assert call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "on")]).body["parameter"][0]["valueCode"] == "on"
    seen = visible_ids(node, DISASTER)
    assert P1_EMERGENCY <= seen and "Patient/p2" in seen
    assert "Observation/lab-p2-b" not in seen  # 51 days old: outside the 30-day lab window
    assert "Observation/lab-a-hiv" not in seen and "DocumentReference/doc-a" not in seen
    plain = Principal(kind="user", name="x", user_id="x", organization_id=ORGS["org-c"])
    assert visible_ids(node, plain) == ADMIN
    call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "off")])
    assert visible_ids(node, DISASTER) == ADMIN


def test_consent_explain_names_the_provisions(region_node):
    node = region_node
    write_all(node, consents()["all-except-b"])
    body = call(node, OPERATOR, "consent-explain", "instance", "Patient", "p1",
                [("facility", ORGS["org-b"]), ("resource", "Observation/lab-a-2026")], method="GET").body
    parts = {p["name"]: p for p in body["parameter"]}
    assert parts["decision"]["valueCode"] == "deny"
    assert "org-b" in parts["explanation"]["valueString"]
    body = call(node, OPERATOR, "consent-explain", "instance", "Patient", "p1",
                [("facility", ORGS["org-c"]), ("resource", "Observation/lab-a-2026")], method="GET").body
    assert {p["name"]: p for p in body["parameter"]}["decision"]["valueCode"] == "permit"
    with pytest.raises(Forbidden):
        call(node, ER, "consent-explain", "instance", "Patient", "p1", [("facility", ORGS["org-b"])], method="GET")


def test_revocation_takes_effect_on_the_next_request(region_node):
    node = region_node
    write_all(node, consents()["facility-b-only"])
    b = Principal(kind="user", name="b", user_id="ub", organization_id=ORGS["org-b"])
    assert "Observation/lab-a-2026" in visible_ids(node, b)
    write_all(node, consents()["revoked"])  # same Consent id, status inactive
    assert "Observation/lab-a-2026" not in visible_ids(node, b)


def test_invalid_consent_is_rejected_with_its_path(region_node):
    from hie.errors import InvalidResource
    from hie.storage.repository import Write

    bad = consents()["facility-b-only"][0]
    bad = {**bad, "provision": {**bad["provision"], "actor": [{"reference": {"reference": "Organization/org-b"}}]}}
    with pytest.raises(InvalidResource) as exc:
        with region_node.context(SYSTEM, write=True) as ctx:
            ctx.repo.write_batch([Write("update", "Consent", bad["id"], bad)])
    assert exc.value.issues[0].expression[0].startswith("Consent.provision")
