"""The JP-CLINS 6 information (6情報) of a patient, as data the viewer renders.

電子カルテ情報共有サービス shares six kinds of information: 傷病名 (problems, Condition),
アレルギー (allergies, AllergyIntolerance), 薬剤禁忌 (drug contraindications,
AllergyIntolerance), 検査 (lab results, Observation), 感染症 (infection tests,
Observation) and 処方 (prescriptions, MedicationRequest). :func:`six_info` sorts the
record a caller may see (:func:`hie.summary.record.collect`) into those panels; it reads
nothing itself. Each :class:`Item` keeps its resource and its source facility.

Rules (codes and URIs from ../shared/DOMAIN.md):

* nothing ``entered-in-error`` and no refuted Condition or allergy appears;
* 薬剤禁忌: AllergyIntolerance with category ``medication`` and criticality ``high``
  (DOMAIN.md); アレルギー: every other AllergyIntolerance;
* 傷病名: every Condition, active ones (clinical status active / recurrence / relapse, or
  none) first, then by date, newest first;
* 感染症: laboratory Observations whose code is an infection test: a JLAC10 code
  (``master-JLAC10-17digits`` or the JP-CLINS JLAC10 core-lab system) whose 5-character
  analyte part is in :data:`INFECTION_JLAC10_ANALYTES`, or a LOINC code in
  :data:`INFECTION_LOINC`; the newest result of each test. Both sets are reasonable
  defaults, not confirmed against the JP-CLINS value set (DOMAIN.md: unconfirmed facts are
  configurable: pass ``infection_analytes`` / ``infection_loinc``);
* 検査: the other laboratory Observations (category ``laboratory`` in any system), the
  newest result of each analyte (code) dated within :data:`LAB_WINDOW_DAYS` days before
  ``now``, at most :data:`MAX_LABS` analytes, newest first;
* 処方: MedicationRequests not ``cancelled``, newest first, at most :data:`MAX_ITEMS`.

Spec: https://jpfhir.jp/fhir/clins/ (JP-CLINS information items)
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from hie.summary.clinical import (
    category_codes,
    codings,
    date_of,
    display_of,
    has_code,
    latest_per_code,
    newest_first,
    status_code,
    value_of,
    verification_code,
)
from hie.summary.record import PatientRecord, Source
from hie.summary.sections import LOINC, PAST, WITHDRAWN

JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
CLINS_JLAC10 = "http://jpfhir.jp/fhir/clins/CodeSystem/JLAC10/JP_CLINS_ObsLabResult_CoreLabo_CS"
JLAC10_SYSTEMS = frozenset({JLAC10, CLINS_JLAC10})
#: JLAC10 analyte codes (first 5 characters) of infection tests: HBs antigen, HCV antibody,
#: syphilis (STS / TP antibody), HIV. Unconfirmed defaults.
INFECTION_JLAC10_ANALYTES = frozenset({"5F016", "5F360", "5E071", "5E073", "5F431", "5F432"})
#: LOINC codes of the same tests (HBsAg, HCV Ab, HIV 1/2 Ab, RPR, VDRL). Unconfirmed defaults.
INFECTION_LOINC = frozenset({"5195-3", "5196-1", "16128-1", "13955-0", "7917-8", "56888-1", "20507-0",
                             "5292-8"})
LAB_WINDOW_DAYS = 365
MAX_LABS = 50
MAX_ITEMS = 100


@dataclass(frozen=True)
class Item:
    """One line of a panel."""

    reference: str  # "Type/id"
    resource: dict[str, Any]
    text: str  # what it is (diagnosis, substance, analyte, drug)
    date: str  # as recorded (ISO)
    status: str  # clinical status or status code
    value: str  # an Observation's value, else ""
    source: Source


@dataclass(frozen=True)
class Panel:
    key: str  # problems | allergies | contraindications | labs | infections | medications
    title_ja: str
    title_en: str
    items: list[Item] = field(default_factory=list)

    def title(self, lang: str) -> str:
        return self.title_en if lang == "en" else self.title_ja


@dataclass(frozen=True)
class SixInfo:
    problems: Panel
    allergies: Panel
    contraindications: Panel
    labs: Panel
    infections: Panel
    medications: Panel

    def panels(self) -> list[Panel]:
        """The six panels, alerts first (contraindications, allergies), as the viewer shows them."""
        return [self.contraindications, self.allergies, self.infections, self.problems, self.medications,
                self.labs]

    def references(self) -> list[str]:
        return [i.reference for p in self.panels() for i in p.items]


def _valid(res: dict[str, Any]) -> bool:
    return "entered-in-error" not in (res.get("status"), status_code(res)) and verification_code(res) not in WITHDRAWN


def _item(record: PatientRecord, res: dict[str, Any]) -> Item:
    return Item(f"{res['resourceType']}/{res['id']}", res, display_of(res, record), date_of(res),
                status_code(res), value_of(res), record.source_of(res))


def is_contraindication(res: dict[str, Any]) -> bool:
    return "medication" in category_codes(res) and res.get("criticality") == "high"


def is_infection_test(res: dict[str, Any], analytes: frozenset[str] = INFECTION_JLAC10_ANALYTES,
                      loinc: frozenset[str] = INFECTION_LOINC) -> bool:
    concept = res.get("code")
    if has_code(concept, LOINC, loinc):
        return True
    return any(c.get("system") in JLAC10_SYSTEMS and str(c.get("code", ""))[:5] in analytes
               for c in codings(concept))


def _cutoff(now: int | datetime) -> str:
    when = now if isinstance(now, datetime) else datetime.fromtimestamp(now / 1e6, tz=UTC)
    return (when - timedelta(days=LAB_WINDOW_DAYS)).date().isoformat()


def six_info(record: PatientRecord, *, now: int | datetime,
             infection_analytes: frozenset[str] = INFECTION_JLAC10_ANALYTES,
             infection_loinc: frozenset[str] = INFECTION_LOINC) -> SixInfo:
    """The 6 information of ``record`` at ``now`` (epoch microseconds or a datetime)."""
    def valid(rtype: str) -> list[dict[str, Any]]:
        return [r for r in record.by_type.get(rtype, []) if _valid(r)]

    def items(resources: list[dict[str, Any]], limit: int = MAX_ITEMS) -> list[Item]:
        return [_item(record, r) for r in resources[:limit]]

    allergies = newest_first(valid("AllergyIntolerance"))
    conditions = newest_first(valid("Condition"))
    conditions.sort(key=lambda c: status_code(c) in PAST)  # stable: active first, each newest first
    labs = [o for o in valid("Observation") if "laboratory" in category_codes(o)]
    infections = [o for o in labs if is_infection_test(o, infection_analytes, infection_loinc)]
    cutoff = _cutoff(now)
    infection_ids = {id(o) for o in infections}
    recent = [o for o in labs if id(o) not in infection_ids and date_of(o)[:10] >= cutoff]
    meds = newest_first([m for m in valid("MedicationRequest") if m.get("status") != "cancelled"])
    return SixInfo(
        problems=Panel("problems", "傷病名", "Problems", items(conditions)),
        allergies=Panel("allergies", "アレルギー", "Allergies",
                        items([a for a in allergies if not is_contraindication(a)])),
        contraindications=Panel("contraindications", "薬剤禁忌", "Drug contraindications",
                                items([a for a in allergies if is_contraindication(a)])),
        labs=Panel("labs", "検査", "Lab results", items(latest_per_code(recent), MAX_LABS)),
        infections=Panel("infections", "感染症", "Infections", items(latest_per_code(infections))),
        medications=Panel("medications", "処方", "Prescriptions", items(meds)),
    )
