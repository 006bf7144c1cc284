"""Every FHIR interaction, allowed or refused, leaves an AuditEvent (IHE BALP shape) in the
chain; the records survive a process crash (journal replay); AuditEvents are searchable by
operators and by the patient they are about, and nobody can write them through the API.

Spec: https://profiles.ihe.net/ITI/BALP/ ; https://hl7.org/fhir/R4/auditevent.html
"""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

import orjson
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from hie.api.app import create_app
from hie.audit.chain import verify
from hie.audit.recorder import AuditRecorder
from hie.audit.tables import audit_chain as A
from hie.auth.service import AuthService
from hie.auth.tokens import principal_from_claims  # noqa: F401  (the principal the events describe)
from tests.auth import helpers as h

BASE = "http://testserver/fhir"


def _token(node, client_id, scope):
    return AuthService.for_node(node).token_for_client(client_id, scope, fhir_base=BASE).token


def _events(node):
    with node.engine.connect() as conn:
        from hie.storage.tables import resource as R

        rows = conn.execute(select(R.c.content).where(R.c.res_type == "AuditEvent")).scalars().all()
    return [orjson.loads(r) for r in rows]


@pytest.fixture
def audited(node):
    rec = AuditRecorder(node, interval=None)
    with TestClient(create_app(node, audit=rec), base_url="http://testserver") as c:
        yield c, rec


def test_read_is_audited_in_balp_shape_with_patient_client_facility_and_address(node, audited):
    client, rec = audited
    h.seed(node)
    b = h.backend(node, scope="system/*.rs")
    auth = {"Authorization": f"Bearer {_token(node, b.client_id, 'system/*.rs')}"}
    r = client.get("/fhir/Observation/obs-p1", headers=auth)
    assert r.status_code == 200
    assert rec.flush() == 1
    (ev,) = _events(node)
    assert ev["type"]["code"] == "rest"
    assert ev["subtype"] == [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}]
    assert ev["action"] == "R" and ev["outcome"] == "0"
    assert ev["purposeOfEvent"][0]["coding"][0]["code"] == "TREAT"
    client_agent = ev["agent"][0]
    assert client_agent["who"]["identifier"]["value"] == b.client_id and client_agent["requestor"] is True
    assert client_agent["network"] == {"address": "testclient", "type": "2"}
    facility = [a for a in ev["agent"] if a["type"]["coding"][0]["code"] == "PROV"]
    assert facility[0]["who"]["identifier"]["value"] == h.HOSPITAL
    assert ev["entity"][0]["what"] == {"reference": "Patient/p1"}
    assert ev["entity"][0]["role"]["code"] == "1"
    assert ev["entity"][1]["what"] == {"reference": "Observation/obs-p1"}


def test_refusals_are_audited_401_403_404(node, audited):
    client, rec = audited
    h.seed(node)
    b = h.backend(node, scope="system/Patient.rs")
    tok = _token(node, b.client_id, "system/Patient.rs")
    assert client.get("/fhir/Patient/p1").status_code == 401
    assert client.get("/fhir/Observation/obs-p1", headers={"Authorization": f"Bearer {tok}"}).status_code == 403
    assert client.get("/fhir/Patient/nobody", headers={"Authorization": f"Bearer {tok}"}).status_code == 404
    rec.flush()
    outcomes = sorted((e["outcome"], e.get("outcomeDesc", "")[:3]) for e in _events(node))
    assert outcomes == [("4", "401"), ("4", "403"), ("4", "404")]
    anon = next(e for e in _events(node) if e["outcomeDesc"].startswith("401"))
    assert anon["agent"][0]["who"] == {"display": "unauthenticated caller"}
    with node.engine.connect() as conn:
        assert verify(conn, AuthService.for_node(node).keys).ok


