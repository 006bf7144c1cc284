"""MLLP listener with a real TCP client on 127.0.0.1: good, bad, duplicate and
malformed messages, half-closed connections; every ACK checked."""

from __future__ import annotations

import socket

import pytest

from adapters.mllp.server import FS, VT, Processor, frame, run_in_thread
from hie.ingest import list_failures

from .corpus import FACILITY, corpus, storage_file

pytestmark = pytest.mark.corpus
GENERIC = ("LAB-ORU-1.hl7", "LAB-ORU-2.hl7", "LRI_2.0-NG_CBC_Typ_Message.hl7", "ADT01-28.hl7")


@pytest.fixture
def listener(sqlite_node):  # noqa: ANN001, ANN201
    proc = Processor(sqlite_node, FACILITY)
    port, stop = run_in_thread(proc)
    yield port, proc, sqlite_node
    stop()


def _read_acks(sock: socket.socket, n: int) -> list[str]:
    buf, acks = b"", []
    sock.settimeout(20)
    while len(acks) < n:
        chunk = sock.recv(65536)
        if not chunk:
            break
        buf += chunk
        while bytes([FS, 0x0D]) in buf:
            body, buf = buf.split(bytes([FS, 0x0D]), 1)
            assert body[0] == VT
            raw = body[1:]
            acks.append(raw.decode("iso2022_jp" if b"\x1b" in raw else "ascii"))
    return acks


def _msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")


def _err(ack: str) -> list[str] | None:
    seg = next((s for s in ack.split("\r") if s.startswith("ERR")), None)
    return seg.split("|") if seg else None


def test_good_bad_duplicate_and_malformed_messages_get_the_right_acks(listener) -> None:  # noqa: ANN001
    port, proc, node = listener
    good = [(corpus("hl7v2", "generic-v2-microsoft", n).read_bytes()) for n in GENERIC]
    jp = storage_file("ADT-00").read_bytes()
    jp_lab = storage_file("OML-11").read_bytes()
    bad_date = jp.replace(b"|19480405|M|", b"|19481305|M|").replace(b"|20111220000001|", b"|BAD-DATE-1|")
    unsupported = corpus("hl7v2", "generic-v2-microsoft", "VXU.hl7").read_bytes()
    not_hl7 = b"this is not an HL7 message"
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"junk before any frame")
        for msg in good:
            sock.sendall(frame(msg))
        sock.sendall(frame(jp) + frame(jp_lab) + frame(bad_date) + frame(unsupported) + frame(not_hl7))
        sock.sendall(frame(good[0]))  # duplicate
        acks = _read_acks(sock, len(good) + 6)
    assert len(acks) == len(good) + 6
    for ack, msg in zip(acks[:len(good)], good, strict=True):
        ctrl = msg.split(b"\n")[0].lstrip(b"\xef\xbb\xbf").split(b"|")[9].decode()
        assert _msa(ack)[1:3] == ["AA", ctrl], ack
        assert _err(ack) is None
    assert _msa(acks[len(good)])[1:3] == ["AA", "20111220000001"]
    assert _msa(acks[len(good) + 1])[1] == "AA"
    # understood but not mappable: AE, the HL7 location in ERR-2, code in ERR-3
    msa, err = _msa(acks[len(good) + 2]), _err(acks[len(good) + 2])
    assert msa[1:3] == ["AE", "BAD-DATE-1"] and "19481305" in msa[3]
    assert err[2] == "PID^1^7^1" and err[3].startswith("101^")
    # unsupported message type: AR
    msa, err = _msa(acks[len(good) + 3]), _err(acks[len(good) + 3])
    assert msa[1] == "AR" and "VXU\\S\\V04" in msa[3] and err[3].startswith("200^")
    # not HL7 at all: AR without a control id
    msa = _msa(acks[len(good) + 4])
    assert msa[1:3] == ["AR", ""] and "MSH" in msa[3]
    # duplicate: the original ACK again, not ingested twice
    assert acks[len(good) + 5] == acks[0]
    assert proc.stats.duplicates == 1 and proc.stats.junk_bytes == len(b"junk before any frame")
    failures = list_failures(node, channel="mllp")
    assert len(failures) == 3
    assert {f.source.split(":", 2)[2] for f in failures} >= {"BAD-DATE-1"}


def test_half_closed_connection_still_gets_its_acks(listener) -> None:  # noqa: ANN001
    port, proc, _node = listener
    msg = corpus("hl7v2", "generic-v2-microsoft", "LAB-ORU-2.hl7").read_bytes()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(frame(msg) + frame(msg)[:-5])  # a second, unterminated frame
        sock.shutdown(socket.SHUT_WR)
        acks = _read_acks(sock, 2)
        assert len(acks) == 1 and _msa(acks[0])[1] == "AA"
        assert sock.recv(10) == b""  # the server closed after answering


def test_frame_interrupted_by_a_new_frame_is_discarded(listener) -> None:  # noqa: ANN001
    port, proc, _node = listener
    msg = corpus("hl7v2", "generic-v2-microsoft", "LAB-ORU-1.hl7").read_bytes()
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(bytes([VT]) + b"MSH|^~\\&|trunc" + frame(msg))
        acks = _read_acks(sock, 1)
    assert _msa(acks[0])[1] == "AA"
    assert proc.stats.junk_bytes > 0 and proc.stats.received == 1


def test_inbound_is_decoded_once_with_the_listeners_default_charset():
    """A message without MSH-18 on a listener configured for Shift_JIS is read (and its ACK
    encoded) in Shift_JIS, not ASCII."""
    from adapters.mllp.server import read_inbound

    raw = "MSH|^~\\&|APP|FAC|HIE|HIE|20261121||ADT^A08|C1|P|2.5\rPID|1||123||山田^太郎\r".encode("shift_jis")
    inbound, decoded = read_inbound(raw, "shift_jis")
    assert inbound.codec == "shift_jis" and inbound.control_id == "C1"
    assert decoded is not None and "山田" in decoded.text
    inbound, decoded = read_inbound(raw)  # HL7's default, ASCII: not decodable, nothing guessed
    assert inbound.codec == "ascii" and decoded is None
