"""The two factors people log in with: a password (argon2id hash) and a TOTP code
(RFC 6238, 30-second steps, six digits), with single-use recovery codes.

The MHLW security guideline (v6.0) asks for two-factor authentication and irreversible
password storage. A TOTP code is accepted once (the step is remembered, so a code seen
over a shoulder cannot be replayed within its window). TOTP seeds must be readable by
the server, so they are encrypted (AES-256-GCM) under ``<data_dir>/keys/secret-box.key``
(or ``HIE_SECRET_BOX_KEY``, 64 hex digits) rather than hashed. Recovery codes are
random (60 bits) so a SHA-256 of each is enough.

Spec: https://www.rfc-editor.org/rfc/rfc6238 ; https://www.rfc-editor.org/rfc/rfc9106 (argon2)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

import pyotp
from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

_HASHER = PasswordHasher()  # argon2id with the library's RFC 9106 "low memory" profile
MIN_PASSWORD_LENGTH = 12
TOTP_ISSUER = "HIE node"
RECOVERY_CODES = 10
_ALPHABET = "23456789abcdefghjkmnpqrstuvwxyz"  # no 0/o, 1/l/i


def hash_password(password: str) -> str:
    if len(password) < MIN_PASSWORD_LENGTH:
        raise ValueError(f"A password needs at least {MIN_PASSWORD_LENGTH} characters")
    return _HASHER.hash(password)


def verify_password(stored_hash: str, password: str) -> bool:
    try:
        return _HASHER.verify(stored_hash, password)
    except (VerifyMismatchError, VerificationError, InvalidHashError):
        return False


def dummy_verify(password: str) -> None:
    """Spend the time of one verification (unknown user names must not answer faster)."""
    verify_password(_DUMMY, password)


_DUMMY = _HASHER.hash("not-a-real-password-0000")


def new_password() -> str:
    return "-".join("".join(secrets.choice(_ALPHABET) for _ in range(5)) for _ in range(4))


# -- TOTP ---------------------------------------------------------------------------------


def new_totp_secret() -> str:
    return pyotp.random_base32()


def totp_uri(secret: str, username: str) -> str:
    return pyotp.TOTP(secret).provisioning_uri(name=username, issuer_name=TOTP_ISSUER)


def totp_step(secret: str, code: str, *, now: float, last_step: int | None) -> int | None:
    """The time step ``code`` belongs to (current or one either side), if valid and not
    used before; else None."""
    code = code.strip().replace(" ", "")
    if not (code.isascii() and code.isdigit() and len(code) == 6):
        return None
    totp = pyotp.TOTP(secret)
    step = int(now // totp.interval)
    for s in (step, step - 1, step + 1):
        if last_step is not None and s <= last_step:
            continue
        if hmac.compare_digest(totp.generate_otp(s), code):
            return s
    return None


# -- recovery codes ----------------------------------------------------------------------


def new_recovery_codes(n: int = RECOVERY_CODES) -> list[str]:
    return ["-".join("".join(secrets.choice(_ALPHABET) for _ in range(6)) for _ in range(2)) for _ in range(n)]


def recovery_hash(code: str) -> str:
    return hashlib.sha256(code.strip().lower().replace(" ", "").encode()).hexdigest()


# -- secret box ---------------------------------------------------------------------------


class SecretBox:
    def __init__(self, key_dir: Path, env: dict[str, str] | None = None) -> None:
        e = os.environ if env is None else env
        if e.get("HIE_SECRET_BOX_KEY"):
            key = bytes.fromhex(e["HIE_SECRET_BOX_KEY"])
        else:
            path = Path(key_dir) / "secret-box.key"
            if not path.exists():
                path.parent.mkdir(parents=True, exist_ok=True)
                try:
                    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
                    with os.fdopen(fd, "w") as f:
                        f.write(AESGCM.generate_key(bit_length=256).hex())
                except FileExistsError:
                    pass
            key = bytes.fromhex(path.read_text().strip())
        self._aead = AESGCM(key)

    def seal(self, plain: str) -> bytes:
        nonce = os.urandom(12)
        return nonce + self._aead.encrypt(nonce, plain.encode(), b"hie-totp")

    def open(self, sealed: bytes) -> str:
        return self._aead.decrypt(bytes(sealed[:12]), bytes(sealed[12:]), b"hie-totp").decode()
