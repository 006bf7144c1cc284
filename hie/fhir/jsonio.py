"""FHIR JSON reading and writing with orjson.

Spec: https://hl7.org/fhir/R4/json.html
"""

from __future__ import annotations

from typing import Any

import orjson

from hie.errors import InvalidJson


def loads(data: bytes | str, *, what: str = "request body") -> Any:
    try:
        return orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        # orjson reports "line L column C (char N)" in its message.
        raise InvalidJson(f"The {what} is not valid JSON: {exc}") from None


def dumps(obj: Any, *, pretty: bool = False) -> bytes:
    return orjson.dumps(obj, option=orjson.OPT_INDENT_2 if pretty else 0)
