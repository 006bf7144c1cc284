"""``hie admin renew-registrations``: the command runs (it once failed on an import) and
extends exactly the lapsed, not withdrawn registered-physician roles, on both backends."""

from __future__ import annotations

from datetime import date

from typer.testing import CliRunner

from hie.auth.registry import REGISTERED_PHYSICIAN, facility, fiscal_year_end, practitioner, practitioner_role
from hie.ingest import ingest_bundle
from hie.principal import SYSTEM
from hie.storage.db import read_tx


def _put(node, resources) -> None:
    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": r, "request": {"method": "PUT", "url": f"{r['resourceType']}/{r['id']}"}} for r in resources]},
        source="test:registry")


def _period_end(node, rid: str) -> str:
    with read_tx(node.engine) as conn:
        st = node.repository(conn, SYSTEM).read("PractitionerRole", rid)
        return st.resource()["period"]["end"]


def test_renew_registrations_command_extends_lapsed_roles_only(node, monkeypatch):
    from hie.cli import app

    hosp = facility(fid="renew-hosp", code="1310000017", name="Renewal Hospital", kind="hospital", role="both",
                    region="Tokyo")
    doctors = [practitioner(pid=f"renew-dr{i}", family="Test", given=f"Dr{i}", facility_code="1310000017",
                            local_id=f"d{i}") for i in (1, 2, 3)]
    lapsed = practitioner_role(rid="renew-lapsed", practitioner_id="renew-dr1", organization_id="renew-hosp",
                               role=REGISTERED_PHYSICIAN, start=date(2024, 6, 1))
    withdrawn = {**practitioner_role(rid="renew-withdrawn", practitioner_id="renew-dr2",
                                     organization_id="renew-hosp", role=REGISTERED_PHYSICIAN,
                                     start=date(2024, 6, 1)), "active": False}
    current = practitioner_role(rid="renew-current", practitioner_id="renew-dr3", organization_id="renew-hosp",
                                role=REGISTERED_PHYSICIAN)
    _put(node, [hosp, *doctors, lapsed, withdrawn, current])
    before_current = _period_end(node, "renew-current")

    url = node.settings.database_url if "sqlite" in node.settings.database_url \
        else node.engine.url.render_as_string(hide_password=False)
    monkeypatch.setenv("HIE_DATABASE_URL", url)
    monkeypatch.setenv("HIE_DATA_DIR", str(node.settings.data_dir))
    result = CliRunner().invoke(app, ["admin", "renew-registrations"])

    assert result.exit_code == 0, (result.output, result.exception)
    assert "renewed 1 registration(s)" in result.output
    assert _period_end(node, "renew-lapsed") == fiscal_year_end(date.today()).isoformat()
    assert _period_end(node, "renew-withdrawn") == "2025-03-31"
    assert _period_end(node, "renew-current") == before_current
