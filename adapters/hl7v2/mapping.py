"""Map one HL7 v2 message (raw bytes) to a FHIR R4 transaction Bundle.

Entry point of the adapter: decode (MSH-18), parse (python-hl7), check the segment
grammar of the message structure, dispatch on MSH-9 to the mapper of the message
kind. The node validates every resource with ``fhir.resources.R4B`` when it is ingested
(see :mod:`adapters.hl7v2.bundle` for why the adapter does not validate them first).
HL7 v2.5 chapter 2 (control): https://www.hl7.eu/HL7v2x/v25/std25/ch02.html
SS-MIX2 kinds and JAMI mappings: https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from collections.abc import Callable

from .bundle import BundleBuilder
from .errors import UnsupportedMessage, UNSUPPORTED_EVENT_CODE, V2Error, MappingError
from .ids import FeedIds, check_facility
from .jahis import MapContext
from .mappers import adt, lab, omp, orders, ppr
from .mappers.common import patient_number
from .charset import Decoded, decode_message
from .message import Message, parse_text
from .structure import check_structure, precheck_text

Mapper = Callable[[Message, BundleBuilder, MapContext], None]

# (MSH-9.1, MSH-9.2 or "*") -> (grammar, mapper)
_ADT_EVENTS = set(adt.ENCOUNTER_EVENTS) | adt.DEMOGRAPHIC_EVENTS | {"A60"}
DISPATCH: dict[tuple[str, str], tuple[str, Mapper]] = {
    **{("ADT", ev): ("ADT", adt.map_adt) for ev in _ADT_EVENTS},
    ("PPR", "ZD1"): ("PPR_ZD1", ppr.map_ppr),
    ("PPR", "PC1"): ("PPR_PC1", ppr.map_ppr),
    ("PPR", "PC2"): ("PPR_PC1", ppr.map_ppr),
    ("PPR", "PC3"): ("PPR_PC1", ppr.map_ppr),
    ("RDE", "O11"): ("RDE_O11", omp.map_rde),
    ("RAS", "O17"): ("RAS_O17", omp.map_ras),
    ("OML", "O33"): ("OML_O33", lab.map_oml),
    ("OUL", "R22"): ("OUL_R22", lab.map_oul),
    ("ORU", "R01"): ("ORU_R01", lab.map_oru),
    ("OMG", "O19"): ("OMG_O19", orders.map_omg),
    ("OMI", "Z23"): ("OMI_Z23", orders.map_omi),
    ("OMD", "O03"): ("OMD_O03", orders.map_omd),
}

#: SS-MIX2 data kind -> the MSH-9 message codes allowed for it (storage consistency).
SSMIX2_KINDS: dict[str, set[tuple[str, str]]] = {
    "ADT-00": {("ADT", "A08"), ("ADT", "A23")},
    "ADT-01": {("ADT", "A54"), ("ADT", "A55")},
    "ADT-12": {("ADT", "A04"), ("ADT", "A11")},
    "ADT-21": {("ADT", "A14"), ("ADT", "A27")},
    "ADT-22": {("ADT", "A01"), ("ADT", "A11")},
    "ADT-31": {("ADT", "A21"), ("ADT", "A52")},
    "ADT-32": {("ADT", "A22"), ("ADT", "A53")},
    "ADT-41": {("ADT", "A15"), ("ADT", "A26")},
    "ADT-42": {("ADT", "A02"), ("ADT", "A12")},
    "ADT-51": {("ADT", "A16"), ("ADT", "A25")},
    "ADT-52": {("ADT", "A03"), ("ADT", "A13")},
    "ADT-61": {("ADT", "A60")},
    "PPR-01": {("PPR", "ZD1")},
    "OMD": {("OMD", "O03")},
    "OMP-01": {("RDE", "O11")},
    "OMP-02": {("RDE", "O11")},
    "OMP-11": {("RAS", "O17")},
    "OMP-12": {("RAS", "O17")},
    "OML-01": {("OML", "O33")},
    "OML-11": {("OUL", "R22")},
    "OMG-01": {("OMG", "O19")},
    "OMG-02": {("OMG", "O19")},
    "OMG-03": {("OMG", "O19")},
    "OMG-11": {("OMI", "Z23")},
    "OMG-12": {("OMI", "Z23")},
    "OMG-13": {("ORU", "R01")},
}


def _grammar_for(code: str, event: str) -> str | None:
    entry = DISPATCH.get((code, event))
    return entry[0] if entry else None


@dataclass
class MappingResult:
    """The outcome of mapping one message."""

    bundle: dict[str, Any]
    control_id: str
    message_type: str
    patient_number: str
    resource_count: int
    warnings: list[str] = field(default_factory=list)
    sending: str = ""
    #: Resources to create only if the node lacks them ("Type/id" -> resource): the
    #: Patient from the PID of a message that does not own demographics, the order
    #: (ServiceRequest) of a result message. See adapters.feed.
    if_absent: dict[str, dict[str, Any]] = field(default_factory=dict)
    patient_id: str = ""
    #: "Type/id" -> HL7 location each resource was mapped from (for error reports).
    origins: dict[str, str] = field(default_factory=dict)


def map_message(raw: bytes, *, facility: str, source: str, ids: FeedIds, kind: str | None = None,
                storage_patient_id: str | None = None, strict_patient_id: bool = False,
                delete: bool = False, default_charset: str = "ascii", tz: str = "+09:00",
                decoded: Decoded | None = None) -> MappingResult:
    """Map raw message bytes to a transaction Bundle (raises :class:`V2Error`); ``decoded``:
    the same bytes already decoded by the caller (not decoded again); ``ids``: the node's
    keyed logical ids (:func:`adapters.hl7v2.ids.node_feed_ids`)."""
    check_facility(facility)
    if decoded is None:
        decoded = decode_message(raw, default_charset=default_charset)
    precheck_text(decoded.text, _grammar_for)
    msg = parse_text(decoded.text, decoded)
    return map_parsed(msg, facility=facility, source=source, ids=ids, kind=kind, storage_patient_id=storage_patient_id,
                      strict_patient_id=strict_patient_id, delete=delete, tz=tz)


def map_parsed(msg: Message, *, facility: str, source: str, ids: FeedIds, kind: str | None = None,
               storage_patient_id: str | None = None, strict_patient_id: bool = False,
               delete: bool = False, tz: str = "+09:00") -> MappingResult:
    code, event, structure = msg.message_type
    if not code:
        raise MappingError("MSH-9", "message type is empty")
    if not msg.control_id:
        raise MappingError("MSH-10", "message control id is empty")
    version = msg.version
    if version and not version.startswith("2."):
        raise UnsupportedMessage("MSH-12", f"HL7 version {version!r} is not 2.x")
    if kind is not None:
        allowed = SSMIX2_KINDS.get(kind)
        if allowed is None:
            raise UnsupportedMessage("", f"SS-MIX2 data kind {kind} is not mapped")
        if (code, event) not in allowed:
            raise UnsupportedMessage("MSH-9", f"{code}^{event} is not a valid message for SS-MIX2 kind {kind}")
    entry = DISPATCH.get((code, event))
    if entry is None:
        if any(c == code for c, _ in DISPATCH):
            raise UnsupportedMessage("MSH-9.2", f"event {code}^{event} is not mapped",
                                     code=UNSUPPORTED_EVENT_CODE)
        raise UnsupportedMessage("MSH-9", f"message type {code}^{event} is not mapped")
    grammar, mapper = entry
    check_structure(msg, grammar)
    ctx = MapContext(facility=facility, source=source, kind=kind, storage_patient_id=storage_patient_id,
                     strict_patient_id=strict_patient_id, tz=tz)
    number = patient_number(msg, ctx)
    b = BundleBuilder(facility, source, number, ids)
    mapper(msg, b, ctx)
    bundle = b.transaction(delete=delete)
    if not bundle["entry"]:
        raise MappingError("", f"{code}^{event} produced no resources")
    if not delete and not b.has(f"Patient/{b.patient_id}"):
        b.if_absent[f"Patient/{b.patient_id}"] = _patient_stub(msg, b, ctx)
    return MappingResult(bundle=bundle, control_id=msg.control_id, message_type=f"{code}^{event}",
                         patient_number=number, resource_count=len(b.resources()), warnings=ctx.warnings,
                         sending=f"{msg.msh.get(3)}|{msg.msh.get(4)}",
                         if_absent={} if delete else dict(b.if_absent), patient_id=b.patient_id,
                         origins=dict(b.origins))


def _patient_stub(msg: Message, b: BundleBuilder, ctx: MapContext) -> dict[str, Any]:
    from .mappers.common import patient_resource

    try:
        res = patient_resource(msg, b, MapContext(facility=ctx.facility, source=ctx.source, kind=ctx.kind,
                                                  storage_patient_id=ctx.storage_patient_id, tz=ctx.tz))
    except V2Error:
        # The PID of this message is not good enough for demographics: identifier only.
        res = {"resourceType": "Patient", "id": b.patient_id,
               "identifier": [{"system": b.patient_ref()["identifier"]["system"], "value": b.patient_number}],
               "managingOrganization": dict(b.org_ref)}
    b._decorate(res)  # noqa: SLF001 - same package
    b.origins[f"Patient/{b.patient_id}"] = "PID"
    return res


__all__ = ["map_message", "map_parsed", "MappingResult", "V2Error", "SSMIX2_KINDS"]
