"""Decoding and parsing: MSH-18 detection, ISO-2022-JP, delimiters inside kanji, grammars."""

from __future__ import annotations

import pytest

from adapters.hl7v2.charset import decode_message, declared_charsets, msh_fields
from adapters.hl7v2.errors import DecodeError, ParseError
from adapters.hl7v2.mapping import map_message
from adapters.hl7v2.message import parse_bytes, parse_text

from .corpus import FACILITY, IDS, storage_file

MSH = "MSH|^~\\&|HIS|SEND|GW|RCV|20111220||ADT^A08^ADT_A01|C1|P|2.5||||||~ISO IR87||ISO 2022-1994\r"


def _jis(text: str) -> bytes:
    return text.encode("iso2022_jp")


def test_kanji_whose_jis_bytes_contain_delimiters_survive_parsing() -> None:
    # 「ポ」 is 0x25 0x5D and 「｜」-like bytes occur in many kanji; 「漢」 = 0x34 0x41,
    # 「山」 = 0x3B 0x33. Pick characters whose JIS bytes include '|' (0x7C) or '^' (0x5E).
    tricky = [ch for ch in "ポ係彦歯鼻駅岡宮俣辻" if any(b in (0x7C, 0x5E, 0x7E, 0x5C, 0x26)
                                                      for b in ch.encode("iso2022_jp")[3:-3])]
    assert tricky, "test needs characters whose JIS bytes look like delimiters"
    family = "".join(tricky)
    raw = _jis(MSH + f"EVN||20111220\rPID|1||123||{family}^太郎^^^^^L^I\r")
    shifted = raw.split(b"PID|1||123||\x1b$B", 1)[1].split(b"\x1b(B", 1)[0]
    assert set(shifted) & {0x7C, 0x5E, 0x7E, 0x5C, 0x26}, "raw bytes must contain delimiter look-alikes"
    msg = parse_bytes(raw)
    assert msg.first("PID").get(5, 1) == family
    assert msg.first("PID").get(5, 2) == "太郎"


def test_msh18_read_with_shift_state_when_msh_contains_kanji() -> None:
    raw = _jis("MSH|^~\\&|HIS|SEND|GW|RCV|20110701||RAS^O17^RAS_O17|C|P|2.5|番号|||||~ISOIR87||ISO 2022-1994\r")
    assert declared_charsets(raw) == ("", "ISOIR87")
    assert msh_fields(raw)[13] == "番号".encode("iso2022_jp")


def test_undeclared_iso2022_escapes_are_rejected_not_guessed() -> None:
    raw = _jis("MSH|^~\\&|A|B|C|D|2011||ADT^A08|1|P|2.5\rPID|1||1||患者^太郎\r")
    with pytest.raises(DecodeError) as exc:
        decode_message(raw)
    assert exc.value.location == "MSH-18"


def test_invalid_bytes_in_declared_charset_are_a_decode_error() -> None:
    raw = MSH.encode("ascii") + b"PID|1||1||\x1b$B\xff\xfe\x1b(B\r"
    with pytest.raises(DecodeError):
        decode_message(raw)


def test_utf8_bom_and_lf_separators() -> None:
    raw = b"\xef\xbb\xbfMSH|^~\\&|A|B|C|D|2011||ADT^A08|1|P|2.5\nPID|1||1||Doe^John\n"
    msg = parse_bytes(raw)
    assert msg.ids() == ["MSH", "PID"]
    assert msg.first("PID").get(5, 2) == "John"


def test_unsupported_charset_named_with_location() -> None:
    raw = b"MSH|^~\\&|A|B|C|D|2011||ADT^A08|1|P|2.5||||||KLINGON\r"
    with pytest.raises(DecodeError) as exc:
        decode_message(raw)
    assert exc.value.location == "MSH-18"


def test_escape_sequences_are_unescaped() -> None:
    msg = parse_text("MSH|^~\\&|A|B|C|D|2011||ORU^R01|1|P|2.5\rOBX|1|ST|X^Y^L||a\\T\\b\\F\\c\r")
    assert msg.first("OBX").get(5) == "a&b|c"


def test_second_msh_inside_a_message_is_a_parse_error() -> None:
    with pytest.raises(ParseError):
        parse_text("MSH|^~\\&|A|B|C|D|2011||ADT^A08|1|P|2.5\rPID|1\rMSH\r")


def test_scrambled_segment_order_is_rejected_with_the_out_of_place_segment() -> None:
    raw = _jis("MSH|^~\\&|HIS|SEND|GW|RCV|20110701||RAS^O17^RAS_O17|C|P|2.5||||||~ISO IR87||ISO 2022-1994\r"
               "PID|1||9999013||患者^太郎^^^^^L^I\rORC|NW|1\rRXA|0|1|201107010830||1^x^HOT9|1\rRXR|PO\r"
               "TQ1|1\r")
    with pytest.raises(ParseError) as exc:
        map_message(raw, facility=FACILITY, source="t", ids=IDS)
    assert exc.value.location.startswith("TQ1")
    assert "segment sequence" in exc.value.reason


def test_sample_files_decode_as_iso2022jp() -> None:
    msg = parse_bytes(storage_file("ADT-00").read_bytes())
    assert msg.decoded.codec == "iso2022_jp"
    assert msg.message_type == ("ADT", "A08", "ADT_A01")
