"""The International Patient Summary document built from a :class:`PatientRecord`.

:func:`build_ips` returns a FHIR document Bundle (``type: document``, identifier,
timestamp): the Composition first (LOINC 60591-5, subject, author = the node as a
Device, one section per IPS section with data, by LOINC, narratives in Japanese or
English), then the Patient, the section entries, what they need to be read (their
Medications and Devices, the same person's other facility records they are about) and the
facilities they come from (custodian Organizations).

Traceability: every entry keeps its ``meta.source`` and carries its custodian as the
node's custodian ``meta.tag`` (added to the copy when the stored resource relies on the
row column alone); the custodian's Organization is in the Bundle when the caller may see
it; every narrative row names the facility.

Resolution: stored resources have their RESTful URL as ``fullUrl``; the Composition and
the node's Device are generated (``urn:uuid``); section entries and the Composition's
references are absolute URLs equal to an entry's ``fullUrl``.

Empty required sections (problems, allergies, medications) carry ``emptyReason``
``unavailable`` (http://terminology.hl7.org/CodeSystem/list-empty-reason): the node cannot
know whether the patient has none, and a reason such as ``withheld`` would tell whether
hidden data exists. Optional sections without entries are left out (IPS allows both).

Spec: https://hl7.org/fhir/uv/ips/STU2/ (Bundle-uv-ips, Composition-uv-ips,
Empty-Sections-and-Missing-Data)
"""

from __future__ import annotations

import copy
import uuid
from datetime import UTC, datetime
from typing import Any

from hie.clock import instant
from hie.fhir.naming import CUSTODIAN_TAG_SYSTEM, NODE_CANONICAL
from hie.storage.rowmeta import custodian_of
from hie.summary.clinical import path
from hie.summary.narrative import composition_div, section_div, words
from hie.summary.record import PatientRecord, references
from hie.summary.sections import LOINC, SectionSpec, section_entries

IPS = "http://hl7.org/fhir/uv/ips/StructureDefinition"
EMPTY_REASON = "http://terminology.hl7.org/CodeSystem/list-empty-reason"
DEFAULT_BASE = "http://localhost:8080/fhir"
NODE_DEVICE_NS = uuid.UUID("6f1d3c2a-8e57-4b0e-9a43-0c6d3f0b5e21")
SUPPORTING = ("Medication/", "Device/", "Patient/")  # what entries name, carried with them


def build_ips(record: PatientRecord, *, now: int | datetime, lang: str = "ja",
              base_url: str | None = None) -> dict[str, Any]:
    """The IPS document Bundle of ``record`` at ``now`` (epoch microseconds or a datetime)."""
    lang = "en" if lang == "en" else "ja"
    base = (base_url or record.base_url or DEFAULT_BASE).rstrip("/")
    stamp = _instant(now)
    device = node_device(base)
    sections = section_entries(record)
    shown = _shown(record, sections)
    comp_id = str(uuid.uuid4())
    composition = {
        "resourceType": "Composition", "id": comp_id, "language": lang,
        "meta": {"profile": [f"{IPS}/Composition-uv-ips"]},
        "text": {"status": "generated", "div": composition_div(record, lang, stamp)},
        "status": "final",
        "type": {"coding": [{"system": LOINC, "code": "60591-5", "display": "Patient summary Document"}]},
        "subject": {"reference": f"{base}/Patient/{record.patient['id']}"},
        "date": stamp,
        "author": [{"reference": f"urn:uuid:{device['id']}", "display": device["deviceName"][0]["name"]}],
        "title": words(lang)["title"],
        "confidentiality": "R" if any(r.get("meta", {}).get("security") for r in shown.values()) else "N",
        "section": [s for spec, entries in sections if (s := _section(spec, entries, record, base, lang))],
    }
    entries = [{"fullUrl": f"urn:uuid:{comp_id}", "resource": composition},
               {"fullUrl": f"{base}/Patient/{record.patient['id']}", "resource": record.patient}]
    entries += [{"fullUrl": f"{base}/{ref}", "resource": res} for ref, res in shown.items()]
    entries.append({"fullUrl": f"urn:uuid:{device['id']}", "resource": device})
    return {
        "resourceType": "Bundle", "id": str(uuid.uuid4()), "language": lang,
        "meta": {"profile": [f"{IPS}/Bundle-uv-ips"]},
        "identifier": {"system": "urn:ietf:rfc:3986", "value": f"urn:uuid:{uuid.uuid4()}"},
        "type": "document", "timestamp": stamp, "entry": entries,
    }