def test_audit_events_cannot_be_written_through_the_api_by_anyone(node, audited):
    client, rec = audited
    root = {"Authorization": f"Bearer {_token(node, None, 'system/*.cruds')}",
            "Content-Type": "application/fhir+json"}
    ev = {"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2026-01-01T00:00:00Z",
          "agent": [{"requestor": True}], "source": {"observer": {"display": "x"}}}
    for method, url in (("POST", "/fhir/AuditEvent"), ("PUT", "/fhir/AuditEvent/x1"), ("DELETE", "/fhir/AuditEvent/x1"),
                        ("PATCH", "/fhir/AuditEvent/x1"), ("DELETE", "/fhir/AuditEvent?outcome=0")):
        body = orjson.dumps([] if method == "PATCH" else ev)
        hdrs = {**root, "Content-Type": "application/json-patch+json"} if method == "PATCH" else root
        r = client.request(method, url, content=body if method != "DELETE" else None, headers=hdrs)
        assert r.status_code == 405, (method, url, r.text)
        assert r.json()["issue"][0]["code"] == "not-supported"
    bundle = {"resourceType": "Bundle", "type": "transaction",
              "entry": [{"resource": ev, "request": {"method": "POST", "url": "AuditEvent"}}]}
    assert client.post("/fhir", content=orjson.dumps(bundle), headers=root).status_code == 405


def test_operator_sees_all_audit_events_and_a_patient_only_those_about_them(node, audited):
    client, rec = audited
    h.seed(node)
    reader = h.backend(node, scope="system/*.rs")
    tok = {"Authorization": f"Bearer {_token(node, reader.client_id, 'system/*.rs')}"}
    client.get("/fhir/Observation/obs-p1", headers=tok)
    client.get("/fhir/Observation/obs-p2", headers=tok)
    rec.flush()
    op = h.backend(node, scope="system/AuditEvent.rs", roles=["operator"], org=None)
    op_tok = {"Authorization": f"Bearer {_token(node, op.client_id, 'system/AuditEvent.rs')}"}
    all_events = client.get("/fhir/AuditEvent", headers=op_tok).json()
    assert all_events["total"] == 2
    about_p1 = client.get("/fhir/AuditEvent?patient=Patient/p1", headers=op_tok).json()
    assert about_p1["total"] == 1
    # the reading hospital system itself does not see the audit trail
    assert client.get("/fhir/AuditEvent", headers=tok).status_code == 200
    assert client.get("/fhir/AuditEvent", headers=tok).json()["total"] == 0
    # the patient sees the events about them (a patient-context token)
    from hie.auth.users import get_by_username

    pt = h.user(node, kind="patient", username="p1-user", patient_id="p1")
    app = h.app_client(node)
    svc = AuthService.for_node(node)
    with node.engine.begin() as conn:
        u = get_by_username(conn, "p1-user").with_launch("p1")
        issued = svc.tokens.issue(conn, issuer="http://testserver/auth", audience=BASE, client_id=app, kind="patient",
                                  scope=["patient/AuditEvent.rs"], expires_in=300, user=u, patient_id="p1")
    assert pt.user.patient_id == "p1"
    mine = client.get("/fhir/AuditEvent", headers={"Authorization": f"Bearer {issued.token}"}).json()
    refs = {e["resource"]["entity"][0]["what"]["reference"] for e in mine.get("entry", [])}
    assert mine["total"] >= 1 and refs == {"Patient/p1"}


def test_records_survive_a_crash_of_the_process(node, tmp_path):
    """A child process records events and dies (os._exit) before any flush; the next
    recorder replays its journal into the chain."""
    url = node.settings.database_url if node.engine.dialect.name == "sqlite" else \
        node.engine.url.render_as_string(hide_password=False)
    script = textwrap.dedent(f"""
        import os
        from hie.app import Node
        from hie.config import Settings
        from hie.audit.recorder import AuditRecorder
        from hie.audit.events import build
        from pathlib import Path
        node = Node(Settings(database_url={url!r}, data_dir=Path({str(node.settings.data_dir)!r})))
        rec = AuditRecorder(node, interval=None)
        for i in range(25):
            rec.record(build(principal=None, method="GET", path=f"/Patient/c{{i}}", query="", status=401,
                             recorded_us=node.clock.now_us(), diagnostics="no token"))
        os._exit(9)
    """)
    env = {**os.environ, "PYTHONPATH": os.getcwd()}
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 9, proc.stderr
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(A)).scalar_one() == 0
    AuditRecorder(node, interval=None)  # a starting recorder replays journals whose owner is gone
    with node.engine.connect() as conn:
        assert conn.execute(select(func.count()).select_from(A)).scalar_one() == 25
        assert verify(conn, AuthService.for_node(node).keys).ok
    # replaying again changes nothing
    assert AuditRecorder(node, interval=None).recover() == 0
