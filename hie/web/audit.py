"""AuditEvents of viewer page views, naming the patient and every resource the page showed,
so the patient's access history can list what was displayed (issue 14, "audit with what was
shown"). The event is the BALP shape of the FHIR API's own events (:func:`hie.audit.events.build`)
plus a subtype coding naming the page and one entity per resource displayed.

Spec: https://profiles.ihe.net/ITI/BALP/StructureDefinition-IHE.BasicAudit.PatientRead.html
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlencode

from hie.audit.events import ENTITY_TYPE, OBJECT_ROLE, build
from hie.fhir.naming import NODE_CANONICAL
from hie.principal import Principal

PAGE_SYSTEM = f"{NODE_CANONICAL}/CodeSystem/viewer-page"


def page_event(node: Any, principal: Principal, *, page: str, patient_id: str | None, shown: list[str],
               address: str | None, query: list[tuple[str, str]] | None = None, status: int = 200) -> dict[str, Any]:
    path = f"/Patient/{patient_id}" if patient_id else "/Patient"
    event = build(principal=principal, method="GET", path=path, query=urlencode(query or []), status=status,
                  recorded_us=node.clock.now_us(), patient_id=patient_id, network_address=address)
    event["subtype"].append({"system": PAGE_SYSTEM, "code": page, "display": f"viewer page: {page}"})
    entities = event.setdefault("entity", [])
    for ref in shown:
        if ref == f"Patient/{patient_id}":
            continue
        entities.append({"what": {"reference": ref},
                         "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
                         "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"}})
    return event


def record(recorder: Any, event: dict[str, Any]) -> None:
    if recorder is not None:
        recorder.record(event)
