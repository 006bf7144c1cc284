"""The SQL access predicate equals the pure reference under break-the-glass and disaster mode.

The companion of :mod:`tests.enforcement.test_sql_matches_reference` for the two emergency
branches of :class:`hie.enforcement.policy.ConsentPolicy`. For every consent state of the
scenario, emergency clinicians (roles of ``DEFAULT_POLICY.break_glass``) declare
break-the-glass for patient p1 through the node's ``$break-glass`` operation, and the
operator switches disaster mode on and off through ``$disaster-mode``. At each step, for each
emergency viewer (the clinician acting for ETREAT, for BTG and for plain TREAT, a clinician at
a disclosing-only facility, disaster-response users at a facility that may view and at one
that may not), the rows the repository returns must be exactly the rows the pure reference
allows: the branches of ``expected_ids`` in the companion test (administrative data, the
operator's rows, :func:`consent.grants.grants_permit` told the viewer's purpose), or -- when
the viewer's facility may view, as :func:`consent.decision.decide` orders it -- the pure
emergency rules :func:`consent.decision.break_glass_failures` (with the declaration the
viewer made, on the declared patient's rows only) and :func:`consent.decision.disaster_failures`.
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any

import orjson
import pytest
from sqlalchemy import select

from consent.classes import ADMINISTRATIVE, AUDIT, CONSENT
from consent.decision import break_glass_failures, disaster_failures
from consent.grants import Grant, compile_grants, grants_permit
from consent.model import parse_consent
from consent.policy import DEFAULT_POLICY, DISASTER_ROLE, Policy
from consent.request import AccessRequest, BreakGlass, ResourceFacts
from consent.vocab import TREAT
from hie.clock import FixedClock
from hie.interactions import operations as ops
from hie.principal import Principal
from hie.storage.tables import resource
from tests.enforcement.scenario import CODE_TO_ORG, ORGS, ROLE_ORGS, consents, region, store_network_region
from tests.enforcement.test_sql_matches_reference import NOW, NOW_US, declared_role, visible_ids, write_all

EMERGENCY_ROLES = DEFAULT_POLICY.break_glass.roles
ETREAT = DEFAULT_POLICY.break_glass.purpose
REASON = "意識障害で救急搬送"


def _er(user: str, org: str, purpose: str | None) -> Principal:
    return Principal(kind="user", name=user, user_id=user, organization_id=org, roles=EMERGENCY_ROLES,
                     purpose_of_use=purpose)


def _dmat(user: str, org: str) -> Principal:
    return Principal(kind="user", name=user, user_id=user, organization_id=org, roles=frozenset({DISASTER_ROLE}))


#: the viewers who declare break-the-glass for p1 (each through ``$break-glass``)
DECLARERS = {
    "er-at-c-etreat": _er("er-c", ORGS["org-c"], ETREAT),
    "er-at-d-etreat": _er("er-d", ROLE_ORGS["org-d"], ETREAT),  # disclosing-only facility: may not view
}
VIEWERS = {
    **DECLARERS,
    # the same users acting under another purpose: the declaration stays theirs
    "er-at-c-btg": _er("er-c", ORGS["org-c"], "BTG"),  # a specialization of ETREAT
    "er-at-c-treat": _er("er-c", ORGS["org-c"], TREAT),  # plain treatment: the glass stays closed
    "er-at-c-no-purpose": _er("er-c", ORGS["org-c"], None),
    "er-at-a-undeclared": _er("er-a", ORGS["org-a"], ETREAT),  # never declared anything
    "dmat-at-c": _dmat("dmat-c", ORGS["org-c"]),
    "dmat-at-v-viewing": _dmat("dmat-v", ROLE_ORGS["org-v"]),
    "dmat-at-d-disclosing": _dmat("dmat-d", ROLE_ORGS["org-d"]),
    "operator": Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"})),
}
OPERATOR = VIEWERS["operator"]


def call(node, principal, name, level, res_type=None, res_id=None, params=()):
    """One FHIR operation as the node runs it (as tests/enforcement/test_emergency.py calls it)."""
    op = ops.find(name, level, res_type)
    with node.context(principal, write=op.write) as ctx:
        return op.fn(ctx, ops.OperationCall(name, level, res_type, res_id, list(params), None, "POST"))


def _emergency_opens(req: AccessRequest, policy: Policy) -> bool:
    """Rule 4 of :func:`consent.decision.decide`: break-the-glass, then disaster mode.

    Reached only when consents do not permit; the default policy lets emergency access
    override a consent's deny (asserted by the test), so the consent verdict plays no part."""
    if req.break_glass is not None and not break_glass_failures(req, policy):
        return True
    return policy.disaster_mode and not disaster_failures(req, policy)


