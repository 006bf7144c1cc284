"""The conformance resources the consent package publishes, loaded from ``consent/definitions``.

- ``StructureDefinition-hie-consent``: the node's Consent profile on base R4 Consent
  (https://hl7.org/fhir/R4/structuredefinition.html, https://hl7.org/fhir/R4/consent.html);
- ``CodeSystem-data-class`` and ``ValueSet-data-class``: the data-class vocabulary
  (https://hl7.org/fhir/R4/codesystem.html);
- ``ValueSet-viewer-role``: the actor roles the engine enforces.

The node serves them (e.g. from ``/StructureDefinition/hie-consent``) and lists the profile in
its CapabilityStatement. Reading files is the only I/O in the package, and only on request.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Final

DEFINITIONS_DIR: Final = Path(__file__).resolve().parent / "definitions"
NAMES: Final = (
    "StructureDefinition-hie-consent",
    "CodeSystem-data-class",
    "ValueSet-data-class",
    "ValueSet-viewer-role",
)


def load(name: str) -> dict[str, Any]:
    """One published resource as a JSON dict, by file stem (one of :data:`NAMES`)."""
    if name not in NAMES:
        raise KeyError(f"unknown consent definition {name!r}; known: {', '.join(NAMES)}")
    return json.loads((DEFINITIONS_DIR / f"{name}.json").read_text(encoding="utf-8"))


def load_all() -> list[dict[str, Any]]:
    return [load(name) for name in NAMES]
