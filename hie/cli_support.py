"""The command line's one error path and the checks every ``hie`` command shares.

* A command refuses a wrong value by raising :class:`CliError` (exit 2 for a usage mistake,
  1 for a runtime failure); :func:`hie.cli.run` catches every exception at the top and prints
  one line, ``error: ...``, made by :func:`describe`: never a traceback (unless ``--debug``),
  never an exception's arguments that may carry SQL parameters (password hashes!).
* :func:`open_node` opens the node the environment names (:func:`hie.config.resolve_data_dir`)
  and never silently creates a new, empty region: commands that act on an existing region
  refuse when there is none; commands that may start one (``serve``, ``db upgrade``,
  ``load``, the feeds) say what they are about to create.
"""

from __future__ import annotations

import errno
import json
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

if TYPE_CHECKING:
    from hie.app import Node
    from hie.config import Settings
    from hie.enforcement.facilities import Facility

USER_ROLES = ("operator", "registrar", "identity-staff", "emergency-clinician", "disaster-response")
"""Roles a person may hold (hie.enforcement, hie.identity.authz, consent.policy)."""
CLIENT_ROLES = ("operator", "resource-server")
"""Roles a client may hold (hie.auth.server: token introspection and revocation)."""


class CliError(Exception):
    """A refusal with its one-line message and exit status (1 runtime, 2 usage)."""

    def __init__(self, message: str, code: int = 1) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def usage(option: str, message: str) -> NoReturn:
    raise CliError(f"{option}: {message}", 2)


def choice(option: str, value: str | None, allowed: Iterable[str]) -> None:
    allowed = tuple(allowed)
    if value is not None and value not in allowed:
        usage(option, f"{value!r} is not one of {', '.join(allowed)}")


def choices(option: str, values: Iterable[str], allowed: Iterable[str]) -> None:
    for value in values:
        choice(option, value, allowed)


def facility_code(option: str, code: str | None) -> None:
    if code is not None and not (len(code) == 10 and code.isascii() and code.isdigit()):
        usage(option, f"{code!r} is not a 10-digit medical-institution code (prefecture 2, table 1, number 7)")


def registered_facility(node: Node, option: str, code: str | None) -> Facility | None:
    """The registered, active facility with ``code`` (None for None); refuses an unknown one."""
    from hie.enforcement.facilities import lookup

    if code is None:
        return None
    facility_code(option, code)
    with node.engine.connect() as conn:
        found = lookup(conn, code)
    if found is None:
        raise CliError(f"{option}: no registered, active facility has the code {code} "
                       "(register it with hie admin add-facility)", 2)
    return found


