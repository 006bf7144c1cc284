"""The ``hie`` command line: serve the node, migrate the database, load data, reindex.

The adapters' sub-commands (``hie import``, ``hie listen``, ``hie ingest``) are
registered here when their package is present. :func:`run` is the one error path of every
command (:mod:`hie.cli_support`): one line, exit 1 or 2, a traceback only with ``--debug``.
"""

from __future__ import annotations

import logging
import os
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

app = typer.Typer(help="Regional health-information-exchange node (FHIR R4).", no_args_is_help=True)
db_app = typer.Typer(help="Database schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
console = Console(stderr=True)
_STATE = {"debug": False}
LOG_LEVELS = ("critical", "error", "warning", "info", "debug", "trace")


@app.callback()
def _root(debug: bool = typer.Option(False, "--debug", envvar="HIE_DEBUG",
                                     help="Show the traceback of an unexpected error.")) -> None:
    _STATE["debug"] = debug


def _node(database_url: str | None = None, *, create: bool = False):  # noqa: ANN202
    from hie.cli_support import open_node

    return open_node(database_url, create=create)


def _has_data(node) -> bool:  # noqa: ANN001
    from hie.storage.queries import any_resource

    return any_resource(node.engine)


def load_demo(node) -> None:  # noqa: ANN001
    from hie.demo import demo_bundle
    from hie.ingest import ingest_bundle

    response = ingest_bundle(node, demo_bundle(), source="demo:tone-region")
    console.print(f"[green]Demo region loaded[/]: {len(response['entry'])} resources "
                  "(8 facilities, 4 patients and their records).")


@db_app.command("upgrade")
def db_upgrade(database_url: str = typer.Option(None, envvar="HIE_DATABASE_URL", help="Database URL.")) -> None:
    """Create or migrate the database schema to the latest version."""
    from hie.storage.migrate import current

    node = _node(database_url, create=True)
    try:
        console.print(f"Database at revision [bold]{current(node.engine)}[/] ({node.engine.url.render_as_string()})")
    finally:
        node.close()


@app.command()
def serve(
    host: str = typer.Option("127.0.0.1", help="Interface to listen on."),
    port: int = typer.Option(8080, min=1, max=65535, help="TCP port."),
    workers: int = typer.Option(1, min=1, help="Worker processes (stateless; they share the database)."),
    no_demo: bool = typer.Option(False, "--no-demo", help="Do not load the demo region into an empty database."),
    log_level: str = typer.Option("info", help="Log level: " + ", ".join(LOG_LEVELS) + "."),
    audit_flusher: str = typer.Option(
        "process", help="Where audit records are stored and chained: 'process' (a supervised "
        "flusher process; the servers only journal) or 'thread' (inside each server)."),
) -> None:
    """Run the FHIR server (migrates the database; loads the demo region on first start)."""
    import uvicorn

    from hie.cli_support import check_port, choice

    choice("--audit-flusher", audit_flusher, ("process", "thread"))
    choice("--log-level", log_level, LOG_LEVELS)
    check_port(host, port)
    node = _node(create=True)
    if not no_demo and not _has_data(node):
        load_demo(node)
    if not no_demo:
        from hie.auth.demo import provision

        creds = provision(node)
        if creds.exists():
            console.print(f"[bold]Demo credentials[/] ({creds}):")
            typer.echo(creds.read_text().rstrip("\n"), err=True)  # unwrapped: the TOTP URIs stay whole
    console.print(f"Database: {node.engine.url.render_as_string()}")
    console.print(f"FHIR base: http://{host}:{port}/fhir   (CapabilityStatement: /fhir/metadata)")
    console.print(f"Clinician viewer: http://{host}:{port}/viewer/   (log in with a clinician's password + TOTP)")
    node.close()
    supervisor = None
    if audit_flusher == "process" and os.environ.get("HIE_AUDIT_FLUSHER") != "thread":
        os.environ["HIE_AUDIT_FLUSHER"] = "external"  # inherited by the worker processes
        supervisor = _AuditFlusherSupervisor()
        supervisor.start()
    # uvicorn stops gracefully on SIGTERM, then raises the signal again: with the default
    # handler that would end this process before the finally below stops the flusher.
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    try:
        uvicorn.run("hie.asgi:create_app", factory=True, host=host, port=port, workers=workers,
                    log_level=log_level, access_log=False, http="hie.api.http_protocol:NoDelayProtocol")
    finally:
        if supervisor is not None:
            supervisor.stop()


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(0)


class _AuditFlusherSupervisor:
    """Runs ``hie audit flusher`` beside the servers and restarts it if it dies.

    The servers write each audit record to their journal before answering; the flusher
    stores, indexes and chains them. Journals survive a flusher crash and are stored when it
    is back (measured cost of audit on reads: docs/adr/0002-auth-and-audit.md)."""

    def __init__(self) -> None:
        import subprocess
        import threading

        self.proc: subprocess.Popen[bytes] | None = None
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self._run, name="audit-flusher-supervisor", daemon=True)

    def start(self) -> None:
        self.thread.start()

    def _run(self) -> None:
        import subprocess

        while not self.stopping.is_set():
            self.proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "audit", "flusher"])
            if self.stopping.is_set():  # stop() ran while the process was starting
                self.proc.terminate()
            code = self.proc.wait()
            if not self.stopping.is_set():
                console.print(f"[red]audit flusher exited ({code}); restarting[/]")
                self.stopping.wait(1.0)

    def stop(self) -> None:
        self.stopping.set()
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except Exception:  # noqa: BLE001 - best effort at shutdown
                self.proc.kill()
        self.thread.join(timeout=15)  # no restart after this returns


