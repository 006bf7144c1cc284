"""MLLP messages received: sender, control id, content hash and the ACK sent (duplicates)

Table ``mllp_message`` of :mod:`hie.storage.tables` (adapters/mllp/receipts.py). A branch
off 0001 like the other capabilities; hand-written; SQLite and PostgreSQL.

Revision ID: 0006_mllp_message
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0006_mllp_message"
down_revision = "0001"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "mllp_message",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("sending_app", sa.String(256), nullable=False),
        sa.Column("sending_facility", sa.String(256), nullable=False),
        sa.Column("control_id", sa.String(256), nullable=False),
        sa.Column("content_hash", sa.String(64), nullable=False),
        sa.Column("status", sa.String(16), nullable=False),
        sa.Column("ack", sa.LargeBinary(), nullable=True),
        sa.Column("received", sa.BigInteger(), nullable=False),
        sa.Column("updated", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_mllp_message")),
        sa.UniqueConstraint("sending_app", "sending_facility", "control_id",
                            name=op.f("uq_mllp_message_sending_app_sending_facility_control_id")),
    )


def downgrade() -> None:
    op.drop_table("mllp_message")
