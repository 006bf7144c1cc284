"""Request limits of the HTTP API: no body beyond ``max_body`` bytes is ever read, and no
JSON string beyond ``max_element`` bytes is accepted (issue 13; issue 19 item 3).

:class:`BodyLimit` is an ASGI middleware around the whole application (``/fhir``, ``/auth``,
everything), so no route can read past the limit: a ``Content-Length`` above it is refused
413 before a byte of the body is read; a body without one (chunked transfer) is counted while
it arrives and refused at the chunk that crosses the limit. The refusal is an
OperationOutcome (``HIE-1012``). The element limit is checked where JSON and form bodies are
parsed (:func:`hie.fhir.jsonio.loads`, ``HIE-1013`` with the element path). Data routes
authenticate before they read a body at all (:mod:`hie.api.app`), so an anonymous request is
answered 401 unread.

Spec: https://www.rfc-editor.org/rfc/rfc9110#name-413-content-too-large
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hie.errors import BodyTooLarge, ElementTooLong

Scope = dict[str, Any]
Message = dict[str, Any]


@dataclass(frozen=True)
class Limits:
    max_body: int  # bytes of one request body
    max_element: int  # UTF-8 bytes of one JSON string or form value

    @classmethod
    def of(cls, settings: Any) -> Limits:
        return cls(max_body=settings.max_body_bytes, max_element=settings.max_element_bytes)

    def body_error(self) -> BodyTooLarge:
        return BodyTooLarge(f"The request body is larger than {self.max_body} bytes, the most this node "
                            f"reads; split it (smaller Bundles) or ask the operator about HIE_MAX_BODY_BYTES",
                            headers={"Connection": "close"})

    def check_form(self, pairs: list[tuple[str, str]]) -> list[tuple[str, str]]:
        """Form parameters (``_search`` by POST, operations): each name and value within the
        element limit (the expression names the parameter)."""
        for name, value in pairs:
            for part in (name, value):
                if len(part) > self.max_element // 4 and len(part.encode("utf-8", "surrogatepass")) > self.max_element:
                    shown = name if len(name) <= 64 else name[:64] + "…"
                    raise ElementTooLong(f"Form parameter {shown!r} is longer than {self.max_element} bytes (UTF-8)",
                                         expression=[shown])
        return pairs


def _content_length(scope: Scope) -> int | None:
    """The declared length; -1 when the header is not a number (refused like an excess)."""
    for name, value in scope.get("headers") or ():
        if name == b"content-length":
            return int(value) if value.isdigit() else -1
    return None


class BodyLimit:
    """ASGI middleware: at most ``limits.max_body`` bytes of any request body are read.

    The refusal is raised from ``receive`` in the route that reads the body, so the route's
    own order holds (a data route authenticates first, then reads) and its error handling
    answers (an OperationOutcome, audited like any refused FHIR request). A declared
    ``Content-Length`` over the limit is refused at the first read without taking a byte (and
    without the ``100 Continue`` a client may wait for); the answer closes the connection, so
    the rest of the body is not drained either."""

    def __init__(self, app: Any, limits: Limits) -> None:
        self.app = app
        self.limits = limits

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = _content_length(scope)
        limit = self.limits.max_body
        refuse_at_once = declared is not None and (declared < 0 or declared > limit)
        received = 0

        async def bounded() -> Message:
            nonlocal received
            if refuse_at_once:
                raise self.limits.body_error()
            message: Message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > limit:
                    raise self.limits.body_error()
            return message

        await self.app(scope, bounded, send)
