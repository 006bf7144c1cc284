"""Segment-order grammars for the message structures the adapter accepts.

Each grammar is the HL7 v2.5 abstract message syntax (chapter 2.12 and the message
definitions of chapters 3, 4, 7, 12) written as a regular expression over the
space-joined segment ids, extended with the JAHIS Z-segments SS-MIX2 uses (ZPR/ZI1
in PPR^ZD1, ZE1/ZE2 in OMI^Z23). Checking order before mapping is what lets the
adapter reject scrambled files (HL7 error 100, segment sequence error) instead of
mapping whatever segments happen to be present.
https://www.hl7.eu/HL7v2x/v25/std25/ch02.html#Heading181
"""

from __future__ import annotations

import re
from collections.abc import Callable

from .errors import ParseError, UnsupportedMessage
from .message import Message

_ADT = (r"MSH (SFT )*EVN PID (PD1 )?(ROL )*(NK1 )*(PV1 (PV2 )?)?(ROL )*(DB1 )*(OBX (NTE )*)*"
        r"(AL1 )*(IAM (NTE )*)*(DG1 )*(DRG )?(PR1 (ROL )*)*(GT1 )*(IN1 (IN2 )?(IN3 )*(ROL )*)*"
        r"(ACC )?(UB1 )?(UB2 )?(PDA )?")
_PATIENT = r"(PID (PD1 )?(NTE )*(NK1 )*(PV1 (PV2 )?)?(IN1 (IN2 )?(IN3 )?)*(GT1 )?(AL1 )*)?"
_TQ = r"(TQ1 (TQ2 )*)*"

GRAMMARS: dict[str, str] = {
    "ADT": _ADT,
    "PPR_ZD1": r"MSH (SFT )*PID (PD1 )?(PV1 (PV2 )?)?(PRB (NTE )*(VAR )*(ZPR )?(ZI1 )*(ROL )*(OBX (NTE )*)*(ORC )*)+",
    "PPR_PC1": r"MSH (SFT )*PID (PV1 (PV2 )?)?(PRB (NTE )*(VAR )*(ROL )*(PTH (VAR )*)*(OBX (NTE )*)*"
               r"(GOL (NTE )*(VAR )*(ROL )*(OBX (NTE )*)*)*(ORC (OBR|RXO) (NTE )*(VAR )*(OBX (NTE )*)*)*)+",
    "RDE_O11": r"MSH (SFT )*(NTE )*(PID (PD1 )?(NTE )*(PV1 (PV2 )?)?(IN1 (IN2 )?(IN3 )?)*(GT1 )?(AL1 )*)?"
               r"(ORC " + _TQ + r"(RXO (NTE )*(RXR )+(RXC (NTE )*)*)?(RXE (NTE )*(TQ1 (TQ2 )*)+(RXR )+(RXC )*)"
               r"(OBX (NTE )*)*(FT1 )*(BLG )?(CTI )*)+",
    "RAS_O17": r"MSH (SFT )*(NTE )*(PID (PD1 )?(NTE )*(AL1 )*(PV1 (PV2 )?)?)?"
               r"(ORC " + _TQ + r"(RXO (NTE )*(RXR )+(RXC (NTE )*)*)?(RXE (TQ1 (TQ2 )*)+(RXR )+(RXC )*)?"
               r"((RXA )+RXR (OBX (NTE )*)*)+(CTI )*)+",
    "OML_O33": r"MSH (SFT )*(NTE )*" + _PATIENT +
               r"(SPM (OBX )*(SAC )*(ORC " + _TQ +
               r"(OBR (TCD )?(NTE )*(DG1 )*(OBX (TCD )?(NTE )*)*)?(FT1 )*(CTI )*(BLG )?)+)+",
    "OUL_R22": r"MSH (SFT )*(NTE )?(PID (PD1 )?(NTE )*)?(PV1 (PV2 )?)?"
               r"(SPM (OBX )*((SAC (INV )?))*(OBR (ORC )?(NTE )*" + _TQ +
               r"(OBX (TCD )?(SID )*(NTE )*)*(CTI )*)+)+(DSC )?",
    "OMG_O19": r"MSH (SFT )*(NTE )*" + _PATIENT +
               r"(ORC " + _TQ + r"OBR (NTE )*(CTD )?(DG1 )*(OBX (NTE )*)*(FT1 )*(CTI )*(BLG )?)+",
    "OMI_Z23": r"MSH (SFT )*(NTE )*" + _PATIENT +
               r"(ORC " + _TQ + r"OBR (NTE )*(CTD )?(DG1 )*(OBX (NTE )*)*(ZE1 (ZE2 )*(OBX (NTE )*)*)*(IPC )+)+",
    "ORU_R01": r"MSH (SFT )*(PID (PD1 )?(NTE )*(NK1 )*(PV1 (PV2 )?)?)?"
               r"((ORC )?OBR (NTE )*" + _TQ + r"(CTD )?(OBX (NTE )*)*(FT1 )*(CTI )*(SPM (OBX )*)*)+(DSC )?",
    "OMD_O03": r"MSH (SFT )*(NTE )*" + _PATIENT +
               r"(ORC " + _TQ + r"(ODS (NTE )*(OBX (NTE )*)*)+)+(ORC " + _TQ + r"(ODT (NTE )*)+)*",
    "VXU_V04": r"MSH (SFT )*PID (PD1 )?(NK1 )*(PV1 (PV2 )?)?(GT1 )*(IN1 (IN2 )?(IN3 )?)*"
               r"(ORC (TQ1 (TQ2 )*)?RXA (RXR )?(OBX (NTE )*)*)*",
}
_COMPILED = {k: re.compile(v) for k, v in GRAMMARS.items()}


