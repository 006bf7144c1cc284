"""ASGI entry point for uvicorn workers: each process builds its own Node from the environment."""

from __future__ import annotations

from typing import Any


def create_app() -> Any:
    from hie.app import Node

    return Node.open().create_app()
