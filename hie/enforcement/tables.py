"""Tables of consent enforcement (on the shared metadata; migration 0004_consent).

* ``consent_grant``: the compiled rows of every active Consent (consent.grants.Grant), with
  times as epoch microseconds; replaced whole whenever the Consent is written.
* ``break_glass``: emergency-access declarations (who, for which patient, why, until when).
* ``node_setting``: region-wide switches such as disaster mode, shared by every process.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Column, Index, String, Table, Text

from hie.storage.tables import PK, metadata

consent_grant = Table(
    "consent_grant",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("consent_pk", BigInteger, nullable=False),  # resource.pk of the Consent
    Column("consent_id", String(64), nullable=False),
    Column("patient_key", String(64), nullable=False),
    Column("effect", String(8), nullable=False),  # permit | deny
    Column("viewer_org", String(64), nullable=False),  # facility key or '*'
    Column("viewer_practitioner", String(64), nullable=False),  # Practitioner id or '*'
    Column("data_class", String(32), nullable=False),  # or '*'
    Column("security_label", String(16), nullable=False),  # '' ordinary, a code, or '*' (deny only)
    Column("purpose", String(32), nullable=False),  # or '*'
    Column("data_from", BigInteger, nullable=True),
    Column("data_to", BigInteger, nullable=True),
    Column("valid_from", BigInteger, nullable=True),
    Column("valid_to", BigInteger, nullable=True),
    Column("provision_path", String(256), nullable=False),
    Index("ix_consent_grant_lookup", "patient_key", "viewer_org", "effect"),
    Index("ix_consent_grant_consent", "consent_pk"),
)

break_glass = Table(
    "break_glass",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("principal", String(128), nullable=False),  # user:<id> or client:<id>
    Column("organization", String(64), nullable=True),
    Column("patient_key", String(64), nullable=False),
    Column("patient_id", String(64), nullable=False),
    Column("reason", Text, nullable=False),
    Column("declared_at", BigInteger, nullable=False),
    Column("expires_at", BigInteger, nullable=False),
    Column("kind", String(16), nullable=False),  # break-glass
    Index("ix_break_glass_principal", "principal", "expires_at"),
    Index("ix_break_glass_patient", "patient_key"),
)

node_setting = Table(
    "node_setting",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("value", Text, nullable=False),
    Column("changed_at", BigInteger, nullable=False),
    Column("changed_by", String(128), nullable=False),
)
