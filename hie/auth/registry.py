"""The registry of participants as FHIR resources: facilities (``Organization``) and
practitioners with their roles (``Practitioner``, ``PractitionerRole``), including the
registered physicians (登録医) of a regional support hospital.

* A facility carries the 10-digit medical-institution code (JP Core
  ``MedicalOrganizationID``), its kind (hospital, clinic, dental clinic, pharmacy, care
  facility, imaging centre, lab centre), its role in the network (disclosing, viewing or
  both) and its region.
* A registered physician is a ``PractitionerRole`` of the hospital with code
  ``registered-physician``; registration runs to 31 March of the fiscal year (April to
  March) and renews each year unless withdrawn (``active = false``):
  :func:`renew_registrations` extends every active registration that has lapsed.

Spec: https://jpfhir.jp/fhir/core/ (JP_Organization, JP_Practitioner, JP_PractitionerRole);
https://hl7.org/fhir/R4/practitionerrole.html
"""

from __future__ import annotations

from datetime import date
from typing import Any

from hie.fhir.naming import MEDICAL_INSTITUTION_SYSTEM, NODE_CANONICAL

FACILITY_KINDS = ("hospital", "clinic", "dental-clinic", "pharmacy", "care-facility", "imaging-centre", "lab-centre")
NETWORK_ROLES = ("disclosing", "viewing", "both")
FACILITY_KIND_SYSTEM = f"{NODE_CANONICAL}/CodeSystem/facility-kind"
NETWORK_ROLE_EXT = f"{NODE_CANONICAL}/StructureDefinition/network-role"
REGION_EXT = f"{NODE_CANONICAL}/StructureDefinition/region"
ROLE_SYSTEM = f"{NODE_CANONICAL}/CodeSystem/practitioner-role"
REGISTERED_PHYSICIAN = "registered-physician"
PRACTITIONER_ID_PREFIX = "urn:oid:1.2.392.100495.20.3.41.1"


def fiscal_year_end(day: date) -> date:
    """31 March that ends the Japanese fiscal year containing ``day``."""
    return date(day.year + 1 if day.month >= 4 else day.year, 3, 31)


def facility(*, fid: str, code: str, name: str, kind: str, role: str, region: str) -> dict[str, Any]:
    if not (len(code) == 10 and code.isascii() and code.isdigit()):
        raise ValueError("the medical-institution code has 10 digits (prefecture 2, table 1, number 7)")
    if kind not in FACILITY_KINDS:
        raise ValueError(f"kind must be one of {FACILITY_KINDS}")
    if role not in NETWORK_ROLES:
        raise ValueError(f"role must be one of {NETWORK_ROLES}")
    return {
        "resourceType": "Organization", "id": fid,
        "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Organization"]},
        "extension": [{"url": NETWORK_ROLE_EXT, "valueCode": role}, {"url": REGION_EXT, "valueString": region}],
        "identifier": [{"system": MEDICAL_INSTITUTION_SYSTEM, "value": code}],
        "active": True,
        "type": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/organization-type", "code": "prov"}]},
                 {"coding": [{"system": FACILITY_KIND_SYSTEM, "code": kind}]}],
        "name": name,
        "address": [{"state": region, "country": "JP"}],
    }


def practitioner(*, pid: str, family: str, given: str, facility_code: str, local_id: str) -> dict[str, Any]:
    return {
        "resourceType": "Practitioner", "id": pid,
        "identifier": [{"system": PRACTITIONER_ID_PREFIX + facility_code, "value": local_id}],
        "active": True, "name": [{"family": family, "given": [given], "text": f"{family} {given}"}],
    }


def practitioner_role(*, rid: str, practitioner_id: str, organization_id: str, role: str,
                      start: date | None = None) -> dict[str, Any]:
    res: dict[str, Any] = {
        "resourceType": "PractitionerRole", "id": rid, "active": True,
        "practitioner": {"reference": f"Practitioner/{practitioner_id}"},
        "organization": {"reference": f"Organization/{organization_id}"},
        "code": [{"coding": [{"system": ROLE_SYSTEM, "code": role}]}],
    }
    if role == REGISTERED_PHYSICIAN:
        start = start or date.today()
        res["period"] = {"start": start.isoformat(), "end": fiscal_year_end(start).isoformat()}
    return res


def renewed(role: dict[str, Any], today: date) -> dict[str, Any] | None:
    """The registration renewed for the fiscal year of ``today``, or None when it is
    withdrawn, not a registration, or still current."""
    codes = {c.get("code") for cc in role.get("code") or () for c in cc.get("coding") or ()}
    if REGISTERED_PHYSICIAN not in codes or role.get("active") is False:
        return None
    end = (role.get("period") or {}).get("end")
    if end and date.fromisoformat(end[:10]) >= today:
        return None
    out = dict(role)
    out["period"] = {**(role.get("period") or {}), "end": fiscal_year_end(today).isoformat()}
    return out


def renew_registrations(node: Any, today: date | None = None) -> int:
    """Extend every lapsed, not withdrawn registered-physician role (run after 1 April)."""
    from hie.ingest import ingest_bundle
    from hie.principal import SYSTEM
    from hie.storage.db import read_tx

    today = today or date.today()
    with read_tx(node.engine) as conn:
        repo = node.repository(conn, SYSTEM)
        pks = repo.find_pks("PractitionerRole", [("role", f"{ROLE_SYSTEM}|{REGISTERED_PHYSICIAN}")])
        roles = [st.resource() for st in repo.load_pks(pks) if not st.deleted]
    updates = [r for r in (renewed(role, today) for role in roles) if r is not None]
    if updates:
        ingest_bundle(node, {"resourceType": "Bundle", "type": "transaction", "entry": [
            {"resource": r, "request": {"method": "PUT", "url": f"PractitionerRole/{r['id']}"}} for r in updates]},
            source="registry:renewal")
    return len(updates)
