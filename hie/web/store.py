"""Server-side viewer sessions in the database (table ``viewer_session``), so any worker
process of the node serves any session (stateless application processes).

The state of a :class:`hie.web.session.Session` is JSON sealed with the node's secret box;
the row's key is the SHA-256 of the session id. A row is written only when a login completes
(a browser that only started a login carries its pending state sealed in the cookie), so
anonymous requests store nothing; the id is new at every login (no session fixation). Expired
rows are removed when a session is created.
"""

from __future__ import annotations

import base64
import dataclasses
import hashlib
import secrets
import time
from typing import Any

import orjson
from sqlalchemy import delete, insert, select, update

from hie.storage.db import read_tx, write_tx
from hie.web.tables import viewer_session as VS

SESSION_TTL = 12 * 3600  # seconds: the refresh token's online lifetime
#: A cookie value that is a pending login (sealed state), not a session id.
LOGIN_PREFIX = "login."


def _hash(sid: str) -> str:
    return hashlib.sha256(sid.encode()).hexdigest()


class SessionStore:
    def __init__(self, node: Any) -> None:
        from hie.auth.service import AuthService

        self.node = node
        self.box = AuthService.for_node(node).box

    def _seal(self, session: Any) -> bytes:
        return self.box.seal(orjson.dumps(dataclasses.asdict(session)).decode())

    def new(self) -> tuple[str, Any]:
        from hie.web.session import Session

        sid = secrets.token_urlsafe(32)
        now = time.time()
        s = Session(_hash(sid), secrets.token_urlsafe(24), now)
        with write_tx(self.node.engine) as conn:
            conn.execute(delete(VS).where(VS.c.expires < int(now * 1_000_000)))
            conn.execute(insert(VS), {"sid_hash": s.sid_hash, "created": int(now * 1_000_000),
                                      "expires": int((now + SESSION_TTL) * 1_000_000), "state": self._seal(s)})
        return sid, s

    def get(self, sid: str | None) -> Any:
        from hie.web.session import Glass, Session

        if not sid:
            return None
        with read_tx(self.node.engine) as conn:
            row = conn.execute(select(VS.c.state, VS.c.expires).where(VS.c.sid_hash == _hash(sid))).first()
        if row is None or row.expires < time.time() * 1_000_000:
            return None
        try:
            data = orjson.loads(self.box.open(row.state))
        except Exception:  # noqa: BLE001 - another key (rotated secret box), corrupt row: no session
            return None
        glass = data.pop("glass", None)
        return Session(**data, glass=Glass(**glass) if glass else None)

    def seal_login(self, pending: dict[str, str]) -> str:
        """A pending login as a cookie value (sealed: the browser can neither read nor forge it)."""
        return LOGIN_PREFIX + base64.urlsafe_b64encode(self.box.seal(orjson.dumps(pending).decode())).decode()

    def open_login(self, value: str | None) -> dict[str, str] | None:
        if not value or not value.startswith(LOGIN_PREFIX):
            return None
        try:
            data = orjson.loads(self.box.open(base64.urlsafe_b64decode(value[len(LOGIN_PREFIX):].encode())))
        except Exception:  # noqa: BLE001 - forged, truncated or sealed under another key
            return None
        return data if isinstance(data, dict) else None

    def save(self, session: Any) -> None:
        with write_tx(self.node.engine) as conn:
            conn.execute(update(VS).where(VS.c.sid_hash == session.sid_hash).values(state=self._seal(session)))

    def drop(self, session: Any) -> None:
        with write_tx(self.node.engine) as conn:
            conn.execute(delete(VS).where(VS.c.sid_hash == session.sid_hash))
