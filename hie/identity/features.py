"""Comparable features of a FHIR R4 Patient, for Patient/$match scoring and blocking.

Reads a JP Core Patient (http://jpfhir.jp/fhir/core/StructureDefinition/JP_Patient) as a
plain dict and produces a :class:`PatientFeatures` value with every field normalized
once, so scoring (:mod:`hie.identity.score`) compares strings and sets only.

Sources, per https://hl7.org/fhir/R4/patient-operation-match.html and IHE PDQm ITI-119:

* names - one ``name[]`` entry per form, told apart by the extension
  ``http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation``: ``IDE``
  (kanji), ``SYL`` (kana). Without the extension the script decides. Entries with
  ``use`` old/maiden or an ended period are former names.
* facility patient numbers - identifier systems ``urn:oid:1.2.392.100495.20.3.51.1``
  + 10-digit medical-institution code.
* insured-person id (JP-CLINS) ``insurer(8):symbol:number:branch(2)`` in
  ``http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID``, on the Patient or
  on a JP_Coverage (its symbol/number/sub-number extensions plus the payor's insurer
  number ``http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from hie.identity import normalize as n

REPRESENTATION_URL: Final = "http://hl7.org/fhir/StructureDefinition/iso21090-EN-representation"
FACILITY_PATIENT_ID_PREFIX: Final = "urn:oid:1.2.392.100495.20.3.51.1"
INSURANCE_MEMBER_ID_SYSTEM: Final = "http://jpfhir.jp/fhir/clins/Idsystem/JP_Insurance_memberID"
INSURER_NUMBER_SYSTEM: Final = "http://jpfhir.jp/fhir/core/mhlw/IdSystem/InsurerNumber"
_COVERAGE_EXT: Final = "http://jpfhir.jp/fhir/core/Extension/StructureDefinition/JP_Coverage_"
_FORMER_USES: Final = frozenset({"old", "maiden"})


@dataclass(frozen=True, slots=True)
class InsuranceId:
    """Insured-person id. ``household`` (insurer, symbol, number) is shared by a family
    insured through one policy holder; ``branch`` (枝番, since 2021) tells them apart."""

    insurer: str
    symbol: str
    number: str
    branch: str | None = None

    @property
    def household(self) -> tuple[str, str, str]:
        return (self.insurer, self.symbol, self.number)

    @property
    def key(self) -> str:
        return ":".join((*self.household, self.branch or ""))


@dataclass(frozen=True, slots=True)
class PatientFeatures:
    """Normalized, comparable demographics of one Patient record.

    Names: ``*_family``/``*_given`` when the source splits them; ``*_full`` always (the
    concatenation, or the whole text when it could not be split). ``*_key`` and
    ``*_loose`` are :func:`~hie.identity.normalize.kana_key` / ``kana_loose`` forms.
    """

    kanji_family: str = ""
    kanji_given: str = ""
    kanji_full: str = ""
    kana_family: str = ""
    kana_given: str = ""
    kana_full: str = ""
    kana_family_key: str = ""
    kana_given_key: str = ""
    kana_full_key: str = ""
    former_families: frozenset[str] = field(default_factory=frozenset)
    birth_date: str | None = None
    gender: str | None = None
    postal_codes: frozenset[str] = field(default_factory=frozenset)
    addresses: frozenset[str] = field(default_factory=frozenset)
    phones: frozenset[str] = field(default_factory=frozenset)
    insurance: frozenset[InsuranceId] = field(default_factory=frozenset)
    facility_ids: frozenset[tuple[str, str]] = field(default_factory=frozenset)


# --- identifiers --------------------------------------------------------------------


def _id_part(text: str | None) -> str:
    """Symbol/number part: width, kana type, separators and hyphens removed; numeric
    parts lose leading zeros (some systems pad them, some do not)."""
    s = n.to_katakana(n.remove_separators(n.nfkc(text)))
    s = "".join(ch for ch in s if ch not in n.DASHES)
    if s.isdigit():
        return s.lstrip("0") or "0"
    return s


def _insurer(text: str | None) -> str | None:
    digits = re.sub(r"\D", "", n.nfkc(text))
    # National Health Insurance insurers have 6 digits; JP-CLINS pads to 8.
    return digits.zfill(8) if 6 <= len(digits) <= 8 else None


def _branch(text: str | None) -> str | None:
    digits = re.sub(r"\D", "", n.nfkc(text))
    return digits.zfill(2)[-2:] if digits else None


def parse_member_id(value: str | None) -> InsuranceId | None:
    """Parse a JP-CLINS insured-person id ``insurer:symbol:number[:branch]``."""
    parts = n.nfkc(value).split(":")
    if len(parts) not in (3, 4):
        return None
    insurer, number = _insurer(parts[0]), _id_part(parts[2])
    if insurer is None or not number:
        return None
    return InsuranceId(insurer, _id_part(parts[1]), number, _branch(parts[3]) if len(parts) == 4 else None)


def insurance_from_coverage(coverage: Mapping[str, Any], insurer_number: str | None = None) -> InsuranceId | None:
    """Insured-person id of a JP_Coverage: its member-id identifier, or its symbol/number/
    sub-number extensions with the insurer number from ``payor[].identifier`` (or given)."""
    for ident in coverage.get("identifier") or ():
        if ident.get("system") == INSURANCE_MEMBER_ID_SYSTEM:
            parsed = parse_member_id(ident.get("value"))
            if parsed:
                return parsed
    ext = {e.get("url", "").removeprefix(_COVERAGE_EXT): e.get("valueString") for e in coverage.get("extension") or ()}
    for payor in coverage.get("payor") or ():
        ident = payor.get("identifier") or {}
        if ident.get("system") == INSURER_NUMBER_SYSTEM:
            insurer_number = ident.get("value")
    insurer, number = _insurer(insurer_number), _id_part(ext.get("InsuredPersonNumber"))
    if insurer is None or not number:
        return None
    return InsuranceId(insurer, _id_part(ext.get("InsuredPersonSymbol")), number,
                       _branch(ext.get("InsuredPersonSubNumber")))


# --- names --------------------------------------------------------------------------


def _representation(entry: Mapping[str, Any]) -> str:
    for ext in entry.get("extension") or ():
        if ext.get("url") == REPRESENTATION_URL and ext.get("valueCode") in ("IDE", "SYL", "ABC"):
            return ext["valueCode"]
    sample = (entry.get("family") or "") + "".join(entry.get("given") or ()) or entry.get("text") or ""
    return "SYL" if n.is_kana(sample) else "IDE"


def _is_former(entry: Mapping[str, Any]) -> bool:
    return entry.get("use") in _FORMER_USES or bool((entry.get("period") or {}).get("end"))


def _split(entry: Mapping[str, Any]) -> tuple[str, str, str]:
    """(family, given, full) as written; text is split at its first space if needed."""
    family = entry.get("family") or ""
    given = " ".join(entry.get("given") or ())
    if family or given:
        return family, given, family + given
    text = n.nfkc(entry.get("text"))
    parts = text.split(maxsplit=1)
    if len(parts) == 2:
        return parts[0], parts[1], text
    return "", "", text


def _names(patient: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    former: set[str] = set()
    for entry in patient.get("name") or ():
        rep = _representation(entry)
        family, given, full = _split(entry)
        if _is_former(entry):
            if family:
                former.add(n.normalize_kanji(family) if rep == "IDE" else n.kana_key(family))
            continue
        if rep == "IDE" and "kanji_full" not in out:
            out.update(kanji_family=n.normalize_kanji(family), kanji_given=n.normalize_kanji(given),
                       kanji_full=n.normalize_kanji(full))
        elif rep == "SYL" and "kana_full" not in out:
            out.update(kana_family=n.normalize_kana(family), kana_given=n.normalize_kana(given),
                       kana_full=n.normalize_kana(full), kana_family_key=n.kana_key(family),
                       kana_given_key=n.kana_key(given), kana_full_key=n.kana_key(full))
    former.discard("")
    out["former_families"] = frozenset(former)
    return out


# --- contact ------------------------------------------------------------------------


def _address_text(address: Mapping[str, Any]) -> str:
    if address.get("text"):
        return address["text"]
    return "".join([address.get("state") or "", address.get("city") or "", address.get("district") or "",
                    *(address.get("line") or ())])


def _addresses(patient: Mapping[str, Any]) -> tuple[frozenset[str], frozenset[str]]:
    postal: set[str] = set()
    lines: set[str] = set()
    for address in patient.get("address") or ():
        if (address.get("period") or {}).get("end") or address.get("use") == "old":
            continue
        text = _address_text(address)
        code = n.normalize_postal_code(address.get("postalCode"))
        if code is None:
            found = re.search(r"〒\s*(\d{3}-?\d{4})", n.nfkc(text))
            code = n.normalize_postal_code(found.group(1)) if found else None
        if code:
            postal.add(code)
        normalized = n.normalize_address(text)
        if normalized:
            lines.add(normalized)
    return frozenset(postal), frozenset(lines)


def _phones(patient: Mapping[str, Any]) -> frozenset[str]:
    phones = set()
    for telecom in patient.get("telecom") or ():
        if telecom.get("system", "phone") in ("phone", "sms"):
            phone = n.normalize_phone(telecom.get("value"))
            if phone:
                phones.add(phone)
    return frozenset(phones)


def _identifiers(patient: Mapping[str, Any]) -> tuple[frozenset[InsuranceId], frozenset[tuple[str, str]]]:
    insurance: set[InsuranceId] = set()
    facility: set[tuple[str, str]] = set()
    for ident in patient.get("identifier") or ():
        system, value = ident.get("system") or "", n.nfkc(ident.get("value"))
        if system == INSURANCE_MEMBER_ID_SYSTEM:
            parsed = parse_member_id(value)
            if parsed:
                insurance.add(parsed)
        elif system.startswith(FACILITY_PATIENT_ID_PREFIX) and value:
            facility.add((system, value))
    return frozenset(insurance), frozenset(facility)


def extract_features(patient: Mapping[str, Any], coverages: Iterable[Mapping[str, Any]] = ()) -> PatientFeatures:
    """Normalized features of a Patient dict (plus, optionally, its Coverage dicts)."""
    insurance, facility = _identifiers(patient)
    covered = {ins for ins in (insurance_from_coverage(c) for c in coverages) if ins}
    postal, addresses = _addresses(patient)
    gender = patient.get("gender")
    return PatientFeatures(
        **_names(patient),
        birth_date=n.normalize_date(patient.get("birthDate")),
        gender=gender if gender in ("male", "female", "other") else None,
        postal_codes=postal,
        addresses=addresses,
        phones=_phones(patient),
        insurance=insurance | covered,
        facility_ids=facility,
    )
