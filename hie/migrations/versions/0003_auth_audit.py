"""auth and audit tables (clients, users, tokens, codes, jti cache; audit chain, checkpoints)

Revision ID: 0003_auth_audit
Revises: 0001
"""
from alembic import op
import sqlalchemy as sa


revision = "0003_auth_audit"
down_revision = "0001"
branch_labels = None
depends_on = None

PK = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        "auth_client",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("auth_method", sa.String(32), nullable=False),
        sa.Column("secret_hash", sa.String(128), nullable=True),
        sa.Column("jwks", sa.Text(), nullable=True),
        sa.Column("jwks_uri", sa.String(1024), nullable=True),
        sa.Column("redirect_uris", sa.Text(), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("organization_code", sa.String(16), nullable=True),
        sa.Column("roles", sa.String(256), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.Column("metadata", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("client_id", name=op.f("pk_auth_client")),
    )
    op.create_table(
        "auth_user",
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("username", sa.String(128), nullable=False),
        sa.Column("display_name", sa.String(256), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(256), nullable=False),
        sa.Column("totp_secret", sa.LargeBinary(), nullable=False),
        sa.Column("last_totp_step", sa.BigInteger(), nullable=True),
        sa.Column("recovery_hashes", sa.Text(), nullable=False),
        sa.Column("organization_code", sa.String(16), nullable=True),
        sa.Column("practitioner_id", sa.String(64), nullable=True),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("roles", sa.String(256), nullable=False),
        sa.Column("failed_logins", sa.Integer(), nullable=False),
        sa.Column("locked_until", sa.BigInteger(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("created", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("user_id", name=op.f("pk_auth_user")),
        sa.UniqueConstraint("username", name=op.f("uq_auth_user_username")),
    )
    op.create_table(
        "auth_token",
        sa.Column("pk", PK, autoincrement=True, nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("token_key", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=True),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("issued", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("revoked", sa.Boolean(), nullable=False),
        sa.Column("parent", sa.String(128), nullable=True),
        sa.Column("claims", sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint("pk", name=op.f("pk_auth_token")),
        sa.UniqueConstraint("token_key", name=op.f("uq_auth_token_token_key")),
    )
    with op.batch_alter_table("auth_token", schema=None) as batch_op:
        batch_op.create_index("ix_auth_token_client", ["client_id"], unique=False)
        batch_op.create_index("ix_auth_token_parent", ["parent"], unique=False)
    op.create_table(
        "auth_code",
        sa.Column("code_hash", sa.String(128), nullable=False),
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("user_id", sa.String(64), nullable=False),
        sa.Column("redirect_uri", sa.String(1024), nullable=False),
        sa.Column("scope", sa.Text(), nullable=False),
        sa.Column("patient_id", sa.String(64), nullable=True),
        sa.Column("nonce", sa.String(256), nullable=True),
        sa.Column("code_challenge", sa.String(256), nullable=False),
        sa.Column("code_challenge_method", sa.String(8), nullable=False),
        sa.Column("auth_time", sa.BigInteger(), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.Column("used", sa.Boolean(), nullable=False),
        sa.PrimaryKeyConstraint("code_hash", name=op.f("pk_auth_code")),
    )
    op.create_table(
        "auth_jti",
        sa.Column("client_id", sa.String(64), nullable=False),
        sa.Column("jti", sa.String(256), nullable=False),
        sa.Column("expires", sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint("client_id", "jti", name=op.f("pk_auth_jti")),
    )
    with op.batch_alter_table("auth_jti", schema=None) as batch_op:
        batch_op.create_index("ix_auth_jti_expires", ["expires"], unique=False)
    op.create_table(
        "audit_chain",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("event_id", sa.String(64), nullable=False),
        sa.Column("recorded", sa.BigInteger(), nullable=False),
        sa.Column("prev_hash", sa.String(64), nullable=False),
        sa.Column("record_hash", sa.String(64), nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_chain")),
        sa.UniqueConstraint("event_id", name=op.f("uq_audit_chain_event_id")),
    )
    op.create_table(
        "audit_checkpoint",
        sa.Column("seq", sa.BigInteger(), autoincrement=False, nullable=False),
        sa.Column("chain_hash", sa.String(64), nullable=False),
        sa.Column("signed_at", sa.BigInteger(), nullable=False),
        sa.Column("key_id", sa.String(64), nullable=False),
        sa.Column("signature", sa.String(128), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_audit_checkpoint")),
    )
    with op.batch_alter_table("audit_checkpoint", schema=None) as batch_op:
        batch_op.create_index("ix_audit_checkpoint_signed_at", ["signed_at"], unique=False)


def downgrade() -> None:
    for name in ("audit_checkpoint", "audit_chain", "auth_jti", "auth_code", "auth_token", "auth_user",
                 "auth_client"):
        op.drop_table(name)
