"""Checks every ``$summary`` document must pass (imported by the summary tests)."""

from __future__ import annotations

from typing import Any

from fhir.resources.R4B.bundle import Bundle

from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM

BASE = "http://testserver/fhir"
LOINC = "http://loinc.org"
REQUIRED = {"11450-4", "48765-2", "10160-0"}
LIST_EMPTY = "http://terminology.hl7.org/CodeSystem/list-empty-reason"


def resolve(ref: str, base: str = BASE) -> str:
    """A reference as the fullUrl it must equal (relative ones against the server base)."""
    return ref if ref.startswith(("http://", "https://", "urn:")) else f"{base}/{ref}"


def custodian_tag(res: dict[str, Any]) -> str | None:
    return next((t["code"] for t in (res.get("meta") or {}).get("tag") or ()
                 if t.get("system") == CUSTODIAN_TAG_SYSTEM), None)


def check_document(doc: dict[str, Any], patient_id: str) -> dict[str, Any]:
    """Assert ``doc`` is a valid IPS document for ``patient_id``; return its Composition."""
    Bundle.model_validate(doc)  # R4B structure, cardinalities, primitives
    assert doc["resourceType"] == "Bundle" and doc["type"] == "document"
    assert doc["identifier"]["value"] and doc["timestamp"]
    entries = doc["entry"]
    comp = entries[0]["resource"]
    assert comp["resourceType"] == "Composition"
    assert comp["type"]["coding"][0] == {"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}
    urls = [e["fullUrl"] for e in entries]
    assert len(urls) == len(set(urls)), "each resource once"
    by_url = {e["fullUrl"]: e["resource"] for e in entries}
    subject = by_url[resolve(comp["subject"]["reference"])]
    assert subject["resourceType"] == "Patient" and subject["id"] == patient_id
    for author in comp["author"]:
        assert resolve(author["reference"]) in by_url
    codes = [s["code"]["coding"][0]["code"] for s in comp["section"]]
    assert REQUIRED <= set(codes) and len(codes) == len(set(codes))
    for section in comp["section"]:
        div = section["text"]["div"]
        assert div.startswith('<div xmlns="http://www.w3.org/1999/xhtml"') and "<script" not in div
        if not section.get("entry"):
            assert section["code"]["coding"][0]["code"] in REQUIRED, "optional empty sections are left out"
            assert section["emptyReason"]["coding"][0] == {"system": LIST_EMPTY, "code": "unavailable",
                                                           "display": "Unavailable"}
        for ref in section.get("entry", []):
            assert resolve(ref["reference"]) in by_url, f"unresolvable section entry {ref}"
    assert "withheld" not in str(doc).lower()
    return comp


def section_refs(comp: dict[str, Any]) -> dict[str, list[str]]:
    return {s["code"]["coding"][0]["code"]: [r["reference"].split("/fhir/", 1)[-1] for r in s.get("entry", [])]
            for s in comp["section"]}
