"""What the viewer's pages show, built from the summary's building blocks: the patient header,
allergies and alerts, the timeline per facility, the 6-information panels, the cross-facility
medication list and the lab trends. Pure functions of a :class:`hie.summary.record.PatientRecord`
(collected with the caller's principal) and the language; the templates only lay them out, so
the patient portal can reuse every block.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import date
from typing import Any

from hie.summary import clinical
from hie.summary.medications import DRUG_SYSTEMS, DrugRow, reconcile
from hie.summary.record import PatientRecord
from hie.summary.trends import Series, series
from hie.web import charts
from hie.web.i18n import catalogue
from hie.web.wareki import age_on, format_both

EN_REP_SUFFIX = "iso21090-EN-representation"
ALLERGY_INACTIVE = {"inactive", "resolved", "entered-in-error"}
TIMELINE_TYPES = ("Encounter", "Procedure", "ImagingStudy", "DiagnosticReport", "DocumentReference",
                  "Immunization", "Condition", "MedicationRequest", "MedicationDispense")
KIND = {"Encounter": "encounter", "Procedure": "procedure", "ImagingStudy": "imaging",
        "DiagnosticReport": "observation",
        "DocumentReference": "document", "Immunization": "immunization", "Condition": "condition",
        "MedicationRequest": "medication", "MedicationDispense": "medication"}


def _rep(name: dict[str, Any]) -> str:
    return next((str(e.get("valueCode")) for e in name.get("extension") or ()
                 if str(e.get("url", "")).endswith(EN_REP_SUFFIX)), "")


def _name_text(n: dict[str, Any]) -> str:
    if n.get("text"):
        return str(n["text"])
    return " ".join([str(n.get("family") or ""), *[str(g) for g in n.get("given") or ()]]).strip()


def names(patient: dict[str, Any]) -> tuple[str, str]:
    """(kanji, kana): the ``IDE`` and ``SYL`` names, else the first name as kanji."""
    items = [n for n in patient.get("name") or () if isinstance(n, dict)]
    kanji = next((_name_text(n) for n in items if _rep(n) == "IDE"), "")
    kana = next((_name_text(n) for n in items if _rep(n) == "SYL"), "")
    if not kanji:
        kanji = next((_name_text(n) for n in items if _rep(n) != "SYL"), "") or kana
        kana = "" if kanji == kana else kana
    return kanji, kana


def header(patient: dict[str, Any], lang: str, today: date) -> dict[str, Any]:
    t = catalogue(lang)
    kanji, kana = names(patient)
    gender = str(patient.get("gender") or "unknown")
    return {"id": patient.get("id"), "kanji": kanji, "kana": kana, "sex": t.get(gender, gender),
            "birth": format_both(patient.get("birthDate"), lang), "age": age_on(patient.get("birthDate"), today),
            "identifiers": [(str(i.get("system") or ""), str(i.get("value") or ""))
                            for i in patient.get("identifier") or () if isinstance(i, dict)]}


@dataclass
class Line:
    """One row of any list on the page: what, when, status, value and its source facility."""

    ref: str
    text: str
    when: str
    status: str
    source: str
    kind: str = ""
    value: str = ""


def clinical_date(res: dict[str, Any]) -> str:
    """The clinical date of ``res``; empty when it has none (not its storage time)."""
    found = clinical.date_of(res)
    return "" if found and found == (res.get("meta") or {}).get("lastUpdated") else found


def status_text(code: str, lang: str) -> str:
    from hie.summary.narrative import status_label

    return status_label(code, lang)


def line(record: PatientRecord, res: dict[str, Any], lang: str) -> Line:
    return Line(f"{res.get('resourceType')}/{res.get('id')}", clinical.display_of(res, record),
                format_both(clinical_date(res)[:10], lang), status_text(clinical.status_code(res), lang),
                source(record, res), KIND.get(str(res.get("resourceType")), ""), clinical.value_of(res))


def source(record: PatientRecord, res: dict[str, Any]) -> str:
    """The name of the facility ``res`` came from (memoized on the record)."""
    return record.source_name(res)


def allergies(record: PatientRecord, lang: str) -> list[Line]:
    items = [r for r in record.by_type.get("AllergyIntolerance", []) if clinical.status_code(r) not in ALLERGY_INACTIVE]
    items.sort(key=lambda r: (r.get("criticality") != "high", clinical.display_of(r, record)))
    return [line(record, r, lang) for r in items]


def alerts(record: PatientRecord, lang: str) -> list[Line]:
    flags = [r for r in record.by_type.get("Flag", []) if r.get("status", "active") == "active"]
    return [line(record, r, lang) for r in clinical.newest_first(flags)]


#: Events shown per facility unless the page asks for all (``?all=1``).
TIMELINE_PER_FACILITY = 50


def timeline(record: PatientRecord, lang: str, limit: int | None = TIMELINE_PER_FACILITY) -> dict[str, list[Line]]:
    """Encounters and events, newest first, per source facility (facilities by their newest
    event); at most ``limit`` per facility (None: all)."""
    items = [r for t in TIMELINE_TYPES for r in record.by_type.get(t, [])]
    out: dict[str, list[Line]] = {}
    for res in clinical.newest_first(items):
        src = source(record, res)
        kept = out.setdefault(src, [])
        if limit is None or len(kept) < limit:
            kept.append(line(record, res, lang))
    return out


@dataclass
class Trend:
    series: Series
    charts: list[tuple[str, str]] = field(default_factory=list)  # (unit, svg)
    legend: list[tuple[str, str, str]] = field(default_factory=list)


def trends(record: PatientRecord, lang: str) -> list[Trend]:
    t = catalogue(lang)
    out = []
    for i, s in enumerate(series(record.by_type.get("Observation", []), lambda r: source(record, r))):
        tr = Trend(s, legend=charts.legend(s))
        for j, unit in enumerate(s.units):
            desc = t["chart_desc"] % (s.name, len([p for p in s.points if p.unit == unit]), ", ".join(s.sources))
            tr.charts.append((unit, charts.chart(s, unit, chart_id=f"trend-{i}-{j}", title=f"{s.name} ({unit})",
                                                 desc=desc)))
        out.append(tr)
    return out


def medications(record: PatientRecord, today: date) -> list[DrugRow]:
    return reconcile(record.resources(), lambda r: source(record, r), today=today)


def code_label(system: str) -> str:
    return DRUG_SYSTEMS.get(system, system)


def six_info(record: PatientRecord, lang: str, now_us: int) -> list[tuple[str, str, list[Line]]]:
    """The JP-CLINS 6 information panels (key, title, lines) of :mod:`hie.summary.sixinfo`."""
    from hie.summary.sixinfo import six_info as panels_of

    out = []
    for panel in panels_of(record, now=now_us).panels():
        date_text = lambda i: format_both(clinical_date(i.resource)[:10], lang)  # noqa: E731
        lines = [Line(i.reference, i.text, date_text(i), status_text(i.status, lang),
                      i.source.display or i.source.custodian or "—", value=i.value) for i in panel.items]
        out.append((panel.key, panel.title(lang), lines))
    return out


def patient_view(record: PatientRecord, lang: str, today: date, now_us: int, *,
                 all_events: bool = False) -> dict[str, Any]:
    """Every block of the patient page, and ``shown``: the references of every resource the
    page displays (named in the page view's AuditEvent)."""
    view: dict[str, Any] = {
        "header": header(record.patient, lang, today), "allergies": allergies(record, lang),
        "alerts": alerts(record, lang), "six": six_info(record, lang, now_us),
        "timeline": timeline(record, lang, None if all_events else TIMELINE_PER_FACILITY),
        "meds": medications(record, today), "trends": trends(record, lang),
    }
    shown = [f"Patient/{record.patient.get('id')}"]
    shown += [ln.ref for key in ("allergies", "alerts") for ln in view[key]]
    shown += [ln.ref for lines in view["timeline"].values() for ln in lines]
    shown += [ln.ref for _k, _title, lines in view["six"] for ln in lines]
    shown += [r.ref for row in view["meds"] for r in row.records]
    shown += [f"Observation/{p.id}" for tr in view["trends"] for p in tr.series.points]
    view["shown"] = list(dict.fromkeys(shown))
    return view
