"""Character-set detection (MSH-18) and decoding of raw HL7 v2 bytes.

Implements HL7 v2.5 section 2.15.9.18 (MSH-18 character set, table 0211) and
section 2.7 (use of escape sequences / character sets) for the sets Japanese systems
use. SS-MIX2 messages declare ``~ISO IR87`` (JIS X 0208 via ISO 2022 escape
sequences, i.e. ISO-2022-JP) with ``ISO 2022-1994`` in MSH-20:
https://www.hl7.eu/HL7v2x/v25/std25/ch02.html#Heading126 and the JAHIS
"data exchange conventions" (JAHIS 臨床検査データ交換規約 etc., section "文字コード").

Why decode before splitting: in ISO-2022-JP the two bytes of a JIS X 0208
character are each in 0x21..0x7E, which covers ``|`` (0x7C), ``^`` (0x5E), ``~``
(0x7E), ``\\`` (0x5C) and ``&`` (0x26). Splitting the raw bytes on field or
component separators would cut characters in half (e.g. 「ポ」 is 0x25 0x5D, and
many kanji contain 0x7C or 0x5E). Segment terminators (0x0D, 0x0A) and MLLP frame
bytes never occur inside a shifted run, so only those are safe on raw bytes. This
module therefore reads MSH-18 by walking the MSH bytes while tracking the ISO 2022
shift state, decodes the whole message, and leaves all splitting to the parser.
"""

from __future__ import annotations

import codecs
from dataclasses import dataclass

from .errors import DecodeError, ParseError

ESC = 0x1B
UTF8_BOM = codecs.BOM_UTF8

# Table 0211 values (normalised: upper case, spaces removed) -> Python codec.
# ISO IR6 is ASCII, the HL7 default when MSH-18 is empty.
_SINGLE_SETS = {
    "ASCII": "ascii",
    "ISOIR6": "ascii",
    "ISOIR100": "latin-1",
    "8859/1": "latin-1",
    "UNICODEUTF-8": "utf-8",
    "ISOIR192": "utf-8",
    "UNICODE": "utf-16",
    "UNICODEUTF-16": "utf-16",
}
# ISO 2022 code-extension sets used in Japan. IR87 = JIS X 0208, IR159 = JIS X 0212,
# IR13 = JIS X 0201 katakana, IR14 = JIS X 0201 roman.
_ISO2022_JP_SETS = {"ISOIR87", "ISOIR159", "ISOIR13", "ISOIR14"}


@dataclass(frozen=True)
class Decoded:
    """A decoded message: the text with segments separated by ``\\r`` and how it was read."""

    text: str
    codec: str
    declared: tuple[str, ...]


def _norm(value: str) -> str:
    return value.replace(" ", "").replace("_", "").upper()


def msh_fields(raw: bytes) -> list[bytes]:
    """Split the MSH segment of ``raw`` into fields, honouring ISO 2022 shift state.

    Field separators inside a double-byte run (after ``ESC $ B`` / ``ESC $ @`` /
    ``ESC $ ( D`` and before ``ESC ( B`` / ``ESC ( J``) are character bytes, not
    separators. Returns the fields with MSH-1 at index 1 (index 0 is ``MSH``).
    """
    if raw.startswith(UTF8_BOM):
        raw = raw[len(UTF8_BOM):]
    if raw[:3] != b"MSH" or len(raw) < 8:
        raise ParseError("MSH", "message does not start with an MSH segment")
    sep = raw[3]
    fields: list[bytes] = [b"MSH", bytes([sep])]
    cur = bytearray()
    double = False
    i = 4
    n = len(raw)
    while i < n:
        b = raw[i]
        if b == ESC:
            seq = raw[i:i + 4]
            if seq[1:3] == b"$(" or seq[1:3] == b"$)":
                double, step = True, 4
            elif seq[1:2] == b"$":
                double, step = True, 3
            elif seq[1:2] in (b"(", b")"):
                double, step = False, 3
            else:
                raise DecodeError("MSH", f"unknown ISO 2022 escape sequence {seq!r}")
            cur += raw[i:i + step]
            i += step
            continue
        if b in (0x0D, 0x0A):
            break
        if b == sep and not double:
            fields.append(bytes(cur))
            cur = bytearray()
        else:
            cur.append(b)
        i += 1
    fields.append(bytes(cur))
    return fields