@app.command()
def load(
    paths: list[Path] = typer.Argument(..., exists=True, help="Files or directories (.json, .ndjson)."),
    keep_ids: bool = typer.Option(True, help="Use the bundles' urn:uuid identities as logical ids (idempotent loads)."),
    workers: int = typer.Option(0, min=0, help="Loader processes (0 = one per core; 1 = in this process)."),
) -> None:
    """Load FHIR Bundles, single resources or NDJSON files; print what was stored and rejected."""
    from hie.loader import default_workers, iter_files, load_paths

    from hie.cli_support import CliError

    files = list(iter_files(paths))
    if not files:
        raise CliError(f"no .json or .ndjson files in {', '.join(map(str, paths))}", 1)
    node = _node(create=True)
    started = time.perf_counter()
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console, transient=False) as progress:
        task = progress.add_task("Loading", total=len(files))
        report = load_paths(node, paths, keep_bundle_ids=keep_ids, workers=workers or default_workers(),
                            progress=lambda f: progress.update(task, advance=1, description=f"Loading {f.name[:40]}"))
    elapsed = time.perf_counter() - started
    node.close()
    table = Table(title=f"hie load: {report.files} files in {elapsed:.1f} s")
    for col in ("type", "created", "updated", "unchanged", "deleted"):
        table.add_column(col, justify="right" if col != "type" else "left")
    types = sorted(set(report.created) | set(report.updated) | set(report.unchanged) | set(report.deleted))
    total: Counter[str] = Counter()
    for t in types:
        row = [report.created[t], report.updated[t], report.unchanged[t], report.deleted[t]]
        table.add_row(t, *map(str, row))
        total.update(created=row[0], updated=row[1], unchanged=row[2], deleted=row[3])
    table.add_row("[bold]total", *(str(total[k]) for k in ("created", "updated", "unchanged", "deleted")))
    Console().print(table)
    if report.rejected:
        rej = Table(title=f"Rejected: {len(report.rejected)} (kept in the dead-letter store: hie ingest failures)")
        rej.add_column("where")
        rej.add_column("reason")
        for where, reason in report.rejected:
            rej.add_row(where, reason)
        Console().print(rej)
        raise typer.Exit(code=1)


