"""Value normalization shared by index extraction, query building and the test oracle.

Implements the value semantics of FHIR R4 search (https://hl7.org/fhir/R4/search.html):

* strings (https://hl7.org/fhir/R4/search.html#string): case- and accent-insensitive.
  We apply Unicode NFKC (full-/half-width forms match), strip Latin combining accents
  (U+0300..U+036F, so Japanese voiced marks are kept), fold hiragana to katakana (kana
  type does not matter for Japanese names), drop spaces of every width, and casefold;
* dates (https://hl7.org/fhir/R4/search.html#date): every date, dateTime, instant or
  Period becomes a closed range ``[low, high]`` of epoch microseconds in UTC whose width
  is the value's precision; values without a time zone are taken as UTC;
* numbers (https://hl7.org/fhir/R4/search.html#number): the implicit range of a search
  value follows its significant figures (``100`` means ``[99.5, 100.5)``);
* quantities (https://hl7.org/fhir/R4/search.html#quantity): UCUM units with a metric
  prefix, and quotients of them, are converted to a canonical base unit so that
  ``5.4|http://unitsofmeasure.org|mg`` finds ``0.0054 g``.
"""

from __future__ import annotations

import calendar
import re
import unicodedata
from decimal import Decimal, InvalidOperation

UCUM = "http://unitsofmeasure.org"

MIN_US = -(2**62)
MAX_US = 2**62

_ACCENTS = re.compile("[\u0300-\u036f]")
_SPACES = re.compile(r"\s+")


def norm_string(value: str) -> str:
    """The comparison form of a string for the default, ``:contains`` and ``:text`` searches."""
    s = unicodedata.normalize("NFKC", value)
    s = unicodedata.normalize("NFD", s)
    s = _ACCENTS.sub("", s)
    s = unicodedata.normalize("NFC", s)
    # Hiragana (U+3041..U+3096) -> katakana (U+30A1..U+30F6).
    s = "".join(chr(ord(c) + 0x60) if "\u3041" <= c <= "\u3096" else c for c in s)
    s = _SPACES.sub("", s)
    return s.casefold()


# -- dates ----------------------------------------------------------------------------

_DATE_RE = re.compile(
    r"^(?P<y>\d{4})(?:-(?P<m>\d{2})(?:-(?P<d>\d{2})"
    r"(?:T(?P<H>\d{2})(?::(?P<M>\d{2})(?::(?P<S>\d{2})(?:\.(?P<f>\d+))?)?)?"
    r"(?P<tz>Z|[+-]\d{2}:?\d{2})?)?)?)?$"
)


class DateFormatError(ValueError):
    pass


def _epoch_us(y: int, mo: int, d: int, h: int = 0, mi: int = 0, s: int = 0) -> int:
    return calendar.timegm((y, mo, d, h, mi, s, 0, 0, 0)) * 1_000_000


def date_range(value: str) -> tuple[int, int]:
    """``[low, high]`` (epoch µs, inclusive) covered by a FHIR date/dateTime/instant string."""
    m = _DATE_RE.match(value.strip())
    if not m:
        raise DateFormatError(f"not a FHIR date/dateTime: {value!r}")
    y = int(m["y"])
    if m["m"] is None:
        return _epoch_us(y, 1, 1), _epoch_us(y + 1, 1, 1) - 1
    mo = int(m["m"])
    if not 1 <= mo <= 12:
        raise DateFormatError(f"bad month in {value!r}")
    if m["d"] is None:
        ny, nm = (y + 1, 1) if mo == 12 else (y, mo + 1)
        return _epoch_us(y, mo, 1), _epoch_us(ny, nm, 1) - 1
    d = int(m["d"])
    if not 1 <= d <= calendar.monthrange(y, mo)[1]:
        raise DateFormatError(f"bad day in {value!r}")
    if m["H"] is None:
        low = _epoch_us(y, mo, d)
        return low, low + 86_400_000_000 - 1
    h = int(m["H"])
    mi = int(m["M"] or 0)
    s = int(m["S"] or 0)
    if h > 23 or mi > 59 or s > 60:
        raise DateFormatError(f"bad time in {value!r}")
    offset = 0
    tz = m["tz"]
    if tz and tz != "Z":
        sign = -1 if tz[0] == "-" else 1
        digits = tz[1:].replace(":", "")
        offset = sign * (int(digits[:2]) * 3600 + int(digits[2:]) * 60) * 1_000_000
    base = _epoch_us(y, mo, d, h, mi, s if m["S"] else 0) - offset
    if m["M"] is None:
        return base, base + 3_600_000_000 - 1
    if m["S"] is None:
        return base, base + 60_000_000 - 1
    if m["f"] is None:
        return base, base + 1_000_000 - 1
    frac = m["f"]
    if len(frac) >= 6:
        us = int(frac[:6])
        return base + us, base + us
    unit = 10 ** (6 - len(frac))
    us = int(frac) * unit
    return base + us, base + us + unit - 1


