"""Registered facilities for tests that store records in a facility's custody.

The write guard refuses clinical data whose custodian is not a registered, active facility
that may disclose, for the system principal (feeds, ``ingest_bundle``) too
(hie/enforcement/writes.py). Tests that tag records with a facility code register that
facility first, in the same transaction or before: :func:`facility` is the Organization,
:func:`register` stores it.
"""

from __future__ import annotations

from typing import Any

from hie.auth.registry import NETWORK_ROLE_EXT
from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM


def facility(code: str, *, role: str = "both", org_id: str | None = None) -> dict[str, Any]:
    """An active Organization registering ``code`` with network ``role``."""
    return {"resourceType": "Organization", "id": org_id or f"fac-{code}", "name": f"facility {code}",
            "active": True, "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": role}],
            "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}]}


def register(node: Any, *codes: str, role: str = "both") -> None:
    """Store an active facility for each code (as the system principal)."""
    from hie.ingest import ingest_bundle

    ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": (org := facility(c, role=role)), "request": {"method": "PUT", "url": f"Organization/{org['id']}"}}
        for c in codes]}, source="facility-fixture")