def expected_ids(node, principal: Principal, grants: list[Grant], *, policy: Policy,
                 declarations: dict[str, tuple[str, BreakGlass]]) -> set[str]:
    """The companion test's ``expected_ids`` branches plus the emergency rules.

    ``declarations``: user id -> (patient key, declaration) as the test made them."""
    with node.engine.connect() as conn:
        rows = conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.patient_key,
                                   resource.c.custodian, resource.c.data_class, resource.c.content)
                            .where(resource.c.deleted.is_(False))).all()
    may_view, may_disclose = declared_role(principal.organization_id)
    declared = declarations.get(principal.user_id or "")
    out = set()
    for rtype, rid, pkey, custodian, dclass, content in rows:
        ref = f"{rtype}/{rid}"
        if pkey is None and dclass == ADMINISTRATIVE:
            out.add(ref)
            continue
        if "operator" in principal.roles and dclass in (AUDIT, CONSENT):
            out.add(ref)
            continue
        if pkey is None or not principal.organization_id:
            continue
        facts = ResourceFacts.from_resource(orjson.loads(content), patient=pkey,
                                            custodian=CODE_TO_ORG.get(custodian or "", ""))
        viewer = CODE_TO_ORG.get(principal.organization_id, principal.organization_id)
        req = AccessRequest(resource=facts, now=NOW, viewer_org=viewer, viewer_practitioner=principal.practitioner_id,
                            roles=principal.roles, purpose=principal.purpose_of_use or TREAT,
                            break_glass=declared[1] if declared and declared[0] == pkey else None,
                            viewer_may_view=may_view, viewer_may_disclose=may_disclose)
        if grants_permit(grants, req) or (may_view and _emergency_opens(req, policy)):
            out.add(ref)
    return out


def _grants(node, consent_jsons) -> list[Grant]:
    with node.engine.connect() as conn:
        keys = {f"Consent/{i}": pk for i, pk in conn.execute(
            select(resource.c.res_id, resource.c.patient_key).where(resource.c.res_type == "Consent"))}
    parsed = [parse_consent(cj, patient_key=keys[f"Consent/{cj['id']}"]) for cj in consent_jsons]
    return [g for c in parsed for g in compile_grants(c)]


def _p1_key(node) -> str:
    with node.engine.connect() as conn:
        key = conn.execute(select(resource.c.patient_key).where(
            resource.c.res_type == "Patient", resource.c.res_id == "p1")).scalar_one()
    assert key
    return str(key)


def _check(node, step: str, grants: list[Grant], policy: Policy,
           declarations: dict[str, tuple[str, BreakGlass]]) -> None:
    for name, principal in VIEWERS.items():
        got = visible_ids(node, principal)
        want = expected_ids(node, principal, grants, policy=policy, declarations=declarations)
        assert got == want, f"{step} / {name}: extra {sorted(got - want)}, missing {sorted(want - got)}"


@pytest.mark.parametrize("state", sorted(consents()))
def test_sql_predicate_equals_reference_under_emergency_access(node: Any, state: str) -> None:
    # a clock that stands still: the declaration, the predicate's now and the reference's NOW
    # are one instant, so neither side sees a declaration dated after its request
    node.clock = FixedClock(NOW_US, step_us=0)
    node.policy.clock = node.clock
    policy = node.policy.policy
    # the node runs the default policy, which lets emergency access override a consent's deny
    assert policy == DEFAULT_POLICY and policy.emergency_overrides_deny and not policy.disaster_mode
    write_all(node, region())
    store_network_region(node)
    consent_jsons = consents()[state]
    if consent_jsons:
        write_all(node, consent_jsons)
    grants = _grants(node, consent_jsons)
    disaster_on = dataclasses.replace(policy, disaster_mode=True)

    _check(node, f"{state} / nothing declared", grants, policy, {})

    declarations: dict[str, tuple[str, BreakGlass]] = {}
    for principal in DECLARERS.values():
        res = call(node, principal, "break-glass", "instance", "Patient", "p1", [("reason", REASON)])
        assert res.status == 200
        declared_at = datetime.fromisoformat(res.body["parameter"][1]["valueInstant"])
        assert declared_at == NOW
        assert principal.user_id
        declarations[principal.user_id] = (_p1_key(node), BreakGlass(declared_at=NOW, reason=REASON))
    _check(node, f"{state} / break-the-glass for p1", grants, policy, declarations)

    switched = call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "on")])
    assert switched.body["parameter"][0]["valueCode"] == "on"
    _check(node, f"{state} / disaster mode on", grants, disaster_on, declarations)

    switched = call(node, OPERATOR, "disaster-mode", "system", params=[("mode", "off")])
    assert switched.body["parameter"][0]["valueCode"] == "off"
    _check(node, f"{state} / disaster mode off", grants, policy, declarations)
