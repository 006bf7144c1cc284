"""Locating the external HL7 v2 corpus for the adapter tests (HIE_CORPUS)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from adapters.hl7v2.ids import FeedIds

DEFAULT = Path(__file__).resolve().parents[2].parent / "shared" / "data"
FACILITY = "2212345670"  # fictitious Shizuoka (22) medical (1) institution
IDS = FeedIds(bytes(range(32)))  # a fixed feed-id key for mapping tests without a node


def corpus(*parts: str) -> Path:
    base = Path(os.environ.get("HIE_CORPUS", DEFAULT))
    path = base.joinpath(*parts)
    if not path.exists():
        pytest.skip(f"HL7 v2 corpus not found at {path} (set HIE_CORPUS to the shared data folder)")
    return path


def storage_root() -> Path:
    return corpus("hl7v2", "ssmix2-nhoHQ", "storage")


def storage_file(kind: str) -> Path:
    root = storage_root() / "999" / "901" / "9999013"
    found = sorted(root.glob(f"*/{kind}/*"))
    assert found, f"no {kind} file in the sample patient"
    return found[0]
