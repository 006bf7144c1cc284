"""Resource validation against the FHIR R4 structure, with ``fhir.resources.R4B`` models.

R4B (4.3) is structurally a superset of R4 (4.0.1) for the resources this node holds;
the models reject unknown elements, wrong structure (object vs array vs primitive),
malformed primitives (dates, ids, decimals) and missing required elements;
:mod:`hie.fhir.primitives` then rejects primitives of the wrong JSON type, which the models
would coerce. Each
problem becomes an OperationOutcome issue whose ``expression`` is the FHIRPath-style
location of the element (``Patient.name[0].given``), prefixed by the caller's path
(``Bundle.entry[3].resource``) inside a Bundle.

Spec: https://hl7.org/fhir/R4/validation.html
"""

from __future__ import annotations

import re
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.resource import Resource
from pydantic import ValidationError

from hie.fhir.primitives import check as check_json_types
from hie.fhir.types import SUPPORTED_TYPES
from hie.errors import IdMismatch, InvalidResource, Issue, NotSupported, UnknownResourceType

_SUPPORTED = frozenset(SUPPORTED_TYPES)
ID_RE = re.compile(r"^[A-Za-z0-9\-.]{1,64}$")

#: Types the node refuses to write (create, update, patch; also inside Bundles and feeds),
#: with the reason: storing them would promise behaviour the node does not have. Reading and
#: deleting what exists stay possible; the CapabilityStatement lists them as read-only.
UNSUPPORTED_WRITE_TYPES: dict[str, str] = {
    "Subscription": "subscriptions are not supported by this node: a Subscription would be stored "
                    "and never deliver a notification",
}


@cache
def model_class(resource_type: str) -> Any | None:
    try:
        cls = get_fhir_model_class(resource_type)
    except (KeyError, ValueError, AttributeError):
        return None
    # get_fhir_model_class also knows data types (e.g. "HumanName"); only resources count.
    return cls if isinstance(cls, type) and issubclass(cls, Resource) else None


def is_resource_type(name: str) -> bool:
    """True for the R4 resource types this node stores (see :mod:`hie.fhir.types`)."""
    return name in _SUPPORTED


def location(base: str, loc: tuple[Any, ...]) -> str:
    out = base
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif isinstance(part, str) and part.startswith("function-after") or part in ("", "__root__"):
            continue
        else:
            out += f".{part}"
    return out


def validate_resource(
    data: Any,
    *,
    expected_type: str | None = None,
    path: str | None = None,
) -> dict[str, Any]:
    """Check ``data`` is a valid resource; return it unchanged (the client's JSON is kept)."""
    where = path or "resource"
    if not isinstance(data, dict):
        raise InvalidResource(f"{where} must be a JSON object", expression=[where])
    rtype = data.get("resourceType")
    if not isinstance(rtype, str) or not rtype:
        raise InvalidResource(
            f"{where} has no resourceType", expression=[f"{where}.resourceType" if path else "resourceType"]
        )
    cls = model_class(rtype) if rtype in _SUPPORTED else None
    if cls is None:
        raise UnknownResourceType(
            f"Unknown resource type '{rtype}'",
            expression=[f"{where}.resourceType" if path else "resourceType"],
        )
    if rtype in UNSUPPORTED_WRITE_TYPES:
        raise NotSupported(f"{rtype}: {UNSUPPORTED_WRITE_TYPES[rtype]}",
                           expression=[f"{where}.resourceType" if path else f"{rtype}.resourceType"])
    if expected_type is not None and rtype != expected_type:
        raise InvalidResource(
            f"Resource type '{rtype}' does not match the URL's type '{expected_type}'",
            expression=[f"{path}.resourceType" if path else f"{rtype}.resourceType"],
        )
    rid = data.get("id")
    if rid is not None and (not isinstance(rid, str) or not ID_RE.match(rid)):
        raise InvalidResource(
            f"Invalid id {rid!r}: 1-64 characters of A-Z a-z 0-9 - .",
            expression=[f"{path or rtype}.id"],
        )
    try:
        cls.model_validate(data)
    except ValidationError as exc:
        base = path or rtype
        issues = []
        for err in exc.errors()[:50]:
            loc = location(base, tuple(err.get("loc", ())))
            msg = err.get("msg", "invalid")
            if err.get("type") == "extra_forbidden":
                msg = "Unknown element"
            issues.append(Issue("error", "structure", f"{loc}: {msg}", [loc], InvalidResource.hie_code))
        raise InvalidResource(issues[0].diagnostics, issues=issues) from None
    except (TypeError, ValueError) as exc:  # some validators raise plain errors
        raise InvalidResource(f"{path or rtype}: {exc}", expression=[path or rtype]) from None
    # The models coerce JSON types ("true" for true); FHIR JSON does not allow that.
    problems: list[tuple[str, str]] = []
    check_json_types(data, rtype, path or rtype, problems)
    if problems:
        issues = [Issue("error", "structure", f"{where}: {msg}", [where], InvalidResource.hie_code)
                  for where, msg in problems[:50]]
        raise InvalidResource(issues[0].diagnostics, issues=issues)
    return data


def check_id_matches(data: dict[str, Any], url_id: str, *, path: str | None = None) -> None:
    body_id = data.get("id")
    if body_id is None:
        raise IdMismatch(
            f"The resource has no id; an update must carry the id '{url_id}'",
            expression=[f"{path or data.get('resourceType', 'Resource')}.id"],
        )
    if body_id != url_id:
        raise IdMismatch(
            f"The resource id '{body_id}' does not match the URL id '{url_id}'",
            expression=[f"{path or data.get('resourceType', 'Resource')}.id"],
        )
