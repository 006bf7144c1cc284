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
