"""Shared helpers for the benchmarks: corpus location, the tree under test, throwaway
databases, a server process and its memory, percentiles, the statement counter.

The tree under test is this repository, or the one named by ``HIE_BENCH_TREE`` (an older
checkout, e.g. ``git worktree add /work/old <commit>``): the benchmark imports ``hie`` from
it (:func:`use_tree`, called before any ``hie`` import) and serves it with this
interpreter (``python -m hie.cli serve`` with ``PYTHONPATH`` set to that tree), so old and
new code run the very same benchmark.
"""

from __future__ import annotations

import importlib.util
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
from sqlalchemy import create_engine, text

REPO = Path(__file__).resolve().parents[1]
TREE = Path(os.environ.get("HIE_BENCH_TREE", REPO)).resolve()
PG_ADMIN = os.environ.get("HIE_TEST_PG_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/postgres")


def use_tree() -> Path:
    """Put the tree under test first on ``sys.path`` (and this repository's ``bench`` after it)."""
    for p in (str(REPO), str(TREE)):
        if p in sys.path:
            sys.path.remove(p)
        sys.path.insert(0, p)
    return TREE


def tree_commit() -> str:
    try:
        out = subprocess.run(["git", "-C", str(TREE), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(TREE), "status", "--porcelain", "--untracked-files=no"],
                               capture_output=True, text=True).stdout.strip()
        return out + (" (+uncommitted changes)" if dirty else "")
    except (OSError, subprocess.CalledProcessError):
        return "unknown"


def corpus() -> Path:
    path = Path(os.environ.get("HIE_CORPUS", REPO.parent / "shared" / "data")).resolve()
    if not path.exists():
        sys.exit(f"corpus not found at {path}; set HIE_CORPUS")
    return path


@contextmanager
def database(kind: str, workdir: Path) -> Iterator[str]:
    """A fresh, empty database URL of ``kind`` (sqlite | postgresql), removed afterwards."""
    if kind == "sqlite":
        path = workdir / f"bench-{uuid.uuid4().hex[:8]}.sqlite"
        yield f"sqlite:///{path}"
        for suffix in ("", "-wal", "-shm"):
            Path(str(path) + suffix).unlink(missing_ok=True)
        return
    admin = create_engine(PG_ADMIN, isolation_level="AUTOCOMMIT")
    name = f"hie_bench_{uuid.uuid4().hex[:10]}"
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield admin.url.set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Served:
    """A running ``hie serve``: its base URL (no ``/fhir``) and the supervising process id."""

    url: str
    pid: int


@contextmanager
def server(database_url: str, workers: int, data_dir: Path,
           env_extra: dict[str, str] | None = None) -> Iterator[Served]:
    """``hie serve`` of the tree under test (uvicorn workers + audit flusher process)."""
    port = free_port()
    env = {**os.environ, "HIE_DATABASE_URL": database_url, "HIE_DATA_DIR": str(data_dir),
           "PYTHONPATH": str(TREE), **(env_extra or {})}
    env.pop("HIE_AUDIT_FLUSHER", None)  # the server picks its own (a flusher process)
    proc = subprocess.Popen(
        [sys.executable, "-m", "hie.cli", "serve", "--no-demo", "--port", str(port), "--workers", str(workers),
         "--log-level", "warning"],
        env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, cwd=str(TREE),
    )
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 90
        while True:
            try:
                if httpx.get(f"{url}/healthz", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                pass
            if proc.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"server did not start: {proc.stderr.read().decode() if proc.stderr else ''}")
            time.sleep(0.2)
        yield Served(url, proc.pid)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            proc.kill()


def process_tree(pid: int) -> list[int]:
    """``pid`` and all its descendants (from /proc)."""
    children: dict[int, list[int]] = {}
    for d in Path("/proc").iterdir():
        if not d.name.isdigit():
            continue
        try:
            stat = (d / "stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(d.name))
    out, todo = [], [pid]
    while todo:
        p = todo.pop()
        out.append(p)
        todo.extend(children.get(p, []))
    return out


def rss_kib(pid: int) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def cmdline(pid: int) -> str:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
    except OSError:
        return "?"


def server_rss(pid: int) -> dict[int, tuple[str, int]]:
    """{pid: (command line, RSS KiB)} of the server process and everything it started."""
    return {p: (cmdline(p), rss_kib(p)) for p in process_tree(pid)}


def percentiles(samples: list[float], ps: tuple[float, ...] = (50, 95, 99)) -> dict[float, float]:
    s = sorted(samples) or [float("nan")]
    out = {}
    for p in ps:
        k = max(0, min(len(s) - 1, int(round(p / 100 * len(s) + 0.5)) - 1))
        out[p] = s[k]
    return out


def statement_counter(engine: Any) -> Any:
    """The engine's statement counter (:mod:`hie.storage.statements`); for a tree that has
    none (an old checkout), this repository's module, loaded from its file."""
    try:
        from hie.storage.statements import install
    except ImportError:
        spec = importlib.util.spec_from_file_location("_bench_statements", REPO / "hie" / "storage" / "statements.py")
        assert spec and spec.loader
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module  # dataclasses look their module up
        spec.loader.exec_module(module)
        install = module.install
    return install(engine)
