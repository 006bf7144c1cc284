"""The SQL access predicate equals the pure reference semantics.

For every consent state of the scenario, every resource and every viewer (each facility,
a named practitioner, the patient, facilities of every network role, an inactive and an
unregistered facility code, the operator), the set of rows the repository returns must be
exactly the set the pure reference allows: administrative data; the disclosing facility (if it
may disclose); the patient (minus UNINFORMED); the operator's audit and Consent rows;
otherwise :func:`consent.grants.grants_permit` over the compiled grants, told the viewer's
network role as the scenario declares it (not as the node's directory computes it).
"""

from __future__ import annotations

from datetime import datetime, timezone

import orjson
import pytest
from sqlalchemy import select

from consent.classes import ADMINISTRATIVE, AUDIT, CONSENT
from consent.grants import compile_grants, grants_permit
from consent.model import parse_consent
from consent.request import UNINFORMED, AccessRequest, ResourceFacts
from hie.clock import FixedClock
from hie.principal import SYSTEM, Principal
from hie.storage.tables import resource
from tests.enforcement.scenario import CODE_TO_ORG, NETWORK_ROLES, ORGS, ROLE_ORGS, UNREGISTERED, consents, \
    region, store_network_region

NOW = datetime(2026, 11, 21, 12, 0, tzinfo=timezone.utc)
NOW_US = int(NOW.timestamp() * 1_000_000)

VIEWERS = {
    "facility-a": Principal(kind="user", name="a", user_id="ua", organization_id=ORGS["org-a"]),
    "facility-b": Principal(kind="user", name="b", user_id="ub", organization_id=ORGS["org-b"]),
    "facility-c": Principal(kind="user", name="c", user_id="uc", organization_id=ORGS["org-c"]),
    "dr-c-at-c": Principal(kind="user", name="dr", user_id="dr", organization_id=ORGS["org-c"], practitioner_id="dr-c"),
    "patient-p1": Principal(kind="patient", name="p1", user_id="pp1", patient_id="p1"),
    "patient-p2": Principal(kind="patient", name="p2", user_id="pp2", patient_id="p2"),
    "facility-v-viewing": Principal(kind="user", name="v", user_id="uv", organization_id=ROLE_ORGS["org-v"]),
    "facility-d-disclosing": Principal(kind="user", name="d", user_id="ud", organization_id=ROLE_ORGS["org-d"]),
    "facility-x-inactive": Principal(kind="user", name="x", user_id="ux", organization_id=ROLE_ORGS["org-x"]),
    "unregistered": Principal(kind="client", name="u", client_id="cu", organization_id=UNREGISTERED),
    "operator": Principal(kind="user", name="op", user_id="op", roles=frozenset({"operator"})),
}


def declared_role(code: str | None) -> tuple[bool, bool]:
    """(may view, may disclose) of a facility code as the scenario declares it."""
    oid = CODE_TO_ORG.get(code or "")
    if oid is None or oid == "org-x":  # unregistered, inactive
        return False, False
    role = NETWORK_ROLES.get(oid, "both")
    return role in ("viewing", "both"), role in ("disclosing", "both")


def write_all(node, resources) -> None:
    from hie.storage.repository import Write

    with node.context(SYSTEM, write=True) as ctx:
        ctx.repo.write_batch([Write("update", r["resourceType"], r["id"], r) for r in resources])


def visible_ids(node, principal) -> set[str]:
    with node.context(principal, write=False) as ctx:
        rows = ctx.repo.conn.execute(select(resource.c.res_type, resource.c.res_id).where(
            resource.c.deleted.is_(False), ctx.access(resource))).all()
    return {f"{t}/{i}" for t, i in rows}


def expected_ids(node, principal, consent_jsons) -> set[str]:
    with node.engine.connect() as conn:
        rows = conn.execute(select(resource.c.res_type, resource.c.res_id, resource.c.patient_key,
                                   resource.c.custodian, resource.c.data_class, resource.c.content)
                            .where(resource.c.deleted.is_(False))).all()
    keys = {f"{t}/{i}": pk for t, i, pk, *_ in rows}
    parsed = []
    for cj in consent_jsons:
        parsed.append(parse_consent(cj, patient_key=keys[f"Consent/{cj['id']}"]))
    grants = [g for c in parsed for g in compile_grants(c)]
    own = keys.get(f"Patient/{principal.patient_id}") if principal.kind == "patient" else None
    may_view, may_disclose = declared_role(principal.organization_id)
    out = set()
    for rtype, rid, pkey, custodian, dclass, content in rows:
        res = orjson.loads(content)
        ref = f"{rtype}/{rid}"
        if pkey is None and dclass == ADMINISTRATIVE:
            out.add(ref)
            continue
        if "operator" in principal.roles and dclass in (AUDIT, CONSENT):
            out.add(ref)
            continue
        facts = ResourceFacts.from_resource(res, patient=pkey or "", custodian=CODE_TO_ORG.get(custodian or "", ""))
        if own is not None:
            if pkey == own and UNINFORMED not in facts.tags:
                out.add(ref)
            continue
        if pkey is None or not principal.organization_id:
            continue
        viewer = CODE_TO_ORG.get(principal.organization_id, principal.organization_id)
        req = AccessRequest(resource=facts, now=NOW, viewer_org=viewer, viewer_practitioner=principal.practitioner_id,
                            viewer_may_view=may_view, viewer_may_disclose=may_disclose)
        if grants_permit(grants, req):
            out.add(ref)
    return out


@pytest.mark.parametrize("state", sorted(consents()))
def test_sql_predicate_equals_reference(node, state):
    node.clock = FixedClock(NOW_US)
    node.policy.clock = node.clock
    write_all(node, region())
    store_network_region(node)
    consent_jsons = consents()[state]
    if consent_jsons:
        write_all(node, consent_jsons)
    for name, principal in VIEWERS.items():
        got = visible_ids(node, principal)
        want = expected_ids(node, principal, consent_jsons)
        assert got == want, f"{state} / {name}: extra {sorted(got - want)}, missing {sorted(want - got)}"
