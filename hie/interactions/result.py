"""What an interaction answers, before it is rendered as HTTP or as a Bundle entry."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

from hie.clock import http_date, instant
from hie.storage.repository import Stored

STATUS_TEXT = {
    200: "OK", 201: "Created", 204: "No Content", 304: "Not Modified", 400: "Bad Request",
    401: "Unauthorized", 403: "Forbidden", 404: "Not Found", 405: "Method Not Allowed",
    406: "Not Acceptable", 409: "Conflict", 410: "Gone", 412: "Precondition Failed",
    413: "Content Too Large", 415: "Unsupported Media Type", 422: "Unprocessable Entity", 500: "Internal Server Error",
    501: "Not Implemented",
}


@dataclass
class Result:
    status: int
    body: dict[str, Any] | bytes | None = None  # a dict, or pre-serialized resource JSON
    headers: dict[str, str] = field(default_factory=dict)
    location: str | None = None  # relative: Type/id/_history/v
    etag: str | None = None
    last_modified: int | None = None  # epoch microseconds
    unchanged: bool = False  # a write whose content equalled the current version (no new version)

    def body_fragment(self) -> Any:
        """The body as something orjson can embed without re-parsing."""
        if isinstance(self.body, bytes):
            return orjson.Fragment(self.body)
        return self.body

    def http_headers(self, base_url: str) -> dict[str, str]:
        h = dict(self.headers)
        if self.etag:
            h["ETag"] = self.etag
        if self.last_modified is not None:
            h["Last-Modified"] = http_date(self.last_modified)
        if self.location:
            h["Location"] = f"{base_url}/{self.location}"
            if self.status == 201:
                h.setdefault("Content-Location", h["Location"])
        return h

    def entry_response(self) -> dict[str, Any]:
        resp: dict[str, Any] = {"status": f"{self.status} {STATUS_TEXT.get(self.status, '')}".strip()}
        if self.location:
            resp["location"] = self.location
        if self.etag:
            resp["etag"] = self.etag
        if self.last_modified is not None:
            resp["lastModified"] = instant(self.last_modified)
        return resp


def stored_result(st: Stored, status: int = 200, *, with_body: bool = True) -> Result:
    return Result(
        status=status,
        body=st.content if with_body else None,
        location=f"{st.res_type}/{st.res_id}/_history/{st.version_id}",
        etag=st.etag,
        last_modified=st.last_updated,
    )
