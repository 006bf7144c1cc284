"""Feed-derived logical ids are keyed (HMAC-SHA256 under the node's feed-id key): nobody
without the key can compute which id a patient number gets, so ids cannot be used to
probe which patient numbers a hospital has; the same node always computes the same ids."""

from __future__ import annotations

import hashlib
import multiprocessing
import stat
from pathlib import Path

import pytest

from adapters.feed import Feed
from adapters.hl7v2.ids import KEY_ENV, FeedIds, FeedKeyError, node_feed_ids
from adapters.hl7v2.mapping import map_message
from hie.ingest import existing

from .mllp_support import FACILITY, adt_message


def test_the_key_file_is_created_once_with_mode_0600(tmp_path: Path) -> None:
    ids = node_feed_ids(tmp_path, env={})
    path = tmp_path / "keys" / "feed-id.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(bytes.fromhex(path.read_text().strip())) == 32
    assert node_feed_ids(tmp_path, env={}) == ids  # the same node: the same key, the same ids
    assert ids.patient_id(FACILITY, "123") == node_feed_ids(tmp_path, env={}).patient_id(FACILITY, "123")
    assert repr(ids) == "FeedIds()"  # the key never appears in logs or tracebacks


def _first_use(data_dir: str) -> str:
    return node_feed_ids(Path(data_dir), env={}).patient_id(FACILITY, "1")


def test_concurrent_first_use_agrees_on_one_key(tmp_path: Path) -> None:
    with multiprocessing.get_context("spawn").Pool(4) as pool:
        ids = pool.map(_first_use, [str(tmp_path)] * 8)
    assert len(set(ids)) == 1


def test_ids_depend_on_the_key_and_are_not_the_plain_hash(tmp_path: Path) -> None:
    a, b = node_feed_ids(tmp_path / "a", env={}), node_feed_ids(tmp_path / "b", env={})
    assert a.patient_id(FACILITY, "9999013") != b.patient_id(FACILITY, "9999013")
    plain = hashlib.sha256("\x1f".join(("Patient", FACILITY, "9999013")).encode()).hexdigest()[:32]
    assert plain not in {a.patient_id(FACILITY, "9999013"), b.patient_id(FACILITY, "9999013")}
    assert len(a.patient_id(FACILITY, "9999013")) == 32


def test_the_key_may_come_from_the_environment(tmp_path: Path) -> None:
    key = "ab" * 32
    ids = node_feed_ids(tmp_path, env={KEY_ENV: key})
    assert ids == FeedIds(bytes.fromhex(key)) and not (tmp_path / "keys").exists()
    with pytest.raises(FeedKeyError, match=f"{KEY_ENV}: the feed-id key must be hexadecimal"):
        node_feed_ids(tmp_path, env={KEY_ENV: "not hex"})
    with pytest.raises(FeedKeyError, match="at least 32 bytes"):
        node_feed_ids(tmp_path, env={KEY_ENV: "ab" * 16})


def test_a_feed_writes_keyed_ids_and_a_resend_reaches_the_same_resource(node) -> None:  # noqa: ANN001
    feed = Feed(node)
    assert feed.ids == node_feed_ids(node.settings.data_dir)
    message = adt_message("ID-1", "P-ID-1")
    result = map_message(message, facility=FACILITY, source="t", ids=feed.ids)
    feed.submit(result, facility=FACILITY, source="t")
    again = map_message(message, facility=FACILITY, source="t", ids=Feed(node).ids)  # a new process: same ids
    assert again.bundle["entry"][0]["request"]["url"] == result.bundle["entry"][0]["request"]["url"]
    assert existing(node, [f"Patient/{again.patient_id}"])
    other_node = FeedIds(b"\x02" * 32)
    assert map_message(message, facility=FACILITY, source="t", ids=other_node).patient_id != result.patient_id
