"""Lab trends: one series per analyte across facilities, with units and reference ranges.

An analyte is an exact lab code: JLAC10 (17 digits) or LOINC. Observations are grouped by
that code only (JLAC10 first when an Observation carries both), never by name. Points keep
the unit each facility reported; when the points of one series use different units the
series is flagged (:attr:`Series.unit_mismatch`) and nothing is converted: the chart then
draws one line per unit and the table shows every value as reported. Reference ranges stay
attached to their point (facilities differ in their ranges); the series' range is the one
every point agrees on, if any.

Spec: https://hl7.org/fhir/R4/observation.html ; DOMAIN.md "Code systems" (JLAC10, LOINC).
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from hie.clock import parse_instant_us

JLAC10 = "http://medis.or.jp/CodeSystem/master-JLAC10-17digits"
LOINC = "http://loinc.org"
#: Lab code systems, in the order a series' key is chosen.
LAB_SYSTEMS: dict[str, str] = {JLAC10: "JLAC10", LOINC: "LOINC"}
_EXCLUDED_STATUS = {"entered-in-error", "cancelled", "registered"}


@dataclass(frozen=True)
class Point:
    id: str
    when: str
    at_us: int  # the instant of ``when`` by the node's one date rule (JST when zoneless)
    value: float
    unit: str
    low: float | None
    high: float | None
    source: str


@dataclass
class Series:
    system: str
    code: str
    name: str
    points: list[Point] = field(default_factory=list)

    @property
    def label(self) -> str:
        return LAB_SYSTEMS.get(self.system, self.system)

    @property
    def units(self) -> list[str]:
        return list(dict.fromkeys(p.unit for p in self.points))

    @property
    def unit_mismatch(self) -> bool:
        return len(self.units) > 1

    @property
    def sources(self) -> list[str]:
        return sorted({p.source for p in self.points})

    @property
    def range(self) -> tuple[float | None, float | None] | None:
        """The reference range all points share (None when they differ or have none)."""
        ranges = {(p.low, p.high, p.unit) for p in self.points}
        if len(ranges) == 1:
            low, high, _unit = next(iter(ranges))
            if low is not None or high is not None:
                return low, high
        return None


def _key(obs: dict[str, Any]) -> tuple[str, str] | None:
    codings = (obs.get("code") or {}).get("coding") or []
    for system in LAB_SYSTEMS:
        for c in codings:
            if c.get("system") == system and isinstance(c.get("code"), str) and c["code"].strip():
                return system, c["code"].strip()
    return None


def _name(obs: dict[str, Any]) -> str:
    code = obs.get("code") or {}
    if code.get("text"):
        return str(code["text"])
    return next((str(c["display"]) for c in code.get("coding") or [] if c.get("display")), "")


def _quantity_value(q: Any) -> float | None:
    if isinstance(q, dict) and isinstance(q.get("value"), int | float) and not isinstance(q.get("value"), bool):
        return float(q["value"])
    return None


def _point(obs: dict[str, Any], source: str) -> Point | None:
    q = obs.get("valueQuantity")
    value = _quantity_value(q)
    when = obs.get("effectiveDateTime") or (obs.get("effectivePeriod") or {}).get("start") or obs.get("issued")
    if value is None or not isinstance(q, dict) or not when or obs.get("status") in _EXCLUDED_STATUS:
        return None
    unit = str(q.get("code") or q.get("unit") or "")
    try:
        at_us = parse_instant_us(str(when))
    except ValueError:
        return None
    rr = (obs.get("referenceRange") or [{}])[0]
    return Point(str(obs.get("id")), str(when), at_us, value, unit, _quantity_value(rr.get("low")),
                 _quantity_value(rr.get("high")), source)


def is_lab(obs: dict[str, Any]) -> bool:
    for cat in obs.get("category") or []:
        for c in (cat or {}).get("coding") or []:
            if c.get("code") == "laboratory":
                return True
    key = _key(obs)
    return key is not None and key[0] == JLAC10


def series(observations: Iterable[dict[str, Any]], source_of: Callable[[dict[str, Any]], str]) -> list[Series]:
    """The lab series of ``observations`` (numeric results with an exact JLAC10 or LOINC
    code), points oldest first; series with the most points first, then by name."""
    out: dict[tuple[str, str], Series] = {}
    for obs in observations:
        if obs.get("resourceType") != "Observation" or not is_lab(obs):
            continue
        key = _key(obs)
        point = _point(obs, source_of(obs)) if key else None
        if key is None or point is None:
            continue
        s = out.setdefault(key, Series(key[0], key[1], _name(obs)))
        s.points.append(point)
        if not s.name:
            s.name = _name(obs)
    result = list(out.values())
    for s in result:
        s.points.sort(key=lambda p: (p.at_us, p.id))
    result.sort(key=lambda s: (-len(s.points), s.name, s.code))
    return result
