"""PPR^ZD1 (SS-MIX2 PPR-01, disease/problem) and PPR^PC1-3 -> JP_Condition.

Follows JAMI ConceptMaps ``message-ppr-01-to-bundle`` and ``segment-ppr-01-prb-to-
condition`` (PRB-3 code, PRB-4 identifier, PRB-7 recordedDate, PRB-9 abatement,
PRB-10 ICD-10, PRB-16 onset; PRB-1 ``DE`` = entered-in-error) and the JAHIS disease
Z-segment ZPR (ZPR-2 disease management number, ZPR-4/6 modifier exchange codes,
ZPR-5 disease exchange code), with the JP Core modifier extensions:
https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir ,
https://jpfhir.jp/fhir/core/1.1.1/StructureDefinition-jp-condition.html
"""

from __future__ import annotations

from typing import Any

from .. import codesystems as cs
from .. import jahis
from ..bundle import BundleBuilder
from ..errors import MappingError, TABLE_VALUE_NOT_FOUND
from ..jahis import MapContext
from ..message import Message, Segment
from . import common

PREFIX_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Condition_DiseasePrefixModifier"
POSTFIX_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Condition_DiseasePostfixModifier"
OUTCOME_EXT = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Condition_DiseaseOutcome"
CLINICAL = "http://terminology.hl7.org/CodeSystem/condition-clinical"
VERIFICATION = "http://terminology.hl7.org/CodeSystem/condition-ver-status"
CATEGORY = "http://terminology.hl7.org/CodeSystem/condition-category"
# Table 0177 confidentiality -> FHIR security labels.
_CONFIDENTIALITY = {c: "http://terminology.hl7.org/CodeSystem/v3-Confidentiality"
                    for c in ("U", "L", "M", "N", "R", "V")}
_CONFIDENTIALITY.update({c: "http://terminology.hl7.org/CodeSystem/v3-ActCode"
                         for c in ("PSY", "HIV", "ETH", "SDV", "SEX", "STD", "TBOO", "SICKLE")})
_ACTIONS = {"AD", "CO", "DE", "LI", "UC", "UN", "UP"}


def map_ppr(msg: Message, b: BundleBuilder, ctx: MapContext) -> None:
    common.require_segment(msg, "PRB")
    segs = msg.segments
    recorder = None
    orc = msg.first("ORC")
    if orc is not None:
        recorder = jahis.practitioner_ref(orc, 12, ctx)
    for n, seg in enumerate(segs):
        if seg.sid != "PRB":
            continue
        zpr = segs[n + 1] if n + 1 < len(segs) and segs[n + 1].sid == "ZPR" else None
        b.put(_condition(seg, zpr, b, ctx, recorder), seg.loc())


def _condition(prb: Segment, zpr: Segment | None, b: BundleBuilder, ctx: MapContext,
               recorder: dict | None) -> dict[str, Any]:
    action = prb.get(1)
    if action not in _ACTIONS:
        raise MappingError("PRB-1", f"action code {action!r} not in HL7 table 0287", code=TABLE_VALUE_NOT_FOUND)
    instance = prb.get(4)
    if not instance:
        raise MappingError("PRB-4", "problem instance id is empty (needed to update/delete the disease)")
    codings: list[dict[str, Any]] = []
    text = prb.get(3, 2)
    if zpr is not None and zpr.get(5):
        codings.append(_disease_coding(zpr, 5, ctx))
        text = text or zpr.get(5, 2)
    main = jahis.coding(prb.get(3, 1), prb.get(3, 2), prb.get(3, 3), "PRB-3", ctx)
    if main and main not in codings:
        codings.append(main)
    if zpr is not None and zpr.get(2):
        c = _disease_coding(zpr, 2, ctx)
        if c not in codings:
            codings.append(c)
    icd = prb.get(10, 1)
    if icd:
        tag = prb.get(10, 3)
        if tag not in ("I10", "I10C", "I9", "I9C"):
            ctx.warn("PRB-10", f"classification tag {tag!r} is not ICD-10; kept with its tag system")
        icd_coding = jahis.coding(icd, prb.get(10, 2), tag or "I10", "PRB-10", ctx)
        if icd_coding:
            codings.append(icd_coding)
    if not codings:
        raise MappingError("PRB-3", "disease code is empty")
    res: dict[str, Any] = {
        "resourceType": "Condition", "id": b.new_id("Condition", "PRB", instance),
        "meta": {"profile": ["http://jpfhir.jp/fhir/core/StructureDefinition/JP_Condition"]},
        "identifier": [{"system": f"http://hie.example.jp/fhir/NamingSystem/problem/{ctx.facility}",
                        "value": instance}],
    }
    security = prb.get(25, 1)
    if security:
        system = _CONFIDENTIALITY.get(security)
        if system is None:
            raise MappingError("PRB-25", f"security code {security!r} not in HL7 table 0177",
                               code=TABLE_VALUE_NOT_FOUND)
        res["meta"]["security"] = [{"system": system, "code": security}]
    extensions = []
    if zpr is not None:
        for field, url in ((4, PREFIX_EXT), (6, POSTFIX_EXT)):
            for i in range(len(zpr.reps(field))):
                code = zpr.get(field, 1, rep=i)
                if code:
                    c = {"system": cs.MEDIS_DISEASE_MOD_EXCODE, "code": code}
                    if zpr.get(field, 2, rep=i):
                        c["display"] = zpr.get(field, 2, rep=i)
                    extensions.append({"url": url, "valueCodeableConcept": {"coding": [c]}})
    outcome = prb.get(14, 1)
    outcome_cc = jahis.codeable(prb, 14, ctx) if outcome else None
    if outcome_cc:
        extensions.append({"url": OUTCOME_EXT, "valueCodeableConcept": outcome_cc})
    if extensions:
        res["extension"] = extensions
    abatement = jahis.ts(prb.get(9), "PRB-9", ctx)
    if action == "DE":
        res["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": "entered-in-error"}]}
    else:
        res["clinicalStatus"] = {"coding": [{"system": CLINICAL, "code": _clinical(outcome, abatement)}]}
        res["verificationStatus"] = {"coding": [{"system": VERIFICATION, "code": "confirmed"}]}
    res["category"] = [{"coding": [{"system": CATEGORY, "code": "problem-list-item"}]}]
    res["code"] = {"coding": codings, **({"text": text} if text else {})}
    res["subject"] = b.patient_ref()
    onset = jahis.ts(prb.get(16), "PRB-16", ctx)
    if onset:
        res["onsetDateTime"] = onset
    elif prb.get(17):
        res["onsetString"] = prb.get(17)
    if abatement:
        res["abatementDateTime"] = abatement
    recorded = jahis.ts(prb.get(7), "PRB-7", ctx)
    if recorded:
        res["recordedDate"] = recorded
    if recorder:
        res["recorder"] = recorder
    return res


def _disease_coding(zpr: Segment, field: int, ctx: MapContext) -> dict[str, Any]:
    code = zpr.get(field, 1)
    c = {"system": cs.disease_system(code), "code": code}
    if zpr.get(field, 2):
        c["display"] = zpr.get(field, 2)
    return c


def _clinical(outcome: str, abatement: str | None) -> str:
    # Table 0241 (patient outcome) as JAHIS uses it for 転帰: R recovered; D died;
    # others ended without recovery. An abatement date forces a non-active status (con-4).
    if outcome == "R":
        return "resolved"
    if abatement or outcome == "D":
        return "inactive"
    return "active"
