"""The facility directory (hie.enforcement.facilities): one lookup of facility code ->
registered Organization, kept in step with Organization writes, on SQLite and PostgreSQL."""

from __future__ import annotations

from typing import Any

import pytest

from hie.auth.registry import NETWORK_ROLE_EXT
from hie.enforcement import facilities
from hie.errors import InvalidResource
from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM
from hie.principal import SYSTEM
from hie.storage.repository import Write


def org(oid: str, code: str | None, *, role: str | None = None, active: bool | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {"resourceType": "Organization", "id": oid, "name": f"name of {oid}"}
    if code:
        res["identifier"] = [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]
    if role:
        res["extension"] = [{"url": NETWORK_ROLE_EXT, "valueCode": role}]
    if active is not None:
        res["active"] = active
    return res


def write(node, *resources: dict[str, Any], delete: str | None = None) -> None:
    with node.context(SYSTEM, write=True) as ctx:
        writes = [Write("update", "Organization", r["id"], r) for r in resources]
        if delete:
            writes.append(Write("delete", "Organization", delete))
        ctx.repo.write_batch(writes)


def look(node, code: str) -> facilities.Facility | None:
    with node.context(SYSTEM, write=False) as ctx:
        return facilities.lookup(ctx.repo.conn, code)


def test_roles_default_and_properties(node):
    write(node, org("o-both", "1110000011"), org("o-view", "1110000029", role="viewing"),
          org("o-disc", "1110000037", role="disclosing"))
    both, view, disc = look(node, "1110000011"), look(node, "1110000029"), look(node, "1110000037")
    assert both is not None and both.network_role == "both" and both.may_view and both.may_disclose
    assert both.org_id == "o-both" and both.name == "name of o-both" and both.active
    assert view is not None and view.may_view and not view.may_disclose
    assert disc is not None and disc.may_disclose and not disc.may_view
    assert look(node, "1110000045") is None  # nobody registered it


def test_inactive_deleted_and_codeless_organizations_are_no_facility(node):
    write(node, org("o1", "1110000011", active=False), org("o2", "1110000029"), org("o3", None))
    assert look(node, "1110000011") is None
    with node.context(SYSTEM, write=False) as ctx:
        inactive = facilities.organization(ctx.repo.conn, "o1")
        assert inactive is not None and not inactive.active and not inactive.may_view and not inactive.may_disclose
        assert facilities.organization(ctx.repo.conn, "o3") is None
    assert look(node, "1110000029") is not None
    write(node, delete="o2")
    assert look(node, "1110000029") is None


def test_a_registry_change_is_seen_by_the_next_lookup(node):
    write(node, org("o1", "1110000011"))
    assert look(node, "1110000011").network_role == "both"  # type: ignore[union-attr]
    write(node, org("o1", "1110000011", role="viewing"))
    assert look(node, "1110000011").network_role == "viewing"  # type: ignore[union-attr]
    write(node, org("o1", "1110000052", role="viewing"))  # the code itself changed
    assert look(node, "1110000011") is None
    assert look(node, "1110000052").org_id == "o1"  # type: ignore[union-attr]


def test_a_transaction_sees_its_own_registry_writes_and_a_rollback_leaves_nothing(node):
    write(node, org("o1", "1110000011"))
    with pytest.raises(RuntimeError):
        with node.context(SYSTEM, write=True) as ctx:
            ctx.repo.write_batch([Write("update", "Organization", "o2", org("o2", "1110000029"))])
            assert facilities.lookup(ctx.repo.conn, "1110000029") is not None  # own uncommitted write
            raise RuntimeError("roll back")
    assert look(node, "1110000029") is None
    assert look(node, "1110000011") is not None


def test_unknown_network_role_is_refused_with_its_path(node):
    with pytest.raises(InvalidResource) as err:
        write(node, org("o1", "1110000011", role="everything"))
    assert err.value.issues[0].expression == ["Organization.extension[0].valueCode"]
    assert look(node, "1110000011") is None


def test_two_active_organizations_cannot_share_a_code(node):
    write(node, org("o1", "1110000011"))
    with pytest.raises(InvalidResource) as err:
        write(node, org("o2", "1110000011"))
    assert err.value.issues[0].expression == ["Organization.identifier"]
    write(node, org("o2", "1110000011", active=False))  # an inactive record may keep the code
    assert look(node, "1110000011").org_id == "o1"  # type: ignore[union-attr]


def test_the_migration_builds_the_directory_of_a_database_written_before_it(node):
    from alembic import command
    from sqlalchemy import delete

    from hie.enforcement.tables import node_setting
    from hie.storage.migrate import alembic_config

    write(node, org("o1", "1110000011", role="viewing"), org("o2", "1110000029", active=False))
    with node.engine.begin() as conn:  # as if written by a node without the directory
        conn.execute(delete(node_setting))
    assert look(node, "1110000011") is None
    cfg = alembic_config()
    with node.engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.downgrade(cfg, "0004_consent")
        command.upgrade(cfg, "heads")
    f = look(node, "1110000011")
    assert f is not None and f.network_role == "viewing" and look(node, "1110000029") is None


def test_interactions_look_facilities_up_through_their_repository(node):
    write(node, org("o1", "1110000011", role="disclosing"))
    with node.context(SYSTEM, write=False) as ctx:
        f = facilities.for_repository(ctx.repo, "1110000011")
        assert f is not None and f.org_id == "o1" and f.may_disclose and not f.may_view
        assert facilities.for_repository(ctx.repo, "1110000029") is None
        assert facilities.for_repository(ctx.repo, None) is None
