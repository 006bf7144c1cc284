"""A live node for third-party clients: a real uvicorn server on a loopback port over the
test node, the FHIR base taken from the request (as a node without HIE_BASE_URL runs)."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hie.api.app import create_app
from tests.support import LiveServer


@dataclass
class Live:
    url: str
    node: Any

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.url}/auth/token"


@pytest.fixture
def live(node: Any) -> Iterator[Live]:
    saved = node.settings
    node.settings = dataclasses.replace(saved, base_url=None)
    try:
        with LiveServer(create_app(node, audit=False)) as srv:
            yield Live(srv.url, node)
    finally:
        node.settings = saved
