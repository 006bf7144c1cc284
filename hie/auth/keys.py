"""The node's signing keys: ES256 (access tokens) and RS256 (OpenID Connect id_tokens)
published as a JWKS, and Ed25519 for audit checkpoints.

Keys live as PEM files in ``<data_dir>/keys`` (mode 0600, directory 0700), are generated
on first start when absent and never enter the repository. ``HIE_TOKEN_SIGNING_KEY_ES256``,
``HIE_TOKEN_SIGNING_KEY_RS256`` and ``HIE_AUDIT_SIGNING_KEY`` (PEM text) override the
files, for deployments that inject secrets through the environment.

Rotation (``hie admin rotate-keys``) writes a new key per algorithm; the newest signs,
the previous one stays in the JWKS so tokens issued just before still verify (unless
``--retire-previous``); ``hie admin retire-key KID`` deletes one. Audit keys are never
deleted: old checkpoints must stay verifiable. Several processes share the directory; a
process that meets an unknown ``kid`` reloads it, and every process looks at the directory
once per token check interval (:mod:`hie.auth.revocation`), so a retired key stops
verifying everywhere within that bound.

Spec: https://www.rfc-editor.org/rfc/rfc7517 (JWK), https://www.rfc-editor.org/rfc/rfc8037 (Ed25519)
"""

from __future__ import annotations

import os
import secrets
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from joserfc import jwk

TOKEN_ALGS = ("ES256", "RS256")
KEEP_TOKEN_KEYS = 2  # per algorithm: the signing key and its predecessor


@dataclass(frozen=True)
class SigningKey:
    kid: str
    alg: str
    key: Any  # joserfc key (token keys) or cryptography Ed25519PrivateKey (audit)


def _write_private(path: Path, pem: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)


