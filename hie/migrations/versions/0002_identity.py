"""identity: regional persons, links, blocking keys, review queue, event log

Tables of :mod:`hie.identity.tables` (the regional master patient index). A branch off
0001 (each capability ships its own revision branch; ``hie db upgrade`` goes to all
heads). Hand-written; works on SQLite and PostgreSQL.

Revision ID: 0002_identity
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0002_identity"
down_revision = "0001"
branch_labels = None
depends_on = None

_PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "identity_person",
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("regional_id", sa.String(length=64), nullable=True),
        sa.Column("has_patient", sa.Boolean(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("merged_into", sa.String(length=64), nullable=True),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("person_key", name=op.f("pk_identity_person")),
    )
    op.create_index("ix_identity_person_regional_id", "identity_person", ["regional_id"])
    op.create_index("ix_identity_person_merged_into", "identity_person", ["merged_into"])

    op.create_table(
        "identity_link",
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("person_key", sa.String(length=64), nullable=False),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("method", sa.String(length=16), nullable=False),
        sa.Column("linked_by", sa.String(length=128), nullable=True),
        sa.Column("linked_at", sa.BigInteger(), nullable=False),
        sa.Column("score", sa.Float(), nullable=True),
        sa.PrimaryKeyConstraint("patient_id", name=op.f("pk_identity_link")),
    )
    op.create_index("ix_identity_link_person_key", "identity_link", ["person_key"])

    op.create_table(
        "identity_block",
        sa.Column("key", sa.String(length=300), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("resource_pk", sa.BigInteger(), nullable=False),
        sa.Column("source", sa.String(length=16), nullable=False),
        sa.UniqueConstraint("key", "patient_id", "source", name=op.f("uq_identity_block_key_patient_id_source")),
    )
    op.create_index("ix_identity_block_patient_id", "identity_block", ["patient_id"])

    op.create_table(
        "identity_review",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=False),
        sa.Column("candidate_id", sa.String(length=64), nullable=False),
        sa.Column("score", sa.Float(), nullable=False),
        sa.Column("grade", sa.String(length=16), nullable=False),
        sa.Column("levels", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("decided_by", sa.String(length=128), nullable=True),
        sa.Column("decided_at", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_identity_review")),
        sa.UniqueConstraint("patient_id", "candidate_id", name=op.f("uq_identity_review_patient_id_candidate_id")),
    )
    op.create_index("ix_identity_review_status", "identity_review", ["status", "created"])
    op.create_index("ix_identity_review_candidate_id", "identity_review", ["candidate_id"])

    op.create_table(
        "identity_event",
        sa.Column("pk", _PK, autoincrement=True, nullable=False),
        sa.Column("at", sa.BigInteger(), nullable=False),
        sa.Column("actor", sa.String(length=128), nullable=False),
        sa.Column("action", sa.String(length=16), nullable=False),
        sa.Column("patient_id", sa.String(length=64), nullable=True),
        sa.Column("from_key", sa.String(length=64), nullable=True),
        sa.Column("to_key", sa.String(length=64), nullable=True),
        sa.Column("detail", sa.Text(), nullable=False),
        sa.Column("reversed_by", sa.BigInteger(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_identity_event")),
    )
    op.create_index("ix_identity_event_patient_id", "identity_event", ["patient_id"])
    op.create_index("ix_identity_event_at", "identity_event", ["at"])


def downgrade() -> None:
    for table in ("identity_event", "identity_review", "identity_block", "identity_link", "identity_person"):
        op.drop_table(table)