def check_structure(msg: Message, structure: str) -> None:
    """Raise :class:`ParseError` (HL7 error 100) when segment order breaks the grammar."""
    grammar = _COMPILED.get(structure)
    if grammar is None:
        raise UnsupportedMessage("MSH-9", f"no grammar for message structure {structure}")
    ids = [s.sid for s in msg.segments]
    text = " ".join(ids) + " "
    if grammar.fullmatch(text):
        return
    known = set(re.findall(r"[A-Z][A-Z0-9]{2}", grammar.pattern))
    first_unknown = next((n for n, sid in enumerate(ids) if sid not in known), None)
    # The segment after the longest prefix that is itself a complete message.
    good = 0
    for n in range(len(ids) - 1, 0, -1):
        if grammar.fullmatch(" ".join(ids[:n]) + " "):
            good = n
            break
    if first_unknown is not None and (good == 0 or first_unknown < good):
        sid = ids[first_unknown]
        raise ParseError(f"{sid} (segment {first_unknown + 1})",
                         f"segment {sid} is not part of message structure {structure}")
    where = ids[good] if good < len(ids) else ids[-1]
    after = " ".join(ids[max(0, good - 3):good])
    raise ParseError(f"{where} (segment {good + 1})",
                     f"segment sequence does not match {structure}: unexpected {where}"
                     + (f" after {after}" if after else ""))


def precheck_text(text: str, grammars_for: Callable[[str, str], str | None]) -> None:
    """Run the grammar on decoded text before full parsing, so that a file with
    scrambled segments is reported by its first out-of-place segment.

    ``grammars_for(code, event)`` returns the grammar name or None (unknown type:
    left to the dispatcher's error).
    """
    lines = [ln for ln in text.replace("\n", "\r").split("\r") if ln.strip()]
    if not lines or not lines[0].startswith("MSH") or len(lines[0]) < 4:
        return
    sep = lines[0][3]
    fields = lines[0].split(sep)
    if len(fields) < 9:
        return
    comp = lines[0][4] if len(lines[0]) > 4 else "^"
    msg_type = fields[8].split(comp)
    name = grammars_for(msg_type[0], msg_type[1] if len(msg_type) > 1 else "")
    if name is None:
        return
    ids = [ln[:3] for ln in lines]

    class _Seg:  # minimal stand-in with the attribute check_structure reads
        def __init__(self, sid: str) -> None:
            self.sid = sid

    class _Msg:
        segments = [_Seg(i) for i in ids]

    check_structure(_Msg(), name)  # type: ignore[arg-type]
