"""Section narratives of the summary: XHTML ``div``s (FHIR narrative rules: no scripts, no
styles beyond plain tables), every text escaped. Japanese by default, English with
``lang="en"``. A table row per entry carries the entry's source facility."""

from __future__ import annotations

from html import escape
from typing import Any

from hie.summary.clinical import date_of, display_of, status_code, value_of
from hie.summary.record import PatientRecord
from hie.summary.sections import SectionSpec

XHTML = "http://www.w3.org/1999/xhtml"

TEXT = {
    "ja": {
        "item": "項目", "date": "日付", "status": "状態", "value": "値", "source": "提供施設",
        "empty": "記録された情報はありません。",
        "shared": "貴施設に共有が許可された情報のみを表示しています。",
        "title": "患者サマリー(IPS)", "patient": "患者", "birth": "生年月日", "gender": "性別",
        "created": "作成日時",
    },
    "en": {
        "item": "Item", "date": "Date", "status": "Status", "value": "Value", "source": "Source facility",
        "empty": "No information available.",
        "shared": "This summary shows only what the patient shares with your facility.",
        "title": "Patient summary (IPS)", "patient": "Patient", "birth": "Birth date", "gender": "Gender",
        "created": "Created",
    },
}
STATUS_JA = {
    "active": "有効", "inactive": "非活動", "resolved": "解決", "remission": "寛解", "recurrence": "再発",
    "relapse": "再燃", "completed": "完了", "final": "確定", "preliminary": "暫定", "amended": "修正",
    "corrected": "訂正", "stopped": "中止", "on-hold": "保留", "intended": "予定", "draft": "下書き",
    "in-progress": "実施中", "not-done": "未実施", "registered": "登録済", "available": "利用可",
    "current": "最新", "revoked": "取消", "unknown": "不明", "not-taken": "未服用",
}
GENDER = {"ja": {"male": "男性", "female": "女性", "other": "その他", "unknown": "不明"}}
VALUE_SECTIONS = frozenset({"results", "vitals", "social", "pregnancy", "functional"})


def words(lang: str) -> dict[str, str]:
    return TEXT["en" if lang == "en" else "ja"]


def div(inner: str, lang: str) -> str:
    return f'<div xmlns="{XHTML}" lang="{lang}" xml:lang="{lang}">{inner}</div>'


def status_label(code: str, lang: str) -> str:
    return code if lang == "en" else STATUS_JA.get(code, code)


def facility_label(record: PatientRecord, res: dict[str, Any]) -> str:
    src = record.source_of(res)
    return src.display or src.custodian or ""


def section_div(spec: SectionSpec, entries: list[dict[str, Any]], record: PatientRecord, lang: str) -> str:
    w = words(lang)
    if not entries:
        return div(f"<p>{escape(w['empty'])}</p>", lang)
    values = spec.key in VALUE_SECTIONS
    heads = [w["item"]] + ([w["value"]] if values else []) + [w["date"], w["status"], w["source"]]
    rows = ["<tr>" + "".join(f"<th>{escape(h)}</th>" for h in heads) + "</tr>"]
    for res in entries:
        cells = [display_of(res, record)] + ([value_of(res)] if values else []) + [
            date_of(res)[:10], status_label(status_code(res), lang), facility_label(record, res)]
        rid = escape(f"{res.get('resourceType')}-{res.get('id')}", quote=True)
        rows.append(f'<tr id="{rid}">' + "".join(f"<td>{escape(c)}</td>" for c in cells) + "</tr>")
    return div(f"<table>{''.join(rows)}</table>", lang)


def patient_name(patient: dict[str, Any]) -> str:
    """Kanji name (``IDE``) first, then kana (``SYL``), else the first name given."""
    names = [n for n in patient.get("name") or () if isinstance(n, dict)]

    def text(n: dict[str, Any]) -> str:
        if n.get("text"):
            return str(n["text"])
        return " ".join([str(n.get("family") or ""), *[str(g) for g in n.get("given") or ()]]).strip()

    def rep(n: dict[str, Any]) -> str:
        return next((str(e.get("valueCode")) for e in n.get("extension") or ()
                     if str(e.get("url", "")).endswith("iso21090-EN-representation")), "")

    ordered = sorted(names, key=lambda n: {"IDE": 0, "SYL": 1}.get(rep(n), 2))
    parts = [t for t in (text(n) for n in ordered) if t]
    return parts[0] + (f" ({parts[1]})" if len(parts) > 1 and rep(ordered[1]) == "SYL" else "") if parts else ""


def composition_div(record: PatientRecord, lang: str, timestamp: str) -> str:
    w = words(lang)
    p = record.patient
    gender = str(p.get("gender") or "")
    gender_text = GENDER.get(lang, {}).get(gender, gender)
    items = [(w["patient"], patient_name(p)), (w["birth"], str(p.get("birthDate") or "")),
             (w["gender"], gender_text), (w["created"], timestamp)]
    facts = "".join(f"<li>{escape(k)}: {escape(v)}</li>" for k, v in items if v)
    return div(f"<h1>{escape(w['title'])}</h1><ul>{facts}</ul><p>{escape(w['shared'])}</p>", lang)
