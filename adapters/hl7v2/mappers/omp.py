"""RDE^O11 (SS-MIX2 OMP-01 prescriptions, OMP-02 injections) -> JP_MedicationRequest,
RAS^O17 (OMP-11/12 administrations) -> JP_MedicationAdministration.

Follows JAMI ConceptMaps ``message-omp-01-to-bundle``, ``segment-omp-01-rxe-to-
medicationrequest`` (ORC-2 order id, ORC-4 Rp number, RXE-2 drug, RXE-3/5 dose,
RXE-10/11 dispense quantity, RXE-19 total daily dose, RXE-21 category, TQ1-3 usage,
TQ1-6 days, RXR route) and ``segment-omp-12-rxa-to-medicationadministration``,
with JP Core MedicationRequest (Rp number identifier, usage-duration extension):
https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir ,
https://jpfhir.jp/fhir/core/1.1.1/StructureDefinition-jp-medicationrequest.html

Injections: RXE-2 carries the injection kind (JHSI table 0002, e.g. ``00^一般``),
the drugs are the RXC components; the request's medication is then a contained
Medication with one ingredient per RXC.
"""

from __future__ import annotations

from typing import Any

from .. import codesystems as cs
from .. import jahis
from ..bundle import BundleBuilder
from ..errors import MappingError, TABLE_VALUE_NOT_FOUND
from ..ids import RP_NUMBER_SYSTEM, order_system
from ..jahis import MapContext
from ..message import Message, Segment

JP_MEDREQ = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationRequest"
JP_MEDREQ_INJ = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationRequest_Injection"
JP_MEDADM = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationAdministration"
JP_MEDADM_INJ = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_MedicationAdministration_Injection"
ORDER_IN_RP = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/Medication-OrderInRp"
USAGE_DURATION = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_MedicationRequest_DosageInstruction_UsageDuration"
PERIOD_OF_USE = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_MedicationRequest_DosageInstruction_PeriodOfUse"
_ORDER_CONTROL_STATUS = {"NW": "active", "OK": "active", "SC": "active", "XO": "active", "XX": "active",
                         "CA": "cancelled", "OC": "cancelled", "CR": "cancelled", "DC": "stopped",
                         "OD": "stopped", "HD": "on-hold", "OH": "on-hold", "RP": "active", "RU": "active",
                         "CM": "completed", "PA": "active", "CH": "active", "SN": "active",
                         "NA": "active", "SS": "active", "RO": "active", "RE": "completed", "OE": "active"}
_RXA_STATUS = {"CP": "completed", "RE": "not-done", "NA": "not-done", "PA": "in-progress", "": "completed"}


def _groups(msg: Message, head: str) -> list[list[Segment]]:
    """Split the message into ORC-started groups."""
    groups: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.sid == head:
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
    return groups


def _order_status(orc: Segment) -> str:
    ctrl = orc.get(1)
    if ctrl not in _ORDER_CONTROL_STATUS:
        raise MappingError("ORC-1", f"order control {ctrl!r} not in HL7 table 0119", code=TABLE_VALUE_NOT_FOUND)
    return _ORDER_CONTROL_STATUS[ctrl]


