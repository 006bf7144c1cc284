"""The access predicate: the SQL condition joined into every statement the repository builds.

The repository asks :class:`AccessPolicy` for a predicate over a table alias that has
the enforcement columns (``patient_key``, ``custodian``, ``data_class``,
``security_labels``) and ANDs it into every read, search, include, chain, history and
count. Filtering after the fact would break paging and leak through totals.

This module defines the protocol; :mod:`hie.enforcement.policy` implements it with the
patients' consents.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy import ColumnElement, Connection, true

from hie.principal import Principal

AccessPredicate = Callable[[Any], ColumnElement[bool]]


class AccessPolicy(Protocol):
    def predicate(self, principal: Principal, conn: Connection | None = None) -> AccessPredicate:
        """The predicate for ``principal``; ``conn`` lets a policy read per-request state
        (break-the-glass declarations, region switches) once, before the statements run."""
        ...


class OpenPolicy:
    """No row-level restriction: for tools and tests that need none. The node itself runs
    :class:`hie.enforcement.policy.ConsentPolicy`."""

    def predicate(self, principal: Principal, conn: Connection | None = None) -> AccessPredicate:
        return lambda _alias: true()
