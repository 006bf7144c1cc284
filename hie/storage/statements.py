"""Statement counter: every statement an Engine sends to its database driver.

Counts what costs a round trip, the ceremony included, so that tests and benchmarks can
pin the number of statements a request makes:

* every cursor execution (``before_cursor_execute``; an ``executemany`` counts once);
* the ``BEGIN`` psycopg sends by itself before the first statement of a transaction when
  the connection is not in autocommit mode (seen as: the driver connection is idle);
* ``COMMIT`` and ``ROLLBACK``, from the Connection and from the pool's reset-on-return,
  only when the driver really sends one (it does not when no transaction is open);
* the pool's pre-ping (``SELECT 1`` sent by the dialect outside any cursor event).

``install(engine)`` is idempotent and returns the engine's one :class:`StatementCounter`::

    counter = install(node.engine)
    with counter.counting() as n:
        ...                          # run a request
    assert n.count == 1, n.statements

Counting is process-local; ``.count`` and an ordinary block see every thread's statements
(a server's worker threads), ``counting(thread_only=True)`` the caller's only (the node's
background watchers excluded). It adds one listener call per statement.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine, event

_INSTALL = threading.Lock()
_KEY = "_hie_statement_counter"


@dataclass
class Block:
    """The statements of one ``counting()`` block (filled in as they are sent)."""

    statements: list[str] = field(default_factory=list)
    thread: int | None = None  # only this thread's statements (None: every thread's)

    @property
    def count(self) -> int:
        return len(self.statements)

    def __int__(self) -> int:
        return self.count


class StatementCounter:
    def __init__(self) -> None:
        self.count = 0
        #: SQL texts of the statements counted since the last reset (for debugging).
        self.statements: list[str] = []
        self._blocks: list[Block] = []

    def reset(self) -> None:
        self.count = 0
        self.statements = []

    def record(self, sql: str) -> None:
        self.count += 1
        self.statements.append(sql)
        me = threading.get_ident()
        for b in self._blocks:
            if b.thread is None or b.thread == me:
                b.statements.append(sql)

    @contextmanager
    def counting(self, *, thread_only: bool = False) -> Iterator[Block]:
        """A block whose ``.count`` is the number of statements sent inside it (with
        ``thread_only``: by the calling thread only, e.g. not a background watcher's)."""
        block = Block(thread=threading.get_ident() if thread_only else None)
        self._blocks.append(block)
        try:
            yield block
        finally:
            self._blocks.remove(block)


def _driver_in_transaction(dbapi_conn: Any) -> bool:
    """Whether the driver connection has a transaction open (so COMMIT/ROLLBACK is sent)."""
    raw = getattr(dbapi_conn, "dbapi_connection", dbapi_conn)  # a pool fairy or the driver's
    raw = getattr(raw, "driver_connection", raw)
    info = getattr(raw, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is not None:  # psycopg 3: IDLE = 0 (no transaction, nothing is sent)
        return int(status) != 0
    in_tx = getattr(raw, "in_transaction", None)  # sqlite3
    return bool(in_tx) if in_tx is not None else True


def _implicit_begin(dbapi_conn: Any) -> bool:
    """Whether psycopg will send BEGIN before this statement (idle and not autocommit)."""
    info = getattr(dbapi_conn, "info", None)
    status = getattr(info, "transaction_status", None)
    if status is None or getattr(dbapi_conn, "autocommit", True):
        return False
    return int(status) == 0


def install(engine: Engine) -> StatementCounter:
    """The engine's statement counter (installed once; later calls return the same one)."""
    with _INSTALL:
        counter = engine.__dict__.get(_KEY)
        if counter is not None:
            return counter
        counter = StatementCounter()
        _listen(engine, counter)
        engine.__dict__[_KEY] = counter
        return counter


def _listen(engine: Engine, counter: StatementCounter) -> None:
    @event.listens_for(engine, "before_cursor_execute")
    def _before(conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if _implicit_begin(conn.connection.dbapi_connection):
            counter.record("BEGIN")
        counter.record(statement)

    dialect: Any = engine.dialect  # the pool shares it (reset-on-return, pre-ping)
    do_commit, do_rollback, do_ping = dialect.do_commit, dialect.do_rollback, dialect.do_ping

    def commit(dbapi_conn: Any) -> None:
        if _driver_in_transaction(dbapi_conn):
            counter.record("COMMIT")
        do_commit(dbapi_conn)

    def rollback(dbapi_conn: Any) -> None:
        if _driver_in_transaction(dbapi_conn):
            counter.record("ROLLBACK")
        do_rollback(dbapi_conn)

    def ping(dbapi_conn: Any) -> bool:
        counter.record("SELECT 1 -- pool pre-ping")
        return bool(do_ping(dbapi_conn))

    dialect.do_commit, dialect.do_rollback, dialect.do_ping = commit, rollback, ping