def _route(rxr: Segment | None, ctx: MapContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if rxr is None:
        return out
    for field, name in ((1, "route"), (2, "site"), (4, "method")):
        cc = jahis.codeable(rxr, field, ctx)
        if cc:
            out[name] = cc
    return out


def map_rde(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    injection = ctx.kind == "OMP-02"
    rp_positions: dict[tuple[str, str], int] = {}
    for group in _groups(msg, "ORC"):
        orc = group[0]
        rxe = next((s for s in group if s.sid == "RXE"), None)
        if rxe is None:
            raise MappingError("RXE", "order group without RXE")
        tq1 = next((s for s in group if s.sid == "TQ1"), None)
        rxr = next((s for s in group if s.sid == "RXR"), None)
        rxcs = [s for s in group if s.sid == "RXC"]
        order_no = orc.get(2)
        if not order_no:
            raise MappingError("ORC-2", "placer order number is empty")
        rp = orc.get(4)
        pos_key = (order_no, rp)
        rp_positions[pos_key] = rp_positions.get(pos_key, 0) + 1
        position = rp_positions[pos_key]
        is_injection = injection or bool(rxcs)
        res: dict[str, Any] = {
            "resourceType": "MedicationRequest",
            "id": b.new_id("MedicationRequest", order_no, rp, str(position)),
            "meta": {"profile": [JP_MEDREQ_INJ if is_injection else JP_MEDREQ]},
        }
        identifiers = [{"system": order_system(ctx.facility), "value": order_no}]
        if rp:
            identifiers.append({"system": RP_NUMBER_SYSTEM, "value": rp})
        identifiers.append({"system": ORDER_IN_RP, "value": str(position)})
        res["identifier"] = identifiers
        res["status"] = _order_status(orc)
        res["intent"] = "order"
        category = [cc for cc in (jahis.codeable(rxe, 21, ctx, rep=i, overrides={"MR9P": cs.MERIT9_CATEGORY})
                                  for i in range(len(rxe.reps(21)))) if cc]
        if category:
            res["category"] = category
        if is_injection:
            if not rxcs:
                raise MappingError("RXC", "injection order without RXC components")
            contained_id = "med"
            ingredients = []
            for rxc in rxcs:
                drug = jahis.codeable(rxc, 2, ctx)
                if drug is None:
                    raise MappingError(rxc.loc(2), "component drug is empty")
                ing: dict[str, Any] = {"itemCodeableConcept": drug, "isActive": rxc.get(1) == "B" or None}
                if ing["isActive"] is None:
                    del ing["isActive"]
                amount = rxc.get(3)
                if amount:
                    q = jahis.quantity(jahis.decimal(amount, rxc.loc(3)), rxc.rep_components(4), rxc.loc(4), ctx)
                    ing["strength"] = {"numerator": q, "denominator": {"value": 1}}
                ingredients.append(ing)
            form = jahis.codeable(rxe, 6, ctx, overrides={"MR9P": cs.MERIT9_FORM})
            med: dict[str, Any] = {"resourceType": "Medication", "id": contained_id, "ingredient": ingredients}
            if form:
                med["form"] = form
            kind = jahis.codeable(rxe, 2, ctx)
            if kind:
                med["code"] = kind
            res["contained"] = [med]
            res["medicationReference"] = {"reference": f"#{contained_id}"}
        else:
            drug = jahis.codeable(rxe, 2, ctx)
            if drug is None:
                raise MappingError("RXE-2", "give code (drug) is empty")
            res["medicationCodeableConcept"] = drug
        res["subject"] = b.patient_ref()
        authored = jahis.ts(orc.get(9), "ORC-9", ctx)
        if authored:
            res["authoredOn"] = authored
        requester = jahis.practitioner_ref(orc, 12, ctx)
        if requester:
            res["requester"] = requester
        recorder = jahis.practitioner_ref(orc, 10, ctx)
        if recorder:
            res["recorder"] = recorder
        res["dosageInstruction"] = [_dosage(rxe, tq1, rxr, ctx)]
        dispense = _dispense(rxe, tq1, ctx)
        if dispense:
            res["dispenseRequest"] = dispense
        b.put(res, rxe.loc())


def _dosage(rxe: Segment, tq1: Segment | None, rxr: Segment | None, ctx: MapContext) -> dict[str, Any]:
    dosage: dict[str, Any] = {}
    extensions = []
    timing: dict[str, Any] = {}
    if tq1 is not None:
        # TQ1-3 repeat pattern: JAHIS writes the JAMI usage code as code&text&tag.
        subs = tq1.component_subs(3, 1)
        usage = jahis.codeable_from(subs, "TQ1-3", ctx) if subs and subs[0] else None
        if usage:
            timing["code"] = usage
            if usage.get("text"):
                dosage["text"] = usage["text"]
        days = tq1.get(6, 1)
        if days:
            unit = tq1.get(6, 2) or "d"
            if unit not in ("d", "D"):
                raise MappingError("TQ1-6", f"service duration unit {unit!r} is not days")
            extensions.append({"url": USAGE_DURATION, "valueDuration": {
                "value": jahis.decimal(days, "TQ1-6"), "unit": "日", "system": "http://unitsofmeasure.org",
                "code": "d"}})
        start = jahis.ts(tq1.get(7), "TQ1-7", ctx)
        end = jahis.ts(tq1.get(8), "TQ1-8", ctx)
        if start or end:
            period = {k: v for k, v in (("start", start), ("end", end)) if v}
            extensions.append({"url": PERIOD_OF_USE, "valuePeriod": period})
            timing.setdefault("repeat", {})["boundsPeriod"] = period
    if extensions:
        dosage["extension"] = extensions
    if timing:
        dosage["timing"] = timing
    dosage.update(_route(rxr, ctx))
    dose_min = rxe.get(3)
    if dose_min:
        value = jahis.decimal(dose_min, "RXE-3")
        dose = jahis.quantity(value, rxe.rep_components(5), "RXE-5", ctx)
        dar: dict[str, Any] = {"doseQuantity": dose}
        rate = rxe.get(23)
        if rate:
            dar["rateQuantity"] = jahis.quantity(jahis.decimal(rate, "RXE-23"), rxe.rep_components(24), "RXE-24", ctx)
        dosage["doseAndRate"] = [dar]
    elif rxe.get(23):
        dosage["doseAndRate"] = [{"rateQuantity": jahis.quantity(
            jahis.decimal(rxe.get(23), "RXE-23"), rxe.rep_components(24), "RXE-24", ctx)}]
    total = rxe.get(19)
    if total:
        # RXE-19 total daily dose (CQ: quantity^unit, unit as subcomponents code&text&tag)
        # -> doseAndRate.rateRatio per day (JAMI ConceptMap, JP Core "1日量").
        unit_subs = rxe.component_subs(19, 2)
        daily = jahis.quantity(jahis.decimal(total, "RXE-19"), unit_subs, "RXE-19", ctx)
        ratio = {"numerator": daily, "denominator": {"value": 1, "unit": "日",
                                                     "system": "http://unitsofmeasure.org", "code": "d"}}
        dar_list = dosage.setdefault("doseAndRate", [{}])
        if "rateQuantity" in dar_list[0]:
            dar_list.append({"rateRatio": ratio})
        else:
            dar_list[0]["rateRatio"] = ratio
    return dosage


def _dispense(rxe: Segment, tq1: Segment | None, ctx: MapContext) -> dict[str, Any]:
    out: dict[str, Any] = {}
    amount = rxe.get(10)
    if amount:
        out["quantity"] = jahis.quantity(jahis.decimal(amount, "RXE-10"), rxe.rep_components(11), "RXE-11", ctx)
    if tq1 is not None and tq1.get(6, 1):
        out["expectedSupplyDuration"] = {"value": jahis.decimal(tq1.get(6, 1), "TQ1-6"), "unit": "日",
                                         "system": "http://unitsofmeasure.org", "code": "d"}
    repeats = rxe.get(12)
    if repeats:
        out["numberOfRepeatsAllowed"] = int(jahis.decimal(repeats, "RXE-12"))
    return out


def map_ras(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    injection = ctx.kind == "OMP-12"
    for group in _groups(msg, "ORC"):
        orc = group[0]
        order_no = orc.get(2)
        if not order_no:
            raise MappingError("ORC-2", "placer order number is empty")
        rxas = [s for s in group if s.sid == "RXA"]
        rxr = next((s for s in group if s.sid == "RXR"), None)
        route = _route(rxr, ctx)
        for n, rxa in enumerate(rxas, start=1):
            drug = jahis.codeable(rxa, 5, ctx)
            if drug is None:
                raise MappingError(rxa.loc(5), "administered code is empty")
            start = jahis.ts(rxa.get(3), rxa.loc(3), ctx)
            if not start:
                raise MappingError(rxa.loc(3), "start of administration is empty")
            end = jahis.ts(rxa.get(4), rxa.loc(4), ctx)
            status = rxa.get(20)
            if status not in _RXA_STATUS:
                raise MappingError(rxa.loc(20), f"completion status {status!r} not in HL7 table 0322",
                                   code=TABLE_VALUE_NOT_FOUND)
            res: dict[str, Any] = {
                "resourceType": "MedicationAdministration",
                "id": b.new_id("MedicationAdministration", order_no, orc.get(4), rxa.get(1), rxa.get(2),
                               rxa.get(3), str(n)),
                "meta": {"profile": [JP_MEDADM_INJ if injection else JP_MEDADM]},
                "identifier": [{"system": order_system(ctx.facility), "value": order_no}],
                "status": _RXA_STATUS[status],
                "medicationCodeableConcept": drug,
                "subject": b.patient_ref(),
            }
            if end and end != start:
                res["effectivePeriod"] = {"start": start, "end": end}
            else:
                res["effectiveDateTime"] = start
            performer = jahis.practitioner_ref(rxa, 10, ctx)
            if performer:
                res["performer"] = [{"actor": performer}]
            # The request is identified by the order number (ORC-2), not by our ids.
            res["request"] = {"type": "MedicationRequest",
                              "identifier": {"system": order_system(ctx.facility), "value": order_no}}
            dosage: dict[str, Any] = dict(route)
            amount = rxa.get(6)
            if amount and amount != "0":
                dosage["dose"] = jahis.quantity(jahis.decimal(amount, rxa.loc(6)), rxa.rep_components(7),
                                                rxa.loc(7), ctx)
            note = rxa.get(9, 2) or rxa.get(9, 1)
            if note:
                dosage["text"] = note
            rate = rxa.get(12)
            if rate:
                dosage.setdefault("text", "")
                dosage["text"] = (dosage["text"] + " " if dosage["text"] else "") + f"rate {rate}"
            if dosage:
                res["dosage"] = dosage
            b.put(res, rxa.loc())
