"""Dates as Japanese clinicians read them: 西暦 (Gregorian) and 和暦 (Japanese era) side by
side, and ages in full years.

Era boundaries (first day of each era): 明治 1868-01-25 (the Gregorian reckoning of
明治元年; dates before 明治6年 used the lunisolar calendar, shown here in Gregorian),
大正 1912-07-30, 昭和 1926-12-25, 平成 1989-01-08, 令和 2019-05-01. The first year of an
era is written 元年 (令和元年 = 2019).

Spec: https://www.kantei.go.jp/jp/headline/singi/gengou/ (令和); Cabinet Order on the era
name 1979 (元号法).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import date

#: (first day, kanji, romaji), newest first.
ERAS: tuple[tuple[date, str, str], ...] = (
    (date(2019, 5, 1), "令和", "Reiwa"),
    (date(1989, 1, 8), "平成", "Heisei"),
    (date(1926, 12, 25), "昭和", "Showa"),
    (date(1912, 7, 30), "大正", "Taisho"),
    (date(1868, 1, 25), "明治", "Meiji"),
)


@dataclass(frozen=True)
class Wareki:
    era: str  # 令和
    era_en: str  # Reiwa
    year: int  # 1 for 元年

    @property
    def year_ja(self) -> str:
        return "元" if self.year == 1 else str(self.year)


def era_of(d: date) -> Wareki | None:
    """The era and era year of ``d``; None before 明治."""
    for start, kanji, romaji in ERAS:
        if d >= start:
            return Wareki(kanji, romaji, d.year - start.year + 1)
    return None


def parse_date(value: str | None) -> tuple[date, int] | None:
    """A FHIR date or dateTime's calendar date and its precision (1 year, 2 month, 3 day),
    as written (no zone conversion: a birth date or a clinical date is a local date)."""
    if not value or len(value) < 4 or not value[:4].isdigit():
        return None
    parts = value[:10].split("-")
    try:
        y = int(parts[0])
        m = int(parts[1]) if len(parts) > 1 and parts[1] else 1
        d = int(parts[2][:2]) if len(parts) > 2 and parts[2] else 1
        return date(y, m, d), min(len(parts), 3)
    except (ValueError, IndexError):
        return None


def format_wareki(value: str | None, lang: str = "ja") -> str:
    """``令和7年4月12日`` (``Reiwa 7 (2025)-04-12`` in English); month or year precision
    keeps its precision; empty for an unreadable value or a date before 明治."""
    parsed = parse_date(value)
    if parsed is None:
        return ""
    d, precision = parsed
    w = era_of(d)
    if w is None:
        return ""
    if lang == "en":
        out = f"{w.era_en} {w.year}"
        return out + (f"-{d.month:02d}" if precision >= 2 else "") + (f"-{d.day:02d}" if precision == 3 else "")
    out = f"{w.era}{w.year_ja}年"
    return out + (f"{d.month}月" if precision >= 2 else "") + (f"{d.day}日" if precision == 3 else "")


def format_seireki(value: str | None, lang: str = "ja") -> str:
    """``2025年4月12日`` (``2025-04-12`` in English), at the value's precision."""
    parsed = parse_date(value)
    if parsed is None:
        return value or ""
    d, precision = parsed
    if lang == "en":
        return d.isoformat()[: {1: 4, 2: 7, 3: 10}[precision]]
    return f"{d.year}年" + (f"{d.month}月" if precision >= 2 else "") + (f"{d.day}日" if precision == 3 else "")


def format_both(value: str | None, lang: str = "ja") -> str:
    """西暦 with 和暦 in parentheses: ``1950年4月12日（昭和25年4月12日）``."""
    s, w = format_seireki(value, lang), format_wareki(value, lang)
    if not w:
        return s
    return f"{s}（{w}）" if lang == "ja" else f"{s} ({w})"


def age_on(birth: str | None, today: date) -> int | None:
    """Age in full years on ``today``, counted from the birthday (a 29 February birthday
    counts from 1 March in common years)."""
    parsed = parse_date(birth)
    if parsed is None or parsed[1] < 3:
        return None
    b = parsed[0]
    years = today.year - b.year
    if (today.month, today.day) < (b.month, b.day):
        years -= 1
    return years if years >= 0 else None
