"""HL7 v2 data types -> FHIR data types, with the JAHIS / SS-MIX2 conventions.

Implements the JAMI SS-MIX2-to-FHIR datatype rules (ConceptMaps
``segment-pid-to-patient``, ``table-v2-0465-to-iso-21090``, ``table-v2-0201-to-
contactpointuse``; https://github.com/jami-fhir-jp-wg/ssmix2-to-fhir) and JP Core
name rules (one ``name[]`` per representation, extension
``iso21090-EN-representation`` = ``IDE`` kanji / ``SYL`` kana):
https://jpfhir.jp/fhir/core/1.1.1/StructureDefinition-jp-patient.html

HL7 v2.5 data types: section 2.A (XPN 2.A.88, XAD 2.A.85, XTN 2.A.89, XCN 2.A.86,
CWE 2.A.13, TS/DTM 2.A.77/2.A.22, CQ 2.A.14).
Times without an offset are local times of the sending facility; Japanese systems
send JST, so ``MapContext.tz`` defaults to ``+09:00``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

from . import codesystems as cs
from .errors import MappingError
from .ids import practitioner_system
from .message import Segment

EN_REPRESENTATION = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
_REPRESENTATION = {"I": "IDE", "P": "SYL", "A": "ABC"}
_NAME_USE = {"L": "official", "D": "usual", "A": "nickname", "M": "maiden", "N": "nickname",
             "B": "old", "C": "old", "S": "anonymous", "T": "temp", "U": "anonymous"}
_ADDRESS_USE = {"H": ("home", None), "B": ("work", None), "O": ("work", None),
                "C": ("temp", None), "M": (None, "postal"), "BA": ("old", None)}
_TELECOM_USE = {"PRN": "home", "ORN": "home", "WPN": "work", "VHN": "home", "PRS": "mobile"}
_TELECOM_SYSTEM = {"PH": "phone", "FX": "fax", "CP": "phone", "BP": "pager",
                   "Internet": "email", "X.400": "email", "MD": "other", "TDD": "other", "TTY": "other"}

_TS = re.compile(r"^(\d{4})(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\d{2})?(\.\d{1,4})?([+-]\d{4})?$")


@dataclass
class MapContext:
    """What a mapper needs besides the message: the facility, the source label,
    the patient number the storage tree files the message under, the time zone."""

    facility: str
    source: str
    kind: str | None = None  # SS-MIX2 data kind, e.g. "OML-11"
    storage_patient_id: str | None = None
    strict_patient_id: bool = False
    tz: str = "+09:00"
    warnings: list[str] = field(default_factory=list)

    def warn(self, location: str, text: str) -> None:
        msg = f"{location}: {text}" if location else text
        if msg not in self.warnings:
            self.warnings.append(msg)


# ---------------------------------------------------------------- date / time

def ts(value: str, location: str, ctx: MapContext) -> str | None:
    """HL7 TS/DTM -> FHIR date or dateTime ('' -> None). Invalid -> MappingError."""
    v = value.strip()
    if not v:
        return None
    m = _TS.match(v)
    if not m:
        raise MappingError(location, f"not an HL7 date/time: {v!r}")
    y, mo, d, hh, mi, ss, frac, off = m.groups()
    _check_range(location, v, mo, 1, 12)
    _check_range(location, v, d, 1, 31)
    _check_range(location, v, hh, 0, 23)
    _check_range(location, v, mi, 0, 59)
    _check_range(location, v, ss, 0, 59)
    if hh is None:
        return "-".join(p for p in (y, mo, d) if p)
    if mo is None or d is None:
        raise MappingError(location, f"time without a full date: {v!r}")
    tz = f"{off[:3]}:{off[3:]}" if off else ctx.tz
    secs = ss or "00"
    if frac:
        # FHIR allows any number of fractional digits; keep what was sent.
        secs += frac
    return f"{y}-{mo}-{d}T{hh}:{mi or '00'}:{secs}{tz}"


def date_only(value: str, location: str, ctx: MapContext) -> str | None:
    out = ts(value, location, ctx)
    return out[:10] if out else None


def _check_range(location: str, v: str, part: str | None, lo: int, hi: int) -> None:
    if part is not None and not lo <= int(part) <= hi:
        raise MappingError(location, f"not a valid date/time: {v!r}")


# ---------------------------------------------------------------- numbers

def decimal(value: str, location: str) -> float | int:
    v = value.strip()
    try:
        d = Decimal(v)
    except InvalidOperation:
        raise MappingError(location, f"not a number: {v!r}") from None
    if not d.is_finite():
        raise MappingError(location, f"not a finite number: {v!r}")
    return int(d) if d == d.to_integral_value() and "." not in v and "e" not in v.lower() else float(d)


# ---------------------------------------------------------------- codes

def coding(code: str, display: str, tag: str, location: str, ctx: MapContext,
           overrides: dict[str, str] | None = None) -> dict | None:
    code, display, tag = code.strip(), display.strip(), tag.strip()
    if not code:
        return None
    if overrides and tag in overrides:
        system = overrides[tag]
    elif tag == "MDCDX2":
        system = cs.disease_system(code)
    else:
        system, known = cs.system_for_tag(tag, ctx.facility)
        if not known:
            ctx.warn(location, f"unknown coding-system tag {tag!r}: mapped as facility-local")
    c: dict[str, Any] = {"system": system, "code": code}
    if display:
        c["display"] = display
    return c


def codeable(seg: Segment, fieldno: int, ctx: MapContext, rep: int = 0,
             overrides: dict[str, str] | None = None) -> dict | None:
    """CE/CWE (both triplets) -> CodeableConcept; None when the field is empty.

    ``overrides`` maps a tag to a system for this field only: JAHIS uses one tag
    (``MR9P``) for several MERIT-9 tables (units, dosage forms, prescription
    categories), so the field decides which table is meant."""
    c = seg.rep_components(fieldno, rep)
    if not c:
        return None
    c = c + [""] * (9 - len(c))
    loc = seg.loc(fieldno)
    codings = [x for x in (coding(c[0], c[1], c[2], loc, ctx, overrides),
                           coding(c[3], c[4], c[5], loc, ctx, overrides)) if x]
    text = c[8] or c[1] or c[4]
    if not codings and not text:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def codeable_from(parts: list[str], location: str, ctx: MapContext) -> dict | None:
    """CodeableConcept from an already-split CWE (e.g. a sub-component triplet)."""
    c = parts + [""] * (6 - len(parts))
    codings = [x for x in (coding(c[0], c[1], c[2], location, ctx),
                           coding(c[3], c[4], c[5], location, ctx)) if x]
    text = c[1] or c[4]
    if not codings and not text:
        return None
    out: dict[str, Any] = {}
    if codings:
        out["coding"] = codings
    if text:
        out["text"] = text
    return out


def v2_table_coding(table: str, code: str, display: str = "") -> dict:
    out = {"system": f"http://terminology.hl7.org/CodeSystem/v2-{table}", "code": code}
    if display:
        out["display"] = display
    return out


# ---------------------------------------------------------------- names

def human_names(seg: Segment, fieldno: int) -> list[dict]:
    """XPN repetitions -> HumanName list; component 8 I/P/A -> IDE/SYL/ABC extension."""
    names = []
    for i in range(len(seg.reps(fieldno))):
        c = seg.rep_components(fieldno, i)
        c = c + [""] * (14 - len(c))
        family, given, middle = c[0], c[1], c[2]
        suffix, prefix = c[3], c[4]
        if not (family or given):
            continue
        name: dict[str, Any] = {}
        rep = _REPRESENTATION.get(c[7])
        if rep:
            name["extension"] = [{"url": EN_REPRESENTATION, "valueCode": rep}]
        use = _NAME_USE.get(c[6])
        if use:
            name["use"] = use
        name["text"] = " ".join(p for p in (family, given) if p)
        if family:
            name["family"] = family
        given_list = [g for g in (given, middle) if g]
        if given_list:
            name["given"] = given_list
        if prefix:
            name["prefix"] = [prefix]
        if suffix:
            name["suffix"] = [suffix]
        names.append(name)
    return names


def practitioner_ref(seg: Segment, fieldno: int, ctx: MapContext, rep: int = 0) -> dict | None:
    """XCN -> Reference(Practitioner) by identifier + display (the node has no
    practitioner registry feed from SS-MIX2; the identifier is facility-scoped)."""
    c = seg.rep_components(fieldno, rep)
    if not c or not any(c):
        return None
    c = c + [""] * (3 - len(c))
    ref: dict[str, Any] = {"type": "Practitioner"}
    if c[0]:
        ref["identifier"] = {"system": practitioner_system(ctx.facility), "value": c[0]}
    display = " ".join(p for p in (c[1], c[2]) if p)
    if display:
        ref["display"] = display
    return ref if len(ref) > 1 else None


# ---------------------------------------------------------------- address / telecom

def addresses(seg: Segment, fieldno: int) -> list[dict]:
    out = []
    for i in range(len(seg.reps(fieldno))):
        c = seg.rep_components(fieldno, i)
        c = c + [""] * (9 - len(c))
        street, other, city, state, zipc, country, atype, geo = c[:8]
        a: dict[str, Any] = {}
        use, typ = _ADDRESS_USE.get(atype, (None, None))
        if use:
            a["use"] = use
        if typ:
            a["type"] = typ
        text = geo or "".join(p for p in (state, city, street, other) if p)
        if text:
            a["text"] = text
        lines = [p for p in (street, other) if p]
        if lines:
            a["line"] = lines
        if city:
            a["city"] = city
        if state:
            a["state"] = state
        if zipc:
            a["postalCode"] = zipc
        if country:
            a["country"] = country
        if text or lines or zipc:
            out.append(a)
    return out


def telecoms(seg: Segment, fieldno: int, default_use: str | None = None) -> list[dict]:
    out = []
    for i in range(len(seg.reps(fieldno))):
        c = seg.rep_components(fieldno, i)
        c = c + [""] * (12 - len(c))
        use_code, equip = c[1], c[2]
        value = c[11] or c[3] or c[0]
        if not value:
            continue
        t: dict[str, Any] = {"system": _TELECOM_SYSTEM.get(equip, "email" if c[3] and not c[11] else "phone"),
                             "value": value}
        use = _TELECOM_USE.get(use_code, default_use if not use_code else None)
        if equip == "CP":
            use = "mobile"
        if use:
            t["use"] = use
        out.append(t)
    return out


# ---------------------------------------------------------------- quantities

def quantity(value: float | int, unit_parts: list[str], location: str, ctx: MapContext) -> dict:
    """Value + CE unit (code^text^tag) -> Quantity (system only for a known unit tag)."""
    q: dict[str, Any] = {"value": value}
    u = unit_parts + [""] * (3 - len(unit_parts))
    code, text, tag = u[0], u[1], u[2]
    if text or code:
        q["unit"] = text or code
    if code:
        if tag:
            system, known = cs.system_for_tag(tag, ctx.facility)
            if not known:
                ctx.warn(location, f"unknown unit-system tag {tag!r}: mapped as facility-local")
            q["system"] = system
            q["code"] = code
    return q
