"""Mapping pieces shared by the message kinds: patient, observation (OBX), status tables.

PID -> Patient follows ConceptMap ``segment-pid-to-patient`` (JAMI); OBX ->
Observation follows ``segment-oml-11-obx-to-observation`` / ``segment-adt-00-obx-
to-observation``: OBX-2 selects value[x], OBX-3 code, OBX-6 unit, OBX-7 reference
range, OBX-8 interpretation, OBX-11 status, OBX-14 effective.
https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir
"""

from __future__ import annotations

import re
from typing import Any

from .. import jahis
from ..bundle import BundleBuilder
from ..errors import MappingError, TABLE_VALUE_NOT_FOUND, DATA_TYPE_ERROR
from ..ids import patient_system
from ..jahis import MapContext
from ..message import Message, Segment

DISABILITY_EXTENSION = "http://hl7.org/fhir/StructureDefinition/patient-disability"
_GENDER = {"M": "male", "F": "female", "O": "other", "U": "unknown", "A": "other", "N": "unknown"}
# HL7 table 0085 (observation result status) -> FHIR ObservationStatus.
OBX_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "preliminary",
              "S": "preliminary", "I": "registered", "X": "cancelled", "D": "entered-in-error",
              "W": "entered-in-error", "A": "amended", "U": "final", "O": "registered", "N": "cancelled"}
# HL7 table 0078 abnormal flags -> v3-ObservationInterpretation (same codes for the common ones).
_INTERPRETATION = {"L", "H", "LL", "HH", "N", "A", "AA", "<", ">", "S", "R", "I", "U", "D", "B", "W",
                   "NEG", "POS", "IND", "ND", "HU", "LU"}
V3_INTERPRETATION = "http://terminology.hl7.org/CodeSystem/v3-ObservationInterpretation"
OBS_CATEGORY = "http://terminology.hl7.org/CodeSystem/observation-category"
_RANGE = re.compile(r"^\s*([-+]?\d+(?:\.\d+)?)?\s*[-~〜－]\s*([-+]?\d+(?:\.\d+)?)?\s*$")
_SN_COMPARATOR = {"<": "<", ">": ">", "<=": "<=", ">=": ">="}


def require_segment(msg: Message, sid: str) -> Segment:
    seg = msg.first(sid)
    if seg is None:
        raise MappingError(sid, f"required segment {sid} is missing")
    return seg


def patient_number(msg: Message, ctx: MapContext) -> str:
    """The facility patient number: PID-3 (first PI/MR or untyped repetition).

    In an SS-MIX2 tree the storage path also names the patient; when the two
    disagree the storage path wins (it is the index the EHR filed the message under)
    and a warning is recorded, or the message is rejected with ``strict_patient_id``.
    """
    pid = require_segment(msg, "PID")
    chosen = ""
    for i in range(len(pid.reps(3))):
        value, idtype = pid.get(3, 1, rep=i), pid.get(3, 5, rep=i)
        if value and idtype in ("PI", "MR", "PT", ""):
            chosen = value
            break
    if not chosen and pid.reps(3):
        chosen = pid.get(3, 1)
    if ctx.storage_patient_id:
        if chosen and chosen != ctx.storage_patient_id:
            if ctx.strict_patient_id:
                raise MappingError("PID-3", f"patient id {chosen!r} differs from the storage "
                                            f"patient id {ctx.storage_patient_id!r}")
            ctx.warn("PID-3", f"patient id {chosen!r} differs from the storage patient id "
                              f"{ctx.storage_patient_id!r}; the storage id is used")
        return ctx.storage_patient_id
    if not chosen:
        raise MappingError("PID-3", "no patient identifier")
    if not re.fullmatch(r"[\x21-\x7e]{1,64}", chosen):
        raise MappingError("PID-3", f"patient identifier {chosen!r} is not printable ASCII")
    return chosen


