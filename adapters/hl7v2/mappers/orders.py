"""Imaging / endoscopy / physiology orders and performed procedures, and diet orders.

* OMG^O19 (SS-MIX2 OMG-01 radiology, OMG-02 endoscopy, OMG-03 physiology orders)
  -> ServiceRequest per ORC/OBR; ``CH`` child orders point to their parent (ORC-8 /
  OBR-29) with ``basedOn``; OBX under an order -> Observation as ``supportingInfo``.
* OMI^Z23 (JAHIS; SS-MIX2 OMG-11 radiology, OMG-12 endoscopy performed) ->
  ServiceRequest (completed) + ImagingStudy per IPC study instance UID (IPC-3),
  modality IPC-5, performed procedure from ZE1-3, start/end from OBX TM-P1/TM-P2.
* OMD^O03 (SS-MIX2 OMD diet order) -> NutritionOrder (ODS-3 diet, ODS-4 instruction).

The JAMI WG has no ConceptMap for these kinds; the shapes follow FHIR R4
ServiceRequest/ImagingStudy/NutritionOrder and JP Core JP_ImagingStudy_Radiology
(https://jpfhir.jp/fhir/core/1.1.1/StructureDefinition-jp-imagingstudy-radiology.html).
"""

from __future__ import annotations

from typing import Any

from .. import jahis
from ..bundle import BundleBuilder
from ..errors import MappingError
from ..ids import order_system
from ..jahis import MapContext
from ..message import Message, Segment
from . import common
from .lab import service_request
from .omp import _order_status

DICOM_UID = "urn:dicom:uid"
DCM = "http://dicom.nema.org/resources/ontology/DCM"
JP_IMAGINGSTUDY = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_ImagingStudy_Radiology"
SR_CATEGORY = "http://snomed.info/sct"
_KIND_CATEGORY = {"OMG-01": ("363679005", "Imaging"), "OMG-11": ("363679005", "Imaging"),
                  "OMG-02": ("386053000", "Evaluation procedure"), "OMG-12": ("386053000", "Evaluation procedure"),
                  "OMG-03": ("386053000", "Evaluation procedure"), "OMG-13": ("386053000", "Evaluation procedure")}


def _order_groups(msg: Message) -> list[list[Segment]]:
    groups: list[list[Segment]] = []
    for seg in msg.segments:
        if seg.sid == "ORC":
            groups.append([seg])
        elif groups:
            groups[-1].append(seg)
    return groups


def _category(ctx: MapContext) -> list[dict] | None:
    cat = _KIND_CATEGORY.get(ctx.kind or "")
    if cat is None:
        return None
    return [{"coding": [{"system": SR_CATEGORY, "code": cat[0], "display": cat[1]}]}]


def _orders(msg: Message, b: BundleBuilder, ctx: MapContext, *, performed: bool) -> list[tuple[Segment, Segment, dict]]:
    out = []
    for group in _order_groups(msg):
        orc = group[0]
        obr = next((s for s in group if s.sid == "OBR"), None)
        if obr is None:
            raise MappingError("OBR", "order group without OBR")
        status = "completed" if performed else _order_status(orc)
        parent = orc.get(8, 1) or obr.get(29, 1)
        ref = service_request(orc, obr, b, ctx, status=status, replace=True, category=_category(ctx))
        sr = b._entries[b._index[ref["reference"]]]["resource"]
        if parent and parent != orc.get(2):
            sr["basedOn"] = [{"reference": f"ServiceRequest/{b.new_id('ServiceRequest', parent)}"}]
        sr["intent"] = "order" if not parent or parent == orc.get(2) else "instance-order"
        out.append((orc, obr, sr))
    return out


