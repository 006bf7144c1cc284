"""FHIR R4 date/dateTime and Period values as closed intervals of aware datetimes.

Implements the parts of https://hl7.org/fhir/R4/datatypes.html#dateTime and
https://hl7.org/fhir/R4/datatypes.html#Period the consent engine needs: partial dates are
widened to the whole year / month / day they name (a Period written with dates is inclusive at
both ends), and dates without a time are read in the node's time zone :data:`NODE_TZ` (Japan).
Pure code.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from consent.errors import ConsentError

NODE_TZ: Final = timezone(timedelta(hours=9), "JST")
"""Time zone for dates written without a time (FHIR ``date`` / partial ``dateTime``)."""


_DATETIME = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?P<f>\.\d{1,9})?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


def parse_datetime(value: Any, path: str, *, upper: bool = False) -> datetime:
    """A FHIR ``date`` / ``dateTime`` / ``instant`` as an aware datetime.

    Partial values are widened: with ``upper=False`` to their first instant, with
    ``upper=True`` to their last (``2024`` -> 2024-12-31T23:59:59.999999+09:00), so that a
    Period written with dates is inclusive at both ends.
    """
    if not isinstance(value, str):
        raise ConsentError(path, f"expected a date/dateTime string, got {type(value).__name__}")
    m = _DATETIME.match(value)
    if not m:
        raise ConsentError(path, f"not a FHIR dateTime: {value!r}")
    try:
        year = int(m["y"])
        if m["H"] is not None:
            if m["tz"] is None:
                raise ConsentError(path, f"a dateTime with a time must carry a time zone: {value!r}")
            tz = timezone.utc if m["tz"] == "Z" else _offset(m["tz"])
            frac = (m["f"] or ".0")[1:7].ljust(6, "0")
            return datetime(year, int(m["m"]), int(m["d"]), int(m["H"]), int(m["M"]),
                            int(m["S"] or 0), int(frac), tzinfo=tz)
        if m["d"] is not None:
            start = datetime(year, int(m["m"]), int(m["d"]), tzinfo=NODE_TZ)
            return start + timedelta(days=1, microseconds=-1) if upper else start
        if m["m"] is not None:
            start = datetime(year, int(m["m"]), 1, tzinfo=NODE_TZ)
            if not upper:
                return start
            nxt = datetime(year + (start.month == 12), start.month % 12 + 1, 1, tzinfo=NODE_TZ)
            return nxt - timedelta(microseconds=1)
        if upper:
            return datetime(year + 1, 1, 1, tzinfo=NODE_TZ) - timedelta(microseconds=1)
        return datetime(year, 1, 1, tzinfo=NODE_TZ)
    except ValueError as exc:
        raise ConsentError(path, f"not a valid date: {value!r} ({exc})") from None


def _offset(text: str) -> timezone:
    sign = -1 if text[0] == "-" else 1
    return timezone(sign * timedelta(hours=int(text[1:3]), minutes=int(text[4:6])))


@dataclass(frozen=True)
class Period:
    """A closed interval; ``None`` at either end means open."""

    start: datetime | None = None
    end: datetime | None = None

    def contains(self, moment: datetime) -> bool:
        return (self.start is None or self.start <= moment) and (self.end is None or moment <= self.end)

    def intersect(self, other: Period | None) -> Period | None:
        """The overlap of both periods, or ``None`` when they do not overlap."""
        if other is None:
            return self
        starts = [p for p in (self.start, other.start) if p is not None]
        ends = [p for p in (self.end, other.end) if p is not None]
        out = Period(max(starts) if starts else None, min(ends) if ends else None)
        if out.start is not None and out.end is not None and out.start > out.end:
            return None
        return out

    def describe(self) -> str:
        start = self.start.isoformat() if self.start else "open"
        end = self.end.isoformat() if self.end else "open"
        return f"{start} .. {end}"


def parse_period(value: Any, path: str) -> Period:
    if not isinstance(value, dict):
        raise ConsentError(path, f"expected an object, got {type(value).__name__}")
    obj = value
    start = parse_datetime(obj["start"], f"{path}.start") if "start" in obj else None
    end = parse_datetime(obj["end"], f"{path}.end", upper=True) if "end" in obj else None
    if start is not None and end is not None and start > end:
        raise ConsentError(path, "start is after end")
    return Period(start, end)
