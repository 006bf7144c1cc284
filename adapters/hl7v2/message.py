"""Parsed HL7 v2 message with 1-based field access and HL7 locations.

Parsing is done by the ``hl7`` library (python-hl7, https://python-hl7.readthedocs.io)
on already-decoded text (see :mod:`adapters.hl7v2.charset`); this module normalises
its irregular tree (a leaf is a ``str`` wherever a level has no separator) into
``reps -> components -> subcomponents`` lists of unescaped strings, following the
HL7 v2.5 encoding rules (chapter 2, section 2.5 and 2.7):
https://www.hl7.eu/HL7v2x/v25/std25/ch02.html#Heading13
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from collections.abc import Iterator

import hl7
from hl7.exceptions import ParseException

from .charset import Decoded, decode_message
from .errors import ParseError

_SEGMENT_ID = re.compile(r"^[A-Z][A-Z0-9]{2}$")
# \Cxxyy\ and \Mxxyyzz\ switch character sets inside a field (2.7.2); the adapter
# decodes whole messages with the MSH-18 set and does not support in-field switching.
_CHARSET_ESCAPE = re.compile(r"\\[CM][0-9A-Fa-f]{4,6}\\")


@dataclass
class Segment:
    """One segment: ``sid`` plus fields as reps -> components -> subcomponents."""

    sid: str
    index: int  # position in the message, 0-based
    fields: list[list[list[list[str]]]]  # fields[n] is field n (1-based; fields[0] unused)

    def loc(self, field: int | None = None, comp: int | None = None) -> str:
        if field is None:
            return self.sid
        return f"{self.sid}-{field}" + (f".{comp}" if comp else "")

    def reps(self, field: int) -> list[list[list[str]]]:
        """All non-empty repetitions of a field."""
        if field >= len(self.fields):
            return []
        return [r for r in self.fields[field] if any(any(s for s in c) for c in r)]

    def rep_components(self, field: int, rep: int = 0) -> list[str]:
        """Components of one repetition; subcomponents re-joined with ``&`` (so a code
        such as ``9A100&IMP`` keeps its qualifier)."""
        reps = self.reps(field)
        if rep >= len(reps):
            return []
        return ["&".join(c).strip("&").strip() if c else "" for c in reps[rep]]

    def get(self, field: int, comp: int = 1, sub: int = 1, rep: int = 0) -> str:
        """One value, '' when absent. ``comp`` and ``sub`` are 1-based."""
        reps = self.reps(field)
        if rep >= len(reps):
            return ""
        comps = reps[rep]
        if comp > len(comps):
            return ""
        subs = comps[comp - 1]
        if sub > len(subs):
            return ""
        return subs[sub - 1].strip()

    def component_subs(self, field: int, comp: int, rep: int = 0) -> list[str]:
        reps = self.reps(field)
        if rep >= len(reps) or comp > len(reps[rep]):
            return []
        return reps[rep][comp - 1]


@dataclass
class Message:
    """A parsed message. ``segments`` keeps message order (groups are positional)."""

    segments: list[Segment]
    decoded: Decoded

    @property
    def msh(self) -> Segment:
        return self.segments[0]

    @property
    def message_type(self) -> tuple[str, str, str]:
        """MSH-9 as (message code, trigger event, message structure)."""
        return (self.msh.get(9, 1), self.msh.get(9, 2), self.msh.get(9, 3))

    @property
    def control_id(self) -> str:
        return self.msh.get(10)

    @property
    def version(self) -> str:
        return self.msh.get(12)

    def first(self, sid: str) -> Segment | None:
        return next((s for s in self.segments if s.sid == sid), None)

    def all(self, sid: str) -> list[Segment]:
        return [s for s in self.segments if s.sid == sid]

    def ids(self) -> list[str]:
        return [s.sid for s in self.segments]

    def __iter__(self) -> Iterator[Segment]:
        return iter(self.segments)


def _leaves(node) -> list:
    return [node] if isinstance(node, str) else list(node)


def _normalise_field(field, unescape) -> list[list[list[str]]]:
    reps = []
    for rep in _leaves(field):
        comps = []
        for comp in _leaves(rep):
            comps.append([unescape(s) if "\\" in s else s for s in _leaves(comp)])
        reps.append(comps)
    return reps


def parse_text(text: str, decoded: Decoded | None = None) -> Message:
    """Parse decoded text (``\\r`` separated) into a :class:`Message`."""
    text = text.strip("\r\n\x00 \t")
    if not text.startswith("MSH"):
        raise ParseError("MSH", "message does not start with an MSH segment")
    if len(text) < 8:
        raise ParseError("MSH", "MSH segment too short to hold the encoding characters")
    encoding_chars = text[4:8]
    field_sep = text[3]
    if field_sep.isalnum() or len(set(encoding_chars + field_sep)) != 5:
        raise ParseError("MSH-2", f"invalid encoding characters {text[3:8]!r}")
    lines = [ln for ln in text.split("\r") if ln.strip()]
    for n, line in enumerate(lines):
        sid = line[:3]
        if not _SEGMENT_ID.match(sid) or (len(line) > 3 and line[3] != field_sep):
            raise ParseError(f"segment {n + 1}", f"not an HL7 segment: {line[:20]!r}")
    for n, line in enumerate(lines[1:], start=2):
        if line[:3] in ("MSH", "BHS", "FHS", "BTS", "FTS"):
            raise ParseError(f"segment {n}", f"{line[:3]} inside a message: batches or "
                             "concatenated messages must be split before parsing")
    try:
        parsed = hl7.parse("\r".join(lines))
    except (ParseException, ValueError, IndexError, TypeError) as exc:
        raise ParseError("", f"HL7 parser: {exc}") from None
    segments: list[Segment] = []
    for idx, seg in enumerate(parsed):
        sid = str(seg[0])
        fields: list[list[list[list[str]]]] = [[[[sid]]]]
        if sid == "MSH":
            # MSH-1 is the field separator and MSH-2 the encoding characters: keep raw.
            fields.append([[[str(seg[1])]]])
            fields.append([[[str(seg[2])]]])
            rest = seg[3:]
        else:
            rest = seg[1:]
        for f in rest:
            flat = str(f)
            if _CHARSET_ESCAPE.search(flat):
                raise ParseError(f"{sid}-{len(fields)}",
                                 "in-field character-set escape (\\C..\\ or \\M..\\) is not supported")
            fields.append(_normalise_field(f, parsed.unescape))
        segments.append(Segment(sid=sid, index=idx, fields=fields))
    if decoded is None:
        decoded = Decoded(text=text, codec="str", declared=())
    return Message(segments=segments, decoded=decoded)


def parse_bytes(raw: bytes, *, default_charset: str = "ascii") -> Message:
    """Decode (MSH-18) and parse raw message bytes."""
    decoded = decode_message(raw, default_charset=default_charset)
    return parse_text(decoded.text, decoded)
