"""FHIRPath Patch: a ``Parameters`` resource of operations (add, insert, delete, replace,
move) for the FHIR ``patch`` interaction, beside JSON Patch (:mod:`hie.fhir.patch`).

Each operation's ``path`` is a FHIRPath expression naming elements of the resource being
patched. The node walks the part of FHIRPath that names locations -- the resource type,
element names (a choice element by its FHIRPath name: ``Observation.value`` finds
``valueQuantity``), indexers ``[n]``, ``first()``, ``last()`` and ``where(criteria)`` --
and evaluates each ``where`` criterion with fhirpathpy, so filters have full FHIRPath
semantics. Cardinality (is an element a list?) and choice types come from the
``fhir.resources`` R4B models that validation uses. The caller validates the patched
resource and writes it like any update (write authorization, versioning, ``If-Match``).

Errors name the operation (``Parameters.parameter[2]``) and its path: a malformed patch is
400, an operation that cannot be applied to this resource 422 (like a failed JSON Patch test).

Spec: https://hl7.org/fhir/R4/fhirpatch.html ; https://hl7.org/fhir/R4/http.html#patch
"""

from __future__ import annotations

import copy
import re
import typing
from dataclasses import dataclass
from functools import cache
from typing import Any

import fhirpathpy
from fhir.resources.R4B import get_fhir_model_class
from fhir.resources.R4B.backboneelement import BackboneElement
from fhirpathpy.models import models as fhirpath_models

from hie.errors import InvalidPatch

OPERATION_TYPES = ("add", "insert", "delete", "replace", "move")
_PARTS = ("type", "path", "name", "value", "index", "source", "destination")
_REQUIRED = {
    "add": ("path", "name", "value"), "insert": ("path", "value", "index"), "delete": ("path",),
    "replace": ("path", "value"), "move": ("path", "source", "destination"),
}
_ABSENT = object()


def is_fhirpath_patch(body: Any) -> bool:
    return isinstance(body, dict) and body.get("resourceType") == "Parameters"


def apply_fhirpath_patch(resource: dict[str, Any], parameters: dict[str, Any]) -> dict[str, Any]:
    """``resource`` with the operations of ``parameters`` applied in order (a new dict)."""
    operations = parse_operations(parameters)
    holder = {"resource": copy.deepcopy(resource)}
    for op in operations:
        _APPLY[op.type](op, holder)
    return holder["resource"]


# -- the operations, parsed ---------------------------------------------------------


@dataclass
class Operation:
    number: int
    type: str
    path: str
    name: str | None = None
    value: Any = _ABSENT
    value_type: str | None = None  # "Quantity" for valueQuantity; None for a value given as parts
    index: int | None = None
    source: int | None = None
    destination: int | None = None

    @property
    def where(self) -> str:
        return f"Parameters.parameter[{self.number}]"

    def error(self, message: str, status: int = 422) -> InvalidPatch:
        return InvalidPatch(f"FHIRPath Patch {self.where} ({self.type} at '{self.path}'): {message}",
                            expression=[self.where, self.path], status=status)


def parse_operations(parameters: dict[str, Any]) -> list[Operation]:
    params = parameters.get("parameter")
    if not isinstance(params, list) or not params:
        raise InvalidPatch("A FHIRPath Patch needs at least one parameter named 'operation'",
                           expression=["Parameters.parameter"])
    return [_operation(i, p) for i, p in enumerate(params)]


def _operation(number: int, param: Any) -> Operation:
    where = f"Parameters.parameter[{number}]"
    if not isinstance(param, dict) or param.get("name") != "operation":
        raise InvalidPatch(f"{where}: every parameter of a FHIRPath Patch is named 'operation'",
                           expression=[f"{where}.name"])
    parts: dict[str, dict[str, Any]] = {}
    for j, part in enumerate(param.get("part") or []):
        name = part.get("name") if isinstance(part, dict) else None
        if name not in _PARTS or name in parts:
            raise InvalidPatch(f"{where}.part[{j}]: {'repeated' if name in parts else 'unknown'} part {name!r} "
                               f"(parts are {', '.join(_PARTS)}, each at most once)",
                               expression=[f"{where}.part[{j}]"])
        parts[name] = part
    op_type = _primitive(where, parts, "type", "valueCode", str)
    if op_type not in OPERATION_TYPES:
        raise InvalidPatch(f"{where}: operation type {op_type!r} is not one of {', '.join(OPERATION_TYPES)}",
                           expression=[f"{where}.part"])
    missing = [p for p in _REQUIRED[op_type] if p not in parts]
    if missing:
        raise InvalidPatch(f"{where}: a {op_type} operation needs the part(s) {', '.join(missing)}",
                           expression=[f"{where}.part"])
    op = Operation(number, op_type, _primitive(where, parts, "path", "valueString", str))
    if "name" in parts:
        op.name = _primitive(where, parts, "name", "valueString", str)
    for key in ("index", "source", "destination"):
        if key in parts:
            setattr(op, key, _primitive(where, parts, key, "valueInteger", int))
    if "value" in parts:
        op.value, op.value_type = _value(where, parts["value"])
    return op


