"""Table definitions shared by every migration, for SQLite and PostgreSQL alike.

Layout (HAPI's HFJ_RESOURCE/HFJ_RES_VER and Medplum's resource/history split):

* ``resource`` holds the current version of every resource (deleted ones stay as
  tombstones so that reads answer 410 and ids are never reused);
* ``resource_version`` holds every version, including the current one, so vread and
  ``_history`` read one table;
* the search-index tables (defined in :mod:`hie.search.tables`) hang off
  ``resource.pk``.

Every row that holds patient data carries ``patient_key`` (the regional patient key
from the identity service), ``custodian`` (the disclosing Organization's id),
``data_class`` (:mod:`consent.classes`) and ``security_labels`` (space-delimited
codes with a leading and trailing space, so that ``LIKE '% PSY %'`` matches exactly).
These are what the access predicate joins on; they are set at write time.
"""

from __future__ import annotations

from sqlalchemy import (
    BigInteger,
    Boolean,
    Column,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

# Deterministic constraint names so that Alembic migrations are stable on both dialects.
metadata = MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)

#: A 64-bit surrogate key; on SQLite an INTEGER PRIMARY KEY is the rowid alias.
PK = BigInteger().with_variant(Integer(), "sqlite")

def enforcement_columns() -> list[Column]:
    """What the access predicate joins on, on every table that holds resource versions
    (set at write time by :mod:`hie.storage.rowmeta`)."""
    return [
        Column("patient_key", String(64), nullable=True),
        Column("custodian", String(64), nullable=True),
        Column("data_class", String(32), nullable=False),
        Column("security_labels", String(512), nullable=False, default=" "),
        Column("sensitive_labels", String(128), nullable=False, default=" "),  # consent-relevant labels only
        Column("clinical_date", BigInteger, nullable=True),  # epoch us of the date the data is about
        Column("status", String(32), nullable=True),  # clinicalStatus / status code
        Column("hidden_from_patient", Boolean, nullable=False, default=False),  # JP-CLINS UNINFORMED
    ]


resource = Table(
    "resource",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    # Epoch microseconds (UTC): exact, sortable and identical on both dialects.
    Column("last_updated", BigInteger, nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    *enforcement_columns(),
    UniqueConstraint("res_type", "res_id"),
    Index("ix_resource_type_updated", "res_type", "last_updated"),
    Index("ix_resource_patient_key", "patient_key"),
)

resource_version = Table(
    "resource_version",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("resource_pk", BigInteger, nullable=False),
    Column("res_type", String(64), nullable=False),
    Column("res_id", String(64), nullable=False),
    Column("version_id", Integer, nullable=False),
    Column("last_updated", BigInteger, nullable=False),
    Column("method", String(8), nullable=False),
    Column("deleted", Boolean, nullable=False, default=False),
    Column("content", LargeBinary, nullable=True),
    *enforcement_columns(),
    UniqueConstraint("resource_pk", "version_id"),
    Index("ix_resource_version_type_updated", "res_type", "last_updated"),
    Index("ix_resource_version_updated", "last_updated"),
    Index("ix_resource_version_patient_key", "patient_key"),
)

# Items that could not be ingested: kept for inspection and replay (nothing is dropped).
ingest_failure = Table(
    "ingest_failure",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("received", BigInteger, nullable=False),
    Column("channel", String(32), nullable=False),
    Column("source", String(1024), nullable=False),
    Column("payload", LargeBinary, nullable=False),
    Column("error", Text, nullable=False),
    Column("status", String(16), nullable=False, default="failed"),
    Column("attempts", Integer, nullable=False, default=1),
    Column("last_attempt", BigInteger, nullable=False),
    Index("ix_ingest_failure_status", "status"),
)

# MLLP messages received, one row per sender (MSH-3, MSH-4) and control id (MSH-10):
# the content hash the id was used for and, once the data is committed, the AA sent.
# An identical resend is answered from here; the same id with other content is refused
# (adapters/mllp/receipts.py).
mllp_message = Table(
    "mllp_message",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("sending_app", String(256), nullable=False),
    Column("sending_facility", String(256), nullable=False),
    Column("control_id", String(256), nullable=False),
    Column("content_hash", String(64), nullable=False),
    Column("status", String(16), nullable=False),  # pending | accepted
    Column("ack", LargeBinary, nullable=True),
    Column("received", BigInteger, nullable=False),
    Column("updated", BigInteger, nullable=False),
    UniqueConstraint("sending_app", "sending_facility", "control_id"),
)
