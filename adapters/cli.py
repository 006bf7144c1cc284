"""Typer sub-apps of the ``hie`` command for the HL7 v2 / SS-MIX2 adapters.

Registered by ``hie/cli.py``: ``import_app`` (``hie import ssmix2``), ``listen_app``
(``hie listen mllp``), ``ingest_app`` (``hie ingest failures`` / ``hie ingest replay``).
Behaviour as the project issue "Hospital feeds: SS-MIX2 standardized storage and
HL7 v2 over MLLP into JP Core FHIR" describes; see docs/integrator-hl7v2.md.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
from pathlib import Path
from typing import NoReturn

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

console = Console(stderr=True)
import_app = typer.Typer(help="Import data from files (SS-MIX2 standardized storage).", no_args_is_help=True)
listen_app = typer.Typer(help="Receive data over the network (HL7 v2 MLLP).", no_args_is_help=True)
ingest_app = typer.Typer(help="Dead-letter store of the feeds: list and replay failures.", no_args_is_help=True)

_DB = typer.Option(None, envvar="HIE_DATABASE_URL", help="Database URL (default: the node's configuration).")


def _node(database_url: str | None, *, create: bool = False):  # noqa: ANN202
    """The node (hie.cli_support.open_node): the import and the listener may start a new
    region (and say so); the dead-letter commands need an existing one."""
    from hie.cli_support import open_node

    return open_node(database_url, create=create)


def _print_report(report, show_all: bool) -> None:  # noqa: ANN001
    table = Table(title=f"SS-MIX2 import of {report.root} (facility {report.facility})")
    for col in ("status", "kind", "resources", "file", "reason / warnings"):
        table.add_column(col, overflow="fold")
    for f in report.files:
        if not show_all and f.status == "unchanged":
            continue
        note = f.reason or "; ".join(f.warnings)
        style = {"rejected": "red", "mapped": "green", "deleted": "yellow"}.get(f.status)
        table.add_row(f"[{style}]{f.status}[/]" if style else f.status, f.kind, str(f.resources or ""),
                      f.path, note)
    console.print(table)
    counts = ", ".join(f"{k} {v}" for k, v in sorted(report.counts().items()))
    n = sum(1 for f in report.files if f.status in ("mapped", "deleted"))
    rate = n / report.seconds if report.seconds else 0
    console.print(f"[bold]{len(report.files)} files[/]: {counts} in {report.seconds:.1f}s ({rate:.0f} messages/s)")


@import_app.command("ssmix2")
def import_ssmix2(
    root: Path = typer.Argument(..., exists=True, file_okay=False, help="SS-MIX2 storage root."),
    facility: str = typer.Option(..., "--facility", help="10-digit medical-institution code of the hospital."),
    facility_name: str | None = typer.Option(None, help="Name for the facility Organization if it is new."),
    state: Path | None = typer.Option(None, help="State file (resume / idempotence)."),
    watch: bool = typer.Option(False, "--watch", help="Keep polling for new files."),
    interval: float = typer.Option(5.0, min=0.1, help="Watch polling interval, seconds."),
    strict_patient_id: bool = typer.Option(False, help="Reject files whose PID-3 differs from the storage patient id."),
    report_json: Path | None = typer.Option(None, "--report", help="Write the per-file report as JSON."),
    show_all: bool = typer.Option(False, "--all", help="List unchanged files too."),
    workers: int = typer.Option(0, min=0, help="Import processes, files partitioned by patient (0 = one per core)."),
    database_url: str | None = _DB,
) -> None:
    """Import an SS-MIX2 standardized-storage tree (date order, resumable, idempotent)."""
    from adapters.hl7v2.errors import V2Error
    from adapters.hl7v2.ids import check_facility
    from adapters.ssmix2.importer import default_state_path, import_tree
    from hie.cli_support import read_json
    from hie.loader import default_workers

    try:
        check_facility(facility)
    except V2Error as err:
        raise typer.BadParameter(err.reason, param_hint="--facility") from None
    if state is not None and state.exists():
        read_json("--state", state)  # a damaged state file is named with file:line:col
    if report_json is not None and not report_json.parent.is_dir():
        _refuse(f"--report: the directory {report_json.parent} does not exist", 2)
    node = _node(database_url, create=True)
    try:
        # The default state file lives in the node's data directory (not the working directory).
        state = state or node.settings.data_dir / "ssmix2-state" / default_state_path(root, facility).name
        if state.exists():
            read_json("state file", state)
        feed = _feed(node, facility_names={facility: facility_name} if facility_name else {})
    except BaseException:
        node.close()
        raise
    signal.signal(signal.SIGTERM, _interrupt)  # SIGTERM stops like Ctrl-C (systemd, Docker)
    try:
        while True:
            with Progress(TextColumn("[progress.description]{task.description}"), BarColumn(), MofNCompleteColumn(),
                          TimeElapsedColumn(), console=console, transient=True) as progress:
                task = progress.add_task("SS-MIX2", total=None)

                def cb(done: int, total: int, rel: str) -> None:
                    # Called only inside this iteration's import_tree, while ``task`` is current.
                    progress.update(task, total=total, completed=done, description=rel[-48:])  # noqa: B023

                report = import_tree(node, root, facility, state_path=state, feed=feed, progress=cb,
                                     strict_patient_id=strict_patient_id, settle_seconds=2.0 if watch else 0.0,
                                     workers=workers or default_workers())
            if not watch or any(f.status != "unchanged" for f in report.files):
                _print_report(report, show_all)
            if report_json:
                report_json.write_text(json.dumps(report.to_json(), ensure_ascii=False, indent=1), "utf-8")
            if not watch:
                break
            import time

            time.sleep(interval)
    except KeyboardInterrupt:
        console.print("Stopped; the state file keeps the progress (re-run to resume).")
    finally:
        node.close()


@listen_app.command("mllp")
def listen_mllp(
    port: int = typer.Option(2575, "--port", min=0, max=65535, help="TCP port."),
    host: str = typer.Option("127.0.0.1", help="Address to bind (loopback by default; 0.0.0.0 for every interface)."),
    facility: str | None = typer.Option(None, "--facility",
                                        help="10-digit institution code of every sender (without --senders)."),
    senders: Path | None = typer.Option(None, "--senders", help="JSON allow-list of senders: facility, MSH-3|MSH-4, "
                                        "addresses, certificate CN (docs/integrator-hl7v2.md)."),
    default_charset: str = typer.Option("ascii", help="Codec for messages without MSH-18."),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", help="Server certificate chain (PEM): MLLP over TLS."),
    tls_key: Path | None = typer.Option(None, "--tls-key", help="Private key of --tls-cert (PEM)."),
    tls_client_ca: Path | None = typer.Option(None, "--tls-client-ca",
                                              help="CA certificates (PEM) clients must present a certificate from."),
    database_url: str | None = _DB,
) -> None:
    """Receive HL7 v2 messages over MLLP and answer each with an ACK (SIGTERM/Ctrl-C: finish
    the message in hand, print the counts, exit 0)."""
    from adapters.hl7v2.ids import FeedKeyError
    from adapters.mllp.options import OptionError, check_charset, load_senders, tls_context
    from adapters.mllp.server import Processor

    try:
        charset = check_charset(default_charset)
        allow = load_senders(senders, facility)
        ssl_ctx = tls_context(tls_cert, tls_key, tls_client_ca)
        if tls_client_ca is None and any(e.certificate_cn for e in allow.entries):
            raise OptionError("--senders: certificate_cn needs client certificates (--tls-cert and --tls-client-ca)")
    except OptionError as err:
        _refuse(str(err), 2)
    from hie.cli_support import check_port

    if port:
        check_port(host, port)  # before anything is opened or created
    logging.basicConfig(level=logging.INFO)
    node = _node(database_url, create=True)
    try:
        proc = Processor(node, facility, senders=allow, default_charset=charset)
    except FeedKeyError as err:
        node.close()
        _refuse(str(err), 2)
    who = f"{len(allow.entries)} registered senders" if allow.entries else f"every sender as facility {facility}"
    console.print(f"MLLP listener on {host}:{port}{' (TLS)' if ssl_ctx else ''}, {who}; Ctrl-C or SIGTERM to stop.")
    try:
        asyncio.run(_listen(proc, host, port, ssl_ctx))
    except OSError as err:
        node.close()
        _refuse(f"cannot listen on {host}:{port}: {err.strerror or err}", 1)
    console.print(proc.stats.line(), highlight=False)
    node.close()


@ingest_app.command("prune-mllp")
def ingest_prune_mllp(
    days: int = typer.Option(..., "--days", help="Forget MLLP messages last seen more than this many days ago."),
    database_url: str | None = _DB,
) -> None:
    """Forget old MLLP control ids (duplicate detection): an identical resend of a forgotten
    message is processed again (idempotent), another message under its id is accepted."""
    from adapters.mllp.receipts import prune

    if days < 1:
        _refuse(f"--days: {days} is not a positive number of days", 2)
    node = _node(database_url)
    try:
        n = prune(node, older_than_us=node.clock.now_us() - days * 86_400_000_000)
    finally:
        node.close()
    console.print(f"{n} MLLP messages older than {days} days forgotten.")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


CHANNELS = ("load", "ssmix2", "mllp")
STATUSES = ("failed", "replayed", "all")


def _choice(option: str, value: str | None, allowed: tuple[str, ...]) -> None:
    from hie.cli_support import choice

    choice(option, value, allowed)


def _feed(node, **kwargs):  # noqa: ANN001, ANN003, ANN202
    """The node's Feed; a feed-id key that cannot be used is one line, exit 2."""
    from adapters.feed import Feed
    from adapters.hl7v2.ids import FeedKeyError

    try:
        return Feed(node, **kwargs)
    except FeedKeyError as err:
        _refuse(str(err), 2)


