"""AuditEvents are indexed for a reduced set of search parameters (hie/audit/search.py):
the ones the trail is searched by work, the others are declared unsupported (refused under
``handling=strict``, absent from the CapabilityStatement) instead of silently unindexed.

Spec: https://hl7.org/fhir/R4/auditevent.html#search ; https://hl7.org/fhir/R4/search.html#errors
"""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select, union

from hie.api.app import create_app
from hie.audit.recorder import AuditRecorder
from hie.audit.search import AUDIT_SEARCH_PARAMS
from hie.auth.service import AuthService
from hie.search.registry import SearchRegistry
from hie.search.tables import ALL_INDEX_TABLES
from hie.storage.tables import resource as R
from tests.auth import helpers as h

BASE = "http://testserver/fhir"


@pytest.fixture
def trail(node):
    h.seed(node)
    rec = AuditRecorder(node, interval=None)
    svc = AuthService.for_node(node)
    reader = h.backend(node, scope="system/*.rs")
    op = h.backend(node, scope="system/AuditEvent.rs", roles=["operator"], org=None)
    with TestClient(create_app(node, audit=rec), base_url="http://testserver") as c:
        tok = svc.token_for_client(reader.client_id, "system/*.rs", fhir_base=BASE)
        assert c.get("/fhir/Observation/obs-p1", headers={"Authorization": f"Bearer {tok.token}"}).status_code == 200
        assert rec.flush() == 1
        op_tok = svc.token_for_client(op.client_id, "system/AuditEvent.rs", fhir_base=BASE).token
        yield c, {"Authorization": f"Bearer {op_tok}"}, tok.jti, reader.client_id


def test_audit_events_are_indexed_only_for_the_reduced_parameter_set(node, trail):
    with node.engine.connect() as conn:
        pk = conn.execute(select(R.c.pk).where(R.c.res_type == "AuditEvent")).scalar_one()
        codes = set(conn.execute(union(*(select(t.c.param).where(t.c.resource_pk == pk)
                                        for t in ALL_INDEX_TABLES))).scalars())
    base = {c.split(":", 1)[0] for c in codes}
    assert base <= set(AUDIT_SEARCH_PARAMS), base - set(AUDIT_SEARCH_PARAMS)
    assert {"patient", "entity", "agent", "date", "type", "subtype", "outcome", "action", "policy"} <= base


@pytest.mark.parametrize("query", [
    "patient=Patient/p1", "entity=Patient/p1", "subtype=read", "outcome=0", "action=R", "type=rest",
    "date=ge2000-01-01", "_lastUpdated=ge2000-01-01", "agent:identifier={client}",
])
def test_searches_on_the_indexed_parameters_find_the_event(trail, query):
    client, op, _, client_id = trail
    query = query.format(client=client_id)
    r = client.get(f"/fhir/AuditEvent?{query}", headers={**op, "Prefer": "handling=strict"})
    assert r.status_code == 200, r.text
    assert r.json()["total"] == 1, (query, r.text)


def test_search_by_the_access_tokens_jti_finds_what_it_did(trail):
    client, op, jti, _ = trail
    r = client.get(f"/fhir/AuditEvent?policy={jti}", headers={**op, "Prefer": "handling=strict"})
    assert r.status_code == 200 and r.json()["total"] == 1, r.text
    assert client.get("/fhir/AuditEvent?policy=someone-else", headers=op).json()["total"] == 0


def test_a_parameter_outside_the_set_is_refused_not_silently_ignored(trail):
    client, op, _, _ = trail
    r = client.get("/fhir/AuditEvent?entity-name=x", headers={**op, "Prefer": "handling=strict"})
    assert r.status_code == 400, r.text
    issue = r.json()["issue"][0]
    assert issue["details"]["coding"][0]["code"] == "HIE-1008" and issue["expression"] == ["entity-name"]
    assert issue["diagnostics"] == ("Search parameter 'entity-name' is not supported: not indexed for AuditEvent "
                                    "(the audit trail indexes a reduced set; see hie/audit/search.py)")


def test_capability_statement_lists_only_the_indexed_audit_parameters(trail):
    client, _, _, _ = trail
    cs = client.get("/fhir/metadata").json()
    (audit,) = [r for r in cs["rest"][0]["resource"] if r["type"] == "AuditEvent"]
    names = {p["name"] for p in audit.get("searchParam", [])}
    assert names == set(AUDIT_SEARCH_PARAMS) | {"_id", "_lastUpdated"}
    (obs,) = [r for r in cs["rest"][0]["resource"] if r["type"] == "Observation"]
    assert {"code", "subject", "value-quantity", "_tag"} <= {p["name"] for p in obs["searchParam"]}


def test_restrict_leaves_other_types_and_column_parameters_alone():
    reg = SearchRegistry.from_files(*_definition_files())
    before = {p.code for p in reg.indexed_params("Observation")}
    reg.restrict("Observation", ["code"], "test restriction")
    assert {p.code for p in reg.indexed_params("Observation")} == {"code"}
    assert reg.get("Observation", "subject").supported is False
    assert reg.get("Observation", "subject").reason == "test restriction"
    assert reg.get("Observation", "_id").supported and reg.get("Observation", "_lastUpdated").supported
    assert {p.code for p in reg.indexed_params("Condition")} >= {"code", "subject"}
    assert before > {"code"}


def _definition_files():
    from pathlib import Path

    import hie.search.registry as regmod

    d = Path(regmod.__file__).resolve().parents[1] / "definitions"
    return d / "search-parameters.json", d / "compartmentdefinition-patient.json"