def _primitive(where: str, parts: dict[str, dict[str, Any]], name: str, key: str, kind: type) -> Any:
    part = parts.get(name, {})
    value = part.get(key, part.get("valueString") if kind is str else None)
    if not isinstance(value, kind) or isinstance(value, bool) or value == "":
        raise InvalidPatch(f"{where}: part '{name}' needs a {key}", expression=[f"{where}.part"])
    return value


def _value(where: str, part: dict[str, Any]) -> tuple[Any, str | None]:
    keys = [k for k in part if k.startswith("value") and k[5:6].isupper()]
    if len(keys) == 1 and "part" not in part:
        return part[keys[0]], keys[0][5:]
    if not keys and isinstance(part.get("resource"), dict):
        return part["resource"], None
    if not keys and isinstance(part.get("part"), list) and part["part"]:
        return _from_parts(where, part["part"]), None
    raise InvalidPatch(f"{where}: part 'value' needs exactly one value[x], a resource, or parts",
                       expression=[f"{where}.part"])


def _from_parts(where: str, parts: list[Any]) -> dict[str, Any]:
    """An anonymous or complex value given as parts: each part names one element."""
    out: dict[str, Any] = {}
    for part in parts:
        name = part.get("name") if isinstance(part, dict) else None
        if not isinstance(name, str) or not name:
            raise InvalidPatch(f"{where}: every part of a value needs a name", expression=[f"{where}.part"])
        value, value_type = _value(where, part)
        key = name if value_type is None or name != "value" else f"value{value_type}"
        if key in out:
            out[key] = (out[key] if isinstance(out[key], list) else [out[key]]) + [value]
        else:
            out[key] = value
    return out


# -- element definitions (from the fhir.resources models) ---------------------------


@dataclass(frozen=True)
class _Field:
    key: str  # the JSON property ("valueQuantity", "class")
    is_list: bool
    cls: Any  # model class of the element; None for primitives
    choice: str | None  # FHIRPath name of a choice element ("value"), else None


@cache
def _fields(cls: Any) -> dict[str, _Field]:
    out: dict[str, _Field] = {}
    for attr, info in cls.model_fields.items():
        key = info.alias or attr
        if key.endswith("__ext") or key == "fhir_comments":
            continue
        extra = info.json_schema_extra if isinstance(info.json_schema_extra, dict) else {}
        choice = extra.get("one_of_many")
        out[key] = _Field(key, "List[" in str(info.annotation), _element_class(info.annotation),
                          choice if isinstance(choice, str) else None)
    return out


def _element_class(annotation: Any) -> Any:
    for arg in (annotation, *typing.get_args(annotation)):
        name = getattr(arg, "__name__", "")
        if isinstance(arg, type) and name.endswith("Type") and len(name) > 4:
            try:
                return get_fhir_model_class(name[:-4])
            except (KeyError, ValueError, AttributeError):
                return None
        if typing.get_args(arg) and arg is not annotation:
            found = _element_class(arg)
            if found is not None:
                return found
    return None


def _class_of(value: Any, cls: Any) -> Any:
    if isinstance(value, dict) and isinstance(value.get("resourceType"), str):
        try:
            return get_fhir_model_class(value["resourceType"])
        except (KeyError, ValueError, AttributeError):
            return None
    return cls


def _field(cls: Any, value: dict[str, Any], name: str) -> _Field | None:
    """The field FHIRPath ``name`` names in ``value`` (a present choice type wins)."""
    if cls is None:
        return _Field(name, isinstance(value.get(name), list), None, None) if name in value else None
    fields = _fields(cls)
    if name in fields and fields[name].choice is None:
        return fields[name]
    choices = [f for f in fields.values() if f.choice == name]
    present = [f for f in choices if f.key in value]
    return present[0] if present else None


def _shape(cls: Any, value: Any) -> Any:
    """``value`` with single items of repeating elements wrapped in arrays (values given as
    parts cannot say an element repeats)."""
    cls = _class_of(value, cls)
    if cls is None or not isinstance(value, dict):
        return value
    fields = _fields(cls)
    out: dict[str, Any] = {}
    for key, item in value.items():
        f = fields.get(key)
        if f is None:
            out[key] = item
        elif f.is_list:
            out[key] = [_shape(f.cls, v) for v in (item if isinstance(item, list) else [item])]
        else:
            out[key] = _shape(f.cls, item)
    return out