def patient_resource(msg: Message, b: BundleBuilder, ctx: MapContext) -> dict[str, Any]:
    """PID (+ NK1, DB1) -> JP_Patient."""
    pid = require_segment(msg, "PID")
    res: dict[str, Any] = {
        "resourceType": "Patient", "id": b.patient_id,
        "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient"]},
        "identifier": [{"system": patient_system(ctx.facility), "value": b.patient_number}],
    }
    names = jahis.human_names(pid, 5)
    if not names:
        raise MappingError("PID-5", "patient name is empty")
    res["name"] = names
    tel = jahis.telecoms(pid, 13, "home") + jahis.telecoms(pid, 14, "work")
    if tel:
        res["telecom"] = tel
    sex = pid.get(8)
    if sex:
        if sex not in _GENDER:
            raise MappingError("PID-8", f"sex {sex!r} not in HL7 table 0001", code=TABLE_VALUE_NOT_FOUND)
        res["gender"] = _GENDER[sex]
    birth = jahis.date_only(pid.get(7), "PID-7", ctx)
    if birth:
        res["birthDate"] = birth
    if pid.get(30) == "Y":
        death = jahis.ts(pid.get(29), "PID-29", ctx)
        res["deceasedDateTime" if death else "deceasedBoolean"] = death or True
    addr = jahis.addresses(pid, 11)
    if addr:
        res["address"] = addr
    contacts = []
    for nk1 in msg.all("NK1"):
        contact: dict[str, Any] = {}
        rel = jahis.codeable(nk1, 3, ctx)
        if rel:
            contact["relationship"] = [rel]
        nk_names = jahis.human_names(nk1, 2)
        if nk_names:
            contact["name"] = nk_names[0]  # R4 contact.name is 0..1: the first (kanji) form
        tel = jahis.telecoms(nk1, 5, "home") + jahis.telecoms(nk1, 6, "work")
        if tel:
            contact["telecom"] = tel
        nk_addr = jahis.addresses(nk1, 4)
        if nk_addr:
            contact["address"] = nk_addr[0]
        org = nk1.get(13)
        if org:
            contact["organization"] = {"display": org}
        if contact:
            contacts.append(contact)
    if contacts:
        res["contact"] = contacts
    for db1 in msg.all("DB1"):
        if db1.get(4) == "Y":
            res.setdefault("extension", []).append({
                "url": DISABILITY_EXTENSION,
                "valueCodeableConcept": {"coding": [jahis.v2_table_coding("0136", "Y", "Yes")],
                                         "text": "disabled (DB1-4)"}})
    res["managingOrganization"] = dict(b.org_ref)
    return res


