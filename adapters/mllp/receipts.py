"""Persisted duplicate detection for the MLLP listener (table ``mllp_message``).

A message is known by its sender (MSH-3, MSH-4) and control id (MSH-10) *and* a hash of
its content:

* before a message is processed, its key is *claimed* for its content hash (committed);
* after its data is committed, the key is marked *accepted* with the AA that is sent;
* an identical resend of an accepted message gets that AA again and is not stored again;
* a message reusing an accepted key with other content is refused by the caller (AR,
  kept in the failure store), never answered with the other message's AA;
* a key that was claimed but never accepted (the listener crashed, the message got AE)
  binds nothing: the next message with that key is processed, and a resend of the same
  message is idempotent (the feed PUTs the same ids).

The same control id from another sender is another key. Rows survive restarts.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy import insert, select, update
from sqlalchemy.exc import IntegrityError

from hie.storage.db import write_tx
from hie.storage.tables import mllp_message as M

#: Longest MSH-3, MSH-4 and MSH-10 the table keeps (HL7 v2.5 allows 227, 227 and 20).
MAX_KEY_PART = 256


@dataclass(frozen=True)
class MessageKey:
    sending_app: str
    sending_facility: str
    control_id: str

    def where(self) -> Any:
        return ((M.c.sending_app == self.sending_app) & (M.c.sending_facility == self.sending_facility)
                & (M.c.control_id == self.control_id))


@dataclass(frozen=True)
class Accepted:
    """An earlier message accepted under the same key."""

    content_hash: str
    ack: bytes
    received: int


def content_hash(raw: bytes) -> str:
    """SHA-256 of the message bytes, segment terminators normalised (CR, LF or CRLF),
    trailing whitespace and MSH-7 (date/time of message) ignored: a resend through
    another tool, or a retry that stamps a new MSH-7, is still the same message."""
    body = raw.replace(b"\r\n", b"\r").replace(b"\n", b"\r").rstrip()
    head, sep, rest = body.partition(b"\r")
    if head.startswith(b"MSH") and len(head) > 3:
        fields = head.split(head[3:4])
        if len(fields) > 6:
            fields[6] = b""
            head = head[3:4].join(fields)
    return hashlib.sha256(head + sep + rest).hexdigest()


def claim(node: Any, key: MessageKey, digest: str) -> Accepted | None:
    """Claim ``key`` for a message with hash ``digest`` (committed before it is processed).
    Returns the earlier message if the key is already accepted (nothing is written then)."""
    for attempt in range(2):
        try:
            return _claim_once(node, key, digest)
        except IntegrityError:
            # Another listener process inserted the same key between our read and insert.
            if attempt:
                raise
    return None  # pragma: no cover - the loop returns or raises


def _claim_once(node: Any, key: MessageKey, digest: str) -> Accepted | None:
    now = node.clock.now_us()
    with write_tx(node.engine) as conn:
        row = conn.execute(select(M.c.status, M.c.content_hash, M.c.ack, M.c.received).where(key.where())).first()
        if row is not None and row.status == "accepted":
            return Accepted(content_hash=row.content_hash, ack=bytes(row.ack), received=row.received)
        if row is None:
            conn.execute(insert(M), {"sending_app": key.sending_app, "sending_facility": key.sending_facility,
                                     "control_id": key.control_id, "content_hash": digest, "status": "pending",
                                     "ack": None, "received": now, "updated": now})
        else:
            conn.execute(update(M).where(key.where()).values(content_hash=digest, status="pending", updated=now))
    return None


def accept(node: Any, key: MessageKey, digest: str, ack: bytes) -> None:
    """Record that the message's data is committed and ``ack`` is its answer."""
    with write_tx(node.engine) as conn:
        conn.execute(update(M).where(key.where()).values(content_hash=digest, status="accepted", ack=ack,
                                                         updated=node.clock.now_us()))


def accepted(node: Any, key: MessageKey) -> Accepted | None:
    """The accepted message under ``key``, if any (tests, inspection)."""
    with node.engine.connect() as conn:
        row = conn.execute(select(M.c.content_hash, M.c.ack, M.c.received)
                           .where(key.where() & (M.c.status == "accepted"))).first()
    return Accepted(content_hash=row.content_hash, ack=bytes(row.ack), received=row.received) if row else None


def prune(node: Any, *, older_than_us: int) -> int:
    """Forget messages last seen before ``older_than_us`` (epoch microseconds); returns how
    many. A forgotten control id binds nothing any more: an identical resend is processed
    again (idempotently) and another message under that id is accepted."""
    from sqlalchemy import delete

    with write_tx(node.engine) as conn:
        return conn.execute(delete(M).where(M.c.updated < older_than_us)).rowcount or 0
