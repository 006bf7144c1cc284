"""The CapabilityStatement, generated from what the node really implements.

Interactions come from the interaction table (:mod:`hie.interactions.table`), which
the REST routes, scope checks, audit and Bundle entries read too; search parameters
come from the search registry, which lists only the parameters it supports
(unsupported ones are logged there, never advertised). ``rest.security`` names the SMART
on FHIR service and its OAuth endpoints (the ``oauth-uris`` extension, which clients such as
fhirclient discover), built by the same function as ``.well-known/smart-configuration`` so
the two always agree.

Spec: https://hl7.org/fhir/R4/capabilitystatement.html , https://hl7.org/fhir/R4/http.html#capabilities ,
https://hl7.org/fhir/smart-app-launch/conformance.html , https://hl7.org/fhir/R4/fhirpatch.html
"""

from __future__ import annotations

from typing import Any

from hie import __version__
from hie.auth.server import smart_configuration
from hie.auth.service import AuthService
from hie.fhir.types import SUPPORTED_TYPES
from hie.fhir.validate import UNSUPPORTED_WRITE_TYPES
from hie.interactions.context import Context
from hie.interactions.result import Result
from hie.interactions.table import PATIENT_COMPARTMENT, capability_codes

#: Type-level and instance-level interactions implemented for every stored type.
TYPE_INTERACTIONS = tuple(capability_codes("resource"))
SYSTEM_INTERACTIONS = tuple(capability_codes("system"))
#: What a type the node refuses to write (Subscription) still allows: read what exists, delete it.
READ_ONLY_INTERACTIONS = tuple(c for c in TYPE_INTERACTIONS if c not in ("create", "update", "patch"))

OAUTH_URIS = "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris"
SECURITY_SERVICE = "http://terminology.hl7.org/CodeSystem/restful-security-service"
#: oauth-uris sub-extension -> smart-configuration field. Only endpoints the node has: there is
#: no "manage" (user-facing authorization management) page.
_OAUTH_ENDPOINTS = (
    ("authorize", "authorization_endpoint"), ("token", "token_endpoint"),
    ("register", "registration_endpoint"), ("introspect", "introspection_endpoint"),
    ("revoke", "revocation_endpoint"),
)


def security(base_url: str) -> dict[str, Any]:
    """``rest.security`` for the FHIR base ``base_url`` (the request's or ``HIE_BASE_URL``)."""
    conf = smart_configuration(AuthService, base_url.rstrip("/"))
    return {
        "cors": False,  # the node sends no CORS headers: a browser app on another origin cannot call it
        "service": [{
            "coding": [{"system": SECURITY_SERVICE, "code": "SMART-on-FHIR", "display": "SMART-on-FHIR"}],
            "text": "OAuth2 using SMART-on-FHIR profile (see .well-known/smart-configuration)",
        }],
        "extension": [{
            "url": OAUTH_URIS,
            "extension": [{"url": name, "valueUri": conf[key]} for name, key in _OAUTH_ENDPOINTS],
        }],
        "description": "SMART App Launch 2.0 (authorization code + PKCE) and SMART Backend Services "
                       "(client_credentials with private_key_jwt); every FHIR request but metadata needs a "
                       "bearer token.",
    }


def _op_entry(op) -> dict[str, Any]:  # noqa: ANN001
    return {"name": op.name, "definition": op.definition or f"http://hie.example.jp/fhir/OperationDefinition/{op.name}"}


def capabilities(ctx: Context) -> Result:
    from hie.interactions.operations import all_operations

    ops = all_operations()
    registry = ctx.registry
    resources: list[dict[str, Any]] = []
    for rtype in SUPPORTED_TYPES:
        writable = rtype not in UNSUPPORTED_WRITE_TYPES
        entry: dict[str, Any] = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in (TYPE_INTERACTIONS if writable else READ_ONLY_INTERACTIONS)],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": False,  # only the system principal and the operator (docs/security.md)
            "conditionalCreate": writable,
            "conditionalRead": "full-support",
            "conditionalUpdate": writable,
            "conditionalDelete": "single",
            "referencePolicy": ["literal", "logical", "local", "enforced"],
        }
        if registry is not None and hasattr(registry, "capability_params"):
            params = registry.capability_params(rtype)
            if params:
                entry["searchParam"] = params
            if hasattr(registry, "include_values"):
                entry["searchInclude"] = registry.include_values(rtype)
            if hasattr(registry, "revinclude_values"):
                entry["searchRevInclude"] = registry.revinclude_values(rtype)
        type_ops = [_op_entry(op) for op in ops if op.level != "system" and (op.types is None or rtype in op.types)]
        if type_ops:
            entry["operation"] = type_ops
        resources.append(entry)
    body = {
        "resourceType": "CapabilityStatement",
        "status": "active",
        "date": "2026-11-21",
        "publisher": "Regional HIE node project",
        "kind": "instance",
        "software": {"name": "hie-node", "version": __version__},
        "implementation": {"description": "Regional health-information-exchange node", "url": ctx.base_url},
        "fhirVersion": "4.0.1",
        "format": ["application/fhir+json", "json"],
        "patchFormat": ["application/json-patch+json", "application/fhir+json"],
        "rest": [
            {
                "mode": "server",
                "security": security(ctx.base_url),
                "resource": resources,
                "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
                "compartment": [PATIENT_COMPARTMENT],
                **({"operation": [_op_entry(op) for op in ops if op.level == "system"]}
                   if any(op.level == "system" for op in ops) else {}),
            }
        ],
    }
    return Result(200, body)
