"""MLLP listener: receives HL7 v2 messages over TCP (optionally TLS), ingests them,
answers each with an ACK.

MLLP framing (HL7 v2.5 Implementation Guide, appendix C.4.3): ``<VT=0x0B> message
<FS=0x1C><CR=0x0D>``. Original-mode acknowledgement (HL7 v2.5 2.9.2): AA only when the
message's data is committed; AR when it cannot be processed as sent (not decodable,
malformed, unsupported type, a sender the allow-list does not admit, a control id
reused for other content; resending it unchanged will not help); AE when it was
understood but could not be mapped or stored (a field, a reference, an internal error).
MSA-3 and ERR carry the reason and the HL7 location. Every AE/AR message is kept in the
dead-letter store for ``hie ingest replay``: every message gets an ACK or a failure
record, and one that got neither (the listener was killed while it was in hand) can be
resent and is then processed idempotently.

Duplicates are detected in the database (:mod:`adapters.mllp.receipts`): sender (MSH-3,
MSH-4), control id (MSH-10) and a content hash. An identical resend of an accepted
message gets the original AA and is not stored again; the same control id with other
content gets AR naming the reuse (and is kept for replay); the same id from another
sender is another message.

Robustness: bytes outside a frame are discarded (and counted); an oversized frame
closes the connection; a client that half-closes (shutdown of its write side) still
gets the ACKs of every complete frame it sent. On stop (SIGTERM), the listener stops
accepting, finishes the message in hand and answers it, then closes every connection.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from adapters.feed import Feed, IngestRejected, describe, record
from adapters.hl7v2.charset import Decoded, decode_message, msh_fields
from adapters.hl7v2.errors import DUPLICATE_KEY, ParseError, V2Error
from adapters.hl7v2.mapping import map_message
from adapters.mllp import receipts
from adapters.mllp.ack import Inbound, build_ack
from adapters.mllp.options import Peer, Senders, check_charset, load_senders, peer_of

log = logging.getLogger(__name__)
VT, FS, CR = 0x0B, 0x1C, 0x0D
CHANNEL = "mllp"
UNKNOWN_FACILITY = "-"  # failure source of a message no facility was found for


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    errors: int = 0
    rejected: int = 0
    duplicates: int = 0
    reused: int = 0
    junk_bytes: int = 0

    def line(self) -> str:
        return (f"received {self.received}, accepted {self.accepted}, AE {self.errors}, AR {self.rejected} "
                f"(control id reused {self.reused}), duplicates {self.duplicates}, junk bytes {self.junk_bytes}")


class ControlIdReused(V2Error):
    """MSH-10 of an accepted message from the same sender, with other content (AR)."""

    code = DUPLICATE_KEY
    reject = True


def read_inbound(raw: bytes, default_charset: str = "ascii") -> tuple[Inbound, Decoded | None]:
    """Best-effort MSH fields for the ACK (never raises), and the message decoded once with
    the listener's default character set (None if it cannot be decoded)."""
    try:
        f = msh_fields(raw)
    except Exception:  # noqa: BLE001 - not HL7: the ACK is built without the header
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
    except (V2Error, LookupError):
        pass
    return Inbound(control_id=field_(10), sending_app=field_(3), sending_facility=field_(4),
                   receiving_app=field_(5), receiving_facility=field_(6), event=field_(9, 2),
                   version=field_(12) or "2.5", charset_field=field_(18),
                   codec=decoded.codec if decoded else "ascii"), decoded


@dataclass
class Processor:
    """Maps, ingests and answers one message (thread-safe; used from the event loop
    through a single worker thread so that messages are stored in arrival order).

    ``senders``: the allow-list (:mod:`adapters.mllp.options`); without one every sender
    is accepted as ``facility``. Options are checked here, so a bad one fails at start."""

    node: Any
    facility: str | None = None
    senders: Senders | None = None
    default_charset: str = "ascii"
    feed: Feed | None = None
    stats: Stats = field(default_factory=Stats)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        self.default_charset = check_charset(self.default_charset)
        if self.senders is None:
            self.senders = load_senders(None, self.facility)
        self.feed = self.feed or Feed(self.node)

    def handle(self, raw: bytes, peer: Peer | None = None) -> bytes:
        with self._lock:
            self.stats.received += 1
            return self._handle(raw, peer or Peer())

    def _handle(self, raw: bytes, peer: Peer) -> bytes:
        inbound, decoded = read_inbound(raw, self.default_charset)
        facility = self.facility or UNKNOWN_FACILITY
        where = inbound.control_id or "(no MSH-10)"
        try:
            assert self.senders is not None and self.feed is not None
            facility = self.senders.facility_for(inbound.sending_app, inbound.sending_facility, peer)
            key = _key(inbound)
            digest = receipts.content_hash(raw)
            original = self._resend(key, digest) if key.control_id else None
            if original is not None:
                return original
            result = map_message(raw, facility=facility, source=f"mllp:{where}", ids=self.feed.ids,
                                 default_charset=self.default_charset, decoded=decoded)
            self.feed.submit(result, facility=facility, source=f"mllp:{where}")  # committed here
            ack = build_ack(inbound, "AA", "")
            if key.control_id:
                receipts.accept(self.node, key, digest, ack)
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
        return ack

    def _resend(self, key: receipts.MessageKey, digest: str) -> bytes | None:
        """Claim ``key`` for this content. Returns the original AA if this is an identical
        resend of an accepted message; raises :class:`ControlIdReused` for other content."""
        earlier = receipts.claim(self.node, key, digest)
        if earlier is None:
            return None
        if earlier.content_hash == digest:
            self.stats.duplicates += 1
            return earlier.ack
        self.stats.reused += 1
        raise ControlIdReused("MSH-10", f"control id {key.control_id!r} from {key.sending_app}|"
                              f"{key.sending_facility} was already used by another message (received "
                              f"{_when(earlier.received)}); this one was not stored and is kept for replay")

    def _fail(self, facility: str, where: str, raw: bytes, error: str, code: str) -> None:
        if code == "AR":
            self.stats.rejected += 1
        else:
            self.stats.errors += 1
        try:
            record(self.node, channel=CHANNEL, facility=facility, where=where, payload=raw, error=error)
        except Exception:  # noqa: BLE001
            log.exception("could not store the failed message %s in the dead-letter store", where)


