"""Tables of the authorization server: registered clients, users, issued tokens,
authorization codes and the client-assertion ``jti`` replay cache.

Secrets are never stored in the clear: passwords are argon2 hashes, recovery codes and
refresh tokens are SHA-256 hashes of high-entropy random values, TOTP seeds are
encrypted with AES-GCM under a key from the node's data directory
(:mod:`hie.auth.passwords`). Access tokens are JWTs; only their ``jti`` is kept, so
that introspection and revocation work (RFC 7662, RFC 7009).

Spec: https://hl7.org/fhir/smart-app-launch/ (App Launch 2.0, Backend Services)
"""

from __future__ import annotations

from sqlalchemy import BigInteger, Boolean, Column, Index, Integer, LargeBinary, String, Table, Text

from hie.storage.tables import PK, metadata

auth_client = Table(
    "auth_client",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(256), nullable=False),
    # backend (client_credentials), confidential or public (authorization code)
    Column("kind", String(16), nullable=False),
    Column("auth_method", String(32), nullable=False),  # private_key_jwt | client_secret_basic | none
    Column("secret_hash", String(128), nullable=True),
    Column("jwks", Text, nullable=True),  # inline JWKS (JSON)
    Column("jwks_uri", String(1024), nullable=True),
    Column("redirect_uris", Text, nullable=False, default=""),  # space-separated
    Column("scope", Text, nullable=False),  # the most this client may be granted
    Column("organization_code", String(16), nullable=True),  # 10-digit medical-institution code
    Column("roles", String(256), nullable=False, default=""),  # space-separated (e.g. operator)
    Column("active", Boolean, nullable=False, default=True),
    Column("created", BigInteger, nullable=False),
    Column("metadata", Text, nullable=True),  # RFC 7591 metadata as registered (JSON)
)

auth_user = Table(
    "auth_user",
    metadata,
    Column("user_id", String(64), primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("display_name", String(256), nullable=False),
    Column("kind", String(16), nullable=False),  # practitioner | staff | patient | operator
    Column("password_hash", String(256), nullable=False),
    Column("totp_secret", LargeBinary, nullable=False),  # AES-GCM(nonce || ciphertext)
    Column("last_totp_step", BigInteger, nullable=True),  # a TOTP code is accepted once
    Column("recovery_hashes", Text, nullable=False, default=""),  # space-separated SHA-256 hex
    Column("organization_code", String(16), nullable=True),
    Column("practitioner_id", String(64), nullable=True),
    Column("patient_id", String(64), nullable=True),
    Column("roles", String(256), nullable=False, default=""),
    Column("failed_logins", Integer, nullable=False, default=0),
    Column("locked_until", BigInteger, nullable=True),  # epoch microseconds
    Column("active", Boolean, nullable=False, default=True),
    Column("created", BigInteger, nullable=False),
)

auth_token = Table(
    "auth_token",
    metadata,
    Column("pk", PK, primary_key=True, autoincrement=True),
    Column("kind", String(8), nullable=False),  # access | refresh
    # access: the JWT's jti; refresh: SHA-256 hex of the opaque token
    Column("token_key", String(128), nullable=False, unique=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=True),
    Column("scope", Text, nullable=False),
    Column("patient_id", String(64), nullable=True),  # launch context
    Column("issued", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("parent", String(128), nullable=True),  # refresh token an access token came from
    Column("claims", Text, nullable=True),  # JSON: what introspection answers
    Index("ix_auth_token_client", "client_id"),
    Index("ix_auth_token_parent", "parent"),
)

auth_code = Table(
    "auth_code",
    metadata,
    Column("code_hash", String(128), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(64), nullable=False),
    Column("redirect_uri", String(1024), nullable=False),
    Column("scope", Text, nullable=False),
    Column("patient_id", String(64), nullable=True),
    Column("nonce", String(256), nullable=True),
    Column("code_challenge", String(256), nullable=False),
    Column("code_challenge_method", String(8), nullable=False),
    Column("auth_time", BigInteger, nullable=False),
    Column("expires", BigInteger, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
)

auth_jti = Table(
    "auth_jti",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("jti", String(256), primary_key=True),
    Column("expires", BigInteger, nullable=False),
    Index("ix_auth_jti_expires", "expires"),
)