def _refuse(message: str, code: int) -> NoReturn:
    """One line on stderr (never wrapped), exit ``code``: the CLI's one error path (hie.cli.run)."""
    from hie.cli_support import CliError

    raise CliError(message, code)


async def _listen(proc, host: str, port: int, ssl_ctx) -> None:  # noqa: ANN001
    """Serve until SIGTERM or SIGINT, then stop gracefully (adapters.mllp.server.serve)."""
    from adapters.mllp.server import serve

    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await serve(proc, host, port, stop=stop, ssl_context=ssl_ctx)


@ingest_app.command("failures")
def ingest_failures(
    channel: str | None = typer.Option(None, help="ssmix2 or mllp."),
    status: str = typer.Option("failed", help="failed, replayed or all."),
    database_url: str | None = _DB,
) -> None:
    """List messages and files that could not be ingested."""
    from hie.ingest import list_failures

    _choice("--status", status, STATUSES)
    _choice("--channel", channel, CHANNELS)
    node = _node(database_url)
    try:
        rows = list_failures(node, status=None if status == "all" else status, channel=channel)
        table = Table(title=f"Ingest failures ({len(rows)})")
        for col in ("id", "channel", "status", "attempts", "source", "error"):
            table.add_column(col, overflow="fold")
        for f in rows:
            table.add_row(str(f.pk), f.channel, f.status, str(f.attempts), f.source, f.error)
        Console().print(table)
    finally:
        node.close()


