"""ADT messages: demographics (SS-MIX2 ADT-00), encounter events (ADT-01..52), allergies (ADT-61).

Follows the JAMI ConceptMaps ``message-adt-00-to-bundle``, ``message-adt-22-to-
bundle``, ``message-adt-61-to-bundle``, ``segment-pv1-to-encounter``,
``segment-adt-00-al1-to-allergyintolerance``, ``segment-adt-61-iam-to-
allergyintolerance``, ``segment-adt-00-in1-to-coverage``, ``table-v2-0003-to-
encounterstatus`` / ``-encounterlocationstatus``, ``table-v2-0004-to-v3-actcode``,
``table-v2-0127-...``, ``table-v2-0128-...``:
https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir

Divergences, on purpose: the PV1 of a demographics message (A08) is a snapshot, not
an event, so ADT-00 makes no Encounter. An encounter event without a visit number
(PV1-19) or admission date (PV1-44) cannot be tied to its stay; it becomes its own
Encounter (keyed by event and message) and a warning says so.
"""

from __future__ import annotations

from typing import Any

from .. import jahis
from ..bundle import BundleBuilder
from ..errors import MappingError, TABLE_VALUE_NOT_FOUND, UnsupportedMessage
from ..jahis import MapContext
from ..message import Message
from . import common

# Table 0003 event -> (Encounter.status, location status), JAMI ConceptMaps.
ENCOUNTER_EVENTS: dict[str, tuple[str, str]] = {
    "A54": ("in-progress", "active"), "A55": ("in-progress", "active"),
    "A04": ("arrived", "active"), "A14": ("planned", "planned"), "A27": ("cancelled", "planned"),
    "A01": ("arrived", "active"), "A11": ("cancelled", "active"), "A21": ("onleave", "active"),
    "A52": ("in-progress", "active"), "A22": ("in-progress", "active"), "A53": ("onleave", "active"),
    "A15": ("in-progress", "planned"), "A26": ("in-progress", "planned"),
    "A02": ("in-progress", "active"), "A12": ("in-progress", "active"),
    "A16": ("in-progress", "planned"), "A25": ("in-progress", "planned"),
    "A03": ("finished", "completed"), "A13": ("in-progress", "active"),
}
DEMOGRAPHIC_EVENTS = {"A08", "A23", "A28", "A31"}
_CLASS = {"I": ("IMP", "inpatient encounter"), "O": ("AMB", "ambulatory"), "E": ("EMER", "emergency"),
          "P": ("PRENC", "pre-admission"), "R": ("IMP", "inpatient encounter"),
          "B": ("AMB", "ambulatory"), "N": ("AMB", "ambulatory")}
V3_ACTCODE = "http://terminology.hl7.org/CodeSystem/v3-ActCode"
PARTICIPATION = "http://terminology.hl7.org/CodeSystem/v3-ParticipationType"
SSMIX_DEPARTMENT = "urn:oid:1.2.392.200250.2.2.2"
_ALLERGY_CATEGORY = {"DA": "medication", "FA": "food", "EA": "environment", "AA": "biologic",
                     "PA": "environment", "LA": "environment", "MA": None, "MC": None}
_SEVERITY = {"MI": "mild", "MO": "moderate", "SV": "severe"}
_ALLERGY_CLINICAL = "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical"
_ALLERGY_VERIFICATION = "http://terminology.hl7.org/CodeSystem/allergyintolerance-verification"
JP_ALLERGY = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_AllergyIntolerance"


