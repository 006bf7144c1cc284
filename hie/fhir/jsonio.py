"""FHIR JSON reading and writing with orjson.

Reading can bound the longest string (``max_string`` UTF-8 bytes, values and property names
alike): a longer one is refused with 413 and its element path (``Bundle.entry[3].resource.
note[0].text``). Writing drops empty arrays and objects, which FHIR JSON forbids (R4 json.html:
"empty ... arrays are not allowed"), from what the node builds (:func:`prune_empty`).

Spec: https://hl7.org/fhir/R4/json.html
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.errors import ElementTooLong, InvalidJson


def loads(data: bytes | str, *, what: str = "request body", max_string: int | None = None) -> Any:
    try:
        value = orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson reports "line L column C (char N)" in its message.
        raise InvalidJson(f"The {what} is not valid JSON: {exc}") from None
    # A decoded string is never longer in UTF-8 than the raw text it came from, so a body
    # within the limit needs no walk.
    if max_string is not None and _encoded_len(data) > max_string:
        check_strings(value, max_string, what=what)
    return value


def _encoded_len(data: bytes | str) -> int:
    return len(data) if isinstance(data, bytes) else len(data.encode("utf-8", "surrogatepass"))


def _over(s: str, limit: int) -> bool:
    # len(s) code points take between len(s) and 4 * len(s) bytes in UTF-8.
    return len(s) > limit or (4 * len(s) > limit and len(s.encode("utf-8", "surrogatepass")) > limit)


def check_strings(value: Any, limit: int, *, what: str = "request body") -> None:
    """Raise :class:`ElementTooLong` for the first string in ``value`` (a parsed JSON value)
    longer than ``limit`` UTF-8 bytes, naming its path. Iterative: nesting depth is bounded
    by the parser, not by Python's recursion limit."""
    root = value.get("resourceType") if isinstance(value, dict) else None
    stack: list[tuple[Any, tuple[str | int, ...]]] = [(value, ())]
    while stack:
        node, path = stack.pop()
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for key, child in items:
            if isinstance(key, str) and _over(key, limit):
                _refuse(root, path, what, limit, name=True)
            if isinstance(child, str):
                if _over(child, limit):
                    _refuse(root, (*path, key), what, limit)
            elif isinstance(child, dict | list):
                stack.append((child, (*path, key)))
        if isinstance(node, str) and _over(node, limit):
            _refuse(root, path, what, limit)


def _refuse(root: Any, path: tuple[str | int, ...], what: str, limit: int, *, name: bool = False) -> None:
    expr = root if isinstance(root, str) and root.isalnum() and len(root) <= 64 else "$"
    for part in path:
        expr += f"[{part}]" if isinstance(part, int) else f".{part}"
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
