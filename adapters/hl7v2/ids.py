"""Identifier systems and deterministic logical ids for resources from HL7 v2 feeds.

Identifier systems follow JP Core v1.1 (https://jpfhir.jp/fhir/core/1.1.1/
"識別子の名前空間一覧"): facility-local patient numbers use
``urn:oid:1.2.392.100495.20.3.51.1`` + the 10-digit medical-institution code
(prefecture 2 + fee-table 1 + institution 7), practitioners ``...20.3.41.1`` + code,
order numbers ``...20.3.11.1`` + code.

Logical ids are a function of the facility, the patient and the business key of the
thing (order number, Rp number, code, ...), so that a resent or re-imported message
PUTs the same ids and updates instead of duplicating.
"""

from __future__ import annotations

import hashlib
import re

from .errors import MappingError

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


def stable_id(*parts: str) -> str:
    """A 32-hex-digit id from the parts (SHA-256 prefix; FHIR ids allow 64 chars).

    128 bits keep collisions out of reach for any realistic number of resources.
    """
    h = hashlib.sha256("\x1f".join(parts).encode("utf-8")).hexdigest()
    return h[:32]


def patient_logical_id(facility: str, patient_number: str) -> str:
    return stable_id("Patient", facility, patient_number)
