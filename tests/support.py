"""Helpers shared by test modules (fixtures live in conftest.py)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]


def corpus_dir() -> Path:
    """The external corpus: ``HIE_CORPUS``, default ``../shared/data`` beside the repository."""
    return Path(os.environ.get("HIE_CORPUS", REPO.parent / "shared" / "data")).resolve()


def require_corpus(*parts: str) -> Path:
    path = corpus_dir().joinpath(*parts)
    if not path.exists():
        pytest.skip(f"external corpus not found at {path} (set HIE_CORPUS to the shared data folder)")
    return path


class LiveServer:
    """A real uvicorn server on 127.0.0.1 (ephemeral port) in a background thread."""

    def __init__(self, app) -> None:  # noqa: ANN001
        import socket
        import threading

        import uvicorn

        self.sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.url = f"http://127.0.0.1:{self.port}"
        config = uvicorn.Config(app, log_level="warning", access_log=False, lifespan="off")
        self.server = uvicorn.Server(config)
        self.thread = threading.Thread(target=self.server.run, kwargs={"sockets": [self.sock]}, daemon=True)

    def __enter__(self) -> LiveServer:
        import time

        self.thread.start()
        deadline = time.monotonic() + 20
        while not self.server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("test server did not start")
            time.sleep(0.02)
        return self

    def __exit__(self, *exc) -> None:  # noqa: ANN002
        self.server.should_exit = True
        self.thread.join(timeout=20)
        self.sock.close()
