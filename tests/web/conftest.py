"""Fixtures of the viewer tests: a SQLite node that derives its FHIR base from the request
(so the login flow runs on a loopback origin, as authlib requires for plain http)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest


@pytest.fixture
def web_node(sqlite_node: Any) -> Iterator[Any]:
    saved = sqlite_node.settings
    sqlite_node.settings = dataclasses.replace(saved, base_url=None)
    try:
        yield sqlite_node
    finally:
        sqlite_node.settings = saved


@pytest.fixture(params=["sqlite", "postgresql"])
def web_node_any(request: pytest.FixtureRequest) -> Iterator[Any]:
    """:func:`web_node` on each database."""
    n = request.getfixturevalue("sqlite_node" if request.param == "sqlite" else "pg_node")
    saved = n.settings
    n.settings = dataclasses.replace(saved, base_url=None)
    try:
        yield n
    finally:
        n.settings = saved