def declared_charsets(raw: bytes) -> tuple[str, ...]:
    """The character sets MSH-18 declares (repetitions, normalised; may be empty)."""
    fields = msh_fields(raw)
    if len(fields) <= 18:
        return ()
    msh2 = fields[2] if len(fields) > 2 else b""
    rep = chr(msh2[1]) if len(msh2) > 1 else "~"
    value = fields[18].decode("ascii", errors="strict") if fields[18].isascii() else None
    if value is None:
        raise DecodeError("MSH-18", "MSH-18 contains non-ASCII bytes")
    return tuple(_norm(v) for v in value.split(rep))


def choose_codec(declared: tuple[str, ...], *, bom: bool, default: str = "ascii") -> str:
    """Pick the codec for the declared MSH-18 character sets.

    An empty first repetition means the default single-byte set (ISO IR6) with the
    following repetitions as code extensions, which is how JAHIS writes ``~ISO IR87``.
    """
    names = [d for d in declared if d]
    if not names:
        return "utf-8" if bom else default
    iso2022 = [n for n in names if n in _ISO2022_JP_SETS]
    other = [n for n in names if n not in _ISO2022_JP_SETS and n != "ISOIR6"]
    if iso2022:
        if other:
            raise DecodeError("MSH-18", f"cannot combine character sets {declared!r}")
        # iso2022_jp_2 covers IR87 and IR159; IR13 (half-width katakana) needs _ext.
        if "ISOIR13" in iso2022:
            return "iso2022_jp_ext"
        if "ISOIR159" in iso2022:
            return "iso2022_jp_2"
        return "iso2022_jp"
    if len(other) > 1:
        raise DecodeError("MSH-18", f"cannot combine character sets {declared!r}")
    if not other:
        return "ascii"
    codec = _SINGLE_SETS.get(other[0])
    if codec is None:
        raise DecodeError("MSH-18", f"unsupported character set {other[0]!r} (HL7 table 0211)")
    return codec


def decode_message(raw: bytes, *, default_charset: str = "ascii") -> Decoded:
    """Decode one message's raw bytes to text with ``\\r`` segment terminators.

    Strict: a byte sequence invalid in the declared set is a :class:`DecodeError`
    (never replaced or guessed). Bytes with ISO 2022 escapes in a message that
    declares no ISO 2022 set are rejected too. ``default_charset`` is used only when
    MSH-18 is empty (HL7 says ASCII; some senders are configured otherwise).
    """
    if not raw or not raw.strip():
        raise ParseError("", "empty message")
    bom = raw.startswith(UTF8_BOM)
    declared = declared_charsets(raw)
    codec = choose_codec(declared, bom=bom, default=default_charset)
    body = raw[len(UTF8_BOM):] if bom else raw
    if not codec.startswith("iso2022") and ESC in body and codec in ("ascii", "latin-1", "utf-8"):
        raise DecodeError("MSH-18", "message contains ISO 2022 escape sequences but MSH-18 "
                          "does not declare an ISO 2022 character set")
    try:
        text = body.decode(codec)
    except UnicodeDecodeError as exc:
        segment = _segment_at(body, exc.start)
        raise DecodeError(segment or "MSH-18",
                          f"bytes {exc.start}..{exc.end} are not valid {codec}: {exc.reason}") from None
    # Segment terminator is CR; accept LF and CRLF (common in files), normalise to CR.
    text = text.replace("\r\n", "\r").replace("\n", "\r")
    return Decoded(text=text, codec=codec, declared=declared)


def _segment_at(body: bytes, offset: int) -> str:
    start = max(body.rfind(b"\r", 0, offset), body.rfind(b"\n", 0, offset)) + 1
    seg = body[start:start + 3]
    return seg.decode("ascii", errors="replace") if seg.isalnum() else ""
