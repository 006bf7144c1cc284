"""Token status without a database round trip on the hot path (ADR 0008).

A verified access token is valid while its ``auth_token`` row is not revoked, its client
is active and, for a person's token, its user is active. Each process keeps what it learnt
about a token (its *verdict*: one indexed lookup on first use) and looks again only when it
is told that something about that token may have changed.

It is told through one row of ``node_setting`` (:data:`SETTING`), the *change log*: every
revocation, (de)activation and key rotation or retirement appends a hint (``token <key>``,
``client <id>``, ``user <id>``, ``keys <kid>``) and increments the log's sequence number, in
the same transaction as the change itself (:func:`record`, which locks the row, so the
numbers have no gaps and follow commit order). A process reads the row at most once per
check interval (``HIE_TOKEN_CHECK_INTERVAL_MS``, default 1000 ms; 0: on every request)
and drops the verdicts the new hints name; when more changes happened since its last look
than the log keeps (:data:`KEEP`), or the log is not the one it knew (a new, emptied or
restored database), it drops every verdict. In the same check it looks at the key
directory (one ``stat``) and reloads the keys when it changed or a ``keys`` hint arrived,
so a retired key stops verifying and a new one signs.

The bound: a change committed at time *t* is in force on every process for every request
that starts verifying at *t* + interval or later. The process that made the change looks
again on its next verification (it expects the sequence number it wrote), so its own
revocations hold at once. A steady-state verification costs no statement at all.
"""

from __future__ import annotations

import secrets
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import orjson
from sqlalchemy import Connection, Engine, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert

from hie.auth.tables import auth_client as C
from hie.auth.tables import auth_token as T
from hie.auth.tables import auth_user as U
from hie.enforcement.tables import node_setting as S

SETTING = "auth_token_changes"
KEEP = 256  # hints kept in the log; a process further behind drops every verdict
HINT_KINDS = ("token", "client", "user", "keys")
_EXPECT = "_hie_token_change_expected"  # engine.__dict__: (log id, number, deadline) this process wrote


@dataclass(frozen=True)
class ChangeLog:
    log_id: str | None
    n: int
    changes: list[tuple[int, str, str]] = field(default_factory=list)

    @classmethod
    def parse(cls, text: str | None) -> ChangeLog:
        if not text:
            return cls(None, 0, [])
        raw = orjson.loads(text)
        return cls(raw["id"], int(raw["n"]), [(int(n), str(k), str(v)) for n, k, v in raw["changes"]])

    def dumps(self) -> str:
        return orjson.dumps({"id": self.log_id, "n": self.n, "changes": self.changes}).decode()


# -- writing: in the transaction of the change ------------------------------------------


def record(conn: Connection, *hints: tuple[str, str], by: str = "auth", now_us: int | None = None) -> None:
    """Append ``hints`` ((kind, key) pairs) to the change log in ``conn``'s transaction, which
    must be a write transaction (the row lock is what keeps two writers from losing a hint)."""
    for kind, _ in hints:
        if kind not in HINT_KINDS:
            raise ValueError(f"unknown token-change hint {kind!r}")
    now_us = int(time.time() * 1_000_000) if now_us is None else now_us
    insert = pg_insert if conn.dialect.name == "postgresql" else sqlite_insert
    conn.execute(insert(S).values(name=SETTING, value=ChangeLog(secrets.token_hex(8), 0).dumps(),
                                  changed_at=now_us, changed_by=by).on_conflict_do_nothing(index_elements=["name"]))
    text = conn.execute(select(S.c.value).where(S.c.name == SETTING).with_for_update()).scalar_one()
    log = ChangeLog.parse(text)
    changes = list(log.changes)
    n = log.n
    for kind, key in hints:
        n += 1
        changes.append((n, kind, key))
    conn.execute(update(S).where(S.c.name == SETTING).values(
        value=ChangeLog(log.log_id, n, changes[-KEEP:]).dumps(), changed_at=now_us, changed_by=by[:128]))
    # This process looks again on its next verification until it has seen number n (or a
    # second has passed: the transaction may roll back).
    conn.engine.__dict__[_EXPECT] = (log.log_id, n, time.monotonic() + 1.0)


def read(conn: Connection) -> ChangeLog:
    return ChangeLog.parse(conn.execute(select(S.c.value).where(S.c.name == SETTING)).scalar_one_or_none())


# -- reading: the process's view ------------------------------------------------------------