def _key(inbound: Inbound) -> receipts.MessageKey:
    key = receipts.MessageKey(inbound.sending_app, inbound.sending_facility, inbound.control_id)
    for part, name in ((key.sending_app, "MSH-3"), (key.sending_facility, "MSH-4"), (key.control_id, "MSH-10")):
        if len(part) > receipts.MAX_KEY_PART:
            raise ParseError(name, f"{name} is longer than {receipts.MAX_KEY_PART} characters", code="102")
    return key


def _when(epoch_us: int) -> str:
    import datetime as dt

    return dt.datetime.fromtimestamp(epoch_us / 1e6, dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


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
        out: list[bytes] = []
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


class _Connections:
    """The open connections and whether each has a message in hand (graceful stop)."""

    def __init__(self) -> None:
        self.busy: dict[asyncio.Task[Any], bool] = {}
        self.stopping = False

    async def drain(self, timeout: float) -> None:
        """Stop: idle connections are closed now; busy ones after answering their message."""
        self.stopping = True
        for task, busy in list(self.busy.items()):
            if not busy:
                task.cancel()
        if self.busy:
            await asyncio.wait(list(self.busy), timeout=timeout)


async def _answer(processor: Processor, worker: asyncio.Semaphore, writer: asyncio.StreamWriter,
                  messages: list[bytes], peer: Peer, conns: _Connections) -> None:
    """Handle and answer the messages in arrival order; on stop, after the one in hand."""
    loop = asyncio.get_running_loop()
    for message in messages:
        if conns.stopping:
            break  # not started: no ACK, the sender resends it
        if not message.strip():
            continue
        async with worker:
            if conns.stopping:
                break
            ack = await loop.run_in_executor(None, processor.handle, message, peer)
        writer.write(frame(ack))
        await writer.drain()


async def serve(processor: Processor, host: str = "127.0.0.1", port: int = 2575, *,
                max_frame: int = 16 * 1024 * 1024, idle_timeout: float = 300.0,
                ready: Callable[[int], None] | None = None, stop: asyncio.Event | None = None,
                ssl_context: ssl.SSLContext | None = None, stop_timeout: float = 60.0) -> None:
    """Run the listener until ``stop`` is set (or forever). On stop: no new connections;
    a message in hand is finished and answered; then every connection is closed."""
    worker = asyncio.Semaphore(1)
    conns = _Connections()

    async def on_client(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        conns.busy[task] = False
        peer = peer_of(writer)
        frames = FrameReader(max_frame)
        try:
            while not conns.stopping:
                try:
                    data = await asyncio.wait_for(reader.read(65536), timeout=idle_timeout)
                except TimeoutError:
                    log.info("MLLP %s idle for %ss: closing", peer.address, idle_timeout)
                    break
                try:
                    messages = frames.feed(data) if data else []
                except OverflowError as err:
                    log.warning("MLLP %s: %s; closing", peer.address, err)
                    break
                finally:
                    processor.stats.junk_bytes += frames.junk
                    frames.junk = 0
                conns.busy[task] = True
                await _answer(processor, worker, writer, messages, peer, conns)
                conns.busy[task] = False
                if not data:  # EOF: the client half-closed or closed; answers are sent
                    if frames.buf:
                        log.warning("MLLP %s: %d bytes of an unterminated frame at end of stream",
                                    peer.address, len(frames.buf))
                        frames.junk += len(frames.buf)
                    break
        except (ConnectionResetError, BrokenPipeError, ssl.SSLError) as err:
            log.info("MLLP %s: connection lost (%s)", peer.address, err)
        except asyncio.CancelledError:
            pass  # stopping while idle
        finally:
            conns.busy.pop(task, None)
            processor.stats.junk_bytes += frames.junk
            writer.close()
            try:
                await writer.wait_closed()
            except (ConnectionResetError, BrokenPipeError, ssl.SSLError, asyncio.CancelledError):
                pass

    server = await asyncio.start_server(on_client, host, port, ssl=ssl_context)
    bound = server.sockets[0].getsockname()[1]
    log.info("MLLP listening on %s:%s%s", host, bound, " (TLS)" if ssl_context else "")
    if ready:
        ready(bound)
    try:
        if stop is None:
            await server.serve_forever()
        else:
            await stop.wait()
    finally:
        server.close()
        await conns.drain(stop_timeout)
        await server.wait_closed()


def run_in_thread(processor: Processor, host: str = "127.0.0.1", port: int = 0,
                  **kwargs: Any) -> tuple[int, Callable[[], None]]:
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

        loop.run_until_complete(serve(processor, host, port, ready=ready, stop=stop, **kwargs))
        loop.close()

    t = threading.Thread(target=runner, daemon=True)
    t.start()
    if not started.wait(10):
        raise RuntimeError("MLLP listener did not start")

    def stop_fn() -> None:
        holder["loop"].call_soon_threadsafe(holder["stop"].set)
        t.join(10)

    return holder["port"], stop_fn
