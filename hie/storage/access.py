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


class UnrestrictedPolicy:
    """No row-level restriction, for a tool or test that truly needs none; it must say why.

    There is no default policy: a repository without one cannot be built (fail closed).
    The node runs :class:`hie.enforcement.policy.ConsentPolicy`; the system principal gets
    its unrestricted predicate from that policy too, so this class is for code that works
    without a node (e.g. a test of the query builder against its reference semantics)."""

    def __init__(self, reason: str) -> None:
        if not reason.strip():
            raise ValueError("UnrestrictedPolicy needs the reason no restriction applies")
        self.reason = reason

    def predicate(self, principal: Principal, conn: Connection | None = None) -> AccessPredicate:
        return lambda _alias: true()
