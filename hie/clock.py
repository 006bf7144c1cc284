"""Injected time and id generation, so tests can be deterministic (Blaze's injected clock)."""

from __future__ import annotations

import time
import uuid
from datetime import UTC, datetime
from typing import Protocol


class Clock(Protocol):
    def now_us(self) -> int: ...


class SystemClock:
    """Wall-clock UTC, millisecond resolution (as FHIR instants are usually written)."""

    def now_us(self) -> int:
        return (time.time_ns() // 1_000_000) * 1000


class FixedClock:
    def __init__(self, start_us: int, step_us: int = 1000) -> None:
        self.t = start_us
        self.step = step_us

    def now_us(self) -> int:
        self.t += self.step
        return self.t


def new_id() -> str:
    return str(uuid.uuid4())


def instant(us: int) -> str:
    """FHIR instant text for epoch microseconds (UTC), with milliseconds."""
    dt = datetime.fromtimestamp(us // 1_000_000, UTC)
    return dt.strftime("%Y-%m-%dT%H:%M:%S") + f".{(us // 1000) % 1000:03d}Z"


def http_date(us: int) -> str:
    dt = datetime.fromtimestamp(us // 1_000_000, UTC)
    return dt.strftime("%a, %d %b %Y %H:%M:%S GMT")


def parse_instant_us(text: str) -> int:
    """The first instant (epoch µs) of a FHIR instant/dateTime/date, by the node's one date rule
    (:func:`consent.periods.instant_range`: a value without a zone is read in the node's zone,
    JST). Raises ValueError."""
    from consent.periods import instant_range

    return instant_range(text)[0]