# -- paths -> locations --------------------------------------------------------------


@dataclass
class _Loc:
    parent: dict[str, Any]
    key: str
    index: int | None
    cls: Any
    name: str  # the FHIRPath name ("value" for valueQuantity)
    base: str  # its type for fhirpathpy: "HumanName", "Patient.contact", "HumanName.given"

    def get(self) -> Any:
        v = self.parent[self.key]
        return v if self.index is None else v[self.index]


_STEP = re.compile(r"\s*(?:(?P<name>[A-Za-z_][A-Za-z0-9_]*|`[^`]+`)(?P<call>\()?|\[\s*(?P<index>\d+)\s*\])")


def _steps(op: Operation) -> list[tuple[str, Any]]:
    """``Patient.name.where(use='official').given[0]`` -> name, name, call, name, index."""
    path, pos = op.path, 0
    out: list[tuple[str, Any]] = []
    while pos < len(path):
        if out and path[pos] == ".":
            pos += 1
        m = _STEP.match(path, pos)
        if m is None:
            raise op.error(f"cannot read the path at character {pos + 1}", status=400)
        pos = m.end()
        if m.group("index") is not None:
            out.append(("index", int(m.group("index"))))
        elif m.group("call"):
            depth, start, quote = 1, pos, False
            while pos < len(path) and depth:
                ch = path[pos]
                quote = (not quote) if ch == "'" and path[pos - 1] != "\\" else quote
                depth += 0 if quote else (ch == "(") - (ch == ")")
                pos += 1
            if depth:
                raise op.error("unbalanced parentheses in the path", status=400)
            out.append(("call", (m.group("name"), path[start:pos - 1].strip())))
        else:
            out.append(("name", m.group("name").strip("`")))
        if pos < len(path) and path[pos] not in ".[":
            raise op.error(f"cannot read the path at character {pos + 1}", status=400)
    return out


def _select(op: Operation, holder: dict[str, Any], steps: list[tuple[str, Any]]) -> list[_Loc]:
    resource = holder["resource"]
    rtype = resource["resourceType"]
    root = _Loc(holder, "resource", None, _class_of(resource, None), rtype, rtype)
    current = [root]
    for i, (kind, arg) in enumerate(steps):
        if kind == "name" and i == 0 and arg[:1].isupper():
            if arg != root.name:
                raise op.error(f"the path starts with {arg}, but the resource is a {root.name}")
            continue
        if kind == "name":
            current = [c for loc in current for c in _children(loc, arg)]
        elif kind == "index":
            current = current[arg:arg + 1]
        else:
            current = _call(op, resource, current, *arg)
    return current


def _children(loc: _Loc, name: str) -> list[_Loc]:
    value = loc.get()
    if not isinstance(value, dict):
        return []
    f = _field(_class_of(value, loc.cls), value, name)
    if f is None or f.key not in value:
        return []
    item, base = value[f.key], _base(f.cls, f"{loc.base}.{name}")
    if isinstance(item, list):
        return [_Loc(value, f.key, i, f.cls, name, base) for i in range(len(item))]
    return [_Loc(value, f.key, None, f.cls, name, base)]


def _base(cls: Any, path: str) -> str:
    """A data type is known to fhirpathpy's model by its name, a backbone element or a
    primitive by its path."""
    if cls is None or issubclass(cls, BackboneElement):
        return path
    return cls.__name__


def _call(op: Operation, resource: dict[str, Any], current: list[_Loc], fn: str, arg: str) -> list[_Loc]:
    if fn == "first" and not arg:
        return current[:1]
    if fn == "last" and not arg:
        return current[-1:]
    if fn == "where" and arg:
        kept = []
        for loc in current:
            try:
                result = fhirpathpy.evaluate(loc.get(), {"base": loc.base, "expression": arg},
                                             {"resource": resource, "rootResource": resource}, fhirpath_models["r4"])
            except Exception as exc:  # noqa: BLE001 -- fhirpathpy raises plain exceptions on bad input
                raise op.error(f"where({arg}) cannot be evaluated: {exc}", status=400) from None
            if result == [True]:
                kept.append(loc)
        return kept
    if fn == "resolve":
        raise op.error("a patch path must not cross resources (resolve())", status=400)
    raise op.error(f"{fn}() is not supported in a patch path (only where(), first(), last())", status=400)


def _one(op: Operation, locs: list[_Loc]) -> _Loc:
    if not locs:
        raise op.error("the path matches no element")
    if len(locs) > 1:
        raise op.error(f"the path matches {len(locs)} elements; it must match one")
    return locs[0]


