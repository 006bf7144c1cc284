"""A patient's record as one caller may see it: the building block of ``Patient/$summary``,
the 6-information view and the clinician viewer.

:func:`collect` runs one bounded set of repository searches with the caller's principal, so
it returns exactly what the access predicate admits (consent, break-the-glass, disaster
mode) and nothing else:

1. ``repo.read("Patient", id)``: 404 for a hidden or absent patient (the same answer either
   way), 410 for a deleted one the caller still sees as a tombstone;
2. the same person's other Patient records the caller may see: every facility's local record
   carries a ``refer`` link to ``Patient/<person key>`` (docs/identity.md), so one search
   ``Patient?link=Patient/<key>`` and one ``Patient?_id=<key>`` (the regional Patient) find
   them; none for a record that belongs to no person yet;
3. the Patient compartment of each of those records for the summary types (:data:`TYPES`),
   one statement per page of :data:`PAGE` rows (each page re-evaluates the match, so pages are
   large), most recently updated first, at most :data:`MAX_ROWS` rows in all (a record larger
   than that is cut: :attr:`PatientRecord.capped` is set, and the summary is built from the
   ``MAX_ROWS`` most recently updated resources);
4. one include round for what the compartment does not hold (``Medication`` named by
   medication resources, ``Device`` named by ``DeviceUseStatement``);
5. the custodian of every collected row: the node's custodian ``meta.tag`` when the content
   carries one (the write guard keeps it equal to the row's custodian: only the system
   principal names a custodian by tag, and custody never changes), else the row column
   (``Repository.custodians``, predicate applied; one statement, for records facilities
   wrote through the API);
6. up to two Organization searches: the custodian facilities (institution code) and every
   Organization the collected resources reference.

Source facility: the custodian of the stored row (set at write time, :mod:`hie.storage.rowmeta`,
and equal to the content's custodian tag when there is one). ``meta.source`` is kept as the
resource carries it.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

import orjson

from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM
from hie.identity.model import IDENTITY_TAG_SYSTEM
from hie.storage.repository import Repository
from hie.storage.rowmeta import custodian_of

#: Patient-compartment types a summary reads.
TYPES: tuple[str, ...] = (
    "AllergyIntolerance", "Condition", "MedicationRequest", "MedicationStatement",
    "MedicationDispense", "MedicationAdministration", "Observation", "Immunization",
    "Procedure", "DeviceUseStatement", "CarePlan", "Encounter", "DiagnosticReport",
    "ImagingStudy", "DocumentReference", "Flag", "ClinicalImpression", "Goal",
)
#: Referenced types outside the compartment, read by one include round.
INCLUDES: tuple[tuple[str, bool, bool], ...] = (
    ("MedicationRequest:medication", False, False),
    ("MedicationStatement:medication", False, False),
    ("MedicationDispense:medication", False, False),
    ("MedicationAdministration:medication", False, False),
    ("DeviceUseStatement:device", False, False),
)
#: What a row's JSON holds when its include spec can add something.
_NEEDS_INCLUDE = {t: b'"medicationReference"' for t in (
    "MedicationRequest", "MedicationStatement", "MedicationDispense", "MedicationAdministration")}
_NEEDS_INCLUDE["DeviceUseStatement"] = b'"device"'
PAGE = 5000
_ORG_REFERENCE = re.compile(rb'"reference"\s*:\s*"Organization/([A-Za-z0-9\-.]{1,64})"')
MAX_ROWS = 10_000


@dataclass(frozen=True)
class Source:
    """Where an entry comes from: its custodian facility and the feed it names."""

    custodian: str | None  # 10-digit medical-institution code
    organization: str | None  # "Organization/<id>" of the registered facility, when visible
    display: str | None  # the facility's name
    meta_source: str | None  # meta.source of the resource


@dataclass
class PatientRecord:
    patient: dict[str, Any]
    by_type: dict[str, list[dict[str, Any]]] = field(default_factory=dict)
    #: "Organization/<id>" -> resource: custodian and referenced organizations the caller sees.
    organizations: dict[str, dict[str, Any]] = field(default_factory=dict)
    #: "Type/id" -> custodian code of the stored row.
    custodians: dict[str, str | None] = field(default_factory=dict)
    capped: bool = False
    base_url: str | None = None  # the FHIR base the record was collected for
    #: The person's Patient records the caller may see (``patient`` first): facility records
    #: and the regional Patient, each of whose compartments was collected.
    patients: list[dict[str, Any]] = field(default_factory=list)
    _by_code: Any = field(default=None, repr=False, compare=False)
    _names: dict[str | None, str] = field(default_factory=dict, repr=False, compare=False)

    def resources(self) -> Iterator[dict[str, Any]]:
        for items in self.by_type.values():
            yield from items

    def get(self, reference: str) -> dict[str, Any] | None:
        """The collected resource ``Type/id`` (the Patient and organizations included)."""
        if reference.startswith("Patient/"):
            return next((p for p in [self.patient, *self.patients] if p.get("id") == reference[8:]), None)
        if reference in self.organizations:
            return self.organizations[reference]
        rtype, _, rid = reference.partition("/")
        return next((r for r in self.by_type.get(rtype, []) if r.get("id") == rid), None)

    def source_of(self, resource: dict[str, Any]) -> Source:
        key = f"{resource.get('resourceType')}/{resource.get('id')}"
        code = self.custodians.get(key) or custodian_of(resource, None)
        org_ref, org = self._facility(code)
        meta = resource.get("meta") or {}
        return Source(code, org_ref, (org or {}).get("name"), meta.get("source"))

    def source_name(self, resource: dict[str, Any]) -> str:
        """The name of the facility ``resource`` came from ("—" if unknown), looked up once per
        custodian code: a page names the same few facilities thousands of times."""
        code = self.custodians.get(f"{resource.get('resourceType')}/{resource.get('id')}") \
            or custodian_of(resource, None)
        if code not in self._names:
            src = self.source_of(resource)
            self._names[code] = src.display or src.custodian or "—"
        return self._names[code]

    def _facility(self, code: str | None) -> tuple[str | None, dict[str, Any] | None]:
        if not code:
            return None, None
        if self._by_code is None or self._by_code[0] is not self.organizations:
            by_code: dict[str, tuple[str, dict[str, Any]]] = {}
            for ref, org in sorted(self.organizations.items()):
                if org.get("active", True) is not False:
                    for c in institution_codes(org):
                        by_code.setdefault(c, (ref, org))
            self._by_code = (self.organizations, by_code)
        ref, org = self._by_code[1].get(code, (None, None))
        return ref, org


def institution_codes(org: dict[str, Any]) -> set[str]:
    return {str(i.get("value")) for i in org.get("identifier") or ()
            if isinstance(i, dict) and i.get("system") == MEDICAL_INSTITUTION_SYSTEM and i.get("value")}


def collect(repo: Repository, patient_id: str, *, base_url: str | None = None,
            types: tuple[str, ...] = TYPES) -> PatientRecord:
    """Everything of ``types`` (default :data:`TYPES`) about ``patient_id`` that ``repo``'s
    principal may see."""
    patient = repo.read("Patient", patient_id).resource()  # NotFound exactly as a read
    patients = _person_records(repo, patient, base_url)
    rows: list[Any] = []
    capped = False
    for p in patients:
        more, cut = _compartment(repo, str(p["id"]), types, base_url, MAX_ROWS - len(rows))
        rows += more
        capped = capped or cut
    rows += _includes(repo, rows, base_url)
    record = PatientRecord(patient=patient, capped=capped, base_url=base_url, patients=patients)
    seen: set[tuple[str, str]] = set()
    org_ids: set[str] = set()
    untagged: dict[int, str] = {}  # pk -> "Type/id" of rows whose content names no custodian
    for pk, rtype, rid, content in rows:
        if rtype == "Patient" or (rtype, rid) in seen:
            continue
        seen.add((rtype, rid))
        res = orjson.loads(content)
        record.by_type.setdefault(rtype, []).append(res)
        org_ids.update(m.decode() for m in _ORG_REFERENCE.findall(content))
        tag = custodian_of(res, None)
        if tag is None:
            untagged[pk] = f"{rtype}/{rid}"
        else:
            record.custodians[f"{rtype}/{rid}"] = tag
    org_ids.update(r.split("/", 1)[1] for r in references(patient) if r.startswith("Organization/"))
    if untagged:
        record.custodians.update((untagged[pk], code) for pk, code in repo.custodians(list(untagged)).items())
    record.organizations = _organizations(repo, record, sorted(org_ids), base_url)
    return record


def person_key_of(patient: dict[str, Any]) -> str | None:
    """The regional person a Patient record belongs to: the regional Patient's own id, or the
    ``refer`` link every local record carries (docs/identity.md)."""
    tags = (patient.get("meta") or {}).get("tag") or ()
    if any(t.get("system") == IDENTITY_TAG_SYSTEM and t.get("code") == "regional-person" for t in tags):
        return str(patient.get("id"))
    for link in patient.get("link") or ():
        ref = str((link.get("other") or {}).get("reference") or "")
        if link.get("type") == "refer" and ref.startswith("Patient/"):
            return ref.split("/", 1)[1]
    return None


def _person_records(repo: Repository, patient: dict[str, Any], base_url: str | None) -> list[dict[str, Any]]:
    """``patient`` first, then the same person's other Patient records the caller may see (the
    other facilities' local records and the regional Patient): one search, or none for a
    record that belongs to no person yet."""
    key = person_key_of(patient)
    if not key:
        return [patient]
    out = {str(patient["id"]): patient}
    for criteria in ([("link", f"Patient/{key}")], [("_id", key)]):
        page = repo.search("Patient", criteria, count=PAGE, base_url=base_url, total=False)
        for _pk, _t, rid, content in page.rows:
            out.setdefault(rid, orjson.loads(content))
    return list(out.values())


def _compartment(repo: Repository, patient_id: str, types: tuple[str, ...], base_url: str | None,
                 room: int) -> tuple[list[Any], bool]:
    """Up to ``room`` rows of ``types`` in the Patient compartment, and whether more were left."""
    criteria = [("_type", ",".join(types))]
    rows: list[Any] = []
    while len(rows) < room:
        page = repo.search(None, criteria, sort="-_lastUpdated", count=min(PAGE, room - len(rows)),
                           offset=len(rows), compartment=("Patient", patient_id), base_url=base_url, total=False)
        rows.extend(page.rows)
        if not page.has_next:
            return rows, False
    return rows, True


def _includes(repo: Repository, rows: list[Any], base_url: str | None) -> list[Any]:
    """The include round, for the specs some collected row can use (a Medication only when a
    row names one by reference: most records carry the medication code inline)."""
    usable = {t for _pk, t, _i, c in rows if t in _NEEDS_INCLUDE and _NEEDS_INCLUDE[t] in c}
    wanted = [spec for spec in INCLUDES if spec[0].split(":", 1)[0] in usable]
    return repo.include(rows, wanted, base_url=base_url) if wanted else []


def _organizations(repo: Repository, record: PatientRecord, ids: list[str],
                   base_url: str | None) -> dict[str, dict[str, Any]]:
    codes = sorted({c for c in record.custodians.values() if c}
                   | {c for r in [record.patient, *record.resources()] if (c := custodian_of(r, None))})
    found: dict[str, dict[str, Any]] = {}
    queries = []
    if codes:
        queries.append([("identifier", ",".join(f"{MEDICAL_INSTITUTION_SYSTEM}|{c}" for c in codes))])
    if ids:
        queries.append([("_id", ",".join(ids))])
    for criteria in queries:
        page = repo.search("Organization", criteria, count=PAGE, base_url=base_url, total=False)
        for _pk, _t, rid, content in page.rows:
            found[f"Organization/{rid}"] = orjson.loads(content)
    return found


_REFERENCE = re.compile(rb'"reference":"((?:[^"\\]|\\.)*)"')


def references(node: Any) -> list[str]:
    """Every ``reference`` string inside ``node`` (read from its compact JSON: one C-level
    serialization and a regex instead of a Python walk over every element)."""
    raw = node if isinstance(node, bytes) else orjson.dumps(node)
    return [orjson.loads(b'"' + m + b'"') if b"\\" in m else m.decode() for m in _REFERENCE.findall(raw)]
