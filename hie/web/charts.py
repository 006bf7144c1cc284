"""Lab trend charts as server-rendered SVG (no script, no library).

One chart per (series, unit): a series whose facilities report different units gets one
chart per unit, never a converted value. Each chart is an accessible image (``role="img"``
with ``<title>`` and ``<desc>``); the page shows the same points as a table beside it. The
reference range, when every point agrees on it, is a shaded band. Points are marked per
source facility (shape and colour), with a legend naming the facility.

Spec: https://www.w3.org/TR/SVG2/struct.html#DescriptionAndTitleElements ;
https://www.w3.org/WAI/tutorials/images/complex/
"""

from __future__ import annotations

from datetime import datetime

from consent.periods import NODE_TZ
from html import escape

from hie.summary.trends import Point, Series

W, H = 560, 200
LEFT, RIGHT, TOP, BOTTOM = 48, 12, 12, 28
COLOURS = ("#1f5fa8", "#b8520a", "#2a7d3a", "#7a3da0", "#a02040")
SHAPES = ("circle", "square", "diamond", "triangle", "cross")


def _marker(shape: str, x: float, y: float, colour: str) -> str:
    if shape == "circle":
        return f'<circle cx="{x:.1f}" cy="{y:.1f}" r="4" fill="{colour}"/>'
    if shape == "square":
        return f'<rect x="{x - 4:.1f}" y="{y - 4:.1f}" width="8" height="8" fill="{colour}"/>'
    if shape == "diamond":
        return (f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y:.1f}L{x:.1f} {y + 5:.1f}L{x - 5:.1f} {y:.1f}Z" '
                f'fill="{colour}"/>')
    if shape == "triangle":
        return f'<path d="M{x:.1f} {y - 5:.1f}L{x + 5:.1f} {y + 4:.1f}L{x - 5:.1f} {y + 4:.1f}Z" fill="{colour}"/>'
    return (f'<path d="M{x - 4:.1f} {y - 4:.1f}L{x + 4:.1f} {y + 4:.1f}'
            f'M{x + 4:.1f} {y - 4:.1f}L{x - 4:.1f} {y + 4:.1f}" '
            f'stroke="{colour}" stroke-width="2"/>')


def _day(at_us: int) -> str:
    return datetime.fromtimestamp(at_us / 1_000_000, tz=NODE_TZ).strftime("%Y-%m-%d")


def chart(series: Series, unit: str, *, chart_id: str, title: str, desc: str) -> str:
    """The SVG of ``series``' points in ``unit``."""
    points: list[Point] = [p for p in series.points if p.unit == unit]
    if not points:
        return ""
    sources = series.sources
    rng = series.range if not series.unit_mismatch else None
    values = [p.value for p in points] + [v for v in (rng or ()) if v is not None]
    vmin, vmax = min(values), max(values)
    pad = (vmax - vmin) * 0.1 or abs(vmax) * 0.1 or 1.0
    vmin, vmax = vmin - pad, vmax + pad
    tmin, tmax = points[0].at_us, points[-1].at_us
    span = (tmax - tmin) or 1

    def x(t: int) -> float:
        return LEFT + (W - LEFT - RIGHT) * ((t - tmin) / span if tmax > tmin else 0.5)

    def y(v: float) -> float:
        return TOP + (H - TOP - BOTTOM) * (1 - (v - vmin) / (vmax - vmin))

    parts = [f'<svg xmlns="http://www.w3.org/2000/svg" class="trend" viewBox="0 0 {W} {H}" role="img" '
             f'aria-labelledby="{chart_id}-t {chart_id}-d" id="{chart_id}">',
             f'<title id="{chart_id}-t">{escape(title)}</title><desc id="{chart_id}-d">{escape(desc)}</desc>',
             f'<rect x="{LEFT}" y="{TOP}" width="{W - LEFT - RIGHT}" height="{H - TOP - BOTTOM}" '
             'fill="#fff" stroke="#999"/>']
    if rng is not None:
        low = rng[0] if rng[0] is not None else vmin
        high = rng[1] if rng[1] is not None else vmax
        parts.append(f'<rect class="range" x="{LEFT}" y="{y(high):.1f}" width="{W - LEFT - RIGHT}" '
                     f'height="{max(y(low) - y(high), 0):.1f}" fill="#e3f1e3"/>')
    for v in (vmin + pad, vmax - pad):
        parts.append(f'<text x="{LEFT - 4}" y="{y(v) + 4:.1f}" text-anchor="end" font-size="11">{v:g}</text>')
    parts.append(f'<text x="{LEFT}" y="{H - 8}" font-size="11">{_day(tmin)}</text>')
    if tmax > tmin:
        parts.append(f'<text x="{W - RIGHT}" y="{H - 8}" text-anchor="end" font-size="11">{_day(tmax)}</text>')
    path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.at_us):.1f} {y(p.value):.1f}" for i, p in enumerate(points))
    parts.append(f'<path d="{path}" fill="none" stroke="#555" stroke-width="1.5"/>')
    for p in points:
        i = sources.index(p.source) % len(SHAPES)
        parts.append(_marker(SHAPES[i], x(p.at_us), y(p.value), COLOURS[i % len(COLOURS)]))
    parts.append("</svg>")
    return "".join(parts)


def legend(series: Series) -> list[tuple[str, str, str]]:
    """(facility, shape, colour) for each source of ``series``, as the chart marks them."""
    return [(s, SHAPES[i % len(SHAPES)], COLOURS[i % len(COLOURS)]) for i, s in enumerate(series.sources)]
