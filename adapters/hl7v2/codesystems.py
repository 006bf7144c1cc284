"""Coding-system tags of HL7 v2 / JAHIS messages -> FHIR code system URIs (one table).

HL7 v2 coded elements (CE/CWE/CNE, HL7 v2.5 section 2.A.8) name their code system
with a short tag in component 3/6. JAHIS and SS-MIX2 define the Japanese tags
(JC10, HOT9, MR9P, MDCDX2, I10, JJ1017, ... and ``99xxx`` for facility-local code
sets); the FHIR URIs are those of JP Core v1.1 and the node's DOMAIN notes
(JLAC10, HOT, MEDIS disease, ICD-10 2013):
https://jpfhir.jp/fhir/core/ (terminology pages) and HL7 v2 table 0396.

Tags not in this table and local ``99xxx`` / ``L`` tags are facility-scoped: the same
code from two hospitals does not mean the same thing, so they become
``http://hie.example.jp/fhir/CodeSystem/local/<facility>/<tag>``. Unknown tags are
reported as a mapping warning, never silently re-labelled as a national system.
"""

from __future__ import annotations

import re

JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
HOT9 = "http://medis.or.jp/CodeSystem/master-HOT9"
MEDIS_DISEASE_EXCODE = "http://medis.or.jp/CodeSystem/master-disease-exCode"
MEDIS_DISEASE_MOD_EXCODE = "http://medis.or.jp/CodeSystem/master-disease-modExCode"
# The 8-digit 病名管理番号 (management number) of the MEDIS standard disease master.
MEDIS_DISEASE_KEYNUMBER = "http://medis.or.jp/CodeSystem/master-disease-keyNumber"
ICD10_2013 = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/ICD10-2013-full"
MERIT9_UNIT = "http://jpfhir.jp/fhir/core/mhlw/CodeSystem/MedicationUnitMERIT9Code"
MERIT9_CATEGORY = "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationCategoryMERIT9_CS"
MERIT9_FORM = "http://jpfhir.jp/fhir/core/CodeSystem/JP_MedicationFormMERIT9_CS"
JAMI_USAGE = "http://jami.jp/CodeSystem/MedicationUsage"
UCUM = "http://unitsofmeasure.org"
LOCAL_BASE = "http://hie.example.jp/fhir/CodeSystem/local"
CUSTODIAN_TAG_SYSTEM = "http://hie.example.jp/fhir/CodeSystem/custodian"

#: Tag (component 3 / 6 of CE/CWE) -> FHIR code system URI.
TAGS: dict[str, str] = {
    # Japanese national masters (JAHIS / MEDIS / MHLW)
    "JC10": JLAC10,
    "JC11": "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC11/JLAC11-analyte",
    "HOT": "http://medis.or.jp/CodeSystem/master-HOT",
    "HOT7": "http://medis.or.jp/CodeSystem/master-HOT7",
    "HOT9": HOT9,
    "HOT13": "http://medis.or.jp/CodeSystem/master-HOT13",
    "YJ": "http://capstandard.jp/iyaku.info/CodeSystem/YJ-code",
    "MR9P": MERIT9_UNIT,
    "MDCDX2": MEDIS_DISEASE_EXCODE,  # refined per code shape, see disease_system()
    "I10": ICD10_2013,
    "I10P": "http://jpfhir.jp/fhir/core/CodeSystem/ICD10-procedure",
    "JAMISDP01": JAMI_USAGE,
    "JAMISDP02": "urn:oid:1.2.392.200250.2.2.20.22",
    "JJ1017": "http://jpfhir.jp/fhir/core/CodeSystem/JJ1017",
    "JJ1017P": "http://jpfhir.jp/fhir/core/CodeSystem/JJ1017",
    "LENDO": "http://jpfhir.jp/fhir/core/CodeSystem/JED-LENDO",
    "JAN": "urn:oid:1.2.392.200119.4.701",  # JAN product code (GS1 Japan)
    "JSHR": "http://jahis.jp/fhir/CodeSystem/JSHR",
    "JSHR001": "http://jahis.jp/fhir/CodeSystem/JSHR001",
    "JSHR002": "http://jahis.jp/fhir/CodeSystem/JSHR002",
    "JHSD0001": "http://jpfhir.jp/fhir/core/CodeSystem/JHSD0001",
    "JHSD0004": "http://jpfhir.jp/fhir/core/CodeSystem/JHSD0004",
    "JHSD0006": "http://jpfhir.jp/fhir/core/CodeSystem/JHSD0006",
    "JHSD0007": "http://jpfhir.jp/fhir/core/CodeSystem/JHSD0007",
    "JHSI0001": "http://jpfhir.jp/fhir/core/CodeSystem/JHSI0001",
    "MML028": "urn:oid:1.2.392.200250.2.2.2",  # SS-MIX / MML clinical department
    "DCM": "http://dicom.nema.org/resources/ontology/DCM",
    # International
    "LN": "http://loinc.org",
    "SCT": "http://snomed.info/sct",
    "SNM": "http://snomed.info/sct",
    "I9": "http://hl7.org/fhir/sid/icd-9-cm",
    "I9C": "http://hl7.org/fhir/sid/icd-9-cm",
    "I10C": "http://hl7.org/fhir/sid/icd-10-cm",
    "CVX": "http://hl7.org/fhir/sid/cvx",
    "MVX": "http://terminology.hl7.org/CodeSystem/MVX",
    "NDC": "http://hl7.org/fhir/sid/ndc",
    "RXNORM": "http://www.nlm.nih.gov/research/umls/rxnorm",
    "CPT": "http://www.ama-assn.org/go/cpt",
    "UCUM": UCUM,
    "ANS+": UCUM,
    "ISO+": "urn:iso:std:iso:2955",
    "NCIT": "http://ncimeta.nci.nih.gov",
    "HL70000": "http://terminology.hl7.org/CodeSystem/v2-0000",
}

_HL7_TABLE = re.compile(r"^HL7(\d{4})$")
_LOCAL = re.compile(r"^(99[A-Z0-9]+|L|LOCAL)$", re.IGNORECASE)


def local_system(facility: str, tag: str) -> str:
    return f"{LOCAL_BASE}/{facility}/{tag}"


def system_for_tag(tag: str, facility: str) -> tuple[str, bool]:
    """Return (system URI, known) for a coding-system tag.

    ``known`` is False when the tag is neither national/international nor a declared
    local tag; the caller records a warning.
    """
    t = tag.strip()
    if not t:
        return local_system(facility, "unspecified"), False
    if t in TAGS:
        return TAGS[t], True
    if t.upper() in TAGS:
        return TAGS[t.upper()], True
    m = _HL7_TABLE.match(t.upper())
    if m:
        return f"http://terminology.hl7.org/CodeSystem/v2-{m.group(1)}", True
    if _LOCAL.match(t):
        return local_system(facility, t), True
    return local_system(facility, t), False


def disease_system(code: str) -> str:
    """MDCDX2 carries two keys of the MEDIS master: the 4-character exchange code
    (病名交換用コード, e.g. ``TSQF``) and the 8-digit management number (病名管理番号,
    e.g. ``20054174``). The master defines the two formats, so the shape decides."""
    if re.fullmatch(r"\d{8}", code):
        return MEDIS_DISEASE_KEYNUMBER
    return MEDIS_DISEASE_EXCODE
