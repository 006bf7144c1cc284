"""Which collected resources go into which IPS section (IPS 2.0.0, sections by LOINC).

Each :class:`SectionSpec` names its LOINC code, its Japanese and English titles, whether
IPS requires it (problems, allergies, medications: an empty required section carries
``emptyReason``; an empty optional one is left out) and how it picks its entries from a
:class:`hie.summary.record.PatientRecord`. Selection rules:

* nothing ``entered-in-error`` (nor a refuted Condition or allergy) appears anywhere;
* Conditions: active, recurrent, relapsed or without clinical status are problems; inactive,
  remission or resolved ones are past illness;
* Observations go by category: ``vital-signs`` to vital signs, ``social-history`` to social
  history, pregnancy codes to pregnancy, ``laboratory`` / ``imaging`` / ``procedure`` /
  ``exam`` / no category to results; ``survey`` and ``activity`` to functional status. For
  results, vital signs and social history the newest Observation of each code is shown;
* medications: MedicationStatement, MedicationRequest, MedicationDispense,
  MedicationAdministration not cancelled / stopped-in-error, newest first;
* plan of care: CarePlans ``active``, ``on-hold`` or ``draft``; alerts: ``active`` Flags.

Every section shows at most :data:`MAX_ENTRIES` entries, newest first.

Spec: https://hl7.org/fhir/uv/ips/STU2/Structure-of-the-International-Patient-Summary.html
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from hie.summary.clinical import (
    MEDICATION_TYPES,
    category_codes,
    has_code,
    latest_per_code,
    newest_first,
    status_code,
    verification_code,
)
from hie.summary.record import PatientRecord

LOINC = "http://loinc.org"
MAX_ENTRIES = 200
PAST = frozenset({"inactive", "remission", "resolved"})
WITHDRAWN = frozenset({"entered-in-error", "refuted"})
PREGNANCY_CODES = frozenset({"82810-3", "11449-6", "11636-8", "11637-6", "11638-4", "11639-2", "11640-0",
                             "11612-9", "11613-7", "11614-5", "33065-4", "57062-2"})
RESULT_CATEGORIES = frozenset({"laboratory", "imaging", "procedure", "exam"})
FUNCTIONAL_CATEGORIES = frozenset({"survey", "activity"})

class Pool:
    """The record's resources as the pickers need them, each classified once: the valid
    resources per type, and the valid Observations per section key."""

    def __init__(self, record: PatientRecord) -> None:
        self.record = record
        self._valid: dict[str, list[dict[str, Any]]] = {}
        self._obs: dict[str | None, list[dict[str, Any]]] | None = None

    def of(self, *types: str) -> list[dict[str, Any]]:
        out: list[dict[str, Any]] = []
        for t in types:
            if t not in self._valid:
                self._valid[t] = [r for r in self.record.by_type.get(t, []) if _valid(r)]
            out += self._valid[t]
        return out

    def observations(self, key: str) -> list[dict[str, Any]]:
        if self._obs is None:
            self._obs = {}
            for o in self.of("Observation"):
                self._obs.setdefault(observation_section(o), []).append(o)
        return self._obs.get(key, [])


Picker = Callable[[Pool], list[dict[str, Any]]]


@dataclass(frozen=True)
class SectionSpec:
    key: str
    loinc: str
    display: str  # LOINC display
    title_ja: str
    title_en: str
    required: bool
    pick: Picker

    def title(self, lang: str) -> str:
        return self.title_en if lang == "en" else self.title_ja


def _valid(res: dict[str, Any]) -> bool:
    return res.get("status") != "entered-in-error" and verification_code(res) not in WITHDRAWN \
        and status_code(res) != "entered-in-error"


def observation_section(res: dict[str, Any]) -> str | None:
    """The section key an Observation belongs to, or None."""
    if has_code(res.get("code"), LOINC, PREGNANCY_CODES):
        return "pregnancy"
    cats = category_codes(res)
    if "vital-signs" in cats:
        return "vitals"
    if "social-history" in cats:
        return "social"
    if cats & FUNCTIONAL_CATEGORIES:
        return "functional"
    if not cats or cats & RESULT_CATEGORIES:
        return "results"
    return None


def _observations(key: str, latest: bool = True) -> Picker:
    def pick(pool: Pool) -> list[dict[str, Any]]:
        items = pool.observations(key)
        return latest_per_code(items) if latest else newest_first(items)
    return pick


def _results(pool: Pool) -> list[dict[str, Any]]:
    return _observations("results")(pool) + newest_first(pool.of("DiagnosticReport"))


def _conditions(past: bool) -> Picker:
    def pick(pool: Pool) -> list[dict[str, Any]]:
        return newest_first([c for c in pool.of("Condition") if (status_code(c) in PAST) == past])
    return pick


def _medications(pool: Pool) -> list[dict[str, Any]]:
    return newest_first([m for m in pool.of(*MEDICATION_TYPES) if m.get("status") != "cancelled"])


def _with_status(rtype: str, statuses: frozenset[str] | None = None) -> Picker:
    def pick(pool: Pool) -> list[dict[str, Any]]:
        return newest_first([r for r in pool.of(rtype) if statuses is None or r.get("status") in statuses])
    return pick


def _functional(pool: Pool) -> list[dict[str, Any]]:
    return _observations("functional")(pool) + newest_first(pool.of("ClinicalImpression"))


SECTIONS: tuple[SectionSpec, ...] = (
    SectionSpec("problems", "11450-4", "Problem list - Reported", "問題リスト(現在の病名)", "Problem list", True,
                _conditions(past=False)),
    SectionSpec("allergies", "48765-2", "Allergies and adverse reactions Document", "アレルギー・不耐性",
                "Allergies and intolerances", True, _with_status("AllergyIntolerance")),
    SectionSpec("medications", "10160-0", "History of Medication use Narrative", "服薬情報", "Medication summary",
                True, _medications),
    SectionSpec("immunizations", "11369-6", "History of Immunization Narrative", "予防接種歴", "Immunizations",
                False, _with_status("Immunization")),
    SectionSpec("results", "30954-2", "Relevant diagnostic tests/laboratory data Narrative", "検査結果",
                "Results", False, _results),
    SectionSpec("procedures", "47519-4", "History of Procedures Document", "処置・手術歴", "History of procedures",
                False, _with_status("Procedure")),
    SectionSpec("devices", "46264-8", "History of medical device use", "医療機器", "Medical devices", False,
                _with_status("DeviceUseStatement")),
    SectionSpec("vitals", "8716-3", "Vital signs", "バイタルサイン", "Vital signs", False, _observations("vitals")),
    SectionSpec("past", "11348-0", "History of Past illness Narrative", "既往歴", "History of past illness", False,
                _conditions(past=True)),
    SectionSpec("functional", "47420-5", "Functional status assessment note", "機能状態", "Functional status",
                False, _functional),
    SectionSpec("plan", "18776-5", "Plan of care note", "診療計画", "Plan of care", False,
                _with_status("CarePlan", frozenset({"active", "on-hold", "draft"}))),
    SectionSpec("social", "29762-2", "Social history Narrative", "社会歴・生活歴", "Social history", False,
                _observations("social")),
    SectionSpec("pregnancy", "10162-6", "History of pregnancies Narrative", "妊娠歴", "History of pregnancy",
                False, _observations("pregnancy", latest=False)),
    SectionSpec("alerts", "104605-1", "Alert", "警告", "Alerts", False, _with_status("Flag", frozenset({"active"}))),
)
BY_KEY = {s.key: s for s in SECTIONS}
#: The types the sections read (what ``$summary`` collects).
TYPES_USED: tuple[str, ...] = ("AllergyIntolerance", "Condition", *MEDICATION_TYPES, "Observation", "Immunization",
                               "Procedure", "DeviceUseStatement", "CarePlan", "DiagnosticReport", "Flag",
                               "ClinicalImpression")


def section_entries(record: PatientRecord) -> list[tuple[SectionSpec, list[dict[str, Any]]]]:
    """Every section with its entries (at most :data:`MAX_ENTRIES`), in IPS order."""
    pool = Pool(record)
    return [(spec, spec.pick(pool)[:MAX_ENTRIES]) for spec in SECTIONS]
