"""Shared fixtures: a node on SQLite and on real PostgreSQL.

PostgreSQL tests create their own uniquely named database on the server named by
``HIE_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and drop it at the end of the session. Without a reachable server they are skipped
with the reason shown — except under CI (``CI=true``), where a missing PostgreSQL is
an error, not a skip. Each test starts from empty tables.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from sqlalchemy import create_engine, delete, text

from hie.app import Node
from hie.config import Settings
from hie.storage.schema import metadata

PG_ADMIN_URL = os.environ.get("HIE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


class PgServer:
    """Creates and drops uniquely named databases on the test PostgreSQL server."""

    def __init__(self, admin_url: str) -> None:
        self.admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
        self.created: list[str] = []

    def create(self, prefix: str = "hie_test") -> str:
        name = f"{prefix}_{uuid.uuid4().hex[:12]}"
        with self.admin.connect() as conn:
            conn.execute(text(f'CREATE DATABASE "{name}"'))
        self.created.append(name)
        return self.admin.url.set(database=name).render_as_string(hide_password=False)

    def drop_all(self) -> None:
        with self.admin.connect() as conn:
            for name in self.created:
                conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        self.admin.dispose()


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    server = PgServer(PG_ADMIN_URL)
    try:
        with server.admin.connect() as conn:
            conn.execute(text("SELECT 1"))
    except Exception as exc:  # noqa: BLE001
        if os.environ.get("CI") == "true":
            raise RuntimeError(f"PostgreSQL is required under CI but not reachable at {PG_ADMIN_URL}: {exc}") from exc
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}: {exc}")
    yield server
    server.drop_all()


def make_node(url: str, tmp: Path) -> Node:
    # System-use auditing off, as request auditing is in the client fixture: searches and
    # histories see only what the test wrote (tests/contract and tests/audit turn it on).
    node = Node(Settings(database_url=url, data_dir=tmp, base_url="http://testserver/fhir",
                         audit_system_use=False))
    node.upgrade()
    return node


@pytest.fixture(scope="session")
def _sqlite_node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    tmp = tmp_path_factory.mktemp("sqlite")
    node = make_node(f"sqlite:///{tmp / 'hie.sqlite'}", tmp)
    yield node
    node.close()


@pytest.fixture(scope="session")
def _pg_node(pg_server: PgServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    node = make_node(pg_server.create(), tmp_path_factory.mktemp("pg"))
    yield node
    node.close()


def _truncate(node: Node) -> None:
    recorder = node.__dict__.get("_hie_audit")  # an app's background audit flusher, if one runs
    if recorder is not None:
        with recorder.quiesced():
            _truncate_tables(node)
    else:
        _truncate_tables(node)


def _truncate_tables(node: Node) -> None:
    with node.engine.begin() as conn:
        if node.engine.dialect.name == "postgresql":
            names = ", ".join(f'"{t.name}"' for t in metadata.sorted_tables)
            conn.execute(text(f"TRUNCATE {names} RESTART IDENTITY"))
        else:
            for table in reversed(metadata.sorted_tables):
                conn.execute(delete(table))


@pytest.fixture(params=["sqlite", "postgresql"])
def node(request: pytest.FixtureRequest) -> Iterator[Node]:
    """A migrated node with empty tables, on each database."""
    n: Node = request.getfixturevalue("_sqlite_node" if request.param == "sqlite" else "_pg_node")
    _truncate(n)
    yield n


@pytest.fixture
def sqlite_node(_sqlite_node: Node) -> Iterator[Node]:
    _truncate(_sqlite_node)
    yield _sqlite_node


@pytest.fixture
def pg_node(_pg_node: Node) -> Iterator[Node]:
    _truncate(_pg_node)
    yield _pg_node


@pytest.fixture
def client(node: Node):  # noqa: ANN201
    """A test client acting as the node's own backend client with ``system/*.cruds``.
    Audit recording is off here so that system-wide history and search see only what
    the test wrote (the audit trail is tested in tests/audit)."""
    from fastapi.testclient import TestClient

    from hie.api.app import create_app
    from hie.auth.service import system_token

    token = system_token(node, "system/*.cruds", fhir_base="http://testserver/fhir")
    with TestClient(create_app(node, audit=False), base_url="http://testserver",
                    headers={"Authorization": f"Bearer {token}"}) as c:
        yield c
