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


def authorize(node: Any, request: Any, authenticate: Callable[[Any], Principal], bundle: Any = None) -> Principal:
    """Authenticate (401) and check the scopes the request needs (403; 405 for AuditEvent
    writes). Public endpoints (the CapabilityStatement) get a principal that reads nothing.
    A request that acts in a patient context comes back confined to that patient's
    compartment (:mod:`hie.auth.compartment`)."""
    path = request.url.path
    path = path[len("/fhir"):] if path.startswith("/fhir") else path
    needs = enforce.needs_for(request.method, path, request.url.query, node.registry)
    if needs is None:
        return PUBLIC
    principal = authenticate(request)
    if bundle is not None:
        needs = needs + enforce.needs_for_bundle(bundle, node.registry)
    enforce.check(principal, needs)
    return confine(principal, needs)
