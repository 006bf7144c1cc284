"""``hie consent``: operator commands for consent enforcement.

They run the same operations as the API (``$disaster-mode``, ``$break-glass-report``,
``$consent-explain``) as the system principal, so CLI and API answers cannot differ.
"""

from __future__ import annotations

import typer
from rich.console import Console

consent_app = typer.Typer(help="Consent enforcement: disaster mode, break-the-glass report, explanations.",
                          no_args_is_help=True)
console = Console()


def _call(name: str, level: str, *, res_type: str | None = None, res_id: str | None = None,
          params: list[tuple[str, str]] | None = None, method: str = "GET") -> dict:
    from hie.cli_support import open_node
    from hie.interactions import operations as ops
    from hie.principal import SYSTEM

    node = open_node()
    try:
        op = ops.find(name, level, res_type)
        node.system_use("maintenance", f"hie consent: ${name} ({method})")  # as the system principal
        with node.context(SYSTEM, write=op.write) as ctx:
            result = op.fn(ctx, ops.OperationCall(name, level, res_type, res_id, params or [], None, method))
        assert isinstance(result.body, dict)
        return result.body
    finally:
        node.close()


@consent_app.command("disaster")
def disaster(mode: str = typer.Argument("status", help="on | off | status")) -> None:
    """Switch the region-wide disaster mode (disaster-response accounts see emergency data)."""
    from hie.cli_support import choice

    choice("mode", mode, ("on", "off", "status"))
    body = _call("disaster-mode", "system", params=[("mode", mode)] if mode != "status" else [],
                 method="POST" if mode != "status" else "GET")
    console.print(f"disaster mode: [bold]{body['parameter'][0]['valueCode']}[/]")


@consent_app.command("break-glass-report")
def break_glass_report(since: str = typer.Option(None, help="Only declarations since this date/instant.")) -> None:
    """Every break-the-glass declaration (who, facility, patient, reason, time, expiry)."""
    from hie.cli_support import usage
    from hie.errors import InvalidRequest

    try:
        body = _call("break-glass-report", "system", params=[("since", since)] if since else [])
    except InvalidRequest as exc:  # the only parameter is --since
        usage("--since", exc.diagnostics)
    rows = body.get("parameter", [])
    for decl in rows:
        parts = {p["name"]: next(v for k, v in p.items() if k.startswith("value")) for p in decl["part"]}
        patient = parts["patient"]["reference"] if isinstance(parts["patient"], dict) else parts["patient"]
        console.print(f"{parts['declared']}  {parts['who']:<28} {parts.get('facility', '-'):<11} {patient:<28} "
                      f"until {parts['expires']}  {parts['reason']}")
    console.print(f"{len(rows)} declaration(s)")


@consent_app.command("explain")
def explain(patient: str = typer.Argument(..., help="Patient id"),
            facility: str = typer.Argument(..., help="10-digit medical-institution code of the viewer"),
            resource: str = typer.Option(None, help="Type/id of one record to decide")) -> None:
    """Which consent provisions let a facility see a patient's records, and why."""
    from hie.cli_support import facility_code

    facility_code("facility", facility)
    if resource is not None and (resource.count("/") != 1 or not all(resource.split("/"))):
        raise typer.BadParameter(f"{resource!r} is not Type/id", param_hint="--resource")
    params = [("facility", facility)] + ([("resource", resource)] if resource else [])
    body = _call("consent-explain", "instance", res_type="Patient", res_id=patient, params=params)
    console.print(next(p["valueString"] for p in body["parameter"] if p["name"] == "explanation"))
