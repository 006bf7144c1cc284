"""The CapabilityStatement, generated from what the node really implements.

Interactions come from the interaction table (:mod:`hie.interactions.table`), which
the REST routes, scope checks, audit and Bundle entries read too; search parameters
come from the search registry, which lists only the parameters it supports
(unsupported ones are logged there, never advertised).

Spec: https://hl7.org/fhir/R4/capabilitystatement.html , https://hl7.org/fhir/R4/http.html#capabilities
"""

from __future__ import annotations

from typing import Any

from hie import __version__
from hie.fhir.types import SUPPORTED_TYPES
from hie.interactions.context import Context
from hie.interactions.result import Result
from hie.interactions.table import PATIENT_COMPARTMENT, capability_codes

#: Type-level and instance-level interactions implemented for every stored type.
TYPE_INTERACTIONS = tuple(capability_codes("resource"))
SYSTEM_INTERACTIONS = tuple(capability_codes("system"))


def _op_entry(op) -> dict[str, Any]:  # noqa: ANN001
    return {"name": op.name, "definition": op.definition or f"http://hie.example.jp/fhir/OperationDefinition/{op.name}"}


def capabilities(ctx: Context) -> Result:
    from hie.interactions.operations import all_operations

    ops = all_operations()
    registry = ctx.registry
    resources: list[dict[str, Any]] = []
    for rtype in SUPPORTED_TYPES:
        entry: dict[str, Any] = {
            "type": rtype,
            "profile": f"http://hl7.org/fhir/StructureDefinition/{rtype}",
            "interaction": [{"code": c} for c in TYPE_INTERACTIONS],
            "versioning": "versioned-update",
            "readHistory": True,
            "updateCreate": False,  # only the system principal and the operator (docs/security.md)
            "conditionalCreate": True,
            "conditionalRead": "full-support",
            "conditionalUpdate": True,
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
        "patchFormat": ["application/json-patch+json"],
        "rest": [
            {
                "mode": "server",
                "resource": resources,
                "interaction": [{"code": c} for c in SYSTEM_INTERACTIONS],
                "compartment": [PATIENT_COMPARTMENT],
                **({"operation": [_op_entry(op) for op in ops if op.level == "system"]}
                   if any(op.level == "system" for op in ops) else {}),
            }
        ],
    }
    return Result(200, body)
