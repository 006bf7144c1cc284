"""SIGTERM (how systemd, Docker and Kubernetes stop a service) of the long-running commands:
``hie serve`` leaves no process behind (its supervised audit flusher included);
``hie listen mllp`` finishes, prints its counts and exits 0. Real processes, real ports."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from adapters.mllp.server import frame

from .mllp_support import adt_message, msa, read_acks, wait_port


def _children(pid: int) -> set[int]:
    """Live descendants of ``pid`` (from /proc), excluding zombies."""
    found: set[int] = set()
    frontier = [pid]
    while frontier:
        parent = frontier.pop()
        for task in Path(f"/proc/{parent}/task").glob("*"):
            try:
                kids = (task / "children").read_text().split()
            except OSError:
                continue
            for k in map(int, kids):
                if k not in found and _alive(k):
                    found.add(k)
                    frontier.append(k)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _env(tmp_path: Path) -> dict[str, str]:
    env = dict(os.environ)
    env.update(HIE_DATA_DIR=str(tmp_path / "data"), HIE_DATABASE_URL=f"sqlite:///{tmp_path / 'hie.sqlite'}")
    env.pop("HIE_AUDIT_FLUSHER", None)
    return env


@pytest.mark.skipif(not Path("/proc/self/task").exists(), reason="needs Linux /proc to list child processes")
def test_sigterm_of_hie_serve_leaves_no_process_behind(tmp_path: Path) -> None:
    port = _free_port()
    log = tmp_path / "serve.log"
    with log.open("wb") as out_file:  # a file, not a pipe: a leftover child would hold a pipe open
        proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "serve", "--no-demo", "--port", str(port),
                                 "--log-level", "warning"], env=_env(tmp_path),
                                stdout=out_file, stderr=subprocess.STDOUT)
    try:
        wait_port(port, proc)
        deadline = time.monotonic() + 30
        while not _children(proc.pid) and time.monotonic() < deadline:
            time.sleep(0.1)
        children = _children(proc.pid)
        assert children, "hie serve started no audit flusher process"
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    out = log.read_bytes()
    deadline = time.monotonic() + 10
    while any(_alive(c) for c in children) and time.monotonic() < deadline:
        time.sleep(0.1)
    left = [c for c in children if _alive(c)]
    for c in left:
        os.kill(c, signal.SIGKILL)
    assert not left, f"processes left after SIGTERM of hie serve: {left}\n{out.decode(errors='replace')}"
    assert proc.returncode == 0, out.decode(errors="replace")


def test_sigterm_of_hie_listen_mllp_prints_its_counts_and_exits_0(tmp_path: Path) -> None:
    port = _free_port()
    proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "listen", "mllp", "--port", str(port),
                             "--facility", "2212345670"], env=_env(tmp_path),
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(frame(adt_message("SIG-1", "P-SIG-1")))
            acks = read_acks(sock, 1)
            assert msa(acks[0])[1] == "AA"
            proc.send_signal(signal.SIGTERM)  # with the connection still open
            out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.decode(errors="replace")
    assert proc.returncode == 0, text
    assert "received 1, accepted 1" in text and "Traceback" not in text


def test_sigterm_mid_burst_answers_the_message_in_hand_and_loses_nothing(tmp_path: Path) -> None:
    from hie.app import Node
    from hie.config import Settings
    from hie.ingest import existing

    from adapters.feed import Feed
    from adapters.hl7v2.mapping import map_message

    from .mllp_support import distinct_patient

    port = _free_port()
    env = _env(tmp_path)
    burst = [adt_message(f"TERM-{i:03d}", f"T{i:04d}", **distinct_patient(i)) for i in range(40)]
    proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "listen", "mllp", "--port", str(port),
                             "--facility", "2212345670"], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        wait_port(port, proc)
        with socket.create_connection(("127.0.0.1", port)) as sock:
            sock.sendall(b"".join(frame(m) for m in burst))
            acks = read_acks(sock, 2)
            proc.send_signal(signal.SIGTERM)
            acks += read_acks(sock, len(burst))  # until the listener closes the connection
            out, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = err.decode(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert 2 <= len(acks) < len(burst), "SIGTERM did not land in the middle of the burst"
    assert all(msa(a)[1] == "AA" for a in acks)
    assert f"received {len(acks)}, accepted {len(acks)}," in text  # nothing processed without an answer
    node = Node(Settings(database_url=env["HIE_DATABASE_URL"], data_dir=Path(env["HIE_DATA_DIR"])))
    try:
        ids = Feed(node).ids
        urls = ["Patient/" + map_message(m, facility="2212345670", source="t", ids=ids).patient_id
                for m in burst[:len(acks)]]
        assert existing(node, urls) == set(urls)
    finally:
        node.close()


def test_sigterm_of_a_watching_ssmix2_import_stops_it_cleanly(tmp_path: Path) -> None:
    import shutil

    from .corpus import storage_root

    tree = tmp_path / "storage"
    shutil.copytree(storage_root(), tree)
    log = tmp_path / "import.log"
    with log.open("wb") as out_file:
        proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "import", "ssmix2", str(tree), "--facility",
                                 "2212345670", "--watch", "--interval", "0.5", "--workers", "1",
                                 "--state", str(tmp_path / "state.json")],
                                env=_env(tmp_path), stdout=out_file, stderr=subprocess.STDOUT)
    try:
        deadline = time.monotonic() + 120
        while not (tmp_path / "state.json").exists() and time.monotonic() < deadline:
            assert proc.poll() is None, log.read_text(errors="replace")
            time.sleep(0.2)
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    text = log.read_text(errors="replace")
    assert proc.returncode == 0 and "Traceback" not in text, text
    assert "Stopped; the state file keeps the progress" in text