def _pem(private_key: Any) -> bytes:
    return private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _new_kid(alg: str) -> str:
    """``<alg>-<UTC time to the microsecond>-<random>``: names sort by age (the newest signs,
    rotation retires the oldest), also for two rotations within one second. Names of the
    older form (time to the second) sort before any newer name of the same second."""
    ns = time.time_ns()
    stamp = time.strftime("%Y%m%d%H%M%S", time.gmtime(ns // 1_000_000_000)) + f"{ns // 1000 % 1_000_000:06d}"
    return f"{alg.lower()}-{stamp}-{secrets.token_hex(3)}"


class KeyStore:
    def __init__(self, directory: Path, env: dict[str, str] | None = None) -> None:
        self.dir = Path(directory)
        self.env = dict(os.environ if env is None else env)
        self._lock = threading.Lock()
        self._token_keys: dict[str, SigningKey] = {}
        self._audit_keys: dict[str, SigningKey] = {}
        self.load()

    # -- loading -------------------------------------------------------------------------

    def load(self) -> None:
        with self._lock:
            self.dir.mkdir(parents=True, exist_ok=True)
            os.chmod(self.dir, 0o700)
            self._dir_stamp = self.dir.stat().st_mtime_ns
            token: dict[str, SigningKey] = {}
            audit: dict[str, SigningKey] = {}
            for path in sorted(self.dir.glob("*.pem")):
                kid = path.stem
                alg = kid.split("-", 1)[0].upper()
                try:
                    pem = path.read_bytes()
                except FileNotFoundError:  # retired by another process meanwhile
                    continue
                if alg in TOKEN_ALGS:
                    token[kid] = SigningKey(kid, alg, _import_jwk(pem, alg, kid))
                elif alg == "ED25519":
                    audit[kid] = SigningKey(kid, "Ed25519", serialization.load_pem_private_key(pem, None))
            for alg in TOKEN_ALGS:
                pem_env = self.env.get(f"HIE_TOKEN_SIGNING_KEY_{alg}")
                if pem_env:
                    kid = f"{alg.lower()}-env"
                    token[kid] = SigningKey(kid, alg, _import_jwk(pem_env.encode(), alg, kid))
            pem_env = self.env.get("HIE_AUDIT_SIGNING_KEY")
            if pem_env:
                audit["ed25519-env"] = SigningKey(
                    "ed25519-env", "Ed25519", serialization.load_pem_private_key(pem_env.encode(), None)
                )
            self._token_keys, self._audit_keys = token, audit
        missing = [alg for alg in TOKEN_ALGS if not any(k.alg == alg for k in token.values())]
        if missing or not audit:
            self._generate(missing, audit=not audit)
            self.load()

    def _generate(self, algs: list[str], *, audit: bool) -> None:
        for alg in algs:
            private = (ec.generate_private_key(ec.SECP256R1()) if alg == "ES256"
                       else rsa.generate_private_key(65537, 2048))
            try:
                _write_private(self.dir / f"{_new_kid(alg)}.pem", _pem(private))
            except FileExistsError:  # another process won the race
                pass
        if audit:
            signer = ed25519.Ed25519PrivateKey.generate()
            kid = _new_kid("Ed25519")
            _write_private(self.dir / f"{kid}.pem", _pem(signer))
            (self.dir / f"{kid}.pub").write_bytes(signer.public_key().public_bytes(
                serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo))

    def rotate(self, *, retire_previous: bool = False) -> list[str]:
        """New token keys (both algorithms) and a new audit key; retire old token keys (all
        but the newest :data:`KEEP_TOKEN_KEYS` per algorithm, or all but the new one with
        ``retire_previous``: after a compromise, tokens signed before stop verifying)."""
        self._generate(list(TOKEN_ALGS), audit=True)
        keep = 1 if retire_previous else KEEP_TOKEN_KEYS
        for alg in TOKEN_ALGS:
            files = sorted(self.dir.glob(f"{alg.lower()}-*.pem"))
            for old in files[:-keep]:
                old.unlink(missing_ok=True)
        self.load()
        return [self.signing(alg).kid for alg in TOKEN_ALGS] + [self.audit_signing().kid]

    def retire(self, kid: str) -> None:
        """Delete token key ``kid``: tokens it signed stop verifying (on every process within
        the token check interval, ADR 0008). The last key of an algorithm cannot be retired
        (rotate first); keys from the environment are retired by changing the environment."""
        if kid.endswith("-env"):
            raise ValueError(f"{kid} comes from the environment: remove HIE_TOKEN_SIGNING_KEY_* there")
        key = self._token_keys.get(kid)
        path = self.dir / f"{kid}.pem"
        if key is None or not path.exists():
            raise LookupError(f"no token signing key {kid!r} (see GET /auth/jwks)")
        if not any(k.alg == key.alg and k.kid != kid for k in self._token_keys.values()):
            raise ValueError(f"{kid} is the only {key.alg} key: rotate the keys first")
        path.unlink()
        self.load()

    def refresh(self) -> None:
        """Reload the keys if the key directory changed (rotated or retired by another process)."""
        if self._changed_on_disk():
            self.load()

    def known(self, kid: str) -> bool:
        return kid in self._token_keys

    # -- use -----------------------------------------------------------------------------

    def signing(self, alg: str = "ES256") -> SigningKey:
        keys = sorted((k for k in self._token_keys.values() if k.alg == alg), key=lambda k: k.kid)
        env = [k for k in keys if k.kid.endswith("-env")]
        return env[0] if env else keys[-1]

    def verification(self, kid: str) -> SigningKey | None:
        key = self._token_keys.get(kid)
        if key is None and self._changed_on_disk():
            self.load()  # rotated by another process
            key = self._token_keys.get(kid)
        return key

    def _changed_on_disk(self) -> bool:
        """Whether the key directory changed since the last look. An unknown ``kid`` in a
        bearer token (anyone can send one) must not reload and re-parse every key file."""
        try:
            stamp = self.dir.stat().st_mtime_ns
        except OSError:
            return False
        changed = stamp != getattr(self, "_dir_stamp", None)
        self._dir_stamp = stamp
        return changed

    def jwks(self) -> dict[str, Any]:
        keys = []
        for k in sorted(self._token_keys.values(), key=lambda k: k.kid):
            d = k.key.as_dict(private=False)
            d.update({"kid": k.kid, "alg": k.alg, "use": "sig"})
            keys.append(d)
        return {"keys": keys}

    def audit_signing(self) -> SigningKey:
        env = self._audit_keys.get("ed25519-env")
        return env or self._audit_keys[sorted(self._audit_keys)[-1]]

    def audit_public(self, kid: str) -> ed25519.Ed25519PublicKey | None:
        key = self._audit_keys.get(kid)
        if key is None:
            self.load()
            key = self._audit_keys.get(kid)
        if key is not None:
            return key.key.public_key()
        pub = self.dir / f"{kid}.pub"
        if pub.exists():
            return serialization.load_pem_public_key(pub.read_bytes())  # type: ignore[return-value]
        return None


def _import_jwk(pem: bytes, alg: str, kid: str) -> Any:
    cls = jwk.ECKey if alg == "ES256" else jwk.RSAKey
    return cls.import_key(pem, {"kid": kid, "alg": alg, "use": "sig"})
