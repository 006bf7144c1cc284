"""Fixtures for search tests: a database per dialect, a resource loader, a search context.

Each PostgreSQL test session creates its own uniquely named database on
``HIE_TEST_PG_URL`` (default ``postgresql+psycopg://postgres@127.0.0.1:5432/postgres``)
and drops it at the end; each test runs in a transaction that is rolled back.
"""

from __future__ import annotations

import os
import uuid
from dataclasses import dataclass
from typing import Any

import orjson
import pytest
from sqlalchemy import Connection, create_engine, insert, text, true

from hie.search.indexer import write_index_many
from hie.principal import SYSTEM
from hie.search.registry import SearchRegistry
from hie.storage.access import UnrestrictedPolicy
from hie.storage.repository import Repository
from hie.storage.tables import metadata
from hie.storage.tables import resource as R

PG_ADMIN_URL = os.environ.get("HIE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")
BASE = "http://test.example/fhir"


@pytest.fixture(scope="session")
def registry() -> SearchRegistry:
    return SearchRegistry.load_default()


@pytest.fixture(scope="session")
def sqlite_engine():
    eng = create_engine("sqlite://")
    metadata.create_all(eng)
    yield eng
    eng.dispose()


def _pg_available() -> bool:
    try:
        eng = create_engine(PG_ADMIN_URL)
        with eng.connect():
            pass
        eng.dispose()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def pg_engine():
    if not _pg_available():
        pytest.skip(f"PostgreSQL not reachable at {PG_ADMIN_URL}")
    name = f"hie_search_test_{uuid.uuid4().hex[:12]}"
    admin = create_engine(PG_ADMIN_URL, isolation_level="AUTOCOMMIT")
    with admin.connect() as c:
        c.execute(text(f'CREATE DATABASE "{name}"'))
    url = PG_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    eng = create_engine(url)
    metadata.create_all(eng)
    yield eng
    eng.dispose()
    with admin.connect() as c:
        c.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
    admin.dispose()


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def conn(request) -> Connection:
    eng = request.getfixturevalue("sqlite_engine" if request.param == "sqlite" else "pg_engine")
    with eng.connect() as c:
        tx = c.begin()
        yield c
        tx.rollback()


class Store:
    """Inserts resources the way the storage layer does (resource row + index rows)."""

    def __init__(self, conn: Connection, registry: SearchRegistry) -> None:
        self.conn = conn
        self.registry = registry
        self.t = 1_600_000_000_000_000

    def add(self, *resources: dict[str, Any], patient_key: str | None = None) -> list[int]:
        items = []
        pks = []
        for res in resources:
            self.t += 1_000_000
            res = dict(res)
            res.setdefault("meta", {})
            res["meta"] = {**res["meta"], "versionId": "1"}
            res["meta"].setdefault("lastUpdated", _instant(self.t))
            lu = _us(res["meta"]["lastUpdated"])
            pk = self.conn.execute(insert(R).values(
                res_type=res["resourceType"], res_id=res["id"], version_id=1, last_updated=lu,
                deleted=False, content=orjson.dumps(res), patient_key=patient_key,
                custodian=None, data_class="clinical", security_labels=" ",
            )).inserted_primary_key[0]
            pks.append(pk)
            items.append({"resource_pk": pk, "res_type": res["resourceType"],
                          "patient_key": patient_key, "resource": res})
        write_index_many(self.conn, self.registry, items, replace=False)
        return pks

    def delete(self, res_type: str, res_id: str) -> None:
        from hie.search.indexer import delete_index

        row = self.conn.execute(R.select().where(R.c.res_type == res_type, R.c.res_id == res_id)).first()
        self.conn.execute(R.update().where(R.c.pk == row.pk).values(deleted=True))
        delete_index(self.conn, row.pk)


def _instant(us: int) -> str:
    from hie.search.normalize import format_us

    return format_us(us)


def _us(s: str) -> int:
    from hie.search.normalize import date_range

    return date_range(s)[0]


@pytest.fixture
def store(conn, registry) -> Store:
    return Store(conn, registry)


@dataclass
class Ctx:
    conn: Connection
    registry: SearchRegistry
    access: Any
    base_url: str = BASE
    prefer_strict: bool = False

    @property
    def repo(self) -> Repository:
        # The engine is tested against its reference semantics, without consent rules.
        return Repository(self.conn, SYSTEM, registry=self.registry,
                          policy=UnrestrictedPolicy("search engine tests: no consent data in these tables"))


@pytest.fixture
def ctx(conn, registry) -> Ctx:
    return Ctx(conn, registry, lambda _alias: true())
