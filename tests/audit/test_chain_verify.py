"""The audit trail is tamper-evident: ``hie audit verify`` (chain.verify) reports an edited,
a deleted, an inserted record and a reordered pair, each done directly in the database.

Spec: IHE BALP https://profiles.ihe.net/ITI/BALP/ ; MHLW guideline v6.0 (logs protected
against deletion, tampering and insertion).
"""

from __future__ import annotations

import orjson
import pytest
from sqlalchemy import delete, insert, select, text, update
from typer.testing import CliRunner

from hie.audit.chain import verify
from hie.audit.recorder import AuditRecorder
from hie.audit.tables import audit_chain as A
from hie.audit.tables import audit_checkpoint as K
from hie.auth.service import AuthService
from hie.principal import Principal
from hie.storage.tables import resource as R


def _events(node, n: int, *, batches: int = 2) -> list[str]:
    from hie.audit.events import build

    rec = AuditRecorder(node, interval=None)
    who = Principal(kind="client", name="lis", client_id="lis", organization_id="1110000011",
                    scopes=frozenset({"system/*.rs"}), purpose_of_use="TREAT", token_id="jti-1",
                    network_address="10.0.0.7")
    ids = []
    for b in range(batches):
        for i in range(n):
            ev = build(principal=who, method="GET", path=f"/Observation/o{b}-{i}", query="", status=200,
                       recorded_us=node.clock.now_us(), patient_id="p1", resource_ref=f"Observation/o{b}-{i}")
            rec.record(ev)
            ids.append(ev["id"])
        assert rec.flush() == n
    return ids


def _verify(node):
    with node.engine.connect() as conn:
        return verify(conn, AuthService.for_node(node).keys)


def test_untouched_trail_verifies(node):
    ids = _events(node, 5)
    rep = _verify(node)
    assert rep.ok, rep.problems
    assert rep.records == 10 and rep.checkpoints == 2
    with node.engine.connect() as conn:
        seqs = conn.execute(select(A.c.seq, A.c.event_id).order_by(A.c.seq)).all()
    assert [e for _, e in seqs] == ids and [s for s, _ in seqs] == list(range(1, 11))


def test_verify_detects_an_edited_record(node):
    ids = _events(node, 4)
    with node.engine.begin() as conn:
        content = conn.execute(select(R.c.content).where(R.c.res_id == ids[2])).scalar_one()
        ev = orjson.loads(content)
        ev["outcome"] = "4"  # someone hides that the access succeeded
        conn.execute(update(R).where(R.c.res_id == ids[2]).values(content=orjson.dumps(ev)))
    rep = _verify(node)
    assert [p for p in rep.problems if "edited record" in p] == [
        f"seq 3: AuditEvent/{ids[2]} content does not match its recorded hash (edited record)"]


def test_verify_detects_an_edited_chain_row_even_with_a_matching_record_hash(node):
    ids = _events(node, 3)
    with node.engine.begin() as conn:
        content = conn.execute(select(R.c.content).where(R.c.res_id == ids[1])).scalar_one()
        ev = orjson.loads(content)
        ev["agent"][0]["network"]["address"] = "192.0.2.66"
        from hie.audit.chain import record_hash

        conn.execute(update(R).where(R.c.res_id == ids[1]).values(content=orjson.dumps(ev)))
        conn.execute(update(A).where(A.c.seq == 2).values(record_hash=record_hash(ev)))
    rep = _verify(node)
    assert any(p.startswith("seq 2: chain hash does not match") for p in rep.problems), rep.problems


@pytest.mark.parametrize("where", ["resource", "chain"])
def test_verify_detects_a_deleted_record(node, where):
    ids = _events(node, 4)
    with node.engine.begin() as conn:
        if where == "resource":
            conn.execute(delete(R).where(R.c.res_id == ids[5]))
        else:
            conn.execute(delete(A).where(A.c.seq == 6))
    rep = _verify(node)
    assert not rep.ok
    if where == "resource":
        assert f"seq 6: AuditEvent/{ids[5]} is missing (deleted record)" in rep.problems
    else:
        assert "seq 6..6: chain records missing (deleted records)" in rep.problems
        assert any("not in the chain" in p for p in rep.problems)  # its AuditEvent is now unchained


