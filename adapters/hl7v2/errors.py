"""Typed errors of the HL7 v2 adapter, each carrying the HL7 location and a reason.

A location names where in the message the problem is, in the notation of HL7 v2.5
chapter 2 (segment id, field, optionally repetition/component), e.g. ``PID-5`` or
``RXE-2.3``; the ERR segment of an ACK carries it (HL7 v2.5 section 2.14.5, ERR-2)
and table 0357 gives the error code:
https://www.hl7.eu/HL7v2x/v25/std25/ch02.html#Heading241
"""

from __future__ import annotations

# HL7 table 0357 (message error condition codes) entries the adapter uses.
SEGMENT_SEQUENCE_ERROR = "100"
REQUIRED_FIELD_MISSING = "101"
DATA_TYPE_ERROR = "102"
TABLE_VALUE_NOT_FOUND = "103"
UNSUPPORTED_MESSAGE_TYPE = "200"
UNSUPPORTED_EVENT_CODE = "201"
UNSUPPORTED_PROCESSING_ID = "202"
UNSUPPORTED_VERSION_ID = "203"
DUPLICATE_KEY = "205"
APPLICATION_INTERNAL_ERROR = "207"


class V2Error(Exception):
    """A message that cannot be turned into FHIR.

    ``location`` is an HL7 location such as ``PID-5`` ("" when the problem is the
    whole message or file), ``reason`` a sentence for people, ``code`` an HL7 table
    0357 code for the ERR segment.
    """

    code = APPLICATION_INTERNAL_ERROR
    #: True when the sender must not resend unchanged (ACK AR rather than AE).
    reject = False

    def __init__(self, location: str, reason: str, *, code: str | None = None) -> None:
        self.location = location
        self.reason = reason
        if code is not None:
            self.code = code
        super().__init__(f"{location}: {reason}" if location else reason)


class DecodeError(V2Error):
    """The bytes cannot be decoded with the character set the message declares."""

    code = DATA_TYPE_ERROR
    reject = True


class ParseError(V2Error):
    """The decoded text is not a well-formed HL7 v2 message."""

    code = SEGMENT_SEQUENCE_ERROR
    reject = True


class UnsupportedMessage(V2Error):
    """The message type/event is not one the adapter maps."""

    code = UNSUPPORTED_MESSAGE_TYPE
    reject = True


class MappingError(V2Error):
    """A field is missing or has a value that cannot be mapped."""

    code = REQUIRED_FIELD_MISSING


class InvalidResource(V2Error):
    """A mapped resource failed FHIR R4B model validation: a mapping bug or bad input."""

    code = APPLICATION_INTERNAL_ERROR
