"""Strict JSON types for FHIR primitives.

The ``fhir.resources`` models validate structure but, like any pydantic model in lax mode,
coerce JSON types: ``"active": "true"`` or ``"value": "7.2"`` pass. The FHIR JSON format
does not allow that (https://hl7.org/fhir/R4/json.html#primitive: booleans and numbers are
JSON booleans and numbers, everything else is a JSON string), and since the node stores the
client's JSON as sent, a coerced value would be stored wrong. This module walks the JSON
once more, driven by the models' own field annotations, and reports each primitive of the
wrong JSON type with its element path. It runs after model validation succeeded, so the
structure is known to be right.

Required code bindings are not checked here: the models' ``enum_values`` are truncated
(``+``) or wrong for some elements (``CapabilityStatement.format``), and refusing valid data
would be worse than accepting an unknown code; that belongs to terminology validation.
"""

from __future__ import annotations

import decimal
import types
import typing
from functools import cache
from typing import Any

from fhir.resources.R4B import get_fhir_model_class

# Field kinds
BOOL, INT, DECIMAL, STRING, COMPLEX, RESOURCE, OTHER = range(7)


def _unwrap(annotation: Any) -> tuple[Any, bool]:
    """(inner type, is_list) of an Optional[List[Annotated[T, ...]]]-like annotation."""
    is_list = False
    t = annotation
    for _ in range(6):
        origin = typing.get_origin(t)
        if origin in (typing.Union, types.UnionType):
            args = [a for a in typing.get_args(t) if a is not type(None)]
            t = args[0] if len(args) == 1 else t
            if len(args) != 1:
                break
        elif origin is typing.Annotated:
            t = typing.get_args(t)[0]
        elif origin in (list, list):
            is_list = True
            t = typing.get_args(t)[0]
        else:
            break
    return t, is_list


def _kind(t: Any) -> tuple[int, str | None]:
    if t is bool:
        return BOOL, None
    if t is int:
        return INT, None
    if t is decimal.Decimal or t is float:
        return DECIMAL, None
    if t is str or getattr(t, "__module__", "") in ("datetime",):
        return STRING, None
    name = getattr(t, "__name__", "")
    if name == "ResourceType":
        return RESOURCE, None
    if name.endswith("Type") and getattr(t, "__module__", "").endswith("abc"):
        return COMPLEX, name[: -len("Type")]
    return OTHER, None


@cache
def _fields(model_name: str) -> dict[str, tuple[int, str | None, bool]]:
    """JSON name -> (kind, complex type name, is_list) of a model."""
    cls = get_fhir_model_class(model_name)
    out: dict[str, tuple[int, str | None, bool]] = {}
    for name, field in cls.model_fields.items():
        json_name = field.alias or name
        if json_name.startswith("_") or json_name == "resource_type":
            continue
        inner, is_list = _unwrap(field.annotation)
        kind, complex_name = _kind(inner)
        out[json_name] = (kind, complex_name, is_list)
    return out


def check(data: dict[str, Any], model_name: str, path: str, problems: list[tuple[str, str]]) -> None:
    """Append (path, message) for each primitive of the wrong JSON type."""
    fields = _fields(model_name)
    for key, value in data.items():
        spec = fields.get(key)
        if spec is None or value is None:
            continue
        kind, complex_name, is_list = spec
        items = value if is_list and isinstance(value, list) else [value]
        for i, item in enumerate(items):
            where = f"{path}.{key}[{i}]" if is_list and isinstance(value, list) else f"{path}.{key}"
            if kind == BOOL and not isinstance(item, bool):
                problems.append((where, f"must be a JSON boolean, not {type(item).__name__} {item!r}"))
            elif kind == INT and (isinstance(item, bool) or not isinstance(item, int)):
                problems.append((where, f"must be a JSON integer, not {type(item).__name__} {item!r}"))
            elif kind == DECIMAL and (isinstance(item, bool) or not isinstance(item, (int, float))):
                problems.append((where, f"must be a JSON number, not {type(item).__name__} {item!r}"))
            elif kind == STRING and not isinstance(item, str):
                problems.append((where, f"must be a JSON string, not {type(item).__name__} {item!r}"))
            elif kind == COMPLEX and isinstance(item, dict) and complex_name:
                check(item, complex_name, where, problems)
            elif kind == RESOURCE and isinstance(item, dict) and isinstance(item.get("resourceType"), str):
                check(item, item["resourceType"], where, problems)
