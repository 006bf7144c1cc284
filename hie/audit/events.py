"""AuditEvent resources in the IHE Basic Audit Log Patterns (BALP) shape, one per FHIR
interaction, allowed or refused.

* ``type`` = ``rest`` (RESTful operation), ``subtype`` = the interaction
  (``read``, ``search-type``, ``create``...) from http://hl7.org/fhir/restful-interaction;
  ``action`` C/R/U/D/E; ``outcome`` 0 (success), 4 (refused or failed request), 8 (server
  error); ``outcomeDesc`` the reason of a refusal; ``purposeOfEvent`` the token's purpose
  of use.
* agents: the client application (with the caller's network address and the token's
  ``jti`` as ``policy``), the user when a person is logged in (their Practitioner or
  Patient, requestor), the facility they act for (10-digit medical-institution code),
  and the server.
* entities: the patient first (so the node files the event under that patient and the
  patient can read it), then the resource (``Type/id``) or the query (base64 of the
  query string).

Spec: https://profiles.ihe.net/ITI/BALP/ (e.g. StructureDefinition-IHE.BasicAudit.PatientRead,
...PatientQuery, ...Create); https://hl7.org/fhir/R4/auditevent.html
"""

from __future__ import annotations

import base64
import uuid
from collections.abc import Sequence
from typing import Any
from urllib.parse import parse_qsl

from hie.clock import instant
from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM, NODE_CANONICAL
from hie.principal import Principal

DCM = "http://dicom.nema.org/resources/ontology/DCM"
EVENT_TYPE = "http://terminology.hl7.org/CodeSystem/audit-event-type"
RESTFUL = "http://hl7.org/fhir/restful-interaction"
ENTITY_TYPE = "http://terminology.hl7.org/CodeSystem/audit-entity-type"
OBJECT_ROLE = "http://terminology.hl7.org/CodeSystem/object-role"
PURPOSE = "http://terminology.hl7.org/CodeSystem/v3-ActReason"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
ROLE_CLASS = "http://terminology.hl7.org/CodeSystem/v3-RoleClass"
SOURCE_TYPE = "http://terminology.hl7.org/CodeSystem/security-source-type"
CLIENT_ID_SYSTEM = f"{NODE_CANONICAL}/sid/client-id"
USER_ID_SYSTEM = f"{NODE_CANONICAL}/sid/user-id"
BALP_PROFILE = "https://profiles.ihe.net/ITI/BALP/StructureDefinition/IHE.BasicAudit.PatientRead"

_ACTION = {"create": "C", "read": "R", "vread": "R", "history-instance": "R", "update": "U", "patch": "U",
           "delete": "D"}


def interaction_of(method: str, path: str, query: str = "") -> str:
    """The restful-interaction code of a request to ``path`` (below /fhir), as the
    interaction table (:mod:`hie.interactions.table`) parses it; ``operation`` for a
    request it does not know."""
    from hie.errors import FhirError
    from hie.interactions.table import parse

    try:
        return parse(method, path, query).code
    except FhirError:
        return "operation"


def _patient_from_query(path: str, query: str) -> str | None:
    segs = [s for s in path.strip("/").split("/") if s]
    if len(segs) >= 2 and segs[0] == "Patient" and not segs[1].startswith(("_", "$")):
        return segs[1]
    for k, v in parse_qsl(query, keep_blank_values=True):
        name = k.split(":", 1)[0].split(".", 1)[0]
        if name in ("patient", "subject") and v:
            v = v.split(",")[0]
            if v.startswith("Patient/"):
                return v[len("Patient/"):]
            if name == "patient" and "/" not in v:
                return v
        if name == "_id" and len(segs) == 1 and segs[0] == "Patient" and v and "," not in v:
            return v
    return None


def build(
    *, principal: Principal | None, method: str, path: str, query: str, status: int, recorded_us: int,
    diagnostics: str | None = None, resource_ref: str | None = None, patient_id: str | None = None,
    network_address: str | None = None, server: str = "hie-node", event_id: str | None = None,
    shown: Sequence[str] = (), shown_detail: dict[str, str] | None = None,
) -> dict[str, Any]:
    """One AuditEvent. ``shown``: ``Type/id`` of every resource the answer displayed (a
    summary, a viewer page), each recorded as an entity; ``shown_detail``: name/value
    pairs recorded on the query entity (e.g. the sections a summary showed)."""
    interaction = interaction_of(method, path, query)
    action = _ACTION.get(interaction, "E")
    outcome = "0" if status < 400 else ("8" if status >= 500 else "4")
    patient = patient_id or _patient_from_query(path, query) or (principal.patient_id if principal else None)
    address = network_address or (principal.network_address if principal else None)

    agents = _agents(principal, address, server)
    entities = _entities(interaction, method, path, query, patient, resource_ref)
    if shown_detail and entities and entities[-1]["role"]["code"] == "24":
        entities[-1]["detail"] = [{"type": k, "valueString": v} for k, v in shown_detail.items()]
    entities += _shown_entities(shown, patient, resource_ref)

    event: dict[str, Any] = {
        "resourceType": "AuditEvent",
        "id": event_id or str(uuid.uuid4()),
        "type": {"system": EVENT_TYPE, "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": RESTFUL, "code": interaction}],
        "action": action,
        "recorded": instant(recorded_us),
        "outcome": outcome,
    }
    if diagnostics and status >= 400:
        event["outcomeDesc"] = f"{status}: {diagnostics}"[:1000]
    if principal is not None and principal.purpose_of_use:
        event["purposeOfEvent"] = [{"coding": [{"system": PURPOSE, "code": principal.purpose_of_use}]}]
    event["agent"] = agents
    event["source"] = {
        "observer": {"display": server},
        "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}],
    }
    if entities:
        event["entity"] = entities
    return event


