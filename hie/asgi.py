"""ASGI entry point for uvicorn workers: each process builds its own Node from the environment."""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    from hie.app import Node
    from hie.runtime import tune_gc

    app = Node.open().create_app()
    tune_gc()  # ADR 0009: once the process holds its long-lived state
    return app
