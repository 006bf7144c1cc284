"""Pages read data the way the FHIR API does: the same interaction table, the same SMART
scope check (:mod:`hie.auth.enforce`, compartment confinement) and the same per-request
context and repository with the logged-in principal (``node.context(principal, ...)``).
A page can therefore never show more than the API would answer to the same token.

Spec: https://hl7.org/fhir/R4/http.html
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, TypeVar

import orjson

from hie.auth import enforce
from hie.auth.compartment import confine
from hie.interactions.context import Context
from hie.interactions.table import Call, execute, parse
from hie.principal import Principal

T = TypeVar("T")


def _materialize(body: Any) -> Any:
    if body is None:
        return None
    if isinstance(body, bytes):
        return orjson.loads(body)
    return orjson.loads(orjson.dumps(body))  # resolves embedded Fragments


def interact(node: Any, principal: Principal, method: str, path: str, query: str = "", *,
             body: Any = None, base_url: str | None = None) -> tuple[int, Any]:
    """Run one FHIR interaction (``path`` below ``/fhir``) as ``principal``: (status, JSON body).
    Raises the interaction's :class:`hie.errors.FhirError` (401/403/404...) as the API would."""
    parsed = parse(method, path, query)
    needs = enforce.needs(parsed, node.registry) or []
    enforce.check(principal, needs)
    confined = confine(principal, needs)
    with node.context(confined, write=parsed.write, base_url=base_url) as ctx:
        result = execute(ctx, Call(parsed, body))
        return result.status, _materialize(result.body)


def search(node: Any, principal: Principal, rtype: str, params: list[tuple[str, str]], *,
           base_url: str | None = None) -> list[dict[str, Any]]:
    """The matching resources of a search (first page, entries with mode ``match``)."""
    from urllib.parse import urlencode

    _status, bundle = interact(node, principal, "GET", f"/{rtype}", urlencode(params), base_url=base_url)
    return [e["resource"] for e in (bundle or {}).get("entry") or []
            if (e.get("search") or {}).get("mode", "match") == "match" and "resource" in e]


@contextmanager
def reading(node: Any, principal: Principal, needs: list[tuple[str, str]], *,
            base_url: str | None = None) -> Iterator[Context]:
    """A read context for building blocks that take a repository (the summary's ``collect``),
    after checking the scopes they need exactly as the API checks an interaction's."""
    enforce.check(principal, needs)
    with node.context(confine(principal, needs), write=False, base_url=base_url) as ctx:
        yield ctx


def with_repo(node: Any, principal: Principal, needs: list[tuple[str, str]], fn: Callable[[Any], T], *,
              base_url: str | None = None) -> T:
    with reading(node, principal, needs, base_url=base_url) as ctx:
        return fn(ctx.repo)
