"""FHIR R4 date/dateTime and Period values as closed intervals of instants: the node's one
rule for where a date or dateTime without a time zone falls.

The rule (:func:`instant_range`): a FHIR ``date``, partial ``dateTime`` or ``instant`` covers
the whole span its precision names, and a value written without a time zone (a date, or a
dateTime whose zone is missing) is read in the node's time zone :data:`NODE_TZ` (Japan,
+09:00). ``2026-10-01`` is 2026-10-01T00:00:00+09:00 .. 2026-10-01T23:59:59.999999+09:00, and
``2026-10-01T23:30:00`` is 2026-10-01T23:30:00+09:00. Search indexing and search values
(:mod:`hie.search.normalize`), ``_since``/``_at`` (:func:`hie.clock.parse_instant_us`), the
clinical date of a record (:func:`consent.request.clinical_date_of`) and consent periods
(:func:`parse_datetime`, :func:`parse_period`) all use it, so a search and a consent agree on
every day boundary.

Spec: https://hl7.org/fhir/R4/datatypes.html#dateTime,
https://hl7.org/fhir/R4/datatypes.html#Period, https://hl7.org/fhir/R4/search.html#date.
Pure code.
"""

from __future__ import annotations

import calendar
import re
from dataclasses import dataclass
from datetime import datetime, timedelta, timezone
from typing import Any, Final

from consent.errors import ConsentError

NODE_TZ: Final = timezone(timedelta(hours=9), "JST")
"""Time zone of values written without one (FHIR ``date`` / ``dateTime`` without a zone)."""

NODE_OFFSET_US: Final = int(NODE_TZ.utcoffset(None).total_seconds()) * 1_000_000

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=timezone.utc)

# Search values may be partial (``2026-10-01T10``) and write the zone without a colon.
_LENIENT = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)
# Resource content: FHIR dateTime syntax (a time has hours and minutes; the zone has a colon).
_STRICT = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2}):(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d{1,9}))?)?(?P<tz>Z|[+-]\d{2}:\d{2})?)?)?)?$"
)


class DateValueError(ValueError):
    """Not a FHIR date/dateTime/instant (``syntax``), or not a valid calendar date or time."""

    def __init__(self, message: str, *, syntax: bool = False) -> None:
        super().__init__(message)
        self.syntax = syntax


@dataclass(frozen=True)
class _Parsed:
    low: int  # epoch microseconds, inclusive
    high: int  # epoch microseconds, inclusive
    has_time: bool
    zone: str | None  # as written ("Z", "+09:00", "+0900"), None when absent


def _epoch_us(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000


def _offset_us(zone: str | None) -> int:
    """The UTC offset of a written zone; the node's offset when none is written (the rule)."""
    if zone is None:
        return NODE_OFFSET_US
    if zone == "Z":
        return 0
    sign = -1 if zone[0] == "-" else 1
    digits = zone[1:].replace(":", "")
    return sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000


def _parse(value: str, *, strict: bool) -> _Parsed:
    m = (_STRICT if strict else _LENIENT).match(value.strip())
    if not m:
        raise DateValueError(f"not a FHIR date/dateTime: {value!r}", syntax=True)
    y, mo, d = int(m["y"]), int(m["m"] or 1), int(m["d"] or 1)
    if not 1 <= mo <= 12:
        raise DateValueError(f"bad month in {value!r}")
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        raise DateValueError(f"bad day in {value!r}")
    if m["H"] is None:
        # A date (or year, year-month): the whole span, in the node's zone.
        if m["m"] is None:
            nxt = _epoch_us(y + 1, 1, 1)
        elif m["d"] is None:
            nxt = _epoch_us(y + (mo == 12), mo % 12 + 1, 1)
        else:
            nxt = _epoch_us(y, mo, d) + 86_400_000_000
        offset = _offset_us(None)
        return _Parsed(_epoch_us(y, mo, d) - offset, nxt - offset - 1, False, None)
    h, mi, s = int(m["H"]), int(m["M"] or 0), int(m["S"] or 0)
    if h > 23 or mi > 59 or s > 60:
        raise DateValueError(f"bad time in {value!r}")
    base = _epoch_us(y, mo, d, h, mi, s) - _offset_us(m["tz"])
    if m["M"] is None:
        width = 3_600_000_000
    elif m["S"] is None:
        width = 60_000_000
    elif m["f"] is None:
        width = 1_000_000
    else:
        frac = m["f"][:6]
        width = 10 ** (6 - len(frac))
        base += int(frac) * width
    return _Parsed(base, base + width - 1, True, m["tz"])


def instant_range(value: str) -> tuple[int, int]:
    """``[low, high]`` in epoch microseconds (both inclusive) covered by a FHIR date, dateTime
    or instant, its width being the value's precision; a value without a time zone is read
    in :data:`NODE_TZ`. Raises :class:`DateValueError`."""
    p = _parse(value, strict=False)
    return p.low, p.high


def from_epoch_us(us: int, tz: timezone = NODE_TZ) -> datetime:
    """The aware datetime of epoch microseconds (exact: no float arithmetic)."""
    return (_EPOCH + timedelta(microseconds=us)).astimezone(tz)


def parse_datetime(value: Any, path: str, *, upper: bool = False, require_zone: bool = True) -> datetime:
    """A FHIR ``date`` / ``dateTime`` / ``instant`` as an aware datetime, by :func:`instant_range`'s rule.

    With ``upper=False`` the first instant the value covers, with ``upper=True`` the last
    (``2024`` -> 2024-12-31T23:59:59.999999+09:00), so that a Period is inclusive at both
    ends. A Consent's own dateTimes must carry a zone when they have a time
    (``require_zone``); the clinical dates of records are read however they were written.
    """
    if not isinstance(value, str):
        raise ConsentError(path, f"expected a date/dateTime string, got {type(value).__name__}")
    try:
        p = _parse(value, strict=require_zone)
    except DateValueError as exc:
        if exc.syntax:
            raise ConsentError(path, f"not a FHIR dateTime: {value!r}") from None
        raise ConsentError(path, f"not a valid date: {value!r} ({exc})") from None
    if require_zone and p.has_time and p.zone is None:
        raise ConsentError(path, f"a dateTime with a time must carry a time zone: {value!r}")
    return from_epoch_us(p.high if upper else p.low, _zone(p.zone))


def _zone(written: str | None) -> timezone:
    if written is None:
        return NODE_TZ
    if written == "Z":
        return timezone.utc
    return timezone(timedelta(microseconds=_offset_us(written)))


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