def map_adt(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    evn = msg.first("EVN")
    event = msg.message_type[1] or (evn.get(1) if evn is not None else None)
    if event in DEMOGRAPHIC_EVENTS:
        _demographics(msg, b, ctx)
    elif event == "A60":
        if ctx.kind is None:
            common.put_patient(msg, b, ctx)
        _iam_allergies(msg, b, ctx)
    elif event in ENCOUNTER_EVENTS:
        # In SS-MIX2 the demographics record is ADT-00; the PID of an encounter event
        # is a copy that may be older (the sample's ADT-52 even has another birth
        # date), so it only creates a missing patient. Outside SS-MIX2 every ADT
        # message carries current demographics (HL7 v2.5 chapter 3).
        if ctx.kind is None:
            common.put_patient(msg, b, ctx)
        _encounter(msg, b, ctx, event)
        _al1_allergies(msg, b, ctx)
    else:
        raise UnsupportedMessage("MSH-9.2", f"ADT event {event!r} is not mapped")


def _demographics(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    common.put_patient(msg, b, ctx)
    for obx in msg.all("OBX"):
        code = obx.get(3)
        vital = code.startswith("9N")  # JLAC10 9N... = body measurements (height, weight)
        cat = common.category("vital-signs", "Vital Signs") if vital else common.category("laboratory", "Laboratory")
        obs = common.observation(obx, b, ctx, key=("ADT-OBX", obx.get(3, 3), code), category=cat)
        if obs is not None:
            b.put(obs, obx.loc())
    _al1_allergies(msg, b, ctx)
    for in1 in msg.all("IN1"):
        _coverage(in1, b, ctx)


def _encounter(msg: Message, b: BundleBuilder, ctx: MapContext, event: str) -> None:
    pv1 = common.require_segment(msg, "PV1")
    evn = msg.first("EVN")
    status, loc_status = ENCOUNTER_EVENTS[event]
    pclass = pv1.get(2)
    if pclass not in _CLASS:
        raise MappingError("PV1-2", f"patient class {pclass!r} not in HL7 table 0004",
                           code=TABLE_VALUE_NOT_FOUND)
    visit = pv1.get(19)
    admit = jahis.ts(pv1.get(44), "PV1-44", ctx)
    discharge = jahis.ts(pv1.get(45), "PV1-45", ctx)
    if visit:
        key: tuple[str, ...] = ("visit", visit)
    elif admit and pclass == "I":
        key = ("admission", pv1.get(44))
    else:
        key = ("event", event, msg.control_id, evn.get(2) if evn else "", ctx.source)
        ctx.warn("PV1-19", "no visit number (PV1-19) or admission date (PV1-44): the event is "
                           "recorded as its own Encounter and is not linked to the stay")
    code, display = _CLASS[pclass]
    enc: dict[str, Any] = {
        "resourceType": "Encounter", "id": b.new_id("Encounter", *key),
        "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Encounter"]},
        "status": status,
        "class": {"system": V3_ACTCODE, "code": code, "display": display},
        "subject": b.patient_ref(),
    }
    if visit:
        enc["identifier"] = [{"system": f"http://hie.example.jp/fhir/NamingSystem/visit/{ctx.facility}",
                              "value": visit}]
    dept = pv1.get(10)
    if dept:
        enc["serviceType"] = {"coding": [{"system": SSMIX_DEPARTMENT if _is_ssmix2(msg, ctx) else
                                          f"http://hie.example.jp/fhir/CodeSystem/local/{ctx.facility}/HL70069",
                                          "code": dept}]}
    participants = []
    for field, ptype in ((7, "ATND"), (17, "ADM")):
        ref = jahis.practitioner_ref(pv1, field, ctx)
        if ref:
            participants.append({"type": [{"coding": [{"system": PARTICIPATION, "code": ptype}]}],
                                 "individual": ref})
    if participants:
        enc["participant"] = participants
    period: dict[str, str] = {}
    if admit:
        period["start"] = admit
    if discharge:
        period["end"] = discharge
    if period:
        enc["period"] = period
    location = _location(pv1, 3)
    if location:
        lp: dict[str, Any] = {"location": {"display": location}, "status": loc_status}
        start = None
        if event in ("A21", "A22", "A02") and evn is not None:
            start = jahis.ts(evn.get(6), "EVN-6", ctx)
        if event == "A01":
            start = admit
        lp_period = {}
        if start:
            lp_period["start"] = start
        if event == "A03" and discharge:
            lp_period["end"] = discharge
        if lp_period:
            lp["period"] = lp_period
        locations = [lp]
        prior = _location(pv1, 6)
        if prior and event == "A02":
            locations.insert(0, {"location": {"display": prior}, "status": "completed"})
        enc["location"] = locations
    disposition = pv1.get(36)
    if disposition:
        enc["hospitalization"] = {"dischargeDisposition": {"coding": [{
            "system": f"http://hie.example.jp/fhir/CodeSystem/local/{ctx.facility}/HL70112",
            "code": disposition}]}}
    enc["serviceProvider"] = dict(b.org_ref)
    b.put(enc, "PV1")


def _location(pv1, field: int) -> str:
    c = pv1.rep_components(field)
    parts = [p for p in c[:3] if p] if c else []
    return "/".join(parts)


def _is_ssmix2(msg: Message, ctx: MapContext) -> bool:
    return bool(ctx.kind) or "SS-MIX2" in msg.msh.get(21)


def _allergy_base(b: BundleBuilder, key: tuple[str, ...]) -> dict[str, Any]:
    return {"resourceType": "AllergyIntolerance", "id": b.new_id("AllergyIntolerance", *key),
            "meta": {"profile": [JP_ALLERGY]}}


