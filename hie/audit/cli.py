"""``hie audit``: verify the tamper-evident audit trail, replay journals, checkpoint.

Spec: https://profiles.ihe.net/ITI/BALP/ ; ADR docs/adr/0002-auth-and-audit.md
"""

from __future__ import annotations

import typer
from rich.console import Console

audit_app = typer.Typer(help="Audit trail: verify the hash chain and signed checkpoints.", no_args_is_help=True)
console = Console(stderr=True)


def _node():  # noqa: ANN202
    from hie.cli_support import open_node

    return open_node()


@audit_app.command("verify")
def verify() -> None:
    """Check every audit record against the chain and the signed checkpoints; exit 1 on any problem."""
    from hie.audit.chain import verify as do_verify
    from hie.auth.service import AuthService

    node = _node()
    node.system_use("audit-verify")  # reads the whole trail as the node itself
    try:
        # One snapshot: a flusher committing events and a checkpoint between verify's reads
        # must not look like deleted records (REPEATABLE READ on PostgreSQL; SQLite's read
        # transaction is a snapshot already).
        options = {"isolation_level": "REPEATABLE READ"} if node.engine.dialect.name == "postgresql" else {}
        with node.engine.connect().execution_options(**options) as conn, conn.begin():
            report = do_verify(conn, AuthService.for_node(node).keys)
    finally:
        node.close()
    for problem in report.problems:
        console.print(f"[red]TAMPERED[/] {problem}")
    if report.ok:
        console.print(f"[green]OK[/]: {report.records} records, {report.checkpoints} signed checkpoints, chain intact.")
        return
    console.print(f"[red]{len(report.problems)} problem(s)[/] in {report.records} records.")
    raise typer.Exit(code=1)


@audit_app.command("flusher")
def flusher(interval: float = typer.Option(0.2, min=0.01, help="Seconds between passes.")) -> None:
    """Run the external audit flusher (with HIE_AUDIT_FLUSHER=external on the servers):
    stores, indexes and chains the journals the serving processes close."""
    from hie.audit.recorder import AuditRecorder

    node = _node()
    console.print(f"audit flusher: storing journals from {node.settings.data_dir / 'audit-journal'}")
    try:
        AuditRecorder(node, interval=interval, store=True).run_external()
    finally:
        node.close()


@audit_app.command("flush")
def flush() -> None:
    """Replay audit journals left by stopped processes into the trail."""
    from hie.audit.recorder import AuditRecorder

    node = _node()
    try:
        rec = AuditRecorder(node, interval=None)  # replays on start
        rec.flush()
    finally:
        node.close()
    console.print("Audit journals replayed.")
