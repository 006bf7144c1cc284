"""Load generation and round-trip counting for the HTTP benchmarks.

* :class:`HttpConn`: a minimal HTTP/1.1 keep-alive client on asyncio streams (GET only,
  Content-Length or chunked bodies). It costs the benchmark's process far less CPU than a
  general client, which matters on a 2-core machine where client and server share the cores.
* :func:`run_load`: C concurrent clients, each on its own connection, request random paths of
  a workload for D seconds after a warm-up; latency per request, throughput, errors.
* :func:`round_trips`: database statements per request, counted in process through the same
  ASGI app the server runs (bearer auth, audit on), one request at a time after warm-up, with
  the statement counter of :mod:`hie.storage.statements`.
"""

from __future__ import annotations

import asyncio
import random
import socket
import statistics
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from bench._common import percentiles, statement_counter

IN_PROCESS_BASE = "http://testserver"


@dataclass
class Workload:
    name: str  # e.g. "read" or "search"
    principal: str  # "system" | "viewer"
    paths: list[str]
    labels: list[str] = field(default_factory=list)  # per path (search: the query's label)


class HttpConn:
    def __init__(self, url: str, token: str) -> None:
        u = urlsplit(url)
        self.host, self.port = u.hostname or "127.0.0.1", u.port or 80
        self.head = (f"Host: {self.host}:{self.port}\r\nAuthorization: Bearer {token}\r\n"
                     "Accept: application/fhir+json\r\n\r\n").encode()
        self.reader: asyncio.StreamReader | None = None
        self.writer: asyncio.StreamWriter | None = None

    async def connect(self) -> None:
        self.reader, self.writer = await asyncio.open_connection(self.host, self.port)
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    async def get(self, path: str) -> tuple[int, int]:
        """(status, body bytes) of ``GET path``."""
        if self.writer is None:
            await self.connect()
        assert self.reader is not None and self.writer is not None
        self.writer.write(b"GET " + path.encode() + b" HTTP/1.1\r\n" + self.head)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length, chunked, close = 0, False, False
        for line in head.split(b"\r\n")[1:]:
            k, _, v = line.partition(b":")
            k = k.strip().lower()
            if k == b"content-length":
                length = int(v)
            elif k == b"transfer-encoding":
                chunked = b"chunked" in v.lower()
            elif k == b"connection":
                close = b"close" in v.lower()
        size = 0
        if chunked:
            while True:
                n = int((await self.reader.readline()).split(b";")[0], 16)
                await self.reader.readexactly(n + 2)
                size += n
                if n == 0:
                    break
        elif length:
            size = len(await self.reader.readexactly(length))
        if close:
            await self.close()
        return status, size

    async def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
            try:
                await self.writer.wait_closed()
            except OSError:
                pass
        self.reader = self.writer = None


@dataclass
class LoadResult:
    requests: int
    seconds: float
    latencies: list[float]
    errors: dict[int, int]

    @property
    def rate(self) -> float:
        return self.requests / self.seconds if self.seconds else 0.0

    def summary(self) -> dict[str, float]:
        p = percentiles(self.latencies)
        return {"rate": self.rate, "p50_ms": p[50] * 1000, "p95_ms": p[95] * 1000, "p99_ms": p[99] * 1000,
                "requests": self.requests, "errors": sum(self.errors.values())}


async def _client(url: str, token: str, paths: list[str], until: float, lat: list[float] | None,
                  errors: dict[int, int], seed: int) -> None:
    conn, rnd = HttpConn(url, token), random.Random(seed)
    try:
        while time.perf_counter() < until:
            path = rnd.choice(paths)
            t0 = time.perf_counter()
            try:
                status, _ = await conn.get(path)
            except (OSError, asyncio.IncompleteReadError, ValueError):
                status = 599
                await conn.close()
            if lat is not None:
                lat.append(time.perf_counter() - t0)
            if status != 200:
                errors[status] = errors.get(status, 0) + 1
    finally:
        await conn.close()


async def _run(url: str, token: str, paths: list[str], clients: int, seconds: float, warmup: float) -> LoadResult:
    if warmup > 0:
        until = time.perf_counter() + warmup
        await asyncio.gather(*(_client(url, token, paths, until, None, {}, -i) for i in range(clients)))
    lat: list[float] = []
    errors: dict[int, int] = {}
    t0 = time.perf_counter()
    await asyncio.gather(*(_client(url, token, paths, t0 + seconds, lat, errors, i) for i in range(clients)))
    return LoadResult(len(lat), time.perf_counter() - t0, lat, errors)


def run_load(url: str, token: str, paths: list[str], clients: int, seconds: float,
             warmup: float = 1.0) -> LoadResult:
    return asyncio.run(_run(url, token, paths, clients, seconds, warmup))


@dataclass
class Trips:
    mean: float
    low: int
    high: int
    by_label: dict[str, float]
    errors: int
    example: list[str]  # the statements of the last request counted


def round_trips(node: Any, token: str, workload: Workload, samples: int = 40, warmup: int = 5,
                seed: int = 3) -> Trips:
    """Statements per request of ``workload`` in process (same app as ``hie serve``)."""
    from fastapi.testclient import TestClient

    counter = statement_counter(node.engine)
    rnd = random.Random(seed)
    picks = rnd.sample(range(len(workload.paths)), min(samples, len(workload.paths)))
    counts: list[int] = []
    per: dict[str, list[int]] = {}
    errors = 0
    example: list[str] = []
    headers = {"Authorization": f"Bearer {token}", "Accept": "application/fhir+json"}
    with TestClient(node.create_app(), base_url=IN_PROCESS_BASE) as c:
        for i in picks[:warmup]:
            c.get(workload.paths[i], headers=headers)
        for i in picks:
            with counter.counting() as n:
                r = c.get(workload.paths[i], headers=headers)
            errors += r.status_code != 200
            counts.append(n.count)
            example = list(n.statements)
            label = workload.labels[i] if workload.labels else workload.name
            per.setdefault(label, []).append(n.count)
    return Trips(statistics.fmean(counts), min(counts), max(counts),
                 {k: statistics.fmean(v) for k, v in per.items()}, errors, example)
