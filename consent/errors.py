"""The error the consent package raises for Consents it cannot accept.

Raised while reading a FHIR R4 Consent (https://hl7.org/fhir/R4/consent.html) in the node's
profile; ``path`` names the element (``Consent.provision.provision[1].actor[0].reference``)
so the caller can turn it into an OperationOutcome issue with ``expression`` set
(https://hl7.org/fhir/R4/operationoutcome.html).
"""

from __future__ import annotations


class ConsentError(ValueError):
    """A Consent the profile cannot accept; ``path`` names the offending element."""

    def __init__(self, path: str, message: str) -> None:
        super().__init__(f"{path}: {message}")
        self.path = path
        self.message = message