def _agents(principal: Principal | None, address: str | None, server: str) -> list[dict[str, Any]]:
    """The event's agents: the client (or the unauthenticated caller), the logged-in
    person, the facility they act for, and the server."""
    agents: list[dict[str, Any]] = []
    person = principal is not None and principal.kind in ("user", "patient")
    if principal is None or principal.kind == "anonymous":
        agents.append({
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"display": "unauthenticated caller"}, "requestor": True,
            **({"network": {"address": address, "type": "2"}} if address else {}),
        })
    else:
        client = {
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": ({"identifier": {"system": CLIENT_ID_SYSTEM, "value": principal.client_id}}
                    if principal.client_id else {"display": principal.name}),
            "requestor": not person,
            **({"network": {"address": address, "type": "2"}} if address else {}),
            **({"policy": [principal.token_id]} if principal.token_id else {}),
        }
        agents.append(client)
        if person:
            agents.append(_user_agent(principal))
        if principal.organization_id:
            agents.append({
                "type": {"coding": [{"system": ROLE_CLASS, "code": "PROV", "display": "healthcare provider"}]},
                "who": {"identifier": {"system": MEDICAL_INSTITUTION_SYSTEM, "value": principal.organization_id}},
                "requestor": False,
            })
    agents.append({
        "type": {"coding": [{"system": DCM, "code": "110152", "display": "Destination Role ID"}]},
        "who": {"display": server}, "requestor": False,
    })
    return agents


def _user_agent(principal: Principal) -> dict[str, Any]:
    """The logged-in person (their Patient or Practitioner) as the requesting agent."""
    who: dict[str, Any] = {"identifier": {"system": USER_ID_SYSTEM, "value": principal.user_id},
                           "display": principal.name}
    if principal.kind == "patient" and principal.patient_id:
        who["reference"] = f"Patient/{principal.patient_id}"
    elif principal.practitioner_id:
        who["reference"] = f"Practitioner/{principal.practitioner_id}"
    return {
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": who, "requestor": True,
        **({"role": [{"coding": [{"system": f"{NODE_CANONICAL}/CodeSystem/role", "code": r}]}
                     for r in sorted(principal.roles)]} if principal.roles else {}),
        **({"policy": [principal.token_id]} if principal.token_id else {}),
    }


def _entities(interaction: str, method: str, path: str, query: str, patient: str | None,
              resource_ref: str | None) -> list[dict[str, Any]]:
    """The event's entities: the patient first, then the resource or the query."""
    entities: list[dict[str, Any]] = []
    if patient:
        entities.append({
            "what": {"reference": f"Patient/{patient}"},
            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"},
        })
    if resource_ref:
        entities.append({
            "what": {"reference": resource_ref},
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
        })
    if interaction.startswith(("search", "history")) or interaction == "operation" or (query and not resource_ref):
        entities.append({
            "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
            "role": {"system": OBJECT_ROLE, "code": "24", "display": "Query"},
            "description": f"{method} {path}" + (f"?{query}" if query else ""),
            "query": base64.b64encode((path + (f"?{query}" if query else "")).encode()).decode(),
        })
    return entities


def _shown_entities(shown: Sequence[str], patient: str | None, resource_ref: str | None) -> list[dict[str, Any]]:
    skip = {resource_ref, f"Patient/{patient}" if patient else None}
    return [{
        "what": {"reference": ref},
        "type": {"system": ENTITY_TYPE, "code": "2", "display": "System Object"},
        "role": {"system": OBJECT_ROLE, "code": "4", "display": "Domain Resource"},
    } for ref in dict.fromkeys(shown) if ref not in skip]


def login_event(*, username: str, user: Any, ok: bool, client_id: str | None, address: str | None,
                recorded_us: int) -> dict[str, Any]:
    """BALP-style user authentication event (DICOM 110114 / 110122 Login), success or failure."""
    who: dict[str, Any] = {"identifier": {"system": USER_ID_SYSTEM, "value": user.user_id if user else username}}
    if user is not None and user.fhir_user:
        who["reference"] = user.fhir_user
    agents: list[dict[str, Any]] = [{
        "type": {"coding": [{"system": PARTICIPATION, "code": "IRCP", "display": "information recipient"}]},
        "who": who, "requestor": True, **({"network": {"address": address, "type": "2"}} if address else {}),
    }]
    if client_id:
        agents.append({
            "type": {"coding": [{"system": DCM, "code": "110153", "display": "Source Role ID"}]},
            "who": {"identifier": {"system": CLIENT_ID_SYSTEM, "value": client_id}}, "requestor": False,
        })
    event: dict[str, Any] = {
        "resourceType": "AuditEvent", "id": str(uuid.uuid4()),
        "type": {"system": DCM, "code": "110114", "display": "User Authentication"},
        "subtype": [{"system": DCM, "code": "110122", "display": "Login"}],
        "action": "E", "recorded": instant(recorded_us), "outcome": "0" if ok else "4",
        "agent": agents,
        "source": {"observer": {"display": "hie-node"},
                   "type": [{"system": SOURCE_TYPE, "code": "4", "display": "Application Server"}]},
    }
    if not ok:
        event["outcomeDesc"] = "login failed (password, second factor, lock or inactive account)"
    if user is not None and user.kind == "patient" and user.patient_id:
        event["entity"] = [{"what": {"reference": f"Patient/{user.patient_id}"},
                            "type": {"system": ENTITY_TYPE, "code": "1", "display": "Person"},
                            "role": {"system": OBJECT_ROLE, "code": "1", "display": "Patient"}}]
    return event
