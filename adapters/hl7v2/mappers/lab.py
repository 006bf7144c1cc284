"""Laboratory and result messages.

* OML^O33 (SS-MIX2 OML-01, lab order) -> ServiceRequest per OBR (ordered items from
  the OBX-3 codes as ``orderDetail``) + Specimen per SPM.
* OUL^R22 (SS-MIX2 OML-11, lab results) -> Specimen, ServiceRequest (ORC),
  JP_DiagnosticReport_LabResult per OBR and JP_Observation_LabResult per OBX.
* ORU^R01 (SS-MIX2 OMG-13 physiological results; generic lab results) -> the same
  DiagnosticReport + Observation shape.

Follows JAMI ConceptMaps ``message-oml-11-to-bundle``, ``segment-oml-11-obr-to-
diagnosticreport``, ``segment-oml-11-obx-to-observation``, ``segment-oml-11-orc-to-
servicerequest``, ``segment-oml-11-spm-to-specimen``:
https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir
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

JP_OBS_LAB = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_Observation_LabResult"
JP_DR_LAB = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_DiagnosticReport_LabResult"
JP_SR = "http://jpfhir.jp/fhir/core/StructureDefinition/JP_ServiceRequest_Common"
DR_CATEGORY = "http://terminology.hl7.org/CodeSystem/v2-0074"
_OBR_STATUS = {"F": "final", "C": "corrected", "P": "preliminary", "R": "partial", "I": "registered",
               "O": "registered", "S": "partial", "X": "cancelled", "A": "partial", "": "final"}


def specimen(spm: Segment, b: BundleBuilder, ctx: MapContext, order_no: str) -> dict[str, str]:
    """SPM -> Specimen (type SPM-4, bodySite SPM-8, collected SPM-17)."""
    spec_id = spm.get(2, 1) or spm.get(2, 2)
    key = ("SPM", spec_id) if spec_id else ("SPM", order_no, spm.get(1), spm.get(4, 1))
    res: dict[str, Any] = {"resourceType": "Specimen", "id": b.new_id("Specimen", *key)}
    if spec_id:
        res["identifier"] = [{"system": f"http://hie.example.jp/fhir/NamingSystem/specimen/{ctx.facility}",
                              "value": spec_id}]
    stype = jahis.codeable(spm, 4, ctx)
    if stype:
        res["type"] = stype
    res["subject"] = b.patient_ref()
    collection: dict[str, Any] = {}
    collected = jahis.ts(spm.get(17, 1), spm.loc(17), ctx)
    if collected:
        collection["collectedDateTime"] = collected
    site = jahis.codeable(spm, 8, ctx)
    if site:
        collection["bodySite"] = site
    if collection:
        res["collection"] = collection
    return b.put(res, spm.loc(), replace=True)


def service_request(orc: Segment, obr: Segment | None, b: BundleBuilder, ctx: MapContext, *,
                    status: str, key_extra: tuple[str, ...] = (), order_details: list[dict] | None = None,
                    specimens: list[dict] | None = None, replace: bool = False,
                    category: list[dict] | None = None, profile: str = JP_SR,
                    if_absent: bool = False) -> dict[str, str]:
    order_no = orc.get(2) or (obr.get(2) if obr is not None else "")
    if not order_no:
        raise MappingError("ORC-2", "placer order number is empty")
    code = jahis.codeable(obr, 4, ctx) if obr is not None else None
    if code is None:
        raise MappingError("OBR-4", "universal service identifier is empty")
    res: dict[str, Any] = {
        "resourceType": "ServiceRequest",
        "id": b.new_id("ServiceRequest", order_no, *key_extra),
        "meta": {"profile": [profile]},
        "identifier": [{"system": order_system(ctx.facility), "value": order_no}],
        "status": status, "intent": "order",
    }
    filler = orc.get(3) or (obr.get(3) if obr is not None else "")
    if filler:
        res["identifier"].append({"system": f"http://hie.example.jp/fhir/NamingSystem/filler-order/{ctx.facility}",
                                  "value": filler})
    if category:
        res["category"] = category
    res["code"] = code
    if order_details:
        res["orderDetail"] = order_details
    res["subject"] = b.patient_ref()
    authored = jahis.ts(orc.get(9), "ORC-9", ctx)
    if authored:
        res["authoredOn"] = authored
    requester = jahis.practitioner_ref(orc, 12, ctx) or (jahis.practitioner_ref(obr, 16, ctx) if obr else None)
    if requester:
        res["requester"] = requester
    if specimens:
        res["specimen"] = specimens
    origin = obr.loc() if obr is not None else orc.loc()
    if if_absent:
        return b.put_if_absent(res, origin)
    return b.put(res, origin, replace=replace)


def map_oml(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    """OML^O33: SPM { ORC OBR {OBX} } -> Specimen + ServiceRequest (OBX = ordered items)."""
    current_spec: dict[str, str] | None = None
    orc: Segment | None = None
    segs = msg.segments
    for n, seg in enumerate(segs):
        if seg.sid == "SPM":
            orc_next = next((s for s in segs[n:] if s.sid == "ORC"), None)
            current_spec = specimen(seg, b, ctx, orc_next.get(2) if orc_next else "")
        elif seg.sid == "ORC":
            orc = seg
        elif seg.sid == "OBR":
            if orc is None:
                raise MappingError("OBR", "OBR without ORC")
            items = []
            for obx in segs[n + 1:]:
                if obx.sid != "OBX":
                    break
                if obx.get(5):
                    raise MappingError(obx.loc(5), "an order message carries a result value")
                cc = jahis.codeable(obx, 3, ctx)
                if cc:
                    items.append(cc)
            # Same key as the result message (order number + OBR-4), so the order and
            # its result update one ServiceRequest.
            service_request(orc, seg, b, ctx, status="active", key_extra=(seg.get(4, 1),),
                            order_details=items, specimens=[current_spec] if current_spec else None,
                            replace=True)


def _report(obr: Segment, orc: Segment | None, obxs: list[Segment], spec: dict | None, b: BundleBuilder,
            ctx: MapContext, *, lab: bool, sr_ref: dict | None) -> None:
    placer = obr.get(2) or (orc.get(2) if orc is not None else "")
    filler = obr.get(3) or (orc.get(3) if orc is not None else "")
    if not (placer or filler):
        raise MappingError("OBR-2", "neither placer (OBR-2) nor filler (OBR-3) order number")
    code = jahis.codeable(obr, 4, ctx)
    if code is None:
        raise MappingError("OBR-4", "universal service identifier is empty")
    rkey = (placer, filler, obr.get(4, 1))
    effective = jahis.ts(obr.get(7), "OBR-7", ctx)
    results = []
    cat = common.category("laboratory", "Laboratory") if lab else None
    seen: dict[tuple[str, ...], int] = {}
    for obx in obxs:
        okey: tuple[str, ...] = ("OBX",) + rkey + (obx.get(3, 1), obx.get(3, 3), obx.get(4))
        seen[okey] = seen.get(okey, 0) + 1
        if seen[okey] > 1:
            okey = okey + (str(seen[okey]),)
        obs = common.observation(obx, b, ctx, key=okey, category=cat, effective=effective,
                                 profile=JP_OBS_LAB if lab else None)
        if obs is None:
            continue
        if spec:
            obs["specimen"] = spec
        if sr_ref:
            obs["basedOn"] = [sr_ref]
        results.append(b.put(obs, obx.loc()))
    status = obr.get(25)
    if status not in _OBR_STATUS:
        raise MappingError("OBR-25", f"result status {status!r} not in HL7 table 0123")
    dr: dict[str, Any] = {
        "resourceType": "DiagnosticReport", "id": b.new_id("DiagnosticReport", *rkey),
        "identifier": [{"system": order_system(ctx.facility), "value": placer or filler}],
        "status": _OBR_STATUS[status],
    }
    if lab:
        dr["meta"] = {"profile": [JP_DR_LAB]}
        dr["category"] = [{"coding": [{"system": DR_CATEGORY, "code": "LAB", "display": "Laboratory"}]}]
    if sr_ref:
        dr["basedOn"] = [sr_ref]
    dr["code"] = code
    dr["subject"] = b.patient_ref()
    end = jahis.ts(obr.get(8), "OBR-8", ctx)
    if effective and end:
        dr["effectivePeriod"] = {"start": effective, "end": end}
    elif effective:
        dr["effectiveDateTime"] = effective
    issued = jahis.ts(obr.get(22), "OBR-22", ctx)
    if issued:
        if "T" not in issued:
            issued = issued + "T00:00:00" + ctx.tz if len(issued) == 10 else None
        if issued:
            dr["issued"] = issued
    if spec:
        dr["specimen"] = [spec]
    if results:
        dr["result"] = results
    b.put(dr, obr.loc())


def map_oul(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    """OUL^R22: SPM { OBR [ORC] {OBX} } -> Specimen, ServiceRequest, DiagnosticReport, Observations."""
    segs = msg.segments
    spec = None
    for n, seg in enumerate(segs):
        if seg.sid == "SPM":
            obr_next = next((s for s in segs[n:] if s.sid == "OBR"), None)
            spec = specimen(seg, b, ctx, obr_next.get(2) if obr_next else "")
        elif seg.sid == "OBR":
            group = []
            for s in segs[n + 1:]:
                if s.sid in ("OBR", "SPM"):
                    break
                group.append(s)
            orc = next((s for s in group if s.sid == "ORC"), None)
            obxs = [s for s in group if s.sid == "OBX"]
            sr = None
            if orc is not None:
                # The order belongs to the order message (OML-01); a result only
                # creates it when the node has never seen the order.
                sr = service_request(orc, seg, b, ctx, status="completed", key_extra=(seg.get(4, 1),),
                                     specimens=[spec] if spec else None, if_absent=True)
            _report(seg, orc, obxs, spec, b, ctx, lab=True, sr_ref=sr)


def map_oru(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    """ORU^R01: {[ORC] OBR {OBX}} -> DiagnosticReport + Observations. Lab unless the
    SS-MIX2 kind says physiological test (OMG-13)."""
    lab = ctx.kind not in ("OMG-13",)
    segs = msg.segments
    orc = None
    for n, seg in enumerate(segs):
        if seg.sid == "ORC":
            orc = seg
        elif seg.sid == "OBR":
            obxs = []
            for s in segs[n + 1:]:
                if s.sid in ("OBR", "ORC"):
                    break
                if s.sid == "OBX":
                    obxs.append(s)
            _report(seg, orc, obxs, None, b, ctx, lab=lab, sr_ref=None)
            orc = None
