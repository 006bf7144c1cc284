"""Consent enforcement: grants, break-the-glass declarations, node settings.

Revision ID: 0004_consent
Revises: 0001
Create Date: 2026-11-21
"""
import sqlalchemy as sa
from alembic import op

revision = "0004_consent"
down_revision = "0001"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "consent_grant",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("consent_pk", sa.BigInteger(), nullable=False),
        sa.Column("consent_id", sa.String(64), nullable=False),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("effect", sa.String(8), nullable=False),
        sa.Column("viewer_org", sa.String(64), nullable=False),
        sa.Column("viewer_practitioner", sa.String(64), nullable=False),
        sa.Column("data_class", sa.String(32), nullable=False),
        sa.Column("security_label", sa.String(16), nullable=False),
        sa.Column("purpose", sa.String(32), nullable=False),
        sa.Column("data_from", sa.BigInteger(), nullable=True),
        sa.Column("data_to", sa.BigInteger(), nullable=True),
        sa.Column("valid_from", sa.BigInteger(), nullable=True),
        sa.Column("valid_to", sa.BigInteger(), nullable=True),
        sa.Column("provision_path", sa.String(256), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_consent_grant")),
    )
    op.create_index("ix_consent_grant_lookup", "consent_grant", ["patient_key", "viewer_org", "effect"])
    op.create_index("ix_consent_grant_consent", "consent_grant", ["consent_pk"])
    op.create_table(
        "break_glass",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("principal", sa.String(128), nullable=False),
        sa.Column("organization", sa.String(64), nullable=True),
        sa.Column("patient_key", sa.String(64), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=False),
        sa.Column("reason", sa.Text(), nullable=False),
        sa.Column("declared_at", sa.BigInteger(), nullable=False),
        sa.Column("expires_at", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_break_glass")),
    )
    op.create_index("ix_break_glass_principal", "break_glass", ["principal", "expires_at"])
    op.create_index("ix_break_glass_patient", "break_glass", ["patient_key"])
    op.create_table(
        "node_setting",
        sa.Column("name", sa.String(64), nullable=False),
        sa.Column("value", sa.Text(), nullable=False),
        sa.Column("changed_at", sa.BigInteger(), nullable=False),
        sa.Column("changed_by", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_node_setting")),
    )


def downgrade() -> None:
    op.drop_table("node_setting")
    op.drop_index("ix_break_glass_patient", table_name="break_glass")
    op.drop_index("ix_break_glass_principal", table_name="break_glass")
    op.drop_table("break_glass")
    op.drop_index("ix_consent_grant_consent", table_name="consent_grant")
    op.drop_index("ix_consent_grant_lookup", table_name="consent_grant")
    op.drop_table("consent_grant")
