"""Fixtures for auth tests: a live server (real uvicorn on 127.0.0.1) over the node,
with an audit recorder flushed by hand."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import pytest

from hie.api.app import create_app
from hie.audit.recorder import AuditRecorder
from tests.support import LiveServer


@dataclass
class Live:
    url: str
    node: Any
    recorder: AuditRecorder

    @property
    def fhir(self) -> str:
        return f"{self.url}/fhir"

    @property
    def token_url(self) -> str:
        return f"{self.url}/auth/token"


@pytest.fixture
def live(node: Any) -> Iterator[Live]:
    from hie.config import Settings

    # Tokens name the FHIR base the client uses: let the node derive it from the request.
    saved = node.settings
    node.settings = Settings(database_url=saved.database_url, data_dir=saved.data_dir, base_url=None,
                             pool_size=saved.pool_size)
    recorder = AuditRecorder(node, interval=None)
    try:
        with LiveServer(create_app(node, audit=recorder)) as srv:
            yield Live(srv.url, node, recorder)
    finally:
        recorder.flush()
        node.settings = saved
