"""The viewer's one table: server-side sessions (:mod:`hie.web.store`).

A row is keyed by the SHA-256 of the session id (the id itself is only in the browser's
cookie); its state (tokens, CSRF token, pending login, break-the-glass) is sealed with the
node's secret box (AES-GCM, :class:`hie.auth.passwords.SecretBox`), so a database reader gets
no usable token.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, LargeBinary, String, Table

from hie.storage.tables import metadata

viewer_session = Table(
    "viewer_session",
    metadata,
    Column("sid_hash", String(64), primary_key=True),
    Column("created", BigInteger, nullable=False),  # epoch microseconds
    Column("expires", BigInteger, nullable=False),  # epoch microseconds
    Column("state", LargeBinary, nullable=False),  # sealed JSON of hie.web.session.Session
)