def node_device(base: str) -> dict[str, Any]:
    """The node as the document's author (the same id for every summary of one base URL)."""
    return {
        "resourceType": "Device", "id": str(uuid.uuid5(NODE_DEVICE_NS, base)),
        "identifier": [{"system": f"{NODE_CANONICAL}/sid/node", "value": base}],
        "deviceName": [{"name": "地域医療連携ネットワーク hie-node", "type": "user-friendly-name"}],
        "type": {"text": "Health information exchange node"},
    }


def _instant(now: int | datetime) -> str:
    if isinstance(now, datetime):
        return (now if now.tzinfo else now.replace(tzinfo=UTC)).isoformat()
    return instant(now)


def _section(spec: SectionSpec, entries: list[dict[str, Any]], record: PatientRecord, base: str,
             lang: str) -> dict[str, Any] | None:
    if not entries and not spec.required:
        return None
    out: dict[str, Any] = {
        "title": spec.title(lang),
        "code": {"coding": [{"system": LOINC, "code": spec.loinc, "display": spec.display}]},
        "text": {"status": "generated", "div": section_div(spec, entries, record, lang)},
    }
    if entries:
        out["entry"] = [{"reference": f"{base}/{r['resourceType']}/{r['id']}"} for r in entries]
    else:
        out["emptyReason"] = {"coding": [{"system": EMPTY_REASON, "code": "unavailable", "display": "Unavailable"}],
                              "text": words(lang)["empty"]}
    return out


def _shown(record: PatientRecord, sections: list[tuple[SectionSpec, list[dict[str, Any]]]]) -> dict[str, Any]:
    """``Type/id`` -> copy of every resource the document carries besides the Patient: section
    entries, the Medications and Devices they name, their facilities' Organizations."""
    shown: dict[str, dict[str, Any]] = {}
    for _spec, entries in sections:
        for res in entries:
            shown.setdefault(f"{res['resourceType']}/{res['id']}", _traceable(record, res))
    main = f"Patient/{record.patient.get('id')}"
    for res in list(shown.values()):
        for ref in references(res):
            target = record.get(ref) if ref.startswith(SUPPORTING) and ref != main else None
            if target is not None:
                shown.setdefault(ref, _traceable(record, target))
    for res in [record.patient, *shown.values()]:
        org = record.source_of(res).organization
        refs = [org] if org else []
        refs += [r for r in references(res) if r.startswith("Organization/")]
        for ref in refs:
            if ref in record.organizations:
                shown.setdefault(ref, record.organizations[ref])
    return shown


def _traceable(record: PatientRecord, res: dict[str, Any]) -> dict[str, Any]:
    """``res`` with its custodian as a ``meta.tag`` (added only when the content lacks it)."""
    code = record.source_of(res).custodian
    if not code or custodian_of(res, None) == code:
        return res
    out = copy.deepcopy(res)
    meta = out.setdefault("meta", {})
    meta["tag"] = [t for t in meta.get("tag") or () if t.get("system") != CUSTODIAN_TAG_SYSTEM] + [
        {"system": CUSTODIAN_TAG_SYSTEM, "code": code}]
    return out


def shownreferences(bundle: dict[str, Any]) -> list[str]:
    """``Type/id`` of every stored resource a summary Bundle carries (for the audit trail)."""
    out = []
    for entry in bundle.get("entry") or ():
        url = str(entry.get("fullUrl") or "")
        res = entry.get("resource") or {}
        if not url.startswith("urn:") and res.get("id"):
            out.append(f"{res.get('resourceType')}/{res['id']}")
    return out


def section_codes(bundle: dict[str, Any]) -> list[str]:
    comp = (bundle.get("entry") or [{}])[0].get("resource") or {}
    return [str(path(s, "code.coding.code")) for s in comp.get("section") or ()]
