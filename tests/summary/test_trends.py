"""Lab trends (issue 14): one series per exact analyte code across facilities, units kept as
reported, a unit mismatch flagged and not converted, points in time order across zones."""

from __future__ import annotations

from typing import Any

from hie.summary.trends import JLAC10, LOINC, series

HBA1C = "3D010000001926101"


def obs(oid: str, code: tuple[str, str], value: float, unit: str, when: str, src: str, *, text: str = "HbA1c",
        low: float | None = None, high: float | None = None, status: str = "final") -> dict[str, Any]:
    out: dict[str, Any] = {
        "resourceType": "Observation", "id": oid, "status": status,
        "category": [{"coding": [{"code": "laboratory"}]}],
        "code": {"coding": [{"system": code[0], "code": code[1]}], "text": text},
        "effectiveDateTime": when, "valueQuantity": {"value": value, "unit": unit, "code": unit},
        "performer": [{"display": src}],
    }
    if low is not None:
        out["referenceRange"] = [{"low": {"value": low}, "high": {"value": high}}]
    return out


def src(o: dict[str, Any]) -> str:
    return o["performer"][0]["display"]


def test_one_series_per_exact_code_across_facilities_in_time_order():
    items = [
        obs("a", (JLAC10, HBA1C), 7.2, "%", "2026-09-01T09:00:00+09:00", "lab", low=4.6, high=6.2),
        obs("b", (JLAC10, HBA1C), 7.0, "%", "2026-08-31T23:30:00Z", "clinic", low=4.6, high=6.2),  # 09-01 08:30 JST
        obs("c", (JLAC10, HBA1C), 6.9, "%", "2026-10-01", "clinic", low=4.6, high=6.2),
        obs("d", (JLAC10, "3D010000001926102"), 6.0, "%", "2026-10-01", "lab", text="HbA1c"),  # same name, other code
        obs("e", (LOINC, "4548-4"), 6.5, "%", "2026-10-01", "hospital", text="HbA1c"),
        obs("x", (JLAC10, HBA1C), 9.9, "%", "2026-10-02", "lab", status="entered-in-error"),
    ]
    out = {(s.system, s.code): s for s in series(items, src)}
    assert set(out) == {(JLAC10, HBA1C), (JLAC10, "3D010000001926102"), (LOINC, "4548-4")}
    main = out[(JLAC10, HBA1C)]
    assert [p.id for p in main.points] == ["b", "a", "c"]
    assert main.sources == ["clinic", "lab"] and not main.unit_mismatch and main.range == (4.6, 6.2)


def test_unit_mismatch_is_flagged_and_values_are_not_converted():
    items = [obs("m1", (JLAC10, "3D045000001926101"), 110, "mg/dL", "2026-09-01", "lab", text="血糖"),
             obs("m2", (JLAC10, "3D045000001926101"), 6.1, "mmol/L", "2026-10-01", "hospital", text="血糖")]
    (s,) = series(items, src)
    assert s.unit_mismatch and s.units == ["mg/dL", "mmol/L"]
    assert [(p.value, p.unit) for p in s.points] == [(110.0, "mg/dL"), (6.1, "mmol/L")]
    assert s.range is None


def test_ranges_that_differ_between_facilities_stay_with_their_points():
    items = [obs("r1", (JLAC10, HBA1C), 7.0, "%", "2026-09-01", "lab", low=4.6, high=6.2),
             obs("r2", (JLAC10, HBA1C), 7.1, "%", "2026-10-01", "clinic", low=4.9, high=6.0)]
    (s,) = series(items, src)
    assert s.range is None and [(p.low, p.high) for p in s.points] == [(4.6, 6.2), (4.9, 6.0)]