@app.command()
def reindex() -> None:
    """Recompute the enforcement columns (patient, class, labels; ADR 0006) and rebuild every
    search index from the stored resources."""
    from hie.principal import SYSTEM
    from hie.search.indexer import reindex as do_reindex
    from hie.storage.db import write_tx

    node = _node()
    node.system_use("reindex")  # reads every stored resource as the system principal
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
                  console=console) as progress:
        task = progress.add_task("Reindexing", total=None)

        def cb(done: int, total: int) -> None:
            progress.update(task, completed=done, total=total)

        last: int | None = 0
        fixed = 0
        while last is not None:  # enforcement columns first: the index rows copy patient_key
            with write_tx(node.engine) as conn:
                last, changed = node.repository(conn, SYSTEM).recompute_enforcement(after_pk=last)
            fixed += changed
        n = do_reindex(lambda: write_tx(node.engine), node.registry, progress=cb)
    console.print(f"Recomputed the enforcement columns of {fixed} rows; reindexed {n} resources.")
    node.close()


def _register_subcommands() -> None:
    """Sub-command groups of the capabilities (the CLI is a composition root too)."""
    from adapters.cli import import_app, ingest_app, listen_app
    from hie.audit.cli import audit_app
    from hie.auth.cli import admin_app
    from hie.enforcement.cli import consent_app
    from hie.identity.cli import identity_app

    for sub, name in ((admin_app, "admin"), (audit_app, "audit"), (consent_app, "consent"),
                      (identity_app, "identity"), (import_app, "import"), (listen_app, "listen"),
                      (ingest_app, "ingest")):
        app.add_typer(sub, name=name)


_register_subcommands()


def run(argv: list[str] | None = None) -> int:
    """Run one ``hie`` command; every failure is one line on stderr and a non-zero status
    (2: usage, 1: runtime); ``--debug`` (or HIE_DEBUG=1) prints an unexpected error's traceback
    first (:func:`hie.cli_support.print_traceback`: no locals, no SQL parameters)."""
    from typer._click.exceptions import ClickException, NoArgsIsHelpError

    from hie.cli_support import CliError, print_traceback, report

    _STATE["debug"] = False
    try:
        code = app(args=argv, prog_name="hie", standalone_mode=False)
    except NoArgsIsHelpError as exc:
        from typer import rich_utils

        rich_utils.rich_format_error(exc)  # the group's help
        return 2
    except ClickException as exc:
        ctx = getattr(exc, "ctx", None)
        where = f" (see {ctx.command_path} --help)" if ctx is not None else ""
        message = " ".join(exc.format_message().split())
        got = _given(sys.argv[1:] if argv is None else argv, getattr(exc, "param", None), message)
        typer.echo(f"error: {message}{got}{where}", err=True)
        return exc.exit_code
    except typer.Abort:
        typer.echo("error: aborted", err=True)
        return 1
    except Exception as exc:  # noqa: BLE001 - the one error path
        if _STATE["debug"] and not isinstance(exc, CliError):
            print_traceback(exc)
        return report(exc)
    return code if isinstance(code, int) else 0


def _given(argv: list[str], param: object, message: str) -> str:
    """`` (got '-5')`` for an option value the parser refused, unless ``message`` names it."""
    for opt in getattr(param, "opts", None) or []:
        if not opt.startswith("-"):
            continue
        for i, arg in enumerate(argv):
            value = argv[i + 1] if arg == opt and i + 1 < len(argv) else (
                arg[len(opt) + 1:] if arg.startswith(opt + "=") else None)
            if value is not None:
                return "" if value in message else f" (got {value!r})"
    return ""


def main() -> None:  # pragma: no cover - console entry
    level = os.environ.get("HIE_LOG_LEVEL", "WARNING")
    try:
        logging.basicConfig(level=level.upper())
    except ValueError:
        typer.echo(f"error: HIE_LOG_LEVEL: {level!r} is not one of DEBUG, INFO, WARNING, ERROR, CRITICAL", err=True)
        sys.exit(2)
    sys.exit(run())


if __name__ == "__main__":  # pragma: no cover
    main()
