"""AuditEvents for the node's own use of the system principal.

The system principal sees every row (its access predicate is ``true``), so each use of it
outside a request is recorded: ingest (``hie load``, SS-MIX2, MLLP, directory feeds: one
event per Bundle, DICOM 110107 *Import*) and maintenance (``hie reindex``, ``hie audit
verify``, the stored-SearchParameter reload: DICOM 110100 *Application Activity*).
Requests are audited by the HTTP layer already (:mod:`hie.audit.http`).

The event goes to the node's audit recorder (:mod:`hie.audit.recorder`): journal first, then
stored and chained like every other AuditEvent. ``Settings.audit_system_use`` (environment
``HIE_AUDIT_SYSTEM_USE=off``) turns it off, as the test suite does so that searches see only
what a test wrote.

Spec: https://profiles.ihe.net/ITI/BALP/ ; DICOM PS3.15 A.5.3 (110100, 110107)
"""

from __future__ import annotations

import uuid
from typing import Any

from hie.audit.events import DCM, ENTITY_TYPE, SOURCE_TYPE
from hie.clock import instant
from hie.fhir.naming import NODE_CANONICAL

#: Sub-types of system use (``AuditEvent.subtype``).
SYSTEM_USE = f"{NODE_CANONICAL}/CodeSystem/system-use"
PURPOSES = {
    "ingest": "Bundle ingested as the system principal",
    "reindex": "search index rebuilt from every stored resource",
    "audit-verify": "audit trail read and checked against its chain",
    "search-parameter-refresh": "stored SearchParameters read to rebuild the search registry",
    "maintenance": "maintenance as the system principal",
}


def system_use_event(purpose: str, *, detail: str | None, recorded_us: int, server: str = "hie-node") -> dict[str, Any]:
    """The AuditEvent recording one use of the system principal for ``purpose``."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown system-use purpose {purpose!r}")
    kind = ({"system": DCM, "code": "110107", "display": "Import"} if purpose == "ingest"
            else {"system": DCM, "code": "110100", "display": "Application Activity"})
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": str(uuid.uuid4()),
        "type": kind,
        "subtype": [{"system": SYSTEM_USE, "code": purpose, "display": PURPOSES[purpose]}],
        "action": "C" if purpose == "ingest" else "E",
        "recorded": instant(recorded_us), "outcome": "0",
        "agent": [{
            "type": {"coding": [{"system": DCM, "code": "110150", "display": "Application"}]},
            "who": {"display": "system"}, "requestor": True,
        }],
        "source": {"observer": {"display": server},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if detail:
        event["entity"] = [{
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "description": detail[:1000],
        }]
    return event


def record_system_use(node: Any, purpose: str, detail: str | None = None) -> dict[str, Any] | None:
    """Record a use of the system principal; returns the event (None when turned off)."""
    if purpose not in PURPOSES:
        raise ValueError(f"unknown system-use purpose {purpose!r}")
    if not node.settings.audit_system_use:
        return None
    from hie.audit.recorder import AuditRecorder

    event = system_use_event(purpose, detail=detail, recorded_us=node.clock.now_us())
    AuditRecorder.for_node(node).record(event)
    return event
