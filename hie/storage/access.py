"""The access predicate: the SQL condition joined into every statement the repository builds.

The repository asks :class:`AccessPolicy` for a predicate over a table alias that has
the enforcement columns (``patient_key``, ``custodian``, ``data_class``,
``security_labels``) and ANDs it into every read, search, include, chain, history and
count. Filtering after the fact would break paging and leak through totals.

This module is the one place consent enforcement plugs in. Until the consent engine
lands, the only policy is :class:`OpenPolicy`: every authenticated principal sees
every row (the node has no non-system principals yet).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, true

from hie.principal import Principal

AccessPredicate = Callable[[Any], ColumnElement[bool]]


class AccessPolicy(Protocol):
    def predicate(self, principal: Principal) -> AccessPredicate: ...


class OpenPolicy:
    """No row-level restriction. Used for the system principal, and for all principals
    until consent enforcement is configured."""

    def predicate(self, principal: Principal) -> AccessPredicate:
        return lambda _alias: true()