@ingest_app.command("replay")
def ingest_replay(
    ids: list[int] = typer.Argument(None, help="Failure ids (default: all failed)."),
    channel: str | None = typer.Option(None, help="Only this channel."),
    default_charset: str = typer.Option("ascii", help="Codec for MLLP messages without MSH-18 (as the listener's)."),
    database_url: str | None = _DB,
) -> None:
    """Map and ingest stored failures again (after a fix)."""
    from adapters.feed import replay_one
    from adapters.mllp.options import OptionError, check_charset
    from hie.ingest import get_failure, list_failures

    _choice("--channel", channel, CHANNELS)
    try:
        charset = check_charset(default_charset)
    except OptionError as exc:
        _refuse(str(exc), 2)
    node = _node(database_url)
    try:
        found = [(i, get_failure(node, i)) for i in ids] if ids else []
        unknown = [str(i) for i, f in found if f is None]
        if unknown:
            _refuse(f"no ingest failure with id {', '.join(unknown)} (see hie ingest failures --status all)", 1)
        rows = [f for _, f in found if f is not None] if ids else list_failures(node, status="failed", channel=channel)
        feed = _feed(node)
        ok = 0
        for f in rows:
            done, err = replay_one(node, feed, f, default_charset=charset)
            ok += done
            console.print(f"{f.pk} {f.source}: " + ("[green]ingested[/]" if done else f"[red]failed[/] {err}"))
        console.print(f"{ok} of {len(rows)} replayed.")
        if ok < len(rows):
            raise typer.Exit(1)
    finally:
        node.close()
