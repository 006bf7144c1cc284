"""The hash chain over AuditEvents, its signed checkpoints, and verification.

Appending (inside the transaction that stores the AuditEvents): for each event in
order, ``record_hash = SHA-256(canonical JSON)`` and ``chain_hash = SHA-256(prev_hash |
seq | event_id | record_hash)``; then one Ed25519 signature over ``(seq, chain_hash)`` of
the new head (a checkpoint), also appended to ``<data_dir>/audit-checkpoints.log`` as a
witness outside the database. Appends from several processes are serialized (a
PostgreSQL advisory lock; SQLite write transactions are already exclusive).

Canonical JSON: the stored AuditEvent without ``meta.versionId`` and
``meta.lastUpdated`` (the repository stamps those), keys sorted, orjson compact.

:func:`verify` reports each kind of tampering with the row it concerns: an edited
AuditEvent or chain row, a deleted record (gap, missing resource), an inserted record
(an AuditEvent outside the chain, rows after the last signed checkpoint), a reordered
pair (broken links), and forged or rewritten checkpoints.

Spec: https://profiles.ihe.net/ITI/BALP/ ; MHLW guideline v6.0 (access logs protected
against deletion, tampering and insertion); https://www.rfc-editor.org/rfc/rfc8032 (Ed25519)
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import orjson
from cryptography.exceptions import InvalidSignature
from sqlalchemy import Connection, insert, select, text

from hie.audit.tables import audit_chain as A
from hie.audit.tables import audit_checkpoint as K
from hie.storage.queries import audit_event_rows, unchained_audit_events

GENESIS = "0" * 64
_LOCK_KEY = 0x41554454  # "AUDT"


def canonical(event: dict[str, Any]) -> bytes:
    body = dict(event)
    meta = body.get("meta")
    if isinstance(meta, dict):
        meta = {k: v for k, v in meta.items() if k not in ("versionId", "lastUpdated")}
        if meta:
            body["meta"] = meta
        else:
            body.pop("meta")
    return orjson.dumps(body, option=orjson.OPT_SORT_KEYS)


def record_hash(event: dict[str, Any]) -> str:
    return hashlib.sha256(canonical(event)).hexdigest()


def link_hash(prev_hash: str, seq: int, event_id: str, rec_hash: str) -> str:
    return hashlib.sha256(f"{prev_hash}|{seq}|{event_id}|{rec_hash}".encode()).hexdigest()


def checkpoint_message(seq: int, chain_hash: str) -> bytes:
    return f"hie-audit-checkpoint|{seq}|{chain_hash}".encode()


def head(conn: Connection) -> tuple[int, str]:
    row = conn.execute(select(A.c.seq, A.c.chain_hash).order_by(A.c.seq.desc()).limit(1)).first()
    return (row[0], row[1]) if row else (0, GENESIS)


def append(
    conn: Connection, events: Sequence[dict[str, Any]], *, now_us: int, signer: Any = None,
    witness: Path | None = None,
) -> int:
    """Chain ``events`` (already stored as resources in this transaction) after the head;
    events already chained (a replay after a crash) are skipped. Returns the new head seq."""
    if conn.dialect.name == "postgresql":
        conn.execute(text("SELECT pg_advisory_xact_lock(:k)"), {"k": _LOCK_KEY})
    ids = [e["id"] for e in events]
    done: set[str] = set()
    for i in range(0, len(ids), 500):
        done.update(conn.execute(select(A.c.event_id).where(A.c.event_id.in_(ids[i:i + 500]))).scalars())
    seq, prev = head(conn)
    rows = []
    for e in events:
        if e["id"] in done:
            continue
        done.add(e["id"])
        seq += 1
        rh = record_hash(e)
        ch = link_hash(prev, seq, e["id"], rh)
        rows.append({"seq": seq, "event_id": e["id"], "recorded": now_us, "prev_hash": prev,
                     "record_hash": rh, "chain_hash": ch})
        prev = ch
    if rows:
        conn.execute(insert(A), rows)
        if signer is not None:
            sign_checkpoint(conn, seq, prev, signer=signer, now_us=now_us, witness=witness)
    return seq


def sign_checkpoint(conn: Connection, seq: int, chain_hash: str, *, signer: Any, now_us: int,
                    witness: Path | None = None) -> None:
    signature = signer.key.sign(checkpoint_message(seq, chain_hash)).hex()
    conn.execute(insert(K), {"seq": seq, "chain_hash": chain_hash, "signed_at": now_us, "key_id": signer.kid,
                             "signature": signature})
    if witness is not None:
        with open(witness, "a", encoding="ascii") as f:
            f.write(f"{seq} {chain_hash} {signer.kid} {signature}\n")


# -- verification -----------------------------------------------------------------------


@dataclass
class Report:
    records: int = 0
    checkpoints: int = 0
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems

    def add(self, msg: str) -> None:
        self.problems.append(msg)


def _chain_rows(conn: Connection, batch: int = 2000) -> Iterator[Any]:
    last = -1
    while True:
        rows = conn.execute(select(A).where(A.c.seq > last).order_by(A.c.seq).limit(batch)).all()
        if not rows:
            return
        yield from rows
        last = rows[-1].seq


def verify(conn: Connection, keys: Any) -> Report:
    """Check the whole trail; ``keys`` resolves checkpoint key ids to Ed25519 public keys
    (:meth:`hie.auth.keys.KeyStore.audit_public`)."""
    rep = Report()
    expected_seq, prev = 1, GENESIS
    by_seq: dict[int, str] = {}
    chained_ids: set[str] = set()
    pending: list[Any] = []

    def check_resources(rows: list[Any]) -> None:
        ids = [r.event_id for r in rows]
        stored = audit_event_rows(conn, ids)
        for row in rows:
            st = stored.get(row.event_id)
            if st is None:
                rep.add(f"seq {row.seq}: AuditEvent/{row.event_id} is missing (deleted record)")
            elif st.deleted or st.content is None:
                rep.add(f"seq {row.seq}: AuditEvent/{row.event_id} was deleted")
            else:
                if st.version_id != 1:
                    rep.add(f"seq {row.seq}: AuditEvent/{row.event_id} has version {st.version_id} "
                            "(changed after recording)")
                if record_hash(orjson.loads(st.content)) != row.record_hash:
                    rep.add(f"seq {row.seq}: AuditEvent/{row.event_id} content does not match its recorded hash "
                            "(edited record)")

    for row in _chain_rows(conn):
        rep.records += 1
        if row.seq != expected_seq:
            if row.seq > expected_seq:
                rep.add(f"seq {expected_seq}..{row.seq - 1}: chain records missing (deleted records)")
            else:
                rep.add(f"seq {row.seq}: out of order")
        if row.prev_hash != prev:
            rep.add(f"seq {row.seq}: does not link to the record before it (inserted, deleted or reordered record)")
        if link_hash(row.prev_hash, row.seq, row.event_id, row.record_hash) != row.chain_hash:
            rep.add(f"seq {row.seq}: chain hash does not match the row's contents (edited or moved chain record)")
        by_seq[row.seq] = row.chain_hash
        chained_ids.add(row.event_id)
        prev = row.chain_hash
        expected_seq = row.seq + 1
        pending.append(row)
        if len(pending) >= 500:
            check_resources(pending)
            pending = []
    if pending:
        check_resources(pending)

    last_signed = 0
    for cp in conn.execute(select(K).order_by(K.c.seq)):
        rep.checkpoints += 1
        pub = keys.audit_public(cp.key_id)
        if pub is None:
            rep.add(f"checkpoint at seq {cp.seq}: unknown signing key {cp.key_id}")
            continue
        try:
            pub.verify(bytes.fromhex(cp.signature), checkpoint_message(cp.seq, cp.chain_hash))
        except (InvalidSignature, ValueError):
            rep.add(f"checkpoint at seq {cp.seq}: signature is invalid (forged or edited checkpoint)")
            continue
        if cp.seq not in by_seq:
            rep.add(f"checkpoint at seq {cp.seq}: the chain has no record {cp.seq} (deleted records)")
        elif by_seq[cp.seq] != cp.chain_hash:
            rep.add(f"checkpoint at seq {cp.seq}: the chain up to here differs from what was signed (rewritten chain)")
        last_signed = max(last_signed, cp.seq)
    max_seq = expected_seq - 1
    if max_seq > last_signed:
        rep.add(f"seq {last_signed + 1}..{max_seq}: records after the last signed checkpoint (inserted records)")

    unchained, ids = unchained_audit_events(conn, select(A.c.event_id))
    if unchained:
        rep.add(f"{unchained} AuditEvent resource(s) not in the chain (inserted records), e.g. {', '.join(ids)}")
    return rep