def map_omg(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    for orc, obr, sr in _orders(msg, b, ctx, performed=False):
        group_obx = _following(msg, obr, "OBX", stop=("ORC", "IPC", "ZE1"))
        infos = []
        for n, obx in enumerate(group_obx, start=1):
            obs = common.observation(obx, b, ctx, key=("order-OBX", orc.get(2), obx.get(3, 1), str(n)))
            if obs is not None:
                infos.append(b.put(obs, obx.loc()))
        if infos:
            sr["supportingInfo"] = infos
            b.put(sr, obr.loc(), replace=True)


def _following(msg: Message, start: Segment, sid: str, stop: tuple[str, ...]) -> list[Segment]:
    out = []
    for seg in msg.segments[start.index + 1:]:
        if seg.sid in stop:
            break
        if seg.sid == sid:
            out.append(seg)
    return out


def map_omi(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    studies: dict[str, dict[str, Any]] = {}
    for orc, obr, sr in _orders(msg, b, ctx, performed=True):
        group = _group_of(msg, orc)
        ipcs = [s for s in group if s.sid == "IPC"]
        ze1s = [s for s in group if s.sid == "ZE1"]
        for ipc in ipcs:
            uid = ipc.get(3)
            if not uid:
                raise MappingError(ipc.loc(3), "study instance UID is empty")
            if not all(p.isdigit() for p in uid.split(".")):
                raise MappingError(ipc.loc(3), f"study instance UID {uid!r} is not a DICOM UID")
            study = studies.get(uid)
            if study is None:
                study = studies[uid] = {
                    "resourceType": "ImagingStudy", "id": b.new_id("ImagingStudy", uid),
                    "meta": {"profile": [JP_IMAGINGSTUDY]},
                    "identifier": [{"system": DICOM_UID, "value": f"urn:oid:{uid}"}],
                    "status": "available", "subject": b.patient_ref(), "basedOn": [],
                    "_origin": ipc.loc()}
                accession = ipc.get(1)
                if accession:
                    study["identifier"].append({
                        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0203",
                                             "code": "ACSN"}]},
                        "system": f"http://hie.example.jp/fhir/NamingSystem/accession/{ctx.facility}",
                        "value": accession})
            modality = ipc.get(5, 1)
            if modality:
                mods = study.setdefault("modality", [])
                coding = {"system": DCM, "code": modality}
                if coding not in mods:
                    mods.append(coding)
            ref = {"reference": f"ServiceRequest/{sr['id']}"}
            if ref not in study["basedOn"]:
                study["basedOn"].append(ref)
            for ze1 in ze1s:
                cc = jahis.codeable(ze1, 3, ctx)
                if cc and cc not in study.setdefault("procedureCode", []):
                    study["procedureCode"].append(cc)
            started = jahis.ts(obr.get(7), "OBR-7", ctx)
            for obx in (s for s in group if s.sid == "OBX"):
                if obx.get(3, 1) == "TM-P1":
                    started = jahis.ts(obx.get(5), obx.loc(5), ctx) or started
            if started and "started" not in study:
                study["started"] = started
    for study in studies.values():
        origin = study.pop("_origin")
        if not study["basedOn"]:
            del study["basedOn"]
        b.put(study, origin)


def _group_of(msg: Message, orc: Segment) -> list[Segment]:
    out = []
    for seg in msg.segments[orc.index + 1:]:
        if seg.sid == "ORC":
            break
        out.append(seg)
    return out


def map_omd(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    for group in _order_groups(msg):
        orc = group[0]
        order_no = orc.get(2)
        if not order_no:
            raise MappingError("ORC-2", "placer order number is empty")
        tq1 = next((s for s in group if s.sid == "TQ1"), None)
        for n, ods in enumerate((s for s in group if s.sid == "ODS"), start=1):
            diet = jahis.codeable(ods, 3, ctx)
            texts = [ods.get(4, rep=i) for i in range(len(ods.reps(4)))]
            res: dict[str, Any] = {
                "resourceType": "NutritionOrder", "id": b.new_id("NutritionOrder", order_no, str(n)),
                "identifier": [{"system": order_system(ctx.facility), "value": order_no}],
                "status": _order_status(orc), "intent": "order", "patient": b.patient_ref(),
            }
            authored = jahis.ts(orc.get(9), "ORC-9", ctx)
            if not authored:
                raise MappingError("ORC-9", "order date/time is empty (NutritionOrder.dateTime is required)")
            res["dateTime"] = authored
            orderer = jahis.practitioner_ref(orc, 12, ctx)
            if orderer:
                res["orderer"] = orderer
            oral: dict[str, Any] = {}
            if diet:
                oral["type"] = [diet]
            if tq1 is not None:
                start = jahis.ts(tq1.get(7), "TQ1-7", ctx)
                if start:
                    oral["schedule"] = [{"repeat": {"boundsPeriod": {"start": start}}}]
            if any(texts):
                oral["instruction"] = " ".join(t for t in texts if t)
            if not oral:
                raise MappingError(ods.loc(3), "diet code and instructions are empty")
            res["oralDiet"] = oral
            b.put(res, ods.loc())
