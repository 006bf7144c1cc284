"""Viewer sessions (hie/web/tables.py): sealed server-side session state per session-id hash

A branch off 0001 like the other capabilities; hand-written; SQLite and PostgreSQL.

Revision ID: 0007_viewer_session
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0007_viewer_session"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "viewer_session",
        sa.Column("sid_hash", sa.String(64), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("state", sa.LargeBinary(), nullable=False),
        sa.PrimaryKeyConstraint("sid_hash", name=op.f("pk_viewer_session")),
    )


def downgrade() -> None:
    op.drop_table("viewer_session")
