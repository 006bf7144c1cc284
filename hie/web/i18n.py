"""The pages' words, Japanese first with English, in one catalogue (no text in templates).

``lang`` comes from ``?lang=en|ja`` (remembered in the ``hie_lang`` cookie), default Japanese.
"""

from __future__ import annotations

from typing import Any

LANGS = ("ja", "en")

TEXT: dict[str, dict[str, str]] = {
    "ja": {
        "app": "地域医療連携ビューア", "search": "患者検索", "logout": "ログアウト", "switch": "English",
        "login": "ログイン", "login_intro": "地域医療連携ネットワークの診療情報を閲覧します。",
        "facility_no": "施設の患者番号", "facility": "施設", "regional_id": "地域共通ID",
        "name": "氏名（漢字またはカナ）", "birth": "生年月日", "sex": "性別", "any": "指定なし",
        "male": "男性", "female": "女性", "other": "その他", "unknown": "不明", "find": "検索",
        "results": "検索結果", "no_results": "該当する患者は見つかりませんでした。",
        "search_hint": "患者番号、地域共通ID、または氏名と生年月日で検索してください。",
        "age": "歳", "age_label": "年齢", "open": "開く", "source": "情報提供元",
        "shared_note": "この画面には、患者があなたの施設に共有を許可した情報だけが表示されます。",
        "allergies": "アレルギー・禁忌", "alerts": "注意情報", "none": "情報なし",
        "timeline": "受診・イベント歴", "sixinfo": "6情報", "meds": "施設横断の薬剤一覧",
        "labs": "検査結果の推移", "date": "日付", "event": "内容", "status": "状態",
        "current": "服用中", "past": "過去", "unknown_state": "状態不明", "conflict": "不一致",
        "conflict_dosage": "用法・用量が施設間で異なる",
        "conflict_status": "中止と継続の記録が混在", "conflict_codes": "同じコード体系で別のコード",
        "drug": "薬剤", "code": "コード", "records": "記録", "dosage": "用法",
        "MedicationRequest": "処方", "MedicationDispense": "調剤", "MedicationStatement": "服薬記録",
        "MedicationAdministration": "投与",
        "value": "値", "unit": "単位", "range": "基準値",
        "unit_mismatch": "単位が施設間で異なります（換算していません）",
        "table": "数値の一覧", "problems": "傷病名", "infections": "感染症", "contraindications": "薬剤禁忌",
        "documents": "文書（診療情報提供書・退院時サマリー）",
        "glass": "緊急時アクセス（ブレークグラス）", "glass_intro":
            "救急診療のため、同意の範囲外で緊急時データセット（アレルギー、現在の傷病名・薬剤、直近の検査）を閲覧します。"
            "理由は記録され、患者に通知されます。",
        "reason": "理由", "purpose": "目的", "ETREAT": "救急医療 (ETREAT)", "BTG": "ブレークグラス (BTG)",
        "declare": "緊急時アクセスを開始", "banner": "緊急時アクセス中：緊急時データセットのみ表示しています。期限",
        "glass_refused": "緊急時アクセスは救急ロールを持つ施設利用者のみ利用できます。",
        "reason_required": "理由を入力してください。",
        "not_found": "患者が見つかりません。", "error": "エラー",
        "expired": "画面の有効期限が切れました。もう一度お試しください。",
        "staff_only": "このビューアは参加医療機関の職員用です。患者さん向けのポータルは準備中です。",
        "back": "検索に戻る", "chart_desc": "%s の推移（%d 件、%s）",
        "encounter": "受診", "observation": "検査", "condition": "傷病名", "procedure": "処置",
        "imaging": "画像検査", "document": "文書", "immunization": "予防接種", "medication": "薬剤",
        "launch_invalid": "起動コンテキストが無効です。",
        "author": "作成者", "show_all": "すべて表示", "unresolved": "文書内で参照先が見つかりません",
        "not_document": "この文書は表示できません",
    },
    "en": {
        "app": "Regional health record viewer", "search": "Patient search", "logout": "Sign out", "switch": "日本語",
        "login": "Sign in", "login_intro": "View patients' records shared across the regional network.",
        "facility_no": "Facility patient number", "facility": "Facility", "regional_id": "Regional ID",
        "name": "Name (kanji or kana)", "birth": "Birth date", "sex": "Sex", "any": "Any",
        "male": "Male", "female": "Female", "other": "Other", "unknown": "Unknown", "find": "Search",
        "results": "Results", "no_results": "No patient found.",
        "search_hint": "Search by patient number, regional ID, or name and birth date.",
        "age": "y", "age_label": "Age", "open": "Open", "source": "Source",
        "shared_note": "This page shows only what the patient shares with your facility.",
        "allergies": "Allergies and contraindications", "alerts": "Alerts", "none": "No information",
        "timeline": "Encounters and events", "sixinfo": "Six information items",
        "meds": "Medications across facilities",
        "labs": "Lab trends", "date": "Date", "event": "Event", "status": "Status",
        "current": "Current", "past": "Past", "unknown_state": "Not stated", "conflict": "Conflict",
        "conflict_dosage": "Dosage differs between facilities",
        "conflict_status": "Stopped by one record, current in another",
        "conflict_codes": "Different codes of one system",
        "drug": "Drug", "code": "Code", "records": "Records", "dosage": "Dosage",
        "MedicationRequest": "Prescription", "MedicationDispense": "Dispense", "MedicationStatement": "Statement",
        "MedicationAdministration": "Administration",
        "value": "Value", "unit": "Unit", "range": "Reference range",
        "unit_mismatch": "Facilities report different units (not converted)",
        "table": "Values", "problems": "Problems", "infections": "Infections", "contraindications": "Contraindications",
        "documents": "Documents (referral letters, discharge summaries)",
        "glass": "Emergency access (break-the-glass)", "glass_intro":
            "For emergency care, view the emergency dataset (allergies, active problems and medications, recent labs) "
            "outside the patient's consent. The reason is recorded and the patient is notified.",
        "reason": "Reason", "purpose": "Purpose", "ETREAT": "Emergency treatment (ETREAT)",
        "BTG": "Break the glass (BTG)", "declare": "Start emergency access",
        "banner": "Emergency access active: showing the emergency dataset only. Until",
        "glass_refused": "Emergency access is only for facility users with an emergency role.",
        "reason_required": "Enter a reason.",
        "not_found": "Patient not found.", "error": "Error", "expired": "This page has expired. Please try again.",
        "staff_only": "This viewer is for staff of participating facilities. The patient portal is not available yet.",
        "back": "Back to search", "chart_desc": "Trend of %s (%d results, %s)",
        "encounter": "Encounter", "observation": "Lab", "condition": "Problem", "procedure": "Procedure",
        "imaging": "Imaging", "document": "Document", "immunization": "Immunization", "medication": "Medication",
        "launch_invalid": "The launch context is not valid.",
        "author": "Author", "show_all": "Show all", "unresolved": "Reference not found in the document",
        "not_document": "This document cannot be shown",
    },
}


def lang_of(query_lang: str | None, cookie_lang: str | None) -> str:
    for v in (query_lang, cookie_lang):
        if v in LANGS:
            return str(v)
    return "ja"


def catalogue(lang: str) -> dict[str, Any]:
    return TEXT.get(lang, TEXT["ja"])
