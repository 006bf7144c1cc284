"""Which AuditEvent search parameters the node indexes.

The node stores one AuditEvent per request, so indexing them is on the hot path of every
read. Extracting all 20-odd official AuditEvent parameters cost about as much as the read
itself; the trail is searched by a handful: whose record (``patient``, ``entity``), who
(``agent``), when (``date``, ``_lastUpdated``), what (``type``, ``subtype``, ``action``),
how it ended (``outcome``), which node (``source``) and which access token (``policy``,
the token's ``jti`` in ``agent.policy``: "what did this leaked token do?"). The others are
declared unsupported for AuditEvent (refused in searches, absent from the
CapabilityStatement) rather than silently unindexed.

Spec: https://hl7.org/fhir/R4/auditevent.html#search ; https://profiles.ihe.net/ITI/BALP/
"""

from __future__ import annotations

from typing import Any

AUDIT_SEARCH_PARAMS = (
    "patient", "entity", "agent", "date", "type", "subtype", "outcome", "action", "source", "policy",
)
REASON = "not indexed for AuditEvent (the audit trail indexes a reduced set; see hie/audit/search.py)"


def configure(registry: Any) -> None:
    """Restrict AuditEvent indexing to :data:`AUDIT_SEARCH_PARAMS` (composition root)."""
    restrict = getattr(registry, "restrict", None)
    if restrict is not None:
        restrict("AuditEvent", AUDIT_SEARCH_PARAMS, REASON)
