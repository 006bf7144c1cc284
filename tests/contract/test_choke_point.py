"""The repository is the only code that runs SQL on resource data, by construction.

* the checker (:mod:`tests.contract.choke_point`) finds nothing outside its allow-lists in
  hie/, adapters/ and consent/, and every PENDING entry still violates (the list shrinks);
* it flags a deliberately added raw query, in a copy of the real tree, in each form it
  knows (table import, ``.execute(``, ``ctx.conn``/``repo.conn``, SQL text);
* a Repository cannot be built without an access policy (fail closed), the interaction
  context has no raw connection, and the node's own use of the system principal is audited.
"""

from __future__ import annotations

import dataclasses
import shutil
import textwrap
from pathlib import Path

import pytest

from tests.contract.choke_point import ROOTS, check_source, stale_pending, violations

ROOT = Path(__file__).resolve().parents[2]


def test_no_module_outside_the_allow_lists_touches_resource_data_or_a_raw_connection() -> None:
    found = violations(ROOT)
    assert not found, "raw SQL outside the repository:\n" + "\n".join(map(str, found))


def test_every_pending_entry_still_violates_so_the_list_only_shrinks() -> None:
    assert stale_pending(ROOT) == [], "fixed: remove these from PENDING"


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A copy of the real source tree to add modules to."""
    root = tmp_path_factory.mktemp("tree")
    for pkg in ROOTS:
        shutil.copytree(ROOT / pkg, root / pkg, ignore=shutil.ignore_patterns("__pycache__"))
    assert violations(root) == []  # the copy is as clean as the real tree
    return root


LEAKS = {
    "table import and execute": """
        from sqlalchemy import select
        from hie.storage.tables import resource as R

        def peek(engine):
            with engine.connect() as c:
                return c.execute(select(R.c.content)).all()
    """,
    "context connection": """
        def peek(ctx):
            return ctx.conn
    """,
    "repository connection": """
        from sqlalchemy import text

        def peek(ctx):
            return ctx.repo.conn
    """,
    "index table": """
        from hie.search.tables import search_token

        COLUMNS = search_token.c
    """,
    "SQL text": """
        QUERY = "SELECT content FROM resource_version WHERE res_id = :id"
    """,
    "table by name": """
        from sqlalchemy import column, select, table

        CONTENT = select(column("content")).select_from(table("resource"))
    """,
    "metadata lookup": """
        from hie.storage.schema import metadata

        VERSIONS = metadata.tables["resource_version"]
    """,
    "table under another module's name": """
        from hie.storage.repository import R

        CONTENT = R.c.content
    """,
    "driver SQL": """
        def peek(conn):
            return conn.exec_driver_sql("SELECT 1")
    """,
}


@pytest.mark.parametrize("name", list(LEAKS))
def test_checker_flags_a_deliberately_added_raw_query(tree: Path, name: str) -> None:
    rel = "hie/interactions/leaky.py"
    module = tree / rel
    module.write_text(textwrap.dedent(LEAKS[name]), encoding="utf-8")
    try:
        found = violations(tree)
    finally:
        module.unlink()
    assert found and {f.path for f in found} == {rel}, found


def test_checker_flags_resource_tables_even_in_a_module_that_owns_other_tables(tree: Path) -> None:
    rel = "hie/auth/leaky.py"  # hie/auth may execute statements on its own tables only
    module = tree / rel
    module.write_text("from hie.storage.tables import resource_version as V\n"
                      "def own(conn):\n    return conn.execute('SELECT 1')\n", encoding="utf-8")
    try:
        found = violations(tree)
    finally:
        module.unlink()
    assert [(f.path, f.kind) for f in found] == [(rel, "tables")]


def test_checker_allows_the_storage_layer_and_reports_an_added_module_with_its_line() -> None:
    source = "from hie.storage.tables import resource\nx = resource\n"
    assert check_source("hie/storage/extra.py", source)  # found, but the storage layer may
    tmp_rel = "adapters/leaky.py"
    [finding] = check_source(tmp_rel, source)
    assert (finding.line, finding.kind) == (1, "tables")


# -- fail closed ------------------------------------------------------------------------------


def test_repository_without_an_access_policy_cannot_be_built(node) -> None:  # noqa: ANN001
    from hie.principal import SYSTEM
    from hie.storage.access import UnrestrictedPolicy
    from hie.storage.repository import Repository

    with node.engine.connect() as conn:
        with pytest.raises(TypeError):
            Repository(conn, SYSTEM, registry=node.registry)  # type: ignore[call-arg]
        with pytest.raises(TypeError):
            Repository(conn, SYSTEM, registry=node.registry, policy=None)  # type: ignore[arg-type]
        with pytest.raises(ValueError):
            UnrestrictedPolicy("  ")
        repo = Repository(conn, SYSTEM, registry=node.registry, policy=UnrestrictedPolicy("this test"))
        assert repo.current("Patient", "nobody") is None


def test_interaction_context_has_no_raw_connection(node) -> None:  # noqa: ANN001
    from hie.principal import SYSTEM

    with node.context(SYSTEM, write=False) as ctx:
        assert not hasattr(ctx, "conn")
        assert "conn" not in {f.name for f in dataclasses.fields(ctx)}
        page = ctx.repo.search("Patient", [], count=10)
        assert (page.rows, page.total) == ([], 0)


# -- system principal use is audited ------------------------------------------------------------


def _audited(node, fn):  # noqa: ANN001, ANN202
    """Run ``fn`` with system-use auditing on; the AuditEvents stored, as dicts."""
    from hie.audit.recorder import AuditRecorder
    from hie.principal import SYSTEM

    saved = node.settings
    node.settings = dataclasses.replace(saved, audit_system_use=True)
    recorder = AuditRecorder(node, interval=None)
    node.__dict__["_hie_audit"] = recorder
    try:
        fn()
        recorder.flush()
    finally:
        node.__dict__.pop("_hie_audit", None)
        node.settings = saved
    with node.context(SYSTEM, write=False) as ctx:
        page = ctx.repo.search("AuditEvent", [], count=100)
    import orjson

    return [orjson.loads(row[3]) for row in page.rows]


def test_ingest_as_the_system_principal_is_audited(node) -> None:  # noqa: ANN001
    from hie.ingest import ingest_bundle

    bundle = {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": {"resourceType": "Patient", "id": "p1", "name": [{"family": "Tone"}]},
         "request": {"method": "PUT", "url": "Patient/p1"}}]}
    events = _audited(node, lambda: ingest_bundle(node, bundle, source="test:feed-1"))
    [event] = events
    assert event["type"]["code"] == "110107"  # DICOM Import
    assert event["subtype"][0]["code"] == "ingest"
    assert event["agent"][0]["who"] == {"display": "system"}
    assert "test:feed-1" in event["entity"][0]["description"]
    from hie.audit.system import SYSTEM_USE
    from hie.principal import SYSTEM

    with node.context(SYSTEM, write=False) as ctx:  # as docs/security.md says to find them
        assert ctx.repo.search("AuditEvent", [("subtype", f"{SYSTEM_USE}|ingest")], count=10).total == 1
        assert ctx.repo.search("AuditEvent", [("subtype", f"{SYSTEM_USE}|reindex")], count=10).total == 0


def test_maintenance_as_the_system_principal_is_audited(node) -> None:  # noqa: ANN001
    events = _audited(node, lambda: (node.system_use("reindex"), node.system_use("audit-verify")))
    assert sorted(e["subtype"][0]["code"] for e in events) == ["audit-verify", "reindex"]
    assert {e["type"]["code"] for e in events} == {"110100"}  # DICOM Application Activity
    with pytest.raises(ValueError):
        node.system_use("anything-else")


def test_system_use_is_not_recorded_when_turned_off(node) -> None:  # noqa: ANN001
    from hie.audit.system import record_system_use

    assert node.settings.audit_system_use is False  # the suite's nodes, as in tests/conftest.py
    assert record_system_use(node, "reindex") is None


def test_maintenance_commands_record_their_system_use(node, monkeypatch) -> None:  # noqa: ANN001
    """``hie reindex`` and ``hie consent`` as run by an operator: their AuditEvents are stored
    when the command ends."""
    from typer.testing import CliRunner

    from hie.cli import app
    from hie.principal import SYSTEM

    url = node.settings.database_url if node.engine.dialect.name == "sqlite" else \
        node.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("HIE_DATABASE_URL", url)
    monkeypatch.setenv("HIE_DATA_DIR", str(node.settings.data_dir))
    monkeypatch.setenv("HIE_AUDIT_SYSTEM_USE", "on")
    runner = CliRunner()
    for args in (["reindex"], ["consent", "disaster", "status"]):
        done = runner.invoke(app, args)
        assert done.exit_code == 0, done.output
    with node.context(SYSTEM, write=False) as ctx:
        found = ctx.repo.search("AuditEvent", [], count=100)
    import orjson

    events = [orjson.loads(row[3]) for row in found.rows]
    assert sorted(e["subtype"][0]["code"] for e in events) == ["maintenance", "reindex"]
    [consent] = [e for e in events if e["subtype"][0]["code"] == "maintenance"]
    assert consent["entity"][0]["description"] == "hie consent: $disaster-mode (GET)"
