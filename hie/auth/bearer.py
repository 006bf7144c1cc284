"""Bearer-token authentication and SMART scope authorization of FHIR requests, as the
REST layer calls them (one place, for every route).

Spec: https://www.rfc-editor.org/rfc/rfc6750 ; https://hl7.org/fhir/smart-app-launch/
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from hie.auth import enforce
from hie.auth.compartment import confine
from hie.auth.service import AuthService
from hie.interactions.table import Parsed
from hie.principal import Principal

PUBLIC = Principal(kind="anonymous", name="public endpoint (no data)")


def request_base(request: Any) -> str:
    return str(request.base_url).rstrip("/") + "/fhir"


def client_address(request: Any) -> str | None:
    return request.client.host if request.client else None


def bearer_authenticator(node: Any) -> Callable[[Any], Principal]:
    svc = AuthService.for_node(node)

    def authenticate(request: Any) -> Principal:
        return svc.authenticate_header(
            request.headers.get("authorization"), request_base=request_base(request),
            network_address=client_address(request),
        )

    return authenticate


def authorize(node: Any, request: Any, authenticate: Callable[[Any], Principal], parsed: Parsed,
              bundle: Any = None, base: str = "") -> Principal:
    """Authenticate (401) and check the scopes the request needs (403; 405 for AuditEvent
    writes). ``parsed`` is the request as the interaction table reads it (form-body
    parameters of a POST ``_search`` included); a Bundle's entries are checked as their own
    requests, their absolute URLs resolved against ``base``. Public endpoints (the
    CapabilityStatement) get a principal that reads nothing. A request that acts in a
    patient context comes back confined to that patient's compartment
    (:mod:`hie.auth.compartment`)."""
    needs = enforce.needs(parsed, node.registry)
    if needs is None:
        return PUBLIC
    principal = authenticate(request)
    if bundle is not None:
        needs = needs + enforce.needs_for_bundle(bundle, node.registry, base)
    ine = request.headers.get("if-none-exist") if parsed.row.name == "create" else None
    if ine:
        needs = needs + enforce.if_none_exist_needs(parsed.res_type or "*", ine, node.registry)
    enforce.check(principal, needs)
    return confine(principal, needs)
