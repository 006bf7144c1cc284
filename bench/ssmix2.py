"""Benchmark: SS-MIX2 directory import and MLLP ingest rates (messages/s).

Generates a standardized-storage tree of ``--patients`` x 19 messages from the
19 valid SS-MIX2 sample files (nhoHQ SSMIX2DataTestingTool, in $HIE_CORPUS), varying
the patient id and the kanji/kana names per patient (decode ISO-2022-JP, substitute,
re-encode: never byte-patching inside shifted runs), imports it into a fresh node
(``--database-url``, default a temporary SQLite file), then sends ``--mllp`` messages
over one MLLP connection and waits for every ACK. The directory import runs once per
``--workers`` count (import processes partitioned by patient, as
``hie import ssmix2 --workers``), each into a fresh database.

    .venv/bin/python bench/ssmix2.py --patients 527   # 10,013 messages
"""

from __future__ import annotations

import argparse
import os
import socket
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

FAMILIES = [("佐藤", "サトウ"), ("鈴木", "スズキ"), ("高橋", "タカハシ"), ("田中", "タナカ"), ("伊藤", "イトウ"),
            ("渡辺", "ワタナベ"), ("山本", "ヤマモト"), ("中村", "ナカムラ"), ("小林", "コバヤシ"), ("加藤", "カトウ")]
GIVEN = [("太郎", "タロウ"), ("花子", "ハナコ"), ("一郎", "イチロウ"), ("美咲", "ミサキ"), ("健", "ケン"), ("陽子", "ヨウコ")]
SAMPLE_PID = "9999013"


def corpus_root() -> Path:
    base = Path(os.environ.get("HIE_CORPUS", Path(__file__).resolve().parents[1].parent / "shared" / "data"))
    return base / "hl7v2" / "ssmix2-nhoHQ" / "storage"


def variant(raw: bytes, pid: str, n: int) -> bytes:
    text = raw.decode("iso2022_jp")
    fam, giv = FAMILIES[n % len(FAMILIES)], GIVEN[(n // len(FAMILIES)) % len(GIVEN)]
    text = text.replace("患者^太郎", f"{fam[0]}^{giv[0]}").replace("カンジャ^タロウ", f"{fam[1]}^{giv[1]}")
    text = text.replace(SAMPLE_PID, pid)
    return text.encode("iso2022_jp")


def generate(dest: Path, patients: int) -> int:
    src = corpus_root() / "999" / "901" / SAMPLE_PID
    files = [p for p in src.rglob("*") if p.is_file()]
    count = 0
    for n in range(patients):
        pid = f"{1000000 + n:07d}"
        for f in files:
            rel = f.relative_to(src)
            out = dest / pid[:3] / pid[3:6] / pid / rel.parent / f.name.replace(SAMPLE_PID, pid)
            out.parent.mkdir(parents=True, exist_ok=True)
            out.write_bytes(variant(f.read_bytes(), pid, n))
            count += 1
    return count


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--patients", type=int, default=527)
    ap.add_argument("--mllp", type=int, default=2000, help="messages to send over MLLP")
    ap.add_argument("--database-url", default=None)
    ap.add_argument("--facility", default="2212345670")
    ap.add_argument("--workers", default=None, help="comma-separated import process counts (default: 1,cores)")
    args = ap.parse_args()

    from hie.app import Node
    from hie.config import Settings
    from adapters.ssmix2.importer import import_tree
    from adapters.mllp.server import FS, Processor, frame, run_in_thread

    from hie.loader import default_workers

    work = Path(tempfile.mkdtemp(prefix="bench-ssmix2-"))
    t = time.perf_counter()
    n = generate(work / "storage", args.patients)
    print(f"generated {n} messages for {args.patients} patients in {time.perf_counter() - t:.1f}s", flush=True)

    counts = [int(w) for w in (args.workers or ",".join(dict.fromkeys(["1", str(default_workers())]))).split(",")]
    for workers in counts:
        if args.database_url and len(counts) > 1:
            sys.exit("--database-url needs a single --workers count (each run needs an empty database)")
        url = args.database_url or f"sqlite:///{work}/bench-{workers}.db"
        node = Node(Settings(database_url=url, data_dir=work, base_url="http://bench/fhir"))
        node.upgrade()
        state = work / f"state-{workers}.json"
        report = import_tree(node, work / "storage", args.facility, state_path=state, workers=workers)
        mapped = report.counts().get("mapped", 0)
        print(f"directory import, workers={workers}: {mapped} mapped, {report.counts()} in {report.seconds:.1f}s "
              f"= {mapped / report.seconds:.0f} messages/s", flush=True)
        again = import_tree(node, work / "storage", args.facility, state_path=state, workers=workers)
        print(f"re-import (state file): {again.counts()} in {again.seconds:.1f}s", flush=True)

    # MLLP: new patients, so every message is new work.
    src = corpus_root() / "999" / "901" / SAMPLE_PID
    kinds = {"ADT-00", "OML-11", "OMP-01", "OMG-13", "PPR-01", "ADT-22"}
    samples = [p.read_bytes() for p in src.rglob("*") if p.is_file() and p.parent.name in kinds]
    messages = []
    i = 0
    while len(messages) < args.mllp:
        pid = f"{2000000 + i:07d}"
        for s in samples:
            text = variant(s, pid, i).decode("iso2022_jp")
            head, _, rest = text.partition("\r")
            fields = head.split("|")
            fields[9] = f"BENCH{len(messages):08d}"  # unique MSH-10, or the listener dedupes
            messages.append(("|".join(fields) + "\r" + rest).encode("iso2022_jp"))
        i += 1
    messages = messages[:args.mllp]
    proc = Processor(node, args.facility)
    port, stop = run_in_thread(proc)
    t = time.perf_counter()
    acks = 0
    with socket.create_connection(("127.0.0.1", port)) as sock:
        sock.sendall(b"".join(frame(m) for m in messages))
        sock.shutdown(socket.SHUT_WR)
        buf = b""
        while True:
            chunk = sock.recv(1 << 16)
            if not chunk:
                break
            buf += chunk
        acks = buf.count(bytes([FS, 0x0D]))
    secs = time.perf_counter() - t
    stop()
    s = proc.stats
    print(f"MLLP: {acks} ACKs for {len(messages)} messages (AA {s.accepted}, AE {s.errors}, AR {s.rejected}, "
          f"duplicates {s.duplicates}) in {secs:.1f}s = {len(messages) / secs:.0f} messages/s")
    node.close()


if __name__ == "__main__":
    main()
