"""From a finished (or refused) FHIR request to its AuditEvent: which patient and which
resource it concerned, and its outcome (BALP shape, :mod:`hie.audit.events`).

Spec: https://profiles.ihe.net/ITI/BALP/
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.audit.events import build, interaction_of
from hie.principal import Principal
from hie.storage.rowmeta import patient_of


def _resource_of(result: Any) -> dict[str, Any] | None:
    body = getattr(result, "body", None)
    if isinstance(body, bytes):
        try:
            parsed = orjson.loads(body)
        except orjson.JSONDecodeError:
            return None
        return parsed if isinstance(parsed, dict) else None
    return body if isinstance(body, dict) else None


def event_for(
    node: Any, request: Any, principal: Principal | None, *, status: int, result: Any = None,
    diagnostics: str | None = None,
) -> dict[str, Any]:
    path = request.url.path
    path = path[len("/fhir"):] if path.startswith("/fhir") else path
    query = request.url.query
    interaction = interaction_of(request.method, path, query)
    segs = [s for s in path.strip("/").split("/") if s]
    ref = None
    patient = None
    if interaction in ("read", "vread", "history-instance", "update", "patch", "delete") and len(segs) >= 2:
        ref = f"{segs[0]}/{segs[1]}"
    if result is not None and getattr(result, "location", None) and interaction in ("create", "update", "patch"):
        ref = "/".join(result.location.split("/")[:2])
    if ref and ref.startswith("Patient/"):
        patient = ref.split("/", 1)[1]
    elif result is not None and interaction in ("read", "vread", "create", "update", "patch"):
        res = _resource_of(result)
        if res is not None and res.get("resourceType") != "Bundle":
            patient = patient_of(res)
    shown: list[str] = []
    detail = None
    if result is not None and interaction == "operation":
        doc = _resource_of(result)
        if doc is not None and doc.get("resourceType") == "Bundle" and doc.get("type") == "document":
            patient, shown, detail = _document_facts(doc, patient)
    address = request.client.host if request.client else None
    return build(
        principal=principal, method=request.method, path=path, query=query, status=status,
        recorded_us=node.clock.now_us(), diagnostics=diagnostics, resource_ref=ref, patient_id=patient,
        network_address=address, shown=shown, shown_detail=detail,
    )


def _document_facts(doc: dict[str, Any], patient: str | None) -> tuple[str | None, list[str], dict[str, str]]:
    """What a document Bundle an operation answered (``$summary``) showed: its subject, the
    stored resources it carries (``Type/id``; generated entries have ``urn:`` full URLs) and
    its section codes."""
    entries = [e for e in doc.get("entry") or () if isinstance(e, dict)]
    comp = (entries[0].get("resource") or {}) if entries else {}
    subject = str((comp.get("subject") or {}).get("reference") or "")
    if "/Patient/" in f"/{subject}":
        patient = subject.rsplit("/", 1)[1]
    shown = [f"{r.get('resourceType')}/{r.get('id')}" for e in entries
             if not str(e.get("fullUrl", "")).startswith("urn:") and (r := e.get("resource") or {}).get("id")]
    codes = [str(c.get("code")) for s in comp.get("section") or () for c in (s.get("code") or {}).get("coding") or ()]
    return patient, shown, {"sections": " ".join(codes)}
