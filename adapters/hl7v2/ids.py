"""Identifier systems and deterministic logical ids for resources from HL7 v2 feeds.

Identifier systems follow JP Core v1.1 (https://jpfhir.jp/fhir/core/1.1.1/
"識別子の名前空間一覧"): facility-local patient numbers use
``urn:oid:1.2.392.100495.20.3.51.1`` + the 10-digit medical-institution code
(prefecture 2 + fee-table 1 + institution 7), practitioners ``...20.3.41.1`` + code,
order numbers ``...20.3.11.1`` + code.

Logical ids are a function of the facility, the patient and the business key of the
thing (order number, Rp number, code, ...), so that a resent or re-imported message
PUTs the same ids and updates instead of duplicating. They are *keyed*: HMAC-SHA256
under the node's feed-id key (:class:`FeedIds`), so nobody without the key can compute
the id of a patient number and probe whether it exists (a plain hash of institution
code and patient number would let any participant enumerate a hospital's patients).
The key is the node's: ``HIE_FEED_ID_KEY`` (hex, at least 32 bytes) or
``<data_dir>/keys/feed-id.key``, created (mode 0600) on first use. The same key gives
the same ids, so re-imports stay idempotent; another key gives other ids (keep the key
with the database backups; see docs/integrator-hl7v2.md).
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from .errors import MappingError

log = logging.getLogger(__name__)
KEY_ENV = "HIE_FEED_ID_KEY"
KEY_FILE = Path("keys") / "feed-id.key"
KEY_BYTES = 32

PATIENT_ID_SYSTEM_PREFIX = "urn:oid:1.2.392.100495.20.3.51.1"
PRACTITIONER_ID_SYSTEM_PREFIX = "urn:oid:1.2.392.100495.20.3.41.1"
ORDER_ID_SYSTEM_PREFIX = "urn:oid:1.2.392.100495.20.3.11.1"
MEDICAL_ORGANIZATION_ID = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/MedicalOrganizationID"
RP_NUMBER_SYSTEM = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-RPGroupNumber"
RESOURCE_INSTANCE_SYSTEM = "http://jpfhir.jp/fhir/core/IdSystem/resourceInstance-identifier"
V2_MESSAGE_SYSTEM = "http://hie.example.jp/fhir/NamingSystem/v2-message-control-id"

_FACILITY = re.compile(r"^\d{10}$")


def check_facility(code: str) -> str:
    """Validate a 10-digit medical-institution code (prefecture, table, number)."""
    if not _FACILITY.match(code or ""):
        raise MappingError("", f"facility code must be the 10-digit medical-institution code, got {code!r}")
    if not 1 <= int(code[:2]) <= 47:
        raise MappingError("", f"facility code {code!r}: prefecture number {code[:2]} is not 01..47")
    return code


def facility_org_id(code: str) -> str:
    """Logical id of the Organization resource for a facility: ``mi-<10-digit code>``.

    ``mi`` = medical institution. The id is readable and reversible (the code is the
    suffix) so the node's facility registry can create the Organization under the
    same id; adapters reference it as ``Organization/mi-1312345670``.
    """
    return f"mi-{check_facility(code)}"


def patient_system(facility: str) -> str:
    return PATIENT_ID_SYSTEM_PREFIX + facility


def practitioner_system(facility: str) -> str:
    return PRACTITIONER_ID_SYSTEM_PREFIX + facility


def order_system(facility: str) -> str:
    return ORDER_ID_SYSTEM_PREFIX + facility


@dataclass(frozen=True)
class FeedIds:
    """The node's keyed logical ids for feed-derived resources."""

    key: bytes = field(repr=False)

    def __post_init__(self) -> None:
        if len(self.key) < KEY_BYTES:
            raise ValueError(f"the feed-id key must be at least {KEY_BYTES} bytes")

    def stable_id(self, *parts: str) -> str:
        """A 32-hex-digit id from the parts: HMAC-SHA256 under the node key, truncated to
        128 bits (FHIR ids allow 64 characters; collisions stay out of reach)."""
        return hmac.new(self.key, "\x1f".join(parts).encode("utf-8"), hashlib.sha256).hexdigest()[:32]

    def patient_id(self, facility: str, patient_number: str) -> str:
        return self.stable_id("Patient", facility, patient_number)


class FeedKeyError(ValueError):
    """The configured feed-id key cannot be used (message names the variable or file)."""


def node_feed_ids(data_dir: Path, env: dict[str, str] | None = None) -> FeedIds:
    """The node's :class:`FeedIds`: key from ``HIE_FEED_ID_KEY`` (hex) or from
    ``<data_dir>/keys/feed-id.key``, which is created with a random key on first use."""
    e = os.environ if env is None else env
    if e.get(KEY_ENV):
        return FeedIds(_parse_key(e[KEY_ENV], KEY_ENV))
    path = Path(data_dir) / KEY_FILE
    if not path.exists():
        _create_key_file(path)
    mode = path.stat().st_mode & 0o077
    if mode:
        log.warning("feed-id key file %s is readable by group or others (mode %o); chmod 600 it", path,
                    path.stat().st_mode & 0o777)
    return FeedIds(_parse_key(path.read_text("ascii").strip(), str(path)))


def _parse_key(text: str, where: str) -> bytes:
    try:
        key = bytes.fromhex(text.strip())
    except ValueError:
        raise FeedKeyError(f"{where}: the feed-id key must be hexadecimal") from None
    if len(key) < KEY_BYTES:
        raise FeedKeyError(f"{where}: the feed-id key must be at least {KEY_BYTES} bytes ({2 * KEY_BYTES} hex digits)")
    return key


def _create_key_file(path: Path) -> None:
    """Write a random key atomically (a concurrent first use by another process wins or
    loses as a whole: the file is linked into place complete, never half-written)."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(KEY_BYTES) + "\n")
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