def read_json(option: str, path: Path) -> Any:
    """The JSON in ``path``; a file that cannot be read or parsed is one line with file:line:col."""
    try:
        text = path.read_text("utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise CliError(f"{option}: cannot read {path}: {getattr(exc, 'strerror', None) or exc}", 2) from None
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise CliError(f"{option}: {path}:{exc.lineno}:{exc.colno}: not JSON ({exc.msg})", 2) from None


def note(message: str) -> None:
    typer.echo(f"note: {message}", err=True)


def check_port(host: str, port: int) -> None:
    """Refuse a port another process holds before migrating or loading anything."""
    import socket

    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except OSError as exc:
        raise CliError(f"--host: cannot resolve {host!r} ({exc.strerror or exc})", 2) from None
    family, kind, proto, _, address = infos[0]
    with socket.socket(family, kind, proto) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as uvicorn binds
        try:
            sock.bind(address)
        except OSError as exc:
            raise CliError(f"--port: cannot listen on {host}:{port}: {exc.strerror or exc}", 1) from None


# -- opening the node ----------------------------------------------------------------------


def settings(database_url: str | None = None) -> Settings:
    import dataclasses

    from hie.config import ConfigError, Settings

    try:
        s = Settings.from_env()
    except ConfigError as exc:
        raise CliError(str(exc), 2) from None
    if database_url:
        s = dataclasses.replace(s, database_url=database_url)
    _check_url(s.database_url)
    return s


def shown_url(url: str) -> str:
    from sqlalchemy.engine import make_url

    from hie.storage.db import normalize_url

    try:
        return make_url(normalize_url(url)).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - an unparsable URL is shown without anything after '@'
        return url.split("@")[-1]


def _check_url(url: str) -> None:
    from sqlalchemy.engine import make_url
    from sqlalchemy.exc import ArgumentError

    from hie.storage.db import normalize_url

    try:
        backend = make_url(normalize_url(url)).get_backend_name()
    except ArgumentError:
        backend = ""
    if backend not in ("sqlite", "postgresql"):
        raise CliError(f"HIE_DATABASE_URL: {shown_url(url)!r} is not a sqlite:///path or "
                       "postgresql+psycopg://user@host:5432/db URL", 2)


def _sqlite_file(url: str) -> Path | None:
    from sqlalchemy.engine import make_url

    u = make_url(url)
    if u.get_backend_name() != "sqlite" or not u.database or u.database == ":memory:":
        return None
    return Path(u.database)


def _where(s: Settings) -> str:
    return f"database {shown_url(s.database_url)}, data directory {s.data_dir} ({s.data_dir_source})"


def _no_node(s: Settings) -> CliError:
    return CliError(f"no node here ({_where(s)}): start one with hie serve or hie db upgrade, or set HIE_DATA_DIR "
                    "(and HIE_DATABASE_URL) to the node's", 1)


def open_node(database_url: str | None = None, *, create: bool = False, upgrade: bool = True) -> Node:
    """The node the environment names, its schema migrated.

    ``create=False``: the database must hold a node already (its schema) and the data
    directory (its keys) must exist; else refused. ``create=True``: a new database or data
    directory is announced on stderr before it is made."""
    from sqlalchemy import inspect

    from hie.app import Node

    s = settings(database_url)
    file = _sqlite_file(s.database_url)
    if file is not None and not file.exists() and not create:
        raise _no_node(s)
    node = Node(s)
    try:
        fresh = not inspect(node.engine).has_table("alembic_version")
        if fresh and not create:
            raise _no_node(s)
        if not s.data_dir.is_dir():
            if not create:
                raise CliError(f"the data directory {s.data_dir} ({s.data_dir_source}) does not exist, but "
                               f"{shown_url(s.database_url)} holds a node: set HIE_DATA_DIR to that node's data "
                               "directory (its keys live there)", 1)
            if not fresh:
                note(f"creating the data directory {s.data_dir} ({s.data_dir_source}) for the existing database "
                     f"{shown_url(s.database_url)}: new keys will be made there")
        if fresh:
            note(f"creating a new, empty node: {_where(s)}")
        s.data_dir.mkdir(parents=True, exist_ok=True)
        if upgrade:
            node.upgrade()
    except BaseException:
        node.close()
        raise
    return node


# -- the one error path --------------------------------------------------------------------


def _one_line(text: str, limit: int = 400) -> str:
    line = " ".join(str(text).split())
    return line if len(line) <= limit else line[: limit - 1] + "…"


def _database_reason(exc: Any) -> str:
    """What the database driver said, without the statement and its parameters."""
    orig = getattr(exc, "orig", None)
    if orig is None:
        return type(exc).__name__
    diag = getattr(orig, "diag", None)  # psycopg: the primary message has no parameters
    primary = getattr(diag, "message_primary", None) if diag is not None else None
    text = primary or (str(orig).splitlines() or [""])[0]
    return f"{type(orig).__name__}: {text}" if text else type(orig).__name__


def describe(exc: BaseException) -> tuple[str, int]:
    """The one line and exit status for ``exc``; exception arguments that may carry SQL
    parameters (SQLAlchemy statement errors) are never shown."""
    from sqlalchemy import exc as sa

    from hie.errors import FhirError

    if isinstance(exc, CliError):
        return _one_line(exc.message), exc.code
    if isinstance(exc, FhirError):
        return _one_line(exc.diagnostics), 1
    if isinstance(exc, sa.IntegrityError):
        return _one_line(f"the database refused the change ({_database_reason(exc)})"), 1
    if isinstance(exc, sa.DBAPIError):
        return _one_line(f"database error ({_database_reason(exc)})"), 1
    if isinstance(exc, sa.SQLAlchemyError):
        return f"database error ({type(exc).__name__}; run with --debug for the traceback)", 1
    if isinstance(exc, json.JSONDecodeError):
        return _one_line(f"not JSON at line {exc.lineno} column {exc.colno} ({exc.msg})"), 1
    if isinstance(exc, OSError):
        return _one_line(_os_error(exc)), 1
    if isinstance(exc, (ValueError, LookupError)):  # the node's own checks word these for people
        return _one_line(str(exc.args[0]) if exc.args else type(exc).__name__), 1
    return f"unexpected {type(exc).__name__} (run with --debug for the traceback)", 1


def _os_error(exc: OSError) -> str:
    if exc.errno == errno.EADDRINUSE:
        return "address already in use"
    what = exc.strerror or type(exc).__name__
    return f"{what}: {exc.filename}" if exc.filename else what


def print_traceback(exc: BaseException) -> None:
    """``--debug``: the traceback on stderr, without local variables and with SQL parameters hidden."""
    import traceback

    from sqlalchemy.exc import StatementError

    seen: set[int] = set()
    cur: BaseException | None = exc
    while cur is not None and id(cur) not in seen:
        seen.add(id(cur))
        if isinstance(cur, StatementError):
            cur.hide_parameters = True
        cur = cur.__cause__ or cur.__context__
    traceback.print_exception(exc, file=sys.stderr)


def report(exc: BaseException) -> int:
    """Print ``exc`` as one line on stderr; the exit status."""
    message, code = describe(exc)
    typer.echo(f"error: {message}", err=True)
    sys.stderr.flush()
    return code
