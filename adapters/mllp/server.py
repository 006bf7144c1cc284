"""MLLP listener: receives HL7 v2 messages over TCP, ingests them, answers each with an ACK.

MLLP framing (HL7 v2.5 Implementation Guide, appendix C.4.3): ``<VT=0x0B> message
<FS=0x1C><CR=0x0D>``. Original-mode acknowledgement (HL7 v2.5 2.9.2): AA when the
message was mapped and ingested; AR when it cannot be processed as sent (not
decodable, malformed, unsupported type; resending it unchanged will not help); AE
when it was understood but could not be mapped or stored (a field, a reference).
MSA-3 and ERR carry the reason and the HL7 location. Every AE/AR message is kept in
the dead-letter store for ``hie ingest replay``.

Robustness: bytes outside a frame are discarded (and counted); an oversized frame
closes the connection; a client that half-closes (shutdown of its write side) still
gets the ACKs of every complete frame it sent. Duplicates (same sending application,
facility and MSH-10 as an already accepted message) are answered with the original
ACK and not ingested again.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any, Callable

from adapters.feed import Feed, IngestRejected, describe, record
from adapters.hl7v2.charset import Decoded, decode_message, msh_fields
from adapters.hl7v2.errors import V2Error
from adapters.hl7v2.mapping import map_message
from adapters.mllp.ack import Inbound, build_ack

log = logging.getLogger(__name__)
VT, FS, CR = 0x0B, 0x1C, 0x0D
CHANNEL = "mllp"


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    errors: int = 0
    rejected: int = 0
    duplicates: int = 0
    junk_bytes: int = 0


def read_inbound(raw: bytes, default_charset: str = "ascii") -> tuple[Inbound, Decoded | None]:
    """Best-effort MSH fields for the ACK (never raises), and the message decoded once with
    the listener's default character set (None if it cannot be decoded)."""
    try:
        f = msh_fields(raw)
    except V2Error:
        return Inbound(), None

    def field_(n: int, comp: int | None = None) -> str:
        if n >= len(f):
            return ""
        try:
            v = f[n].decode("ascii")
        except UnicodeDecodeError:
            return ""
        return v.split("^")[comp - 1] if comp and len(v.split("^")) >= comp else (v if not comp else "")

    decoded: Decoded | None = None
    try:
        decoded = decode_message(raw, default_charset=default_charset)
    except V2Error:
        pass
    return Inbound(control_id=field_(10), sending_app=field_(3), sending_facility=field_(4),
                   receiving_app=field_(5), receiving_facility=field_(6), event=field_(9, 2),
                   version=field_(12) or "2.5", charset_field=field_(18),
                   codec=decoded.codec if decoded else "ascii"), decoded


