"""Tables of the tamper-evident audit trail.

``audit_chain`` is append-only: one row per AuditEvent, in order, holding the hash of
the previous row, the SHA-256 of the AuditEvent's canonical JSON and the chained hash
of both (``chain_hash = SHA-256(prev_hash | seq | event_id | record_hash)``).
``audit_checkpoint`` holds Ed25519 signatures over the chain head taken after every
flush, so that rewriting the chain from some point on needs the node's signing key.
The AuditEvents themselves are ordinary ``AuditEvent`` resources (searchable through
FHIR); the chain names them by id.

Spec: IHE BALP https://profiles.ihe.net/ITI/BALP/ ; MHLW guideline v6.0 (access logs
protected against deletion, tampering and insertion).
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table

from hie.storage.tables import metadata

audit_chain = Table(
    "audit_chain",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),
    Column("event_id", String(64), nullable=False, unique=True),
    Column("recorded", BigInteger, nullable=False),  # epoch microseconds
    Column("prev_hash", String(64), nullable=False),
    Column("record_hash", String(64), nullable=False),
    Column("chain_hash", String(64), nullable=False),
)

audit_checkpoint = Table(
    "audit_checkpoint",
    metadata,
    Column("seq", BigInteger, primary_key=True, autoincrement=False),  # chain head covered
    Column("chain_hash", String(64), nullable=False),
    Column("signed_at", BigInteger, nullable=False),
    Column("key_id", String(64), nullable=False),
    Column("signature", String(128), nullable=False),  # Ed25519, hex
    Index("ix_audit_checkpoint_signed_at", "signed_at"),
)