def put_patient(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    b.put(patient_resource(msg, b, ctx), "PID")


def observation_value(obx: Segment, ctx: MapContext) -> dict[str, Any]:
    """OBX-2/5/6 -> {valueX: ...}; empty dict when OBX-5 is empty."""
    vtype = obx.get(2)
    loc = obx.loc(5)
    raw_reps = obx.reps(5)
    if not raw_reps:
        return {}
    text_value = obx.get(5)
    if vtype == "NM":
        value = jahis.decimal(text_value, loc)
        return {"valueQuantity": jahis.quantity(value, obx.rep_components(6), obx.loc(6), ctx)}
    if vtype in ("ST", "TX", "FT"):
        joined = "\n".join("^".join(c[0] for c in r) for r in raw_reps)
        return {"valueString": joined}
    if vtype in ("CWE", "CE", "CNE", "CF"):
        cc = jahis.codeable(obx, 5, ctx)
        return {"valueCodeableConcept": cc} if cc else {}
    if vtype in ("TS", "DTM", "DT"):
        return {"valueDateTime": jahis.ts(text_value, loc, ctx)}
    if vtype == "SN":
        comps = obx.rep_components(5) + ["", "", "", ""]
        comparator, num1, sep, num2 = comps[:4]
        if sep in (":", "/") and num1 and num2:
            return {"valueRatio": {"numerator": {"value": jahis.decimal(num1, loc)},
                                   "denominator": {"value": jahis.decimal(num2, loc)}}}
        if sep == "-" and num1 and num2:
            return {"valueRange": {"low": {"value": jahis.decimal(num1, loc)},
                                   "high": {"value": jahis.decimal(num2, loc)}}}
        if num1 and not sep:
            q = jahis.quantity(jahis.decimal(num1, loc), obx.rep_components(6), obx.loc(6), ctx)
            if comparator:
                if comparator not in _SN_COMPARATOR:
                    raise MappingError(obx.loc(5, 1), f"unknown comparator {comparator!r}")
                q["comparator"] = _SN_COMPARATOR[comparator]
            return {"valueQuantity": q}
        raise MappingError(loc, f"structured numeric {text_value!r} cannot be mapped")
    if vtype == "":
        raise MappingError(obx.loc(2), "OBX-5 has a value but OBX-2 (value type) is empty",
                           code=DATA_TYPE_ERROR)
    raise MappingError(obx.loc(2), f"OBX value type {vtype!r} is not supported", code=DATA_TYPE_ERROR)


def reference_range(obx: Segment) -> list[dict[str, Any]] | None:
    text = obx.get(7)
    if not text:
        return None
    m = _RANGE.match(text)
    rr: dict[str, Any] = {"text": text}
    if m and (m.group(1) or m.group(2)):
        unit = obx.rep_components(6)
        extra: dict[str, Any] = {}
        if unit and (unit[1:2] or unit[:1]):
            extra["unit"] = (unit[1] if len(unit) > 1 and unit[1] else unit[0])
        if m.group(1):
            rr["low"] = {"value": float(m.group(1)) if "." in m.group(1) else int(m.group(1)), **extra}
        if m.group(2):
            rr["high"] = {"value": float(m.group(2)) if "." in m.group(2) else int(m.group(2)), **extra}
    return [rr]


def interpretation(obx: Segment) -> list[dict[str, Any]] | None:
    out = []
    for i in range(len(obx.reps(8))):
        flag = obx.get(8, rep=i)
        if not flag:
            continue
        if flag not in _INTERPRETATION:
            raise MappingError(obx.loc(8), f"abnormal flag {flag!r} not in HL7 table 0078",
                               code=TABLE_VALUE_NOT_FOUND)
        out.append({"coding": [{"system": V3_INTERPRETATION, "code": flag}]})
    return out or None


def observation(obx: Segment, b: BundleBuilder, ctx: MapContext, *, key: tuple[str, ...],
                category: list[dict] | None = None, effective: str | None = None,
                profile: str | None = None) -> dict[str, Any] | None:
    """OBX -> Observation (None when the OBX carries no value: e.g. an ordered item)."""
    code = jahis.codeable(obx, 3, ctx)
    if code is None:
        raise MappingError(obx.loc(3), "observation identifier is empty")
    value = observation_value(obx, ctx)
    if not value:
        return None
    status_code = obx.get(11) or "F"
    if status_code not in OBX_STATUS:
        raise MappingError(obx.loc(11), f"result status {status_code!r} not in HL7 table 0085",
                           code=TABLE_VALUE_NOT_FOUND)
    res: dict[str, Any] = {"resourceType": "Observation", "id": b.new_id("Observation", *key),
                           "status": OBX_STATUS[status_code]}
    if profile:
        res["meta"] = {"profile": [profile]}
    if category:
        res["category"] = category
    res["code"] = code
    res["subject"] = b.patient_ref()
    eff = jahis.ts(obx.get(14), obx.loc(14), ctx) or effective
    if eff:
        res["effectiveDateTime"] = eff
    res.update(value)
    interp = interpretation(obx)
    if interp:
        res["interpretation"] = interp
    rr = reference_range(obx)
    if rr:
        res["referenceRange"] = rr
    return res


def category(code: str, display: str) -> list[dict[str, Any]]:
    return [{"coding": [{"system": OBS_CATEGORY, "code": code, "display": display}]}]
