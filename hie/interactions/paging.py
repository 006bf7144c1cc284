"""One pager for search and history: ``_count``/``_offset`` and the Bundle's paging links.

A page is ``count`` entries from ``offset`` in a total order the caller fixes (search: the
sort keys, then ``resource.pk``; history: newest first below a snapshot). ``_count=0``
asks for the total only: the Bundle has no entries and only a ``self`` link.

Spec: https://hl7.org/fhir/R4/http.html#paging , https://hl7.org/fhir/R4/search.html#count
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlencode

from hie.errors import FhirError, InvalidSearch

DEFAULT_COUNT = 50
MAX_COUNT = 1000


MAX_INT = 2**63 - 1
"""Largest integer parameter the node takes (a signed 64-bit column or LIMIT/OFFSET)."""


def ascii_int(raw: str, maximum: int = MAX_INT) -> int | None:
    """``raw`` as a non-negative integer of ASCII digits up to ``maximum``; None otherwise
    (``str.isdigit`` alone takes superscripts int() refuses, and any length)."""
    if not (raw.isascii() and raw.isdigit()) or len(raw) > len(str(maximum)):
        return None
    value = int(raw)
    return value if value <= maximum else None


def non_negative(raw: str, name: str, error: type[FhirError]) -> int:
    """``raw`` (parameter ``name``) as :func:`ascii_int`; ``error`` (400) naming it otherwise."""
    value = ascii_int(raw)
    if value is None:
        raise error(f"{name} must be a non-negative integer up to {MAX_INT}, got {raw!r}", expression=[name])
    return value


def _non_negative(values: list[str] | None, name: str, default: int, error: type[FhirError]) -> int:
    if not values or values[0] == "":
        return default
    if len(values) > 1:
        raise error(f"{name} may appear only once", expression=[name])
    return non_negative(values[0], name, error)


@dataclass(frozen=True)
class Pager:
    """``count`` (at most :data:`MAX_COUNT`) and ``offset`` of one page, and its links."""

    count: int
    offset: int

    @classmethod
    def of(cls, params: dict[str, list[str]], *, error: type[FhirError] = InvalidSearch) -> Pager:
        """From the request's ``_count`` and ``_offset`` (name -> values)."""
        count = _non_negative(params.get("_count"), "_count", DEFAULT_COUNT, error)
        offset = _non_negative(params.get("_offset"), "_offset", 0, error)
        return cls(min(count, MAX_COUNT), offset)

    def links(
        self, base: str, kept: list[tuple[str, str]], *, total: int | None, has_next: bool,
    ) -> list[dict[str, str]]:
        """``self``, ``first``, ``previous``, ``next`` and ``last`` links below ``base``; each
        carries ``kept`` (the request's other parameters), ``_count`` and ``_offset``."""

        def link(relation: str, off: int) -> dict[str, str]:
            q = [*kept, ("_count", str(self.count))] + ([("_offset", str(off))] if off else [])
            return {"relation": relation, "url": f"{base}?{urlencode(q)}"}

        out = [link("self", self.offset)]
        if self.count == 0:
            return out
        out.append(link("first", 0))
        if self.offset > 0:
            out.append(link("previous", max(0, self.offset - self.count)))
        if has_next:
            out.append(link("next", self.offset + self.count))
        if total:
            out.append(link("last", ((total - 1) // self.count) * self.count))
        return out