def format_us(us: int) -> str:
    """An instant string (UTC, microseconds trimmed to milliseconds when exact)."""
    import datetime as _dt

    t = _dt.datetime(1970, 1, 1, tzinfo=_dt.UTC) + _dt.timedelta(microseconds=us)
    if t.microsecond % 1000 == 0:
        return t.strftime("%Y-%m-%dT%H:%M:%S.") + f"{t.microsecond // 1000:03d}Z"
    return t.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


# -- numbers ----------------------------------------------------------------------------


def parse_decimal(text: str) -> Decimal:
    try:
        d = Decimal(text.strip())
    except InvalidOperation as exc:
        raise ValueError(f"not a number: {text!r}") from exc
    if not d.is_finite():
        raise ValueError(f"not a finite number: {text!r}")
    return d


def implicit_range(d: Decimal) -> tuple[float, float]:
    """The half-open range ``[low, high)`` a search number stands for (its precision)."""
    exp = d.as_tuple().exponent
    assert isinstance(exp, int)
    half = Decimal(5).scaleb(exp - 1)
    return float(d - half), float(d + half)


# -- UCUM --------------------------------------------------------------------------------

_PREFIXES = {
    "Y": Decimal("1e24"), "Z": Decimal("1e21"), "E": Decimal("1e18"), "P": Decimal("1e15"),
    "T": Decimal("1e12"), "G": Decimal("1e9"), "M": Decimal("1e6"), "k": Decimal("1e3"),
    "h": Decimal("1e2"), "da": Decimal("1e1"), "d": Decimal("1e-1"), "c": Decimal("1e-2"),
    "m": Decimal("1e-3"), "u": Decimal("1e-6"), "n": Decimal("1e-9"), "p": Decimal("1e-12"),
    "f": Decimal("1e-15"), "a": Decimal("1e-18"),
}
# Base units that take metric prefixes, and a few non-metric units with a fixed factor.
_METRIC = {"g", "L", "l", "m", "mol", "s", "eq", "U", "[IU]", "Pa", "J", "W", "Hz", "kat", "osm"}
_SPECIAL = {
    "min": ("s", Decimal(60)), "h": ("s", Decimal(3600)), "d": ("s", Decimal(86400)),
    "wk": ("s", Decimal(604800)), "[lb_av]": ("g", Decimal("453.59237")),
    "[in_i]": ("m", Decimal("0.0254")), "mm[Hg]": ("mm[Hg]", Decimal(1)),
    "%": ("%", Decimal(1)), "1": ("1", Decimal(1)),
}


def _ucum_atom(unit: str) -> tuple[str, Decimal] | None:
    if unit in _SPECIAL:
        return _SPECIAL[unit]
    if unit in _METRIC:
        return ("L" if unit == "l" else unit), Decimal(1)
    for plen in (2, 1):
        p, rest = unit[:plen], unit[plen:]
        if p in _PREFIXES and rest in _METRIC:
            return ("L" if rest == "l" else rest), _PREFIXES[p]
    return None


def ucum_canonical(value: Decimal, code: str) -> tuple[Decimal, str] | None:
    """``(value, unit)`` in base units, or None when the unit is not understood."""
    parts = code.split("/")
    if len(parts) > 2 or not all(parts):
        return None
    num = _ucum_atom(parts[0])
    if num is None:
        return None
    if len(parts) == 1:
        return value * num[1], num[0]
    den = _ucum_atom(parts[1])
    if den is None:
        return None
    return value * num[1] / den[1], f"{num[0]}/{den[0]}"
