"""The FHIR ``patch`` interaction's patch formats, chosen by the body's shape:

* a JSON array: JSON Patch (RFC 6902), the format R4 servers must support;
* a ``Parameters`` resource: FHIRPath Patch (:mod:`hie.fhir.fhirpatch`);
* any other JSON object: a JSON Merge Patch (RFC 7386) -- members replace, ``null``
  removes. This is what clients such as fhirpy send (``resource.patch(field=value)``:
  the changed elements as a partial resource, ``Content-Type: application/json``).

The caller validates the result and writes it like any update.

Spec: https://hl7.org/fhir/R4/http.html#patch ; https://www.rfc-editor.org/rfc/rfc6902 ;
https://hl7.org/fhir/R4/fhirpatch.html ; https://www.rfc-editor.org/rfc/rfc7386
Uses the maintained ``jsonpatch`` library for JSON Patch.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from hie.errors import InvalidPatch
from hie.fhir.fhirpatch import apply_fhirpath_patch, is_fhirpath_patch
from hie.fhir.jsonio import check_json


def apply_patch(resource: dict[str, Any], body: Any) -> dict[str, Any]:
    """``resource`` patched by ``body`` in the format its shape names (a new dict). A body
    nested deeper than FHIR bodies may be is refused (400) before any recursive code sees it
    (the merge, jsonpatch's deepcopy), whichever route it came by (PATCH, a Bundle entry)."""
    check_json(body, fhir=True, what="patch")
    if isinstance(body, list):
        return apply_json_patch(resource, body)
    if is_fhirpath_patch(body):
        return apply_fhirpath_patch(resource, body)
    if isinstance(body, dict):
        return apply_merge_patch(resource, body)
    raise InvalidPatch("A patch must be a JSON Patch array, a FHIRPath Patch Parameters resource "
                       "or a JSON merge patch object", expression=["Patch"])


def apply_json_patch(resource: dict[str, Any], operations: Any) -> dict[str, Any]:
    if not isinstance(operations, list):
        raise InvalidPatch("A JSON Patch document must be a JSON array of operations", expression=["Patch"])
    try:
        patch = jsonpatch.JsonPatch(operations)
        return patch.apply(copy.deepcopy(resource))
    except jsonpatch.JsonPatchTestFailed as exc:
        raise InvalidPatch(f"JSON Patch test operation failed: {exc}", status=422) from None
    except (jsonpatch.JsonPatchException, jsonpointer.JsonPointerException, TypeError, KeyError) as exc:
        raise InvalidPatch(f"Invalid JSON Patch: {exc}", expression=["Patch"]) from None


def apply_merge_patch(resource: dict[str, Any], document: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 section 2: objects merge member by member, ``null`` deletes, anything else
    (arrays included) replaces."""
    return _merge(resource, document)


def _merge(target: Any, patch: Any) -> Any:
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    out = dict(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        else:
            out[key] = _merge(out.get(key), value)
    return out
