"""Database engines for the embedded default (SQLite) and production (PostgreSQL).

SQLite runs in WAL mode so readers never wait for the writer; write transactions
start with ``BEGIN IMMEDIATE`` so two writers queue on the lock instead of failing
with SQLITE_BUSY when a read transaction upgrades (https://sqlite.org/wal.html).
PostgreSQL uses psycopg 3 with a connection pool; READ COMMITTED plus version-checked
UPDATEs gives optimistic locking for ``If-Match``.

Round trips (docs/adr/0007-request-round-trips.md): a request's statements are its own and
nothing else. The driver connections are in autocommit mode on both databases and the
node issues ``BEGIN`` itself when a transaction is wanted: a write (:func:`write_tx`) or
any ordinary SQLAlchemy transaction (``engine.begin()``, ``connect()`` + ``commit()``). A
read (:func:`read_tx`) sends no BEGIN and so no COMMIT and no rollback on return: every
statement is its own snapshot, which is what READ COMMITTED gives a multi-statement read
on PostgreSQL anyway, and every statement carries the access predicate. Session settings
(``jit``) are fixed when a connection is opened; statements go unprepared except reads by id
(:data:`GENERIC_PLAN`). There is no pool
pre-ping: a connection the server closed while it sat in the pool is noticed at checkout
without a round trip (its socket is readable: the server's goodbye or EOF), and a read
whose first statement still meets a dead connection is retried once on a fresh one.
"""

from __future__ import annotations

import logging
import select as _select
from contextlib import contextmanager
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, exc
from sqlalchemy.engine import make_url

log = logging.getLogger(__name__)

#: Execution option of a read connection (no transaction, first statement retried).
READ = "hie_read"
#: Execution option of a write connection (SQLite: BEGIN IMMEDIATE).
WRITE = "hie_write"

# JIT compilation pays off for long analytical queries; for the node's short queries it costs
# far more than it saves (a consent-checked search that executes in 4 ms spent 650 ms in JIT
# once the planner's cost estimate crossed jit_above_cost). A session setting, set once per
# connection.
#
# Plans: a search must be planned with its parameters (a generic plan ignores how selective
# ``patient=...`` is compared to a common code: measured at 1M resources, 885 ms instead of
# 5 ms). psycopg prepares a statement after a few executions, and PostgreSQL may then switch
# a prepared statement to a generic plan; so every statement is sent unprepared (planned with
# its values each time) unless its execution options say GENERIC_PLAN. A read by id says so:
# its plan is the primary-key lookup whatever the values, and planning the access predicate
# cost 0.4-0.6 ms against 0.1 ms of execution (ADR 0007).
PG_OPTIONS = "-c jit=off"

#: Execution option: this statement may run as a prepared statement with a generic plan.
GENERIC_PLAN = "hie_generic_plan"


def normalize_url(url: str) -> str:
    """Accept ``postgresql://`` and ``postgres://`` as psycopg 3 URLs."""
    if url.startswith("postgres://"):
        url = "postgresql://" + url[len("postgres://"):]
    if url.startswith("postgresql://"):
        url = "postgresql+psycopg://" + url[len("postgresql://"):]
    return url


class NodeConnection(Connection):
    """A Connection whose first statement on a read is retried once after a disconnect
    (the pool handed out a connection the server had closed; nothing of the request was
    sent yet, and a read holds no server-side transaction that could be lost)."""

    _hie_sent = False

    def _execute_context(self, *args: Any, **kw: Any) -> Any:
        if self._hie_sent or not self.get_execution_options().get(READ):
            return super()._execute_context(*args, **kw)
        self._hie_sent = True
        try:
            return super()._execute_context(*args, **kw)
        except exc.DBAPIError as err:
            if not err.connection_invalidated:
                raise
            log.warning("database connection was closed by the server; retrying the read once")
        self.rollback()  # the logical transaction of the dead connection (nothing to undo)
        return super()._execute_context(*args, **kw)


def make_engine(url: str, *, pool_size: int = 10) -> Engine:
    url = normalize_url(url)
    u = make_url(url)
    if u.get_backend_name() == "sqlite":
        if u.database and u.database != ":memory:":
            Path(u.database).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 60},
            pool_size=pool_size,
            max_overflow=pool_size,
        )

        @event.listens_for(engine, "connect")
        def _on_connect(dbapi_conn, _record):  # noqa: ANN001
            dbapi_conn.isolation_level = None  # we issue BEGIN ourselves
            cur = dbapi_conn.cursor()
            cur.execute("PRAGMA journal_mode=WAL")
            cur.execute("PRAGMA synchronous=NORMAL")
            cur.execute("PRAGMA busy_timeout=60000")
            cur.execute("PRAGMA cache_size=-65536")
            cur.execute("PRAGMA temp_store=MEMORY")
            cur.close()
    else:
        engine = create_engine(url, pool_size=pool_size, max_overflow=pool_size * 2,
                               connect_args={"options": PG_OPTIONS, "autocommit": True})

        @event.listens_for(engine, "do_execute")
        def _do_execute(cursor, statement, parameters, context):  # noqa: ANN001
            prepare = None if context.execution_options.get(GENERIC_PLAN) else False
            cursor.execute(statement, parameters, prepare=prepare)
            return True

        @event.listens_for(engine, "checkout")
        def _on_checkout(dbapi_conn, _record, _proxy):  # noqa: ANN001
            if _closed_by_server(dbapi_conn):
                raise exc.DisconnectionError("connection closed by the server")  # the pool takes another
            if not dbapi_conn.autocommit:  # an isolation_level execution option reset it
                dbapi_conn.autocommit = True

    engine._connection_cls = NodeConnection

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Connection) -> None:
        opts = conn.get_execution_options()
        if opts.get(READ):
            return  # a read sends no BEGIN (and so no COMMIT or ROLLBACK)
        if getattr(conn.connection.dbapi_connection, "autocommit", True) is False:
            return  # psycopg begins by itself (an isolation_level execution option)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if opts.get(WRITE) and engine.dialect.name == "sqlite" else "BEGIN")

    return engine


def _closed_by_server(dbapi_conn: Any) -> bool:
    """Whether the server closed this idle psycopg connection (no round trip: an idle
    connection's socket is readable only when the server sent something, i.e. its
    termination notice or EOF, or a notice, which is consumed and ignored)."""
    if dbapi_conn.closed or dbapi_conn.broken:
        return True
    pg = dbapi_conn.pgconn
    try:
        readable, _, _ = _select.select([pg.socket], [], [], 0)
        if not readable:
            return False
        pg.consume_input()
        readable, _, _ = _select.select([pg.socket], [], [], 0)
        if readable:
            pg.consume_input()
    except Exception:  # noqa: BLE001 - any failure here means the connection is unusable
        return True
    return int(pg.status) != 0  # CONNECTION_OK = 0


def is_postgres(engine_or_conn: Engine | Connection) -> bool:
    return engine_or_conn.dialect.name == "postgresql"


@contextmanager
def write_tx(engine: Engine) -> Iterator[Connection]:
    """A write transaction (committed on success, rolled back on any exception)."""
    with engine.connect().execution_options(**{WRITE: True}) as conn:
        with conn.begin():
            yield conn


@contextmanager
def read_tx(engine: Engine) -> Iterator[Connection]:
    """A read: no transaction, each statement its own snapshot (see the module docstring)."""
    with engine.connect().execution_options(**{READ: True}) as conn:
        yield conn
