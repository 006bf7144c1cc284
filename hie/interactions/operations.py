"""Extended operations (``$name``): one registry, dispatched at system, type or instance level.

A capability registers its operation here (``@operation("match", level="type",
types=("Patient",))``); the REST layer routes ``/fhir/$x``, ``/fhir/Type/$x`` and
``/fhir/Type/id/$x`` (GET and POST) to it, and the CapabilityStatement lists it. Inputs
arrive as a list of (name, value) pairs from the query string, plus the POSTed body
(usually a ``Parameters`` resource) when there is one.

Spec: https://hl7.org/fhir/R4/operations.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hie.errors import MethodNotAllowed, NotSupported
from hie.interactions.context import Context
from hie.interactions.result import Result

OperationFn = Callable[[Context, "OperationCall"], Result]


@dataclass(frozen=True)
class OperationCall:
    name: str
    level: str  # system | type | instance
    res_type: str | None
    res_id: str | None
    params: list[tuple[str, str]]
    body: Any  # parsed JSON body of a POST, or None
    method: str  # GET | POST


@dataclass(frozen=True)
class Operation:
    name: str
    level: str
    types: tuple[str, ...] | None  # None = any type (for type/instance level)
    fn: OperationFn
    write: bool = False  # needs a write transaction
    allow_get: bool = True
    definition: str | None = None  # canonical OperationDefinition URL
    scope: str | None = None  # SMART permission letters it needs on its type; default r, or cu if write
    returns: str | None = None  # "compartment": returns the Patient compartment (scope-checked per type)
    reads: tuple[str, ...] = ()  # further types it returns (the caller needs read on each)


_REGISTRY: dict[tuple[str, str], list[Operation]] = {}


def operation(
    name: str, *, level: str, types: tuple[str, ...] | None = None, write: bool = False,
    allow_get: bool = True, definition: str | None = None, scope: str | None = None,
    returns: str | None = None, reads: tuple[str, ...] = (),
) -> Callable[[OperationFn], OperationFn]:
    def register(fn: OperationFn) -> OperationFn:
        _REGISTRY.setdefault((name, level), []).append(
            Operation(name, level, types, fn, write, allow_get, definition, scope, returns, reads)
        )
        return fn

    return register


def find(name: str, level: str, res_type: str | None) -> Operation:
    _load_builtin()
    for op in _REGISTRY.get((name, level), []):
        if op.types is None or res_type in op.types:
            return op
    where = f"{res_type} " if res_type else ""
    raise NotSupported(f"Operation ${name} is not supported at {where}{level} level")


def check_method(op: Operation, method: str) -> None:
    if method == "GET" and not op.allow_get:
        raise MethodNotAllowed(f"${op.name} must be invoked with POST")


def all_operations() -> list[Operation]:
    _load_builtin()
    return [op for ops in _REGISTRY.values() for op in ops]


_LOADED = False


def _load_builtin() -> None:
    """Import the modules that register operations (kept in one list, here)."""
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    import importlib

    for module in OPERATION_MODULES:
        importlib.import_module(module)


#: Modules that register operations; a capability adds its module here.
OPERATION_MODULES: list[str] = [
    "hie.interactions.everything",
    "hie.identity.operations",
    "hie.enforcement.operations",
    "hie.summary.operation",
]