def test_verify_detects_deleting_the_newest_records(node):
    _events(node, 3)
    with node.engine.begin() as conn:
        conn.execute(delete(A).where(A.c.seq >= 5))
        conn.execute(delete(R).where(R.c.res_type == "AuditEvent", R.c.res_id.not_in(select(A.c.event_id))))
    rep = _verify(node)
    assert "checkpoint at seq 6: the chain has no record 6 (deleted records)" in rep.problems


def test_verify_detects_an_inserted_record(node):
    ids = _events(node, 3)
    with node.engine.begin() as conn:
        row = conn.execute(select(R).where(R.c.res_id == ids[0])).one()._asdict()
        forged = orjson.loads(row["content"])
        forged["id"] = "forged-1"
        row.update(pk=None, res_id="forged-1", content=orjson.dumps(forged))
        row.pop("pk")
        conn.execute(insert(R), row)
    rep = _verify(node)
    assert any("1 AuditEvent resource(s) not in the chain (inserted records), e.g. forged-1" == p for p in rep.problems)


def test_verify_detects_a_record_appended_to_the_chain_with_correct_hashes(node):
    """An attacker who knows the (unkeyed) hash can extend the chain; they cannot sign it."""
    from hie.audit.chain import head, link_hash, record_hash

    ids = _events(node, 2)
    with node.engine.begin() as conn:
        row = conn.execute(select(R).where(R.c.res_id == ids[0])).one()._asdict()
        forged = orjson.loads(row["content"])
        forged["id"] = "forged-2"
        row.pop("pk")
        row.update(res_id="forged-2", content=orjson.dumps(forged))
        conn.execute(insert(R), row)
        seq, prev = head(conn)
        rh = record_hash(forged)
        conn.execute(insert(A), {"seq": seq + 1, "event_id": "forged-2", "recorded": 0, "prev_hash": prev,
                                 "record_hash": rh, "chain_hash": link_hash(prev, seq + 1, "forged-2", rh)})
    rep = _verify(node)
    assert rep.problems == ["seq 5..5: records after the last signed checkpoint (inserted records)"]


def test_verify_detects_a_reordered_pair(node):
    _events(node, 3)
    with node.engine.begin() as conn:
        conn.execute(update(A).where(A.c.seq == 2).values(seq=-2))
        conn.execute(update(A).where(A.c.seq == 3).values(seq=2))
        conn.execute(update(A).where(A.c.seq == -2).values(seq=3))
    rep = _verify(node)
    assert any(p.startswith("seq 2: does not link") for p in rep.problems), rep.problems
    assert any(p.startswith("seq 3: does not link") for p in rep.problems), rep.problems


def test_verify_detects_a_forged_checkpoint(node):
    _events(node, 2)
    with node.engine.begin() as conn:
        conn.execute(update(K).where(K.c.seq == 2).values(chain_hash="0" * 64))
    rep = _verify(node)
    assert "checkpoint at seq 2: signature is invalid (forged or edited checkpoint)" in rep.problems


def test_hie_audit_verify_command_exit_codes(node, monkeypatch):
    from hie.audit.cli import audit_app

    _events(node, 2)
    monkeypatch.setenv("HIE_DATABASE_URL", node.settings.database_url if "sqlite" in node.settings.database_url
                       else node.engine.url.render_as_string(hide_password=False))
    monkeypatch.setenv("HIE_DATA_DIR", str(node.settings.data_dir))
    runner = CliRunner()
    ok = runner.invoke(audit_app, ["verify"])
    assert ok.exit_code == 0, ok.output
    with node.engine.begin() as conn:
        conn.execute(text("DELETE FROM audit_chain WHERE seq = 1"))
    bad = runner.invoke(audit_app, ["verify"])
    assert bad.exit_code == 1
