"""MLLP: AA only after commit, nothing lost, duplicates known across restarts.

Colliding control ids (identical resend; same id, other content; same id, other sender)
with a listener restart in between; a kill -9 of a listener process in the middle of a
burst; SQLite and PostgreSQL."""

from __future__ import annotations

import signal
import socket
from pathlib import Path

import pytest

from adapters.feed import Feed, replay_one
from adapters.hl7v2.ids import node_feed_ids
from adapters.hl7v2.mapping import map_message
from adapters.mllp.server import Processor, frame, run_in_thread
from hie.app import Node
from hie.config import Settings
from hie.ingest import existing, list_failures

from .mllp_support import FACILITY, adt_message, counts, distinct_patient, err, listener_process, msa, read_acks


def _send(port: int, *messages: bytes) -> list[str]:
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(frame(m) for m in messages))
        return read_acks(sock, len(messages))


def _run(node, *messages: bytes) -> tuple[list[str], Processor]:  # noqa: ANN001
    """Start a listener (fresh process memory: a restart), send, stop."""
    proc = Processor(node, FACILITY)
    port, stop = run_in_thread(proc)
    try:
        return _send(port, *messages), proc
    finally:
        stop()


def _patient_url(node, message: bytes) -> str:  # noqa: ANN001
    result = map_message(message, facility=FACILITY, source="test", ids=Feed(node).ids)
    return f"Patient/{result.patient_id}"


def test_identical_resend_after_a_restart_gets_the_original_ack_and_is_not_stored_again(node) -> None:  # noqa: ANN001
    first = adt_message("CTRL-1", "P-1")
    (ack1,), p1 = _run(node, first)
    assert msa(ack1)[1:3] == ["AA", "CTRL-1"] and p1.stats.accepted == 1
    (ack2,), p2 = _run(node, first.replace(b"\r", b"\r\n"))  # same content, other line endings
    assert ack2 == ack1  # byte for byte, including the ACK's own MSH-10: the stored answer
    assert p2.stats.duplicates == 1 and p2.stats.accepted == 0
    assert existing(node, [_patient_url(node, first)])
    assert list_failures(node, channel="mllp") == []
    retry = first.replace(b"|20261201120000||ADT^A08", b"|20261201120500||ADT^A08")  # a new MSH-7 only
    assert retry != first
    (ack3,), p3 = _run(node, retry)
    assert ack3 == ack1 and p3.stats.duplicates == 1


def test_same_control_id_with_other_content_gets_ar_and_is_kept_for_replay(node) -> None:  # noqa: ANN001
    first, second = adt_message("CTRL-2", "P-2"), adt_message("CTRL-2", "P-3", family="SUZUKI")
    (ack1,), _ = _run(node, first)
    assert msa(ack1)[1] == "AA"
    (ack2,), p2 = _run(node, second)
    m, e = msa(ack2), err(ack2)
    assert m[1:3] == ["AR", "CTRL-2"] and "already used by another message" in m[3]
    assert e is not None and e[3].startswith("205^") and e[2].startswith("MSH^1^10")
    assert p2.stats.reused == 1 and p2.stats.rejected == 1
    assert not existing(node, [_patient_url(node, second)])  # not stored under the first message's AA
    (failure,) = list_failures(node, channel="mllp")
    assert bytes(failure.payload) == second and "CTRL-2" in failure.error
    ok, why = replay_one(node, Feed(node), failure)  # the operator replays it: nothing was lost
    assert ok, why
    assert existing(node, [_patient_url(node, second), _patient_url(node, first)])
    (again,), _ = _run(node, first)  # the id still answers for the first message
    assert again == ack1


def test_same_control_id_from_another_sender_is_another_message(node) -> None:  # noqa: ANN001
    a = adt_message("CTRL-3", "P-4", app="HIS", facility="HOSP")
    b = adt_message("CTRL-3", "P-5", app="LAB", facility="HOSP")
    (ack_a,), _ = _run(node, a)
    (ack_b,), p = _run(node, b)
    assert msa(ack_a)[1] == "AA" and msa(ack_b)[1] == "AA" and p.stats.accepted == 1
    assert existing(node, [_patient_url(node, a), _patient_url(node, b)]) == {
        _patient_url(node, a), _patient_url(node, b)}


