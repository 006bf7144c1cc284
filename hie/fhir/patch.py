"""JSON Patch (RFC 6902) for the FHIR ``patch`` interaction.

Spec: https://hl7.org/fhir/R4/http.html#patch ; https://www.rfc-editor.org/rfc/rfc6902
Uses the maintained ``jsonpatch`` library; the result is validated like any update.
"""

from __future__ import annotations

import copy
from typing import Any

import jsonpatch
import jsonpointer

from hie.errors import InvalidPatch


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
