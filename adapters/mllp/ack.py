"""HL7 v2.5 original-mode acknowledgements (ACK with MSA and ERR).

HL7 v2.5 section 2.9.2 (original acknowledgment rules), 2.14.8 (MSA), 2.14.5 (ERR:
ERR-2 error location ERL, ERR-3 HL7 error code from table 0357, ERR-4 severity,
ERR-8 user message): https://www.hl7.eu/HL7v2x/v25/std25/ch02.html#Heading158

The ACK is encoded in the character set of the message it answers (same MSH-18), so a
reason quoting Japanese data reaches an ISO-2022-JP sender intact.
"""

from __future__ import annotations

import itertools
import re
import time
from dataclasses import dataclass

_COUNTER = itertools.count(1)
_LOC = re.compile(r"^([A-Z][A-Z0-9]{2})(?:-(\d+)(?:\.(\d+))?)?")


@dataclass(frozen=True)
class Inbound:
    """What the ACK needs from the message it answers (as far as it could be read)."""

    control_id: str = ""
    sending_app: str = ""
    sending_facility: str = ""
    receiving_app: str = ""
    receiving_facility: str = ""
    event: str = ""
    version: str = "2.5"
    charset_field: str = ""  # raw MSH-18, echoed
    codec: str = "ascii"


def escape(text: str) -> str:
    out = text.replace("\\", "\\E\\").replace("|", "\\F\\").replace("^", "\\S\\")
    out = out.replace("&", "\\T\\").replace("~", "\\R\\")
    return out.replace("\r", " ").replace("\n", " ")


def erl(location: str) -> str:
    """'PID-5.2' -> ERL 'PID^1^5^1^2' (segment, sequence, field, repetition, component)."""
    m = _LOC.match(location or "")
    if not m:
        return ""
    seg, field, comp = m.groups()
    parts = [seg, "1"]
    if field:
        parts += [field, "1"]
        if comp:
            parts.append(comp)
    return "^".join(parts)


def build_ack(inbound: Inbound, code: str, text: str = "", *, error_code: str = "", location: str = "",
              app: str = "HIE", facility: str = "HIE") -> bytes:
    """An ACK message (bytes, segments ended by CR) for ``inbound``."""
    if code not in ("AA", "AE", "AR"):
        raise ValueError(code)
    now = time.strftime("%Y%m%d%H%M%S")
    ctrl = f"HIE{now}{next(_COUNTER):06d}"
    msh = ["MSH", "^~\\&", inbound.receiving_app or app, inbound.receiving_facility or facility,
           inbound.sending_app, inbound.sending_facility, now, "",
           f"ACK^{inbound.event}^ACK" if inbound.event else "ACK", ctrl, "P", inbound.version or "2.5"]
    if inbound.charset_field:
        msh += ["", "", "", "", "", inbound.charset_field]
    segments = ["|".join(msh), "|".join(["MSA", code, escape(inbound.control_id), escape(text[:200])])]
    if code != "AA":
        err = ["ERR", "", erl(location), f"{error_code or '207'}^{_ERROR_TEXT.get(error_code or '207', '')}^HL70357",
               "E", "", "", "", escape(text)]
        segments.append("|".join(err))
    body = "\r".join(segments) + "\r"
    try:
        return body.encode(inbound.codec)
    except (UnicodeEncodeError, LookupError):
        return body.encode("ascii", errors="backslashreplace")


_ERROR_TEXT = {"0": "Message accepted", "100": "Segment sequence error", "101": "Required field missing",
               "102": "Data type error", "103": "Table value not found", "200": "Unsupported message type",
               "201": "Unsupported event code", "202": "Unsupported processing id",
               "203": "Unsupported version id", "205": "Duplicate key identifier",
               "207": "Application internal error"}
