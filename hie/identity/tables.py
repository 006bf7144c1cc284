"""Tables of the identity service (the regional master patient index).

Implements the persistent side of patient identity for the node: which facility-scoped
``Patient`` (https://hl7.org/fhir/R4/patient.html, identifier system
``urn:oid:1.2.392.100495.20.3.51.1`` + facility code) belongs to which regional person,
the blocking keys that ``Patient/$match`` (https://hl7.org/fhir/R4/patient-operation-match.html,
IHE PDQm ITI-119) retrieves candidates with, the review queue, and the identity event
log that makes link, unlink and merge audited and reversible.

* ``identity_person`` -- one row per regional person. ``person_key`` is the regional
  patient key the storage layer writes into ``patient_key`` on every row of the person;
  it is also the id of the person's regional ``Patient`` resource once one exists
  (``has_patient``). ``status`` is ``active`` or ``merged`` (then ``merged_into``).
* ``identity_link`` -- maps every Patient id the node has seen (``role`` ``local``:
  facility records and any other patient; ``regional``: the person's own Patient) to a
  person, with how (``method``), who and when.
* ``identity_block`` -- ``(key, patient_id)`` blocking keys of local patients
  (:func:`hie.identity.index.blocking_keys`); ``source`` is ``demographics`` (derived
  from the Patient, replaced on every update) or ``verified`` (identification seen at
  the counter, kept).
* ``identity_review`` -- proposed pairs in the review band and the staff decision
  (``open``, ``linked``, ``not-a-match``, ``superseded``); a ``not-a-match`` pair is never
  proposed or auto-linked again.
* ``identity_event`` -- every identity change with actor, time, the keys before and
  after and a JSON detail (the pre-merge mapping for a merge), so it can be reversed.
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Float, Index, String, Table, Text, UniqueConstraint

from hie.storage.tables import PK, metadata

KEY = 64  # same width as resource.patient_key / resource.res_id

identity_person = Table(
    "identity_person",
    metadata,
    Column("person_key", String(KEY), primary_key=True),
    # Value in the region's identifier namespace (regional card number); None until issued.
    Column("regional_id", String(64), nullable=True),
    Column("has_patient", Boolean, nullable=False, default=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("merged_into", String(KEY), nullable=True),
    Column("created", BigInteger, nullable=False),
    Index("ix_identity_person_regional_id", "regional_id"),
    Index("ix_identity_person_merged_into", "merged_into"),
)

identity_link = Table(
    "identity_link",
    metadata,
    Column("patient_id", String(KEY), primary_key=True),
    Column("person_key", String(KEY), nullable=False),
    Column("role", String(16), nullable=False, default="local"),
    # own (no link yet) | auto | review | counter | merge | regional
    Column("method", String(16), nullable=False),
    Column("linked_by", String(128), nullable=True),
    Column("linked_at", BigInteger, nullable=False),
    Column("score", Float, nullable=True),
    Index("ix_identity_link_person_key", "person_key"),
)

identity_block = Table(
    "identity_block",
    metadata,
    Column("key", String(300), nullable=False),
    Column("patient_id", String(KEY), nullable=False),
    Column("resource_pk", BigInteger, nullable=False),
    Column("source", String(16), nullable=False, default="demographics"),
    UniqueConstraint("key", "patient_id", "source"),
    Index("ix_identity_block_patient_id", "patient_id"),
)

identity_review = Table(
    "identity_review",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("patient_id", String(KEY), nullable=False),  # the record that was being matched
    Column("candidate_id", String(KEY), nullable=False),
    Column("score", Float, nullable=False),
    Column("grade", String(16), nullable=False),
    Column("levels", Text, nullable=False),  # JSON: agreement level per field
    Column("status", String(16), nullable=False, default="open"),
    Column("created", BigInteger, nullable=False),
    Column("decided_by", String(128), nullable=True),
    Column("decided_at", BigInteger, nullable=True),
    UniqueConstraint("patient_id", "candidate_id"),
    Index("ix_identity_review_status", "status", "created"),
    Index("ix_identity_review_candidate_id", "candidate_id"),
)

identity_event = Table(
    "identity_event",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("at", BigInteger, nullable=False),
    Column("actor", String(128), nullable=False),
    # auto-link | review-link | counter-link | unlink | merge | unmerge | not-a-match
    Column("action", String(16), nullable=False),
    Column("patient_id", String(KEY), nullable=True),
    Column("from_key", String(KEY), nullable=True),
    Column("to_key", String(KEY), nullable=True),
    Column("detail", Text, nullable=False),  # JSON
    Column("reversed_by", BigInteger, nullable=True),
    Index("ix_identity_event_patient_id", "patient_id"),
    Index("ix_identity_event_at", "at"),
)

ALL_IDENTITY_TABLES = (identity_person, identity_link, identity_block, identity_review, identity_event)
