"""Over MLLP, the SS-MIX2 sample yields the same resources per type as ``hie import
ssmix2`` of the same tree (SQLite and PostgreSQL; the corpus is HIE_CORPUS).

The sample reuses control ids (ten messages of one sender share 20111220000001): those
get AR naming the reuse and are kept in the failure store, never answered with another
message's AA; replaying the failure store completes the record. The sender sends the
storage's messages in the import's order with PID-3 set to the storage patient id (a
gateway forwarding the storage files the message under the patient the path names, as
the import does; in the sample, PID-3 of ten files names other patient numbers)."""

from __future__ import annotations

import re
import socket
from pathlib import Path

import pytest

from adapters.feed import Feed, replay_one
from adapters.mllp.server import Processor, frame, run_in_thread
from adapters.ssmix2.importer import import_tree
from adapters.ssmix2.storage import StorageNameError, parse_path, walk
from hie.ingest import list_failures
from tests.conftest import make_node

from .corpus import FACILITY, storage_root
from .mllp_support import counts, msa, read_acks

pytestmark = pytest.mark.corpus
TYPES = ("Patient", "Observation", "DiagnosticReport", "MedicationRequest", "MedicationAdministration", "Condition",
         "AllergyIntolerance", "Encounter", "ServiceRequest", "Specimen", "ImagingStudy", "Coverage",
         "NutritionOrder", "Organization")
_PID3 = re.compile(rb"(\rPID\|[^|\r]*\|[^|\r]*\|)[^|^\r]*")


@pytest.fixture
def reference(node, tmp_path: Path, request):  # noqa: ANN001, ANN201
    """A second, empty node on the same kind of database (the directory import's)."""
    if node.engine.dialect.name == "sqlite":
        url = f"sqlite:///{tmp_path / 'reference.sqlite'}"
    else:
        url = request.getfixturevalue("pg_server").create("hie_ref")
    ref = make_node(url, tmp_path)
    yield ref
    ref.close()


def _messages(root: Path) -> list[bytes]:
    files = []
    for path in walk(root):
        try:
            files.append(parse_path(root, path))
        except StorageNameError:
            continue  # the import rejects a misnamed file; a gateway cannot index it either
    files.sort(key=lambda f: f.sort_key)
    return [_PID3.sub(lambda m, f=f: m.group(1) + f.patient_id.encode(), f.path.read_bytes(), count=1)
            for f in files]


def test_ssmix2_sample_over_mllp_yields_what_the_directory_import_yields(node, reference) -> None:  # noqa: ANN001
    root = storage_root()
    import_tree(reference, root, FACILITY, state_path=Path(str(reference.settings.data_dir)) / "state.json")
    expected = counts(reference, TYPES)

    proc = Processor(node, FACILITY)
    port, stop = run_in_thread(proc)
    acks = []
    try:
        messages = _messages(root)
        for message in messages:  # one at a time, as a sender waiting for each ACK does
            with socket.create_connection(("127.0.0.1", port)) as sock:
                sock.sendall(frame(message))
                acks += read_acks(sock, 1)
    finally:
        stop()
    assert len(acks) == len(messages)
    codes = [msa(a)[1] for a in acks]
    reused = [a for a in acks if msa(a)[1] == "AR" and "already used by another message" in msa(a)[3]]
    assert codes.count("AA") + codes.count("AR") == len(messages) and len(reused) >= 9
    failures = list_failures(node, channel="mllp")
    assert len(failures) == codes.count("AR")  # every message not accepted is kept
    feed = Feed(node)
    replayed = [replay_one(node, feed, f) for f in failures]
    # what still fails is what the directory import rejects too (RAS^O17 with a TQ1)
    still = [why for ok, why in replayed if not ok]
    assert all("segment sequence does not match RAS_O17" in why for why in still), still
    assert counts(node, TYPES) == expected
