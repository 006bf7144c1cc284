"""uvicorn HTTP protocol that always sets TCP_NODELAY.

With ``--workers N`` uvicorn hands the listening socket to worker processes, and the
socket they see reports protocol 0, so asyncio skips its usual TCP_NODELAY. Responses
are written in two parts (headers, body); with Nagle's algorithm on, the second write
waits for the client's delayed ACK and every request gains ~40 ms. Setting the option
on each accepted connection removes the stall.
"""

from __future__ import annotations

import socket
from typing import Any

try:  # prefer httptools when installed (uvicorn[standard]); h11 otherwise
    from uvicorn.protocols.http.httptools_impl import HttpToolsProtocol as _Base
except ImportError:  # pragma: no cover - depends on installed extras
    from uvicorn.protocols.http.h11_impl import H11Protocol as _Base  # type: ignore[assignment]


class NoDelayProtocol(_Base):
    def connection_made(self, transport: Any) -> None:
        sock = transport.get_extra_info("socket")
        if sock is not None and sock.family in (socket.AF_INET, socket.AF_INET6):
            try:
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            except OSError:
                pass
        super().connection_made(transport)