class Lazy:
    """A connection opened on first use (a steady-state verification opens none)."""

    def __init__(self, source: Engine | Connection) -> None:
        self.source = source
        self.engine: Engine = source if isinstance(source, Engine) else source.engine
        self._conn: Connection | None = None

    def __call__(self) -> Connection:
        if isinstance(self.source, Connection):
            return self.source
        if self._conn is None:
            self._conn = self.source.connect()
        return self._conn

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None


@contextmanager
def lazy(source: Engine | Connection) -> Iterator[Lazy]:
    conn = Lazy(source)
    try:
        yield conn
    finally:
        conn.close()


@dataclass(frozen=True)
class Verdict:
    valid: bool
    client_id: str | None
    user_id: str | None
    parent: str | None  # the refresh token the access token came from


class TokenStatus:
    """What this process knows about issued tokens, and when it last checked the change log."""

    def __init__(self, keys: Any, interval_s: float = 1.0, *, monotonic: Callable[[], float] = time.monotonic,
                 size: int = 8192) -> None:
        self.keys = keys
        self.interval = interval_s
        #: The clock the check interval is measured on (tests inject one).
        self.monotonic = monotonic
        self.size = size
        self._lock = threading.Lock()
        self._check_lock = threading.Lock()
        self._verdicts: OrderedDict[str, Verdict] = OrderedDict()
        self._generation = 0  # changes whenever verdicts may have been dropped
        self._log_id: str | None = None
        self._n = -1
        self._checked: float | None = None

    def _due(self, now: float, engine: Engine) -> bool:
        if self._checked is None or now - self._checked >= self.interval:
            return True
        expected = engine.__dict__.get(_EXPECT)
        if expected is None or time.monotonic() >= expected[2]:
            return False
        return expected[0] != self._log_id or expected[1] > self._n

    def refresh(self, conn: Lazy) -> None:
        """Read the change log (and look at the key directory) if the interval has passed."""
        if not self._due(self.monotonic(), conn.engine):
            return
        with self._check_lock:
            started = self.monotonic()
            if not self._due(started, conn.engine):
                return  # another thread just looked
            log = read(conn())
            self._apply(log)
            self._checked = started

    def _apply(self, log: ChangeLog) -> None:
        new = [c for c in log.changes if c[0] > self._n]
        if log.log_id == self._log_id and log.n == self._n:
            self.keys.refresh()
            return
        complete = log.log_id == self._log_id and log.n > self._n and bool(new) and new[0][0] == self._n + 1
        with self._lock:
            self._generation += 1
            if not complete:
                self._verdicts.clear()
            else:
                named = {kind: {key for _, k, key in new if k == kind} for kind in HINT_KINDS}
                for jti, v in list(self._verdicts.items()):
                    if (jti in named["token"] or v.parent in named["token"] or v.client_id in named["client"]
                            or v.user_id in named["user"]):
                        del self._verdicts[jti]
            self._log_id, self._n = log.log_id, log.n
        if not complete or any(k == "keys" for _, k, _ in new):
            self.keys.load()
        else:
            self.keys.refresh()

    def valid(self, conn: Lazy, claims: dict[str, Any]) -> bool:
        """Whether the token ``claims`` stand for is still in force (cached verdict, else one lookup)."""
        jti = claims.get("jti")
        if not isinstance(jti, str):
            return False
        with self._lock:
            verdict = self._verdicts.get(jti)
            if verdict is not None:
                self._verdicts.move_to_end(jti)
            generation = self._generation
        if verdict is None:
            verdict = _look_up(conn(), jti, claims)
            with self._lock:
                if generation == self._generation:  # no change arrived while we looked
                    self._verdicts[jti] = verdict
                    if len(self._verdicts) > self.size:
                        self._verdicts.popitem(last=False)
        return verdict.valid


def _look_up(conn: Connection, jti: str, claims: dict[str, Any]) -> Verdict:
    person = claims.get("hie_kind") in ("user", "patient")
    row = conn.execute(
        select(T.c.revoked, T.c.parent, C.c.active, U.c.active)
        .select_from(T.outerjoin(C, C.c.client_id == T.c.client_id).outerjoin(U, U.c.user_id == T.c.user_id))
        .where(T.c.token_key == jti, T.c.kind == "access")
    ).first()
    valid = row is not None and not row[0] and bool(row[2]) and (not person or bool(row[3]))
    return Verdict(valid=valid, client_id=claims.get("client_id"), user_id=claims.get("sub") if person else None,
                   parent=row[1] if row is not None else None)