def _al1_allergies(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    for al1 in msg.all("AL1"):
        code = jahis.codeable(al1, 3, ctx)
        if code is None:
            raise MappingError("AL1-3", "allergen is empty")
        res = _allergy_base(b, ("allergen", al1.get(3, 3), al1.get(3, 1) or al1.get(3, 2)))
        cat = _category(al1.get(2, 1), "AL1-2")
        res["clinicalStatus"] = {"coding": [{"system": _ALLERGY_CLINICAL, "code": "active"}]}
        if cat:
            res["category"] = [cat]
        res["code"] = code
        res["patient"] = b.patient_ref()
        sev = al1.get(4)
        reaction_text = [al1.get(5, rep=i) for i in range(len(al1.reps(5)))]
        if sev or any(reaction_text):
            reaction: dict[str, Any] = {"manifestation": [{"text": t} for t in reaction_text if t]
                                        or [{"text": "no reaction information"}]}
            if sev in _SEVERITY:
                reaction["severity"] = _SEVERITY[sev]
            res["reaction"] = [reaction]
        onset = jahis.date_only(al1.get(6), "AL1-6", ctx)
        if onset:
            res["onsetDateTime"] = onset
        b.put(res, al1.loc(), replace=True)


def _category(code: str, loc: str) -> str | None:
    if not code:
        return None
    if code not in _ALLERGY_CATEGORY:
        raise MappingError(loc, f"allergen type {code!r} not in HL7 table 0127", code=TABLE_VALUE_NOT_FOUND)
    return _ALLERGY_CATEGORY[code]


def _iam_allergies(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    for iam in msg.all("IAM"):
        code = jahis.codeable(iam, 3, ctx)
        if code is None:
            raise MappingError(iam.loc(3), "allergen is empty")
        uid = iam.get(7)
        key = ("iam", uid) if uid else ("allergen", iam.get(3, 3), iam.get(3, 1) or iam.get(3, 2))
        res = _allergy_base(b, key)
        action = iam.get(6, 1)
        if action == "D":
            # Allergy deleted at the source: keep the record, mark it refuted/inactive
            # so viewers see the correction (a DELETE would lose who said what).
            res["clinicalStatus"] = {"coding": [{"system": _ALLERGY_CLINICAL, "code": "inactive"}]}
            res["verificationStatus"] = {"coding": [{"system": _ALLERGY_VERIFICATION, "code": "entered-in-error"}]}
        elif action in ("A", "U", "X", ""):
            res["clinicalStatus"] = {"coding": [{"system": _ALLERGY_CLINICAL, "code": "active"}]}
        else:
            raise MappingError(iam.loc(6), f"allergy action {action!r} not in HL7 table 0323",
                               code=TABLE_VALUE_NOT_FOUND)
        if uid:
            res["identifier"] = [{"system": f"http://hie.example.jp/fhir/NamingSystem/allergy/{ctx.facility}",
                                  "value": uid}]
        cat = _category(iam.get(2, 1), iam.loc(2))
        if cat:
            res["category"] = [cat]
        res["code"] = code
        res["patient"] = b.patient_ref()
        onset = jahis.ts(iam.get(11), iam.loc(11), ctx)
        if onset:
            res["onsetDateTime"] = onset
        elif iam.get(12):
            res["onsetString"] = iam.get(12)
        recorded = jahis.ts(iam.get(13), iam.loc(13), ctx)
        if recorded:
            res["recordedDate"] = recorded
        sev = iam.get(4, 1)
        manifest = iam.get(5)
        if sev or manifest:
            reaction: dict[str, Any] = {"manifestation": [{"text": manifest or "no reaction information"}]}
            if manifest:
                reaction["description"] = manifest
            if sev:
                if sev not in _SEVERITY:
                    raise MappingError(iam.loc(4), f"severity {sev!r} not in HL7 table 0128",
                                       code=TABLE_VALUE_NOT_FOUND)
                reaction["severity"] = _SEVERITY[sev]
            res["reaction"] = [reaction]
        b.put(res, iam.loc(), replace=True)


def _coverage(in1, b: BundleBuilder, ctx: MapContext) -> None:
    """IN1 -> JP_Coverage (ConceptMap segment-adt-00-in1-to-coverage)."""
    plan = jahis.codeable(in1, 2, ctx)
    insurer = in1.get(3)
    if not insurer:
        raise MappingError("IN1-3", "insurer number is empty")
    res: dict[str, Any] = {
        "resourceType": "Coverage",
        "id": b.new_id("Coverage", "IN1", insurer, in1.get(2, 1)),
        "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Coverage"]},
        "status": "active",
    }
    if plan:
        res["type"] = plan
    res["subscriberId"] = in1.get(36) or in1.get(10) or ""
    if not res["subscriberId"]:
        del res["subscriberId"]
    res["beneficiary"] = b.patient_ref()
    rel = in1.get(17, 1)
    if rel:
        res["relationship"] = {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0063",
                                           "code": rel, **({"display": in1.get(17, 2)} if in1.get(17, 2) else {})}]}
    period = {}
    start = jahis.date_only(in1.get(12), "IN1-12", ctx)
    end = jahis.date_only(in1.get(13), "IN1-13", ctx)
    if start:
        period["start"] = start
    if end:
        period["end"] = end
    if period:
        res["period"] = period
    payor: dict[str, Any] = {"identifier": {
        "system": "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber", "value": insurer}}
    if in1.get(4):
        payor["display"] = in1.get(4)
    res["payor"] = [payor]
    b.put(res, in1.loc())
