"""``hie identity``: the review queue and staff identity actions from the command line.

The same actions as the FHIR operations in :mod:`hie.identity.operations` (link at the
counter, unlink, merge, unmerge, review decisions), run by an operator on the node's
database as a system principal named after the operator, and audited in
``identity_event`` like the REST ones. See docs/identity.md.
"""

from __future__ import annotations

import getpass
from typing import Any

import typer
from rich.console import Console
from rich.table import Table

from hie.principal import Principal

identity_app = typer.Typer(help="Patient identity: review queue, link, unlink, merge.", no_args_is_help=True)
console = Console()


def _node() -> Any:
    from hie.cli_support import open_node

    return open_node()


def _operator(name: str | None) -> Principal:
    who = name or getpass.getuser()
    return Principal(kind="system", name=f"cli:{who}", user_id=f"cli:{who}")


def _run(operator: str | None, fn: Any) -> Any:
    """Run an identity action; its FhirError (unknown patient, item, event) is the one-line
    error of :func:`hie.cli.run`, exit 1."""
    node = _node()
    principal = _operator(operator)
    try:
        with node.context(principal, write=True) as ctx:
            return fn(node.identity, ctx.repo.conn, principal.user_id)
    finally:
        node.close()


def _report(result: Any) -> None:
    console.print(f"[green]{result.action}[/] (event {result.event}); regional person {result.person_key}")
    for pid, (old, new) in sorted(result.moved.items()):
        console.print(f"  Patient/{pid}: {old} -> {new}")
    n = result.rekeyed
    console.print(f"  re-keyed {n.resources} resources, {n.versions} versions, {n.index_rows} index rows")


OPERATOR = typer.Option(None, "--operator", help="Who acts (recorded in the event log); default: login name.")
REVIEW_STATUSES = ("open", "linked", "not-a-match", "superseded", "all")
DECISIONS = ("link", "not-a-match")


@identity_app.command("review")
def review(status: str = typer.Option("open", help="open | linked | not-a-match | superseded | all"),
           limit: int = typer.Option(50, help="Rows to show.")) -> None:
    """List the review queue (pairs in the review band, best score first)."""
    from hie.cli_support import choice, usage
    from hie.identity import store

    choice("--status", status, REVIEW_STATUSES)
    if limit < 1:
        usage("--limit", f"{limit} is not a positive number of rows")
    node = _node()
    try:
        with node.engine.connect() as conn:
            items = store.review_items(conn, None if status == "all" else status, limit)
            table = Table(title=f"identity review queue ({status})")
            for col in ("item", "patient", "candidate", "score", "grade", "status", "disagreeing fields"):
                table.add_column(col)
            for it in items:
                against = ", ".join(k for k, v in sorted(it.levels.items()) if v in ("disagree", "differs", "similar"))
                table.add_row(str(it.pk), it.patient_id, it.candidate_id, f"{it.score:.1f}", it.grade, it.status,
                              against)
        console.print(table)
    finally:
        node.close()


@identity_app.command("decide")
def decide(item: int = typer.Argument(..., help="Review item id."),
           action: str = typer.Argument(..., help="link | not-a-match"), operator: str = OPERATOR) -> None:
    """Resolve a review item."""
    from hie.cli_support import choice

    choice("action", action, DECISIONS)
    _report(_run(operator, lambda s, conn, who: s.decide(conn, item, action, actor=who)))


@identity_app.command("link")
def link(patient: str = typer.Argument(..., help="Local Patient id."),
         member_id: str = typer.Option(None, help="Insured-person id insurer:symbol:number:branch."),
         regional_id: str = typer.Option(None, help="Regional card number."),
         target: str = typer.Option(None, help="Patient id (regional or local) of the person to link to."),
         operator: str = OPERATOR) -> None:
    """Link a facility's patient record to a regional person at the counter."""
    from hie.cli_support import CliError
    from hie.identity.features import INSURANCE_MEMBER_ID_SYSTEM

    if sum(x is not None for x in (member_id, regional_id, target)) != 1:
        raise CliError("give exactly one of --member-id, --regional-id, --target", 2)

    def act(s: Any, conn: Any, who: str) -> Any:
        system, value = (INSURANCE_MEMBER_ID_SYSTEM, member_id) if member_id else (
            (s.config.regional_system, regional_id) if regional_id else (None, None))
        return s.link_at_counter(conn, patient, actor=who, system=system, value=value, target=target)

    _report(_run(operator, act))


@identity_app.command("unlink")
def unlink(patient: str = typer.Argument(..., help="Local Patient id."), operator: str = OPERATOR) -> None:
    """Take a patient record out of its regional person (inverse of a link)."""
    _report(_run(operator, lambda s, conn, who: s.unlink(conn, patient, actor=who)))


@identity_app.command("merge")
def merge(source: str = typer.Argument(..., help="Patient id of the person merged away."),
          target: str = typer.Argument(..., help="Patient id of the surviving person."),
          operator: str = OPERATOR) -> None:
    """Merge two regional persons (undo with ``hie identity unmerge EVENT``)."""
    _report(_run(operator, lambda s, conn, who: s.merge(conn, source, target, actor=who)))


@identity_app.command("unmerge")
def unmerge(event: int = typer.Argument(..., help="The merge event id."), operator: str = OPERATOR) -> None:
    """Undo a merge."""
    _report(_run(operator, lambda s, conn, who: s.unmerge(conn, event, actor=who)))


@identity_app.command("events")
def events(patient: str = typer.Option(None, help="Only events about this Patient id."),
           limit: int = typer.Option(50)) -> None:
    """Show the identity event log, newest first."""
    from hie.cli_support import usage
    from hie.clock import instant
    from hie.identity import store

    if limit < 1:
        usage("--limit", f"{limit} is not a positive number of rows")

    node = _node()
    try:
        with node.engine.connect() as conn:
            table = Table(title="identity events")
            for col in ("event", "at", "actor", "action", "patient", "from", "to", "reversed by"):
                table.add_column(col)
            for ev in store.events(conn, patient_id=patient, limit=limit):
                table.add_row(str(ev.pk), instant(ev.at), ev.actor, ev.action, ev.patient_id or "",
                              ev.from_key or "", ev.to_key or "", str(ev.reversed_by or ""))
        console.print(table)
    finally:
        node.close()