@dataclass
class Processor:
    """Maps, ingests and answers one message (thread-safe; used from the event loop
    through a single worker thread so that messages are stored in arrival order)."""

    node: Any
    facility: str
    facility_map: dict[str, str] = field(default_factory=dict)  # "APP|FACILITY" or "FACILITY" -> code
    default_charset: str = "ascii"
    dedupe_size: int = 100_000
    feed: Feed | None = None
    stats: Stats = field(default_factory=Stats)
    _seen: "OrderedDict[tuple[str, str, str], bytes]" = field(default_factory=OrderedDict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.feed = self.feed or Feed(self.node)

    def facility_for(self, inbound: Inbound) -> str:
        return (self.facility_map.get(f"{inbound.sending_app}|{inbound.sending_facility}")
                or self.facility_map.get(inbound.sending_facility) or self.facility)

    def handle(self, raw: bytes) -> bytes:
        with self._lock:
            return self._handle(raw)

    def _handle(self, raw: bytes) -> bytes:
        self.stats.received += 1
        inbound, decoded = read_inbound(raw, self.default_charset)
        key = (inbound.sending_app, inbound.sending_facility, inbound.control_id)
        if inbound.control_id and key in self._seen:
            self.stats.duplicates += 1
            self._seen.move_to_end(key)
            return self._seen[key]
        facility = self.facility_for(inbound)
        where = inbound.control_id or "(no MSH-10)"
        try:
            result = map_message(raw, facility=facility, source=f"mllp:{where}",
                                 default_charset=self.default_charset, decoded=decoded)
            self.feed.submit(result, facility=facility, source=f"mllp:{where}")
        except V2Error as err:
            code = "AR" if err.reject else "AE"
            self._fail(facility, where, raw, describe(err), code)
            return build_ack(inbound, code, err.reason, error_code=err.code, location=err.location)
        except IngestRejected as err:
            self._fail(facility, where, raw, describe(err), "AE")
            return build_ack(inbound, "AE", describe(err), error_code="207")
        except Exception as err:  # noqa: BLE001 - the sender always gets an answer
            log.exception("MLLP message %s failed", where)
            self._fail(facility, where, raw, describe(err), "AE")
            return build_ack(inbound, "AE", "internal error; the message was kept for replay", error_code="207")
        self.stats.accepted += 1
        ack = build_ack(inbound, "AA", "")
        if inbound.control_id:
            self._seen[key] = ack
            if len(self._seen) > self.dedupe_size:
                self._seen.popitem(last=False)
        return ack

    def _fail(self, facility: str, where: str, raw: bytes, error: str, code: str) -> None:
        if code == "AR":
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        try:
            record(self.node, channel=CHANNEL, facility=facility, where=where, payload=raw, error=error)
        except Exception:  # noqa: BLE001
            log.exception("could not store the failed message %s in the dead-letter store", where)


def frame(message: bytes) -> bytes:
    return bytes([VT]) + message + bytes([FS, CR])


class FrameReader:
    """Splits a byte stream into MLLP frames; counts bytes outside frames."""

    def __init__(self, max_frame: int) -> None:
        self.buf = bytearray()
        self.max_frame = max_frame
        self.junk = 0

    def feed(self, data: bytes) -> list[bytes]:
        self.buf += data
        out = []
        while True:
            start = self.buf.find(VT)
            if start < 0:
                self.junk += len(self.buf)
                self.buf.clear()
                return out
            if start > 0:
                self.junk += start
                del self.buf[:start]
            end = self.buf.find(bytes([FS, CR]), 1)
            nested = self.buf.find(VT, 1)
            if nested != -1 and (end == -1 or nested < end):
                # A new frame starts before this one ended: the partial frame is junk.
                self.junk += nested
                del self.buf[:nested]
                continue
            if end < 0:
                if len(self.buf) > self.max_frame:
                    raise OverflowError(f"frame larger than {self.max_frame} bytes")
                return out
            out.append(bytes(self.buf[1:end]))
            del self.buf[:end + 2]


async def serve(processor: Processor, host: str = "127.0.0.1", port: int = 2575, *,
                max_frame: int = 16 * 1024 * 1024, idle_timeout: float = 300.0,
                ready: Callable[[int], None] | None = None, stop: asyncio.Event | None = None) -> None:
    """Run the listener until ``stop`` is set (or forever)."""
    loop = asyncio.get_running_loop()
    worker = asyncio.Semaphore(1)

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        frames = FrameReader(max_frame)
        try:
            while True:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=idle_timeout)
                except asyncio.TimeoutError:
                    log.info("MLLP %s idle for %ss: closing", peer, idle_timeout)
                    break
                try:
                    messages = frames.feed(data) if data else []
                except OverflowError as err:
                    log.warning("MLLP %s: %s; closing", peer, err)
                    break
                finally:
                    processor.stats.junk_bytes += frames.junk
                    frames.junk = 0
                for message in messages:
                    if not message.strip():
                        continue
                    async with worker:
                        ack = await loop.run_in_executor(None, processor.handle, message)
                    writer.write(frame(ack))
                    await writer.drain()
                if not data:  # EOF: the client half-closed or closed; answers are sent
                    if frames.buf:
                        log.warning("MLLP %s: %d bytes of an unterminated frame at end of stream",
                                    peer, len(frames.buf))
                        frames.junk += len(frames.buf)
                    break
        except (ConnectionResetError, BrokenPipeError) as err:
            log.info("MLLP %s: connection lost (%s)", peer, err)
        finally:
            processor.stats.junk_bytes += frames.junk
            try:
                writer.close()
                await writer.wait_closed()
            except (ConnectionResetError, BrokenPipeError):
                pass

    server = await asyncio.start_server(on_client, host, port)
    bound = server.sockets[0].getsockname()[1]
    log.info("MLLP listening on %s:%s", host, bound)
    if ready:
        ready(bound)
    async with server:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()


def run_in_thread(processor: Processor, host: str = "127.0.0.1", port: int = 0) -> tuple[int, Callable[[], None]]:
    """Start the listener in a background thread (tests, benchmarks).
    Returns (port, stop function)."""
    started = threading.Event()
    holder: dict[str, Any] = {}

    def runner() -> None:
        loop = asyncio.new_event_loop()
        holder["loop"] = loop
        stop = asyncio.Event()
        holder["stop"] = stop

        def ready(p: int) -> None:
            holder["port"] = p
            started.set()

        loop.run_until_complete(serve(processor, host, port, ready=ready, stop=stop))
        loop.close()

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    if not started.wait(10):
        raise RuntimeError("MLLP listener did not start")

    def stop_fn() -> None:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        t.join(10)

    return holder["port"], stop_fn