def _collection(op: Operation, holder: dict[str, Any]) -> tuple[list[Any], _Loc, _Field]:
    """The list the path of an insert or move names (created empty for an insert)."""
    steps = _steps(op)
    if not steps or steps[-1][0] != "name" or (len(steps) == 1 and steps[0][1][:1].isupper()):
        raise op.error("the path must name a repeating element (ending in its name)", status=400)
    parent = _one(op, _select(op, holder, steps[:-1]))
    value = parent.get()
    cls = _class_of(value, parent.cls)
    f = _fields(cls).get(steps[-1][1]) if cls is not None and isinstance(value, dict) else None
    if f is None or not f.is_list:
        raise op.error(f"'{steps[-1][1]}' is not a repeating element here")
    if f.key not in value:
        value[f.key] = []
    return value[f.key], parent, f


# -- applying ------------------------------------------------------------------------


def _add(op: Operation, holder: dict[str, Any]) -> None:
    loc = _one(op, _select(op, holder, _steps(op)))
    target = loc.get()
    if not isinstance(target, dict):
        raise op.error("the path names a primitive value; add needs an element to add to")
    cls = _class_of(target, loc.cls)
    f = _add_field(op, cls, op.name or "")
    key = f.key if f is not None else op.name or ""
    fields = _fields(cls) if cls is not None else {}
    taken = [k for k, g in fields.items() if f is not None and f.choice and g.choice == f.choice and k in target]
    value = _shape(f.cls if f is not None else None, op.value)
    if (f is not None and f.is_list) or isinstance(target.get(key), list):
        target[key] = [*target.get(key, []), value]
    elif key in target or taken:
        raise op.error(f"'{op.name}' already has a value; use replace")
    else:
        target[key] = value


def _add_field(op: Operation, cls: Any, name: str) -> _Field | None:
    """The element ``add`` creates: ``name`` itself, or for a choice element (``value``) the
    one the value's type names (``valueQuantity``). None where no model is known."""
    if cls is None:
        return None
    fields = _fields(cls)
    f = fields.get(name)
    if f is not None and f.choice is None:
        return f
    if any(g.choice == name for g in fields.values()):
        typed = fields.get(f"{name}{op.value_type}") if op.value_type else None
        if typed is None or typed.choice != name:
            raise op.error(f"'{name}' is a choice element: the value needs a value[x] of one of its types")
        return typed
    if f is not None:  # a choice element named with its type ("valueQuantity")
        return f
    raise op.error(f"{cls.__name__} has no element '{name}'")


def _insert(op: Operation, holder: dict[str, Any]) -> None:
    items, _parent, f = _collection(op, holder)
    assert op.index is not None
    if not 0 <= op.index <= len(items):
        raise op.error(f"index {op.index} is outside 0..{len(items)}")
    items.insert(op.index, _shape(f.cls, op.value))


def _delete(op: Operation, holder: dict[str, Any]) -> None:
    locs = _select(op, holder, _steps(op))
    if not locs:
        return  # "delete the element (if found)"
    loc = _one(op, locs)
    if loc.key == "resource" and loc.parent is holder:
        raise op.error("the path names the resource itself")
    if loc.index is None:
        del loc.parent[loc.key]
        loc.parent.pop(f"_{loc.key}", None)
        return
    del loc.parent[loc.key][loc.index]
    ext = loc.parent.get(f"_{loc.key}")
    if isinstance(ext, list) and loc.index < len(ext):
        del ext[loc.index]
    if not loc.parent[loc.key]:  # FHIR JSON has no empty arrays
        del loc.parent[loc.key]
        loc.parent.pop(f"_{loc.key}", None)


def _replace(op: Operation, holder: dict[str, Any]) -> None:
    loc = _one(op, _select(op, holder, _steps(op)))
    if loc.key == "resource" and loc.parent is holder:
        raise op.error("the path names the resource itself; use update")
    value = _shape(loc.cls, op.value)
    if loc.index is not None:
        loc.parent[loc.key][loc.index] = value
    elif loc.key != loc.name and op.value_type:  # a choice element takes the new value's type
        del loc.parent[loc.key]
        loc.parent[f"{loc.name}{op.value_type}"] = value
    else:
        loc.parent[loc.key] = value


def _move(op: Operation, holder: dict[str, Any]) -> None:
    items, parent, f = _collection(op, holder)
    assert op.source is not None and op.destination is not None
    for what, i in (("source", op.source), ("destination", op.destination)):
        if not 0 <= i < len(items):
            raise op.error(f"{what} {i} is outside 0..{len(items) - 1}")
    items.insert(op.destination, items.pop(op.source))
    ext = parent.get().get(f"_{f.key}")
    if isinstance(ext, list) and len(ext) == len(items):
        ext.insert(op.destination, ext.pop(op.source))


_APPLY = {"add": _add, "insert": _insert, "delete": _delete, "replace": _replace, "move": _move}
