"""The cross-facility medication list: one row per drug, keyed on its drug code.

Every MedicationRequest (prescriber), MedicationDispense (pharmacy), MedicationStatement
and MedicationAdministration the caller may see is put under the drug it names. Two records
are the same drug only when they share an **exact** (system, code) pair of a drug code
system: YJ, HOT (7/9/13 digits, each its own system) or the MHLW generic-name code
(一般名処方マスタ). Nothing is matched by name, spelling or code prefix; a record whose
medication carries no drug code is its own row. A record that carries two codes (HOT9 and
YJ, say) joins the rows of both, and a row that ends up with two different codes of one
system shows that as a conflict rather than choosing one.

Current or past comes only from what a record states: its status, or an explicit end date
(validity period, effective period end, dispensed supply). Disagreements between records
(one prescriber stopped the drug, another still orders it; different doses) are listed as
conflicts on the row, never resolved.

Spec: https://hl7.org/fhir/R4/medicationrequest.html ; DOMAIN.md "Code systems" ;
JP Core JP_MedicationRequest / JP_MedicationDispense.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import date, timedelta
from typing import Any

YJ = "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code"
HOT7 = "http://medis.or.jp/CodeSystem/master-HOT7"
HOT9 = "http://medis.or.jp/CodeSystem/master-HOT9"
HOT13 = "http://medis.or.jp/CodeSystem/master-HOT13"
GENERIC = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationGeneralOrderCode"
#: The drug code systems, in the order a row's key is chosen (label shown in the list).
DRUG_SYSTEMS: dict[str, str] = {YJ: "YJ", HOT9: "HOT9", HOT13: "HOT13", HOT7: "HOT7", GENERIC: "一般名"}

MED_TYPES = ("MedicationRequest", "MedicationDispense", "MedicationStatement", "MedicationAdministration")

_CURRENT = {
    "MedicationRequest": {"active", "on-hold"},
    "MedicationDispense": {"in-progress", "preparation", "on-hold"},
    "MedicationStatement": {"active", "intended", "on-hold"},
    "MedicationAdministration": {"in-progress", "on-hold"},
}
_PAST = {
    "MedicationRequest": {"completed", "stopped", "cancelled"},
    "MedicationDispense": {"cancelled", "stopped", "declined"},
    "MedicationStatement": {"completed", "stopped", "not-taken"},
    "MedicationAdministration": {"completed", "stopped", "not-done"},
}
_STOPPED = {"stopped", "cancelled", "not-taken", "not-done", "declined"}

Code = tuple[str, str]


@dataclass
class MedRecord:
    resource_type: str
    id: str
    source: str
    status: str
    when: str | None
    name: str
    codes: list[Code]
    dosage: str
    state: str  # current | past | unknown | error

    @property
    def ref(self) -> str:
        return f"{self.resource_type}/{self.id}"


@dataclass
class DrugRow:
    codes: list[Code]  # the exact drug codes of the row (one per system unless in conflict)
    names: list[str]
    records: list[MedRecord] = field(default_factory=list)
    state: str = "unknown"  # current | past | unknown
    conflicts: list[str] = field(default_factory=list)

    @property
    def key(self) -> Code | None:
        for system in DRUG_SYSTEMS:
            for c in self.codes:
                if c[0] == system:
                    return c
        return None

    @property
    def sources(self) -> list[str]:
        return sorted({r.source for r in self.records})


def _concept(resource: dict[str, Any], medications: dict[str, dict[str, Any]]) -> dict[str, Any]:
    cc = resource.get("medicationCodeableConcept")
    if isinstance(cc, dict):
        return cc
    ref = (resource.get("medicationReference") or {}).get("reference") or ""
    if ref.startswith("#"):
        for c in resource.get("contained") or []:
            if c.get("resourceType") == "Medication" and c.get("id") == ref[1:]:
                return c.get("code") or {}
    med = medications.get(ref)
    return (med or {}).get("code") or {}


def _drug_codes(concept: dict[str, Any]) -> list[Code]:
    out: list[Code] = []
    for c in concept.get("coding") or []:
        system, code = c.get("system"), c.get("code")
        if system in DRUG_SYSTEMS and isinstance(code, str) and code.strip():
            out.append((system, code.strip()))
    return list(dict.fromkeys(out))


def _name(concept: dict[str, Any]) -> str:
    if concept.get("text"):
        return str(concept["text"])
    for c in concept.get("coding") or []:
        if c.get("display"):
            return str(c["display"])
    return ""


def _when(r: dict[str, Any]) -> str | None:
    t = r["resourceType"]
    if t == "MedicationRequest":
        return r.get("authoredOn")
    if t == "MedicationDispense":
        return r.get("whenHandedOver") or r.get("whenPrepared")
    period = r.get("effectivePeriod") or {}
    return r.get("effectiveDateTime") or period.get("start") or r.get("dateAsserted")


def _end_date(r: dict[str, Any]) -> date | None:
    """An explicit end the record states, if any."""
    from hie.web.wareki import parse_date

    t = r["resourceType"]
    end: str | None = None
    if t == "MedicationRequest":
        end = ((r.get("dispenseRequest") or {}).get("validityPeriod") or {}).get("end")
    elif t in ("MedicationStatement", "MedicationAdministration"):
        end = (r.get("effectivePeriod") or {}).get("end")
    elif t == "MedicationDispense":
        handed = parse_date(r.get("whenHandedOver"))
        days = (r.get("daysSupply") or {}).get("value")
        if handed and handed[1] == 3 and isinstance(days, int | float):
            return handed[0] + timedelta(days=int(days))
        return None
    parsed = parse_date(end)
    return parsed[0] if parsed and parsed[1] == 3 else None


def _state(r: dict[str, Any], today: date) -> str:
    t, status = r["resourceType"], r.get("status") or ""
    if status == "entered-in-error":
        return "error"
    end = _end_date(r)
    if status in _PAST.get(t, set()):
        return "past"
    if end is not None and end < today:
        return "past"
    if status in _CURRENT.get(t, set()):
        return "current"
    if t == "MedicationDispense" and status == "completed" and end is not None:
        return "current"  # supply handed over and not yet used up
    return "unknown"


def _dosage(r: dict[str, Any]) -> str:
    dosages = r.get("dosageInstruction") or r.get("dosage") or []
    if isinstance(dosages, dict):  # MedicationAdministration.dosage
        return str(dosages.get("text") or "")
    return " / ".join(str(d.get("text")) for d in dosages if isinstance(d, dict) and d.get("text"))


def record_of(r: dict[str, Any], source: str, today: date,
              medications: dict[str, dict[str, Any]] | None = None) -> MedRecord:
    concept = _concept(r, medications or {})
    return MedRecord(r["resourceType"], str(r.get("id")), source, r.get("status") or "", _when(r), _name(concept),
                     _drug_codes(concept), _dosage(r), _state(r, today))


def _groups(records: list[MedRecord]) -> list[list[MedRecord]]:
    """Records joined by shared exact codes (union-find over codes); code-less records alone."""
    parent = list(range(len(records)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    first: dict[Code, int] = {}
    for i, rec in enumerate(records):
        for code in rec.codes:
            if code in first:
                parent[find(i)] = find(first[code])
            else:
                first[code] = i
    groups: dict[int, list[MedRecord]] = {}
    for i, rec in enumerate(records):
        groups.setdefault(find(i), []).append(rec)
    return list(groups.values())


def _instant(when: str | None) -> int:
    from hie.clock import parse_instant_us

    try:
        return parse_instant_us(when) if when else 0
    except ValueError:
        return 0


def _row(records: list[MedRecord]) -> DrugRow:
    records = sorted(records, key=lambda r: (_instant(r.when), r.ref), reverse=True)
    codes = list(dict.fromkeys(c for r in records for c in r.codes))
    names = list(dict.fromkeys(r.name for r in records if r.name))
    row = DrugRow(codes, names, records)
    states = {r.state for r in records if r.state != "error"}
    row.state = "current" if "current" in states else ("past" if "past" in states else "unknown")
    row.conflicts = _conflicts(row)
    return row


def _conflicts(row: DrugRow) -> list[str]:
    out: list[str] = []
    for system, label in DRUG_SYSTEMS.items():
        in_system = sorted({c for s, c in row.codes if s == system})
        if len(in_system) > 1:
            out.append(f"codes:{label}:{', '.join(in_system)}")
    live = [r for r in row.records if r.state == "current"]
    stopped = [r for r in row.records if r.status in _STOPPED]
    if live and stopped:
        out.append("status:" + "; ".join(f"{r.source} {r.status}" for r in [*stopped, *live]))
    doses = sorted({r.dosage for r in live if r.dosage and r.resource_type == "MedicationRequest"})
    if len(doses) > 1:
        out.append("dosage:" + " | ".join(doses))
    return out


def reconcile(resources: Iterable[dict[str, Any]], source_of: Callable[[dict[str, Any]], str], *,
              today: date) -> list[DrugRow]:
    """The medication list of ``resources`` (any types; medication records are picked out and
    Medication resources resolve ``medicationReference``): current rows first, then past,
    then those whose state no record states; within each, by the newest record."""
    items = list(resources)
    meds = {f"Medication/{r.get('id')}": r for r in items if r.get("resourceType") == "Medication"}
    records = [record_of(r, source_of(r), today, meds) for r in items if r.get("resourceType") in MED_TYPES]
    rows = [_row(g) for g in _groups(records)]
    order = {"current": 0, "past": 1, "unknown": 2}
    rows.sort(key=lambda row: _instant(row.records[0].when), reverse=True)
    rows.sort(key=lambda row: order[row.state])
    return rows
