"""Finding and rewriting references inside a resource.

A Reference is any JSON object with a string ``reference`` element
(https://hl7.org/fhir/R4/references.html). Transactions rewrite ``urn:uuid:``
references to the ids the server assigned and resolve conditional references
(``Patient?identifier=...``) (https://hl7.org/fhir/R4/http.html#trules).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any


def iter_references(node: Any, path: str = "") -> Iterator[tuple[str, dict[str, Any]]]:
    """Yield (path, reference-object) for every Reference in ``node`` (contained too)."""
    if isinstance(node, dict):
        ref = node.get("reference")
        if isinstance(ref, str):
            yield path, node
        for key, value in node.items():
            if isinstance(value, (dict, list)):
                yield from iter_references(value, f"{path}.{key}" if path else key)
    elif isinstance(node, list):
        for i, item in enumerate(node):
            if isinstance(item, (dict, list)):
                yield from iter_references(item, f"{path}[{i}]")


def rewrite_references(node: Any, resolve: Callable[[str, str], str | None]) -> None:
    """Replace each ``reference`` value ``r`` by ``resolve(r, path)`` when that is not None."""
    for path, ref_obj in iter_references(node):
        new = resolve(ref_obj["reference"], path)
        if new is not None:
            ref_obj["reference"] = new


def split_local(reference: str) -> tuple[str, str, str | None] | None:
    """``Type/id`` or ``Type/id/_history/v`` (also absolute URLs) -> (type, id, version)."""
    ref = reference.split("?", 1)[0]
    parts = ref.rstrip("/").split("/")
    if len(parts) >= 4 and parts[-2] == "_history":
        return parts[-4], parts[-3], parts[-1]
    if len(parts) >= 2:
        return parts[-2], parts[-1], None
    return None
