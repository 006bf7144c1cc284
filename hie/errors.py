"""The node's one error model: a ``FhirError`` family with a stable code per error.

Every failure the node reports to a client is a :class:`FhirError`: an HTTP status, a
FHIR issue type (http://hl7.org/fhir/R4/valueset-issue-type.html), a stable
``HIE-NNNN`` code and the element path(s) at fault. :func:`to_outcome` is the single
converter to an ``OperationOutcome``; the REST layer and Bundle entry responses both
use it (Blaze maps error categories to status in one place, HAPI gives each error a
stable code). Anything that is not a ``FhirError`` becomes :func:`internal_error`: a
500 whose body names only a correlation id (the stack trace goes to the log).

Spec: https://hl7.org/fhir/R4/operationoutcome.html
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from typing import Any

HIE_CODE_SYSTEM = "http://hie.example.jp/fhir/CodeSystem/error-code"


@dataclass
class Issue:
    severity: str  # fatal | error | warning | information
    code: str  # FHIR issue type
    diagnostics: str
    expression: list[str] = field(default_factory=list)
    hie_code: str | None = None

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"severity": self.severity, "code": self.code}
        if self.hie_code:
            out["details"] = {"coding": [{"system": HIE_CODE_SYSTEM, "code": self.hie_code}]}
        out["diagnostics"] = self.diagnostics
        if self.expression:
            out["expression"] = list(self.expression)
        return out


class FhirError(Exception):
    """An error with a FHIR answer. Subclasses fix status, issue type and code."""

    status: int = 400
    issue_code: str = "processing"
    hie_code: str = "HIE-0400"

    def __init__(
        self,
        diagnostics: str,
        *,
        expression: list[str] | None = None,
        issues: list[Issue] | None = None,
        status: int | None = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(diagnostics)
        self.diagnostics = diagnostics
        if status is not None:
            self.status = status
        self.headers = headers or {}
        self.issues = issues or [
            Issue("error", self.issue_code, diagnostics, expression or [], self.hie_code)
        ]

    def to_outcome(self) -> dict[str, Any]:
        return to_outcome(self.issues)


# -- 4xx: the client's request ------------------------------------------------------


class InvalidJson(FhirError):
    status, issue_code, hie_code = 400, "structure", "HIE-1001"


class InvalidResource(FhirError):
    status, issue_code, hie_code = 400, "structure", "HIE-1002"


class UnknownResourceType(FhirError):
    status, issue_code, hie_code = 404, "not-found", "HIE-1003"


class IdMismatch(FhirError):
    status, issue_code, hie_code = 400, "invalid", "HIE-1004"


class InvalidRequest(FhirError):
    status, issue_code, hie_code = 400, "invalid", "HIE-1005"


class InvalidReference(FhirError):
    status, issue_code, hie_code = 400, "invalid", "HIE-1006"


class InvalidPatch(FhirError):
    status, issue_code, hie_code = 400, "invalid", "HIE-1007"


class InvalidSearch(FhirError):
    status, issue_code, hie_code = 400, "invalid", "HIE-1008"


class UnsupportedMediaType(FhirError):
    status, issue_code, hie_code = 415, "not-supported", "HIE-1009"


class NotAcceptable(FhirError):
    status, issue_code, hie_code = 406, "not-supported", "HIE-1010"


class ConsentActorRefused(FhirError):
    """A Consent names an actor that is not a registered, active facility allowed to view
    (see :mod:`hie.enforcement.grants`)."""

    status, issue_code, hie_code = 422, "business-rule", "HIE-1011"


class BodyTooLarge(FhirError):
    """The request body is larger than the node reads (``HIE_MAX_BODY_BYTES``); see
    :mod:`hie.api.limits`. Nothing beyond the limit was read."""

    status, issue_code, hie_code = 413, "too-long", "HIE-1012"


class ElementTooLong(FhirError):
    """A string in the request body (a value or a property name) is longer than
    ``HIE_MAX_ELEMENT_BYTES`` in UTF-8; the expression names the element."""

    status, issue_code, hie_code = 413, "too-long", "HIE-1013"


class Unauthenticated(FhirError):
    status, issue_code, hie_code = 401, "login", "HIE-2001"


class Forbidden(FhirError):
    status, issue_code, hie_code = 403, "forbidden", "HIE-2002"


class WriteForbidden(Forbidden):
    """The principal may not write this resource (type group, custody, consent authorship,
    facility registration or network role); see :mod:`hie.enforcement.writes`."""

    hie_code = "HIE-2004"


class CustodyForbidden(Forbidden):
    """A custodian ``meta.tag`` naming a facility other than the one the write must have."""

    hie_code = "HIE-2005"


class PatientEditForbidden(Forbidden):
    """A patient changed an element of their Patient outside the elements they may edit."""

    hie_code = "HIE-2006"


class NotFound(FhirError):
    status, issue_code, hie_code = 404, "not-found", "HIE-3001"


class Gone(FhirError):
    status, issue_code, hie_code = 410, "deleted", "HIE-3002"


class MethodNotAllowed(FhirError):
    status, issue_code, hie_code = 405, "not-supported", "HIE-3003"


class VersionConflict(FhirError):
    status, issue_code, hie_code = 409, "conflict", "HIE-3004"


class PreconditionFailed(FhirError):
    status, issue_code, hie_code = 412, "conflict", "HIE-3005"


class MultipleMatches(FhirError):
    status, issue_code, hie_code = 412, "multiple-matches", "HIE-3006"


class NotSupported(FhirError):
    status, issue_code, hie_code = 501, "not-supported", "HIE-3007"


class TooCostly(FhirError):
    status, issue_code, hie_code = 400, "too-costly", "HIE-3008"


# -- 5xx: ours ----------------------------------------------------------------------


class InternalError(FhirError):
    status, issue_code, hie_code = 500, "exception", "HIE-9000"
    correlation_id: str = ""


def internal_error(correlation_id: str | None = None) -> InternalError:
    cid = correlation_id or uuid.uuid4().hex
    err = InternalError(f"Internal server error; correlation id {cid}")
    err.correlation_id = cid
    return err


def to_outcome(issues: list[Issue]) -> dict[str, Any]:
    return {"resourceType": "OperationOutcome", "issue": [i.to_json() for i in issues]}


def information_outcome(text: str, code: str = "informational", hie_code: str | None = None) -> dict[str, Any]:
    return to_outcome([Issue("information", code, text, [], hie_code)])


NOOP_CODE = "HIE-0100"
"""Information code on a write that changed nothing (content equal to the current version)."""
