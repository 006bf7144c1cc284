"""和暦 dates at every era boundary (元年 included) and the trend chart's accessible SVG."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import date

import pytest

from hie.summary.trends import Point, Series
from hie.web.charts import chart
from hie.web.wareki import age_on, format_both, format_wareki

SVG = "{http://www.w3.org/2000/svg}"


@pytest.mark.parametrize(("value", "expected"), [
    ("2019-05-01", "令和元年5月1日"), ("2019-04-30", "平成31年4月30日"), ("2020-01-01", "令和2年1月1日"),
    ("1989-01-08", "平成元年1月8日"), ("1989-01-07", "昭和64年1月7日"),
    ("1926-12-25", "昭和元年12月25日"), ("1926-12-24", "大正15年12月24日"),
    ("1912-07-30", "大正元年7月30日"), ("1912-07-29", "明治45年7月29日"),
    ("1950-04", "昭和25年4月"), ("1990", "平成2年"), ("2026-12-01T09:00:00+09:00", "令和8年12月1日"),
])
def test_wareki_at_era_boundaries(value, expected):
    assert format_wareki(value) == expected


def test_both_calendars_english_and_age():
    assert format_both("1950-04-12") == "1950年4月12日（昭和25年4月12日）"
    assert format_both("1950-04-12", "en") == "1950-04-12 (Showa 25-04-12)"
    assert format_wareki("1800-01-01") == "" and format_wareki("garbage") == ""
    assert age_on("1950-04-12", date(2026, 4, 11)) == 75 and age_on("1950-04-12", date(2026, 4, 12)) == 76
    assert age_on("1950", date(2026, 4, 12)) is None


def test_chart_is_an_accessible_svg_with_one_marker_per_point():
    s = Series("http://medis.or.jp/CodeSystem/master-JLAC10-17digits", "3D010000001926101", "HbA1c", [
        Point("a", "2026-01-01", 1_767_193_200_000_000, 7.5, "%", 4.6, 6.2, "利根臨床検査センター"),
        Point("b", "2026-04-01", 1_774_969_200_000_000, 7.0, "%", 4.6, 6.2, "すぎと内科クリニック"),
        Point("c", "2026-07-01", 1_782_831_600_000_000, 6.8, "%", 4.6, 6.2, "利根臨床検査センター")])
    svg = chart(s, "%", chart_id="t0", title="HbA1c (%)", desc="HbA1c <3> & co")
    root = ET.fromstring(svg)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "t0-t t0-d"
    assert root.find(f"{SVG}title").text == "HbA1c (%)" and root.find(f"{SVG}desc").text == "HbA1c <3> & co"
    markers = [e for e in root if e.tag in (f"{SVG}circle", f"{SVG}rect") and e.get("class") != "range"
               and e.get("fill") != "#fff"]
    assert len(markers) == 3  # two facilities: circles for one, squares for the other
    assert {e.tag for e in markers} == {f"{SVG}circle", f"{SVG}rect"}
    assert root.find(f"{SVG}rect[@class='range']") is not None