def test_a_handler_crash_answers_ae_and_keeps_the_message(node, monkeypatch) -> None:  # noqa: ANN001
    message = adt_message("CTRL-4", "P-6")
    proc = Processor(node, FACILITY)

    def boom(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise RuntimeError("disk on fire")

    monkeypatch.setattr(proc.feed, "submit", boom)
    port, stop = run_in_thread(proc)
    try:
        (ack,) = _send(port, message)
    finally:
        stop()
    assert msa(ack)[1:3] == ["AE", "CTRL-4"] and "disk on fire" not in ack
    (failure,) = list_failures(node, channel="mllp")
    assert bytes(failure.payload) == message and "disk on fire" in failure.error
    (ack2,), p2 = _run(node, message)  # nothing was accepted: the resend is processed
    assert msa(ack2)[1] == "AA" and p2.stats.accepted == 1


@pytest.fixture(params=["sqlite", "postgresql"])
def database(request, tmp_path: Path):  # noqa: ANN001, ANN201
    """An empty database URL of each kind for listener processes."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'listener.sqlite'}"
    return request.getfixturevalue("pg_server").create("hie_mllp")


def test_kill_9_mid_burst_loses_nothing(database: str, tmp_path: Path) -> None:
    data_dir = tmp_path / "data"
    burst = [adt_message(f"BURST-{i:03d}", f"B{i:04d}", **distinct_patient(i)) for i in range(60)]
    proc, port = listener_process(database, data_dir, "--facility", FACILITY)
    try:
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"".join(frame(m) for m in burst))
            acks = read_acks(sock, 5)
            proc.send_signal(signal.SIGKILL)
            proc.wait(10)
            acks += read_acks(sock, len(burst), timeout=5)
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait()
    assert 5 <= len(acks) < len(burst), "the kill did not land in the middle of the burst"
    assert all(msa(a)[1] == "AA" for a in acks)
    acked = {msa(a)[2]: a for a in acks}

    node = Node(Settings(database_url=database, data_dir=data_dir, base_url="http://testserver/fhir"))
    try:
        ids = node_feed_ids(data_dir)
        url = {m: "Patient/" + map_message(m, facility=FACILITY, source="t", ids=ids).patient_id for m in burst}
        stored = existing(node, url.values())
        for m in burst:  # every AA'd message is stored
            if f"BURST-{burst.index(m):03d}" in acked:
                assert url[m] in stored
        proc, port = listener_process(database, data_dir, "--facility", FACILITY)
        try:
            again = _send(port, *burst)  # the sender resends everything it has no AA for (and more)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.communicate(timeout=30)
        assert [msa(a)[1] for a in again] == ["AA"] * len(burst)
        for a in again:
            if msa(a)[2] in acked:
                assert a == acked[msa(a)[2]]  # already accepted: the original answer
        assert existing(node, url.values()) == set(url.values())
        assert counts(node, ("Patient",)) == {"Patient": len(burst)}  # each once
        assert list_failures(node, channel="mllp") == []
    finally:
        node.close()


def test_a_message_without_msh18_replays_with_the_listeners_charset(node, monkeypatch) -> None:  # noqa: ANN001
    message = ("MSH|^~\\&|HIS|HOSP|HIE|HIE|20261201120000||ADT^A08^ADT_A01|SJ-1|P|2.5\rEVN||20261201120000\r"
               "PID|1||SJ1^^^^PI||山田^太郎^^^^^L||19700101|M\rPV1|1|O\r").encode("shift_jis")
    proc = Processor(node, FACILITY, default_charset="shift_jis")

    def down(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        raise ConnectionError("database went away")

    monkeypatch.setattr(proc.feed, "submit", down)
    assert msa(proc.handle(message).decode("shift_jis"))[1] == "AE"
    (failure,) = list_failures(node, channel="mllp")
    ok, why = replay_one(node, Feed(node), failure)  # HL7's default, ASCII: not decodable
    assert not ok and "not valid ascii" in why
    ok, why = replay_one(node, Feed(node), failure, default_charset="shift_jis")
    assert ok, why
    assert existing(node, [_patient_url_sjis(node, message)])


def _patient_url_sjis(node, message: bytes) -> str:  # noqa: ANN001
    result = map_message(message, facility=FACILITY, source="t", ids=Feed(node).ids, default_charset="shift_jis")
    return f"Patient/{result.patient_id}"


def test_pruned_control_ids_bind_nothing(node) -> None:  # noqa: ANN001
    from adapters.mllp import receipts

    first, second = adt_message("CTRL-P", "P-P1"), adt_message("CTRL-P", "P-P2", family="SATO")
    (ack,), _ = _run(node, first)
    assert msa(ack)[1] == "AA"
    assert receipts.prune(node, older_than_us=0) == 0  # nothing that old: still known
    (ack,), _ = _run(node, second)
    assert msa(ack)[1] == "AR"
    assert receipts.prune(node, older_than_us=node.clock.now_us() + 1) == 1
    (ack,), p = _run(node, second)  # forgotten: the id is free again
    assert msa(ack)[1] == "AA" and p.stats.accepted == 1
    assert existing(node, [_patient_url(node, second)])
