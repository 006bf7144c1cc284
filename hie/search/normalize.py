"""Value normalization shared by index extraction, query building and the test oracle.

Implements the value semantics of FHIR R4 search (https://hl7.org/fhir/R4/search.html):

* strings (https://hl7.org/fhir/R4/search.html#string): case- and accent-insensitive.
  We apply Unicode NFKC (full-/half-width forms match), strip Latin combining accents
  (U+0300..U+036F, so Japanese voiced marks are kept), fold hiragana to katakana (kana
  type does not matter for Japanese names), drop spaces of every width, and casefold;
* dates (https://hl7.org/fhir/R4/search.html#date): every date, dateTime, instant or
  Period becomes a closed range ``[low, high]`` of epoch microseconds in UTC whose width
  is the value's precision; values without a time zone are read in the node's zone (JST),
  the one rule of :mod:`consent.periods` that consent periods follow too;
* numbers (https://hl7.org/fhir/R4/search.html#number): the implicit range of a search
  value follows its significant figures (``100`` means ``[99.5, 100.5)``);
* quantities (https://hl7.org/fhir/R4/search.html#quantity): UCUM units with a metric
  prefix, and quotients of them, are converted to a canonical base unit so that
  ``5.4|http://unitsofmeasure.org|mg`` finds ``0.0054 g``.
"""

from __future__ import annotations

import re
import unicodedata
from decimal import Decimal, InvalidOperation

from consent.periods import DateValueError, instant_range

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

DateFormatError = DateValueError


def date_range(value: str) -> tuple[int, int]:
    """``[low, high]`` (epoch µs, inclusive) covered by a FHIR date/dateTime/instant string, by
    the node's one date rule (:func:`consent.periods.instant_range`: no zone means the node's
    zone, JST), so that a date search and a consent ``dataPeriod`` agree on day boundaries.
    Raises :class:`DateFormatError`."""
    return instant_range(value)


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
