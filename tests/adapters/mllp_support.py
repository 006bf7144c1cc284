"""Helpers of the MLLP tests: synthetic messages, a real client, a listener process."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from adapters.mllp.server import FS, VT

FACILITY = "2212345670"


def adt_message(control_id: str, patient_number: str, *, family: str = "YAMADA", app: str = "HIS",
                facility: str = "HOSP", birth: str = "19700101") -> bytes:
    """An ASCII ADT^A08 (patient information update) for one patient."""
    segments = [
        f"MSH|^~\\&|{app}|{facility}|HIE|HIE|20261201120000||ADT^A08^ADT_A01|{control_id}|P|2.5",
        "EVN||20261201120000",
        f"PID|1||{patient_number}^^^^PI||{family}^TARO^^^^^L||{birth}|M",
        "PV1|1|O",
    ]
    return ("\r".join(segments) + "\r").encode("ascii")


def distinct_patient(i: int) -> dict[str, str]:
    """Name and birth date of the i-th synthetic patient, unlike any other (no identity
    review work between them)."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"
    family = "SEI" + letters[i // 26 % 26] + letters[i % 26]
    return {"family": family, "birth": f"19{40 + i % 60:02d}{1 + i % 12:02d}{1 + i % 28:02d}"}


def read_acks(sock: socket.socket, n: int, timeout: float = 30) -> list[str]:
    """Read up to ``n`` ACKs (fewer if the peer closes)."""
    buf, acks = b"", []
    sock.settimeout(timeout)
    while len(acks) < n:
        try:
            chunk = sock.recv(65536)
        except (ConnectionResetError, TimeoutError):
            break
        if not chunk:
            break
        buf += chunk
        while bytes([FS, 0x0D]) in buf:
            body, buf = buf.split(bytes([FS, 0x0D]), 1)
            assert body[0] == VT
            raw = body[1:]
            acks.append(raw.decode("iso2022_jp" if b"\x1b" in raw else "ascii"))
    return acks


def msa(ack: str) -> list[str]:
    return next(s for s in ack.split("\r") if s.startswith("MSA")).split("|")


def err(ack: str) -> list[str] | None:
    seg = next((s for s in ack.split("\r") if s.startswith("ERR")), None)
    return seg.split("|") if seg else None


def wait_port(port: int, proc: subprocess.Popen | None = None, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            out = proc.stdout.read().decode(errors="replace") if proc.stdout else ""
            errs = proc.stderr.read().decode(errors="replace") if proc.stderr else ""
            raise AssertionError(f"process exited ({proc.returncode}) before listening: {out}{errs}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.1)
    raise AssertionError(f"nothing listens on 127.0.0.1:{port}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def listener_process(database_url: str, data_dir: Path, *args: str, port: int | None = None,
                     ) -> tuple[subprocess.Popen, int]:
    """``hie listen mllp`` as a separate process on a free loopback port."""
    port = port or free_port()
    env = dict(os.environ, HIE_DATABASE_URL=database_url, HIE_DATA_DIR=str(data_dir))
    proc = subprocess.Popen([sys.executable, "-m", "hie.cli", "listen", "mllp", "--port", str(port), *args],
                            env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    wait_port(port, proc)
    return proc, port


def counts(node, types: tuple[str, ...]) -> dict[str, int]:  # noqa: ANN001
    """Resources per type, through the node's public ingest API (a batch of GET ?_summary=count)."""
    from hie.ingest import ingest_bundle

    entries = [{"request": {"method": "GET", "url": f"{t}?_summary=count"}} for t in types]
    resp = ingest_bundle(node, {"resourceType": "Bundle", "type": "batch", "entry": entries}, source="test:count")
    out = {}
    for t, e in zip(types, resp["entry"], strict=True):
        assert str(e["response"]["status"]).startswith("200"), e
        out[t] = e["resource"]["total"]
    return out
