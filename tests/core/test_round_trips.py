"""Statements per request in the steady state (issue 12, acceptance 2; ADR 0007).

A read by id is ONE statement sent to the database, a search page ONE, a search whose total
must be counted TWO: no pre-ping, no BEGIN/COMMIT/ROLLBACK on reads, no per-request SET, no
facility-directory or SearchParameter version read. Counted with
:mod:`hie.storage.statements` through ``node.context`` and the interactions (not through
HTTP token verification), after a warm-up request, as the system principal and as a
viewing facility whose rows pass through the consent predicate, on SQLite and PostgreSQL.

Also here, because they are what made the ceremony removable: a connection the server
terminated is replaced without the request failing (at checkout, and by the retry of a
read's first statement), and a facility role change or a SearchParameter written by
ANOTHER node on the same database takes effect (the role on the next statement, the
SearchParameter within the watcher's interval).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from sqlalchemy import create_engine, text

from consent import builder
from hie.app import Node
from hie.errors import NotFound
from hie.interactions import crud
from hie.interactions.search import search_bundle
from hie.principal import SYSTEM, Principal
from hie.storage.statements import install
from tests.enforcement.test_network_roles import V, organization, put_all, setup_region

KW = {"recorded_by": "Organization/nr-a", "date_time": "2026-01-10T10:00:00+09:00"}
VIEWER = Principal(kind="user", name="rt-viewer", user_id="rt-viewer", organization_id=V,
                   practitioner_id="rt-pr")
PRINCIPALS = {"system": SYSTEM, "viewer": VIEWER}
OBS = [("patient", "Patient/nr-p1"), ("_count", "1")]


def _read(ctx: Any) -> dict[str, Any]:
    body = crud.read(ctx, "Observation", "nr-lab-d").body
    return orjson.loads(body) if isinstance(body, bytes) else body


def _page(ctx: Any) -> Any:
    return search_bundle(ctx, "Observation", [*OBS, ("_total", "none")])


def _page_with_total(ctx: Any) -> Any:
    return search_bundle(ctx, "Observation", OBS)


@pytest.fixture
def region(node: Node) -> Node:
    setup_region(node, builder.all_facilities("rt-c1", "Patient/nr-p1", **KW))
    return node


def counted(node: Node, principal: Principal, call: Any) -> tuple[int, list[str], Any]:
    counter = install(node.engine)
    with node.context(principal, write=False) as ctx:  # warm-up: pool, compiled statements
        call(ctx)
    with counter.counting(thread_only=True) as block:
        with node.context(principal, write=False) as ctx:
            result = call(ctx)
    return block.count, block.statements, result


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_read_by_id_is_one_statement(region: Node, who: str) -> None:
    n, sql, result = counted(region, PRINCIPALS[who], _read)
    assert result["id"] == "nr-lab-d"  # the viewer sees it through the consent
    assert n == 1, sql


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_search_page_is_one_statement(region: Node, who: str) -> None:
    n, sql, bundle = counted(region, PRINCIPALS[who], _page)
    assert len(bundle["entry"]) == 1 and "total" not in bundle
    assert n == 1, sql


@pytest.mark.parametrize("who", sorted(PRINCIPALS))
def test_search_with_a_counted_total_is_two_statements(region: Node, who: str) -> None:
    n, sql, bundle = counted(region, PRINCIPALS[who], _page_with_total)
    assert len(bundle["entry"]) == 1 and bundle["total"] == 2
    assert n == 2, sql


def test_an_unconsented_viewer_gets_the_same_count_and_nothing_more(node: Node) -> None:
    setup_region(node, None)  # no Consent: the viewer sees no lab
    n, sql, bundle = counted(node, VIEWER, _page_with_total)
    assert bundle.get("entry", []) == [] and bundle["total"] == 0
    assert n == 1, sql  # an empty page is the last one: its total needs no count
    with node.context(VIEWER, write=False) as ctx, pytest.raises(NotFound):
        _read(ctx)


# -- a dead connection --------------------------------------------------------------------


def _terminate_others(admin_url: str, database: str, keep: int | None = None) -> int:
    """Terminate every backend on ``database`` (but ``keep``) and wait until they are gone."""
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    try:
        with admin.connect() as c:
            pids = [p for (p,) in c.execute(text(
                "SELECT pid FROM pg_stat_activity WHERE datname = :d AND pid <> pg_backend_pid()"), {"d": database})
                if p != keep]
            for pid in pids:
                c.execute(text("SELECT pg_terminate_backend(:p)"), {"p": pid})
            for _ in range(500):  # the backends exit asynchronously
                left = c.execute(text("SELECT count(*) FROM pg_stat_activity WHERE pid = ANY(:p)"),
                                 {"p": pids}).scalar_one()
                if not left:
                    break
                time.sleep(0.01)
        return len(pids)
    finally:
        admin.dispose()


@pytest.fixture
def pg_region(pg_node: Node) -> Node:
    setup_region(pg_node, builder.all_facilities("rt-c1", "Patient/nr-p1", **KW))
    return pg_node


def test_a_terminated_pooled_connection_is_replaced_at_checkout(pg_region: Node) -> None:
    from tests.conftest import PG_ADMIN_URL

    node = pg_region
    with node.context(VIEWER, write=False) as ctx:
        _read(ctx)
    assert _terminate_others(PG_ADMIN_URL, node.engine.url.database) >= 1  # the pooled one(s)
    n, sql, result = counted(node, VIEWER, _read)
    assert result["id"] == "nr-lab-d"
    assert n == 1, sql
    put_all(node, [{**organization("nr-x"), "name": "renamed"}])  # a write after it works too


def test_a_read_whose_connection_dies_after_checkout_is_retried_once(pg_region: Node) -> None:
    from tests.conftest import PG_ADMIN_URL

    node = pg_region
    with node.context(VIEWER, write=False) as ctx:
        pid = ctx.repo.conn.connection.dbapi_connection.info.backend_pid
        _terminate_others(PG_ADMIN_URL, node.engine.url.database, keep=None)  # ours included
        assert ctx.repo.conn.connection.dbapi_connection.info.backend_pid == pid  # still the dead one
        assert _read(ctx)["id"] == "nr-lab-d"  # retried on a fresh connection
        assert ctx.repo.conn.connection.dbapi_connection.info.backend_pid != pid


# -- another node on the same database ------------------------------------------------------


@pytest.fixture
def other(node: Node) -> Iterator[Node]:
    from hie.config import Settings

    url = node.engine.url.render_as_string(hide_password=False)
    second = Node(Settings(database_url=url, data_dir=node.settings.data_dir, base_url=node.settings.base_url,
                           audit_system_use=False))
    yield second
    second.close()


def _sees_lab(node: Node) -> bool:
    with node.context(VIEWER, write=False) as ctx:
        try:
            _read(ctx)
        except NotFound:
            return False
    return True


def test_a_role_change_written_by_another_node_holds_on_the_next_request(region: Node, other: Node) -> None:
    assert _sees_lab(region)
    put_all(other, [organization("nr-v", "disclosing")])  # V may no longer view
    assert not _sees_lab(region)
    put_all(other, [organization("nr-v", "viewing")])
    assert _sees_lab(region)
    put_all(other, [{**organization("nr-v", "viewing"), "active": False}])
    assert not _sees_lab(region)


MANAGING_ORG = {
    "resourceType": "SearchParameter", "id": "rt-managing-org", "status": "active",
    "url": "http://hie.example.jp/fhir/SearchParameter/rt-managing-org",
    "name": "rtManagingOrg", "code": "rt-managing-org", "base": ["Patient"], "type": "reference",
    "description": "test parameter", "expression": "Patient.managingOrganization", "target": ["Organization"],
}


def test_a_search_parameter_written_by_another_node_is_used_within_the_interval(node: Node, other: Node) -> None:
    node.stored_search_parameters.interval = 0.05  # from the watcher's next tick on
    with node.context(SYSTEM, write=False):  # the watcher runs
        pass
    assert node.registry.get("Patient", "rt-managing-org") is None
    put_all(other, [{"resourceType": "Organization", "id": "rt-o1", "name": "o1"}, MANAGING_ORG])
    for _ in range(400):  # bounded wait: one tick at the old interval, then every 0.05 s
        if node.registry.get("Patient", "rt-managing-org") is not None:
            break
        time.sleep(0.05)
    assert node.registry.get("Patient", "rt-managing-org") is not None
    patient = {"resourceType": "Patient", "id": "rt-p", "managingOrganization": {"reference": "Organization/rt-o1"}}
    put_all(node, [patient])
    with node.context(SYSTEM, write=False, prefer_strict=True) as ctx:
        bundle = search_bundle(ctx, "Patient", [("rt-managing-org", "Organization/rt-o1")])
    assert [e["resource"]["id"] for e in bundle["entry"]] == ["rt-p"]
