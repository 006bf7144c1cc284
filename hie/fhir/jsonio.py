"""FHIR JSON reading and writing with orjson.

Reading can bound the longest string (``max_string`` UTF-8 bytes, values and property names
alike): a longer one is refused with 413 and its element path (``Bundle.entry[3].resource.
note[0].text``). FHIR JSON has no empty arrays or objects (R4 json.html): a FHIR body read here
loses them, and the REST layer drops them from what the node builds (:func:`prune_empty`).

Spec: https://hl7.org/fhir/R4/json.html
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.errors import ElementTooLong, InvalidJson, InvalidResource


MAX_DEPTH = 128
"""Deepest nesting of arrays and objects in a FHIR body (deeper ones are refused, 400, before
any recursive code such as validation sees them: at ~250 levels R4B validation exhausts
Python's recursion limit, a 500)."""


def loads(data: bytes | str, *, what: str = "request body", max_string: int | None = None,
          fhir: bool = False) -> Any:
    """Parse JSON. ``max_string``: refuse (413) a string longer than that many UTF-8 bytes.
    ``fhir``: the body is FHIR JSON (a resource, Bundle or Parameters; not JSON Patch): at most
    :data:`MAX_DEPTH` levels deep, and its empty arrays and objects, which FHIR JSON does not
    allow, are dropped as HAPI's parser drops them (they carry nothing), so none is stored."""
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson reports "line L column C (char N)" in its message.
        raise InvalidJson(f"The {what} is not valid JSON: {exc}") from None
    # A decoded string is never longer in UTF-8 than the raw text it came from, so a body
    # within the limit needs no string check.
    limit = max_string if max_string is not None and _encoded_len(data) > max_string else None
    if (limit is not None or fhir) and check_json(value, max_string=limit, fhir=fhir, what=what):
        value = prune_empty(value)
    return value


def _encoded_len(data: bytes | str) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))


def _over(s: str, limit: int | None) -> bool:
    # len(s) code points take between len(s) and 4 * len(s) bytes in UTF-8.
    return limit is not None and (
        len(s) > limit or (4 * len(s) > limit and len(s.encode("utf-8", "surrogatepass")) > limit))


def check_json(value: Any, *, max_string: int | None = None, fhir: bool = False,
               what: str = "request body") -> bool:
    """Raise :class:`ElementTooLong` for the first string in ``value`` (a parsed JSON value)
    longer than ``max_string`` UTF-8 bytes, naming its path, and (``fhir``) refuse nesting
    deeper than :data:`MAX_DEPTH`. True when ``value`` holds an empty array or object.
    Iterative: nesting depth is bounded by the parser, not by Python's recursion limit."""
    root = value.get("resourceType") if isinstance(value, dict) else None
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    empty = False
    while stack:
        node, path = stack.pop()
        if isinstance(node, str):
            if _over(node, max_string):
                _too_long(root, path, what, max_string)
            continue
        if not isinstance(node, dict | list):
            continue
        if fhir and len(path) >= MAX_DEPTH:
            raise InvalidResource(f"The {what} is nested deeper than {MAX_DEPTH} levels",
                                  expression=[_expression(root, path)])
        items = node.items() if isinstance(node, dict) else enumerate(node)
        for key, child in items:
            if isinstance(key, str) and _over(key, max_string):
                _too_long(root, path, what, max_string, name=True)
            if isinstance(child, str):
                if _over(child, max_string):
                    _too_long(root, (*path, key), what, max_string)
            elif isinstance(child, dict | list):
                empty = empty or not child
                stack.append((child, (*path, key)))
    return empty


def _expression(root: Any, path: tuple[str | int, ...]) -> str:
    expr = root if isinstance(root, str) and root.isalnum() and len(root) <= 64 else "$"
    for part in path:
        expr += f"[{part}]" if isinstance(part, int) else f".{part}"
    return expr


def _too_long(root: Any, path: tuple[str | int, ...], what: str, limit: int | None, *, name: bool = False) -> None:
    expr = _expression(root, path)
    kind = "a property name in" if name else "the string at"
    raise ElementTooLong(f"The {what} has {kind} {expr} longer than {limit} bytes (UTF-8); "
                         f"this node accepts strings up to {limit} bytes", expression=[expr])


def prune_empty(value: Any) -> Any:
    """``value`` without empty arrays and objects (at any depth, also those left empty by the
    pruning). Pre-serialized fragments (stored resources) are kept as they are."""
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if isinstance(v, dict | list):
                v = prune_empty(v)
                if not v:
                    continue
            out[k] = v
        return out
    if isinstance(value, list):
        kept = []
        for v in value:
            if isinstance(v, dict | list):
                v = prune_empty(v)
                if not v:
                    continue
            kept.append(v)
        return kept
    return value


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)
