"""Outcome charts drawn by the server as SVG: diary spasms and intensity, HFS-7, with treatments on the time axis."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from dataclasses import dataclass
from html import escape

WIDTH, HEIGHT = 760, 280
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 24, 48


@dataclass(frozen=True)
class Point:
    date: dt.date
    value: float


def outcome_chart(
    *,
    spasms: Sequence[Point],
    intensity: Sequence[Point],
    hfs7: Sequence[Point],
    toxin: Sequence[dt.date],
    acupuncture: Sequence[dt.date],
    title: str,
) -> str:
    """A line chart over time; an empty history gives a labelled empty chart, not an error."""
    dates = [p.date for p in (*spasms, *intensity, *hfs7)] + list(toxin) + list(acupuncture)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart" font-family="sans-serif" font-size="11">',
        f"<title>{escape(title)}</title>",
        f'<rect width="{WIDTH}" height="{HEIGHT}" fill="#ffffff"/>',
    ]
    if not dates:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{HEIGHT / 2}" text-anchor="middle" fill="#666">No outcomes recorded yet</text>'
        )
        parts.append("</svg>")
        return "\n".join(parts)
    first, last = min(dates), max(dates)
    span = max((last - first).days, 1)
    top_spasms = max([p.value for p in spasms] + [10])

    def x(date: dt.date) -> float:
        return LEFT + (WIDTH - LEFT - RIGHT) * (date - first).days / span

    def y(value: float, top: float) -> float:
        return TOP + (HEIGHT - TOP - BOTTOM) * (1 - value / top)

    base = HEIGHT - BOTTOM
    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#999"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#999"/>')
    parts.append(f'<line x1="{WIDTH - RIGHT}" y1="{TOP}" x2="{WIDTH - RIGHT}" y2="{base}" stroke="#999"/>')
    for fraction in (0, 0.5, 1):
        value = top_spasms * fraction
        parts.append(
            f'<text x="{LEFT - 6}" y="{y(value, top_spasms) + 4}" text-anchor="end" fill="#1f618d">{value:.0f}</text>'
        )
        parts.append(
            f'<text x="{WIDTH - RIGHT + 6}" y="{y(28 * fraction, 28) + 4}" fill="#7d3c98">{28 * fraction:.0f}</text>'
        )
    parts.append(f'<text x="{LEFT - 44}" y="{TOP - 8}" fill="#1f618d">spasms/day</text>')
    parts.append(f'<text x="{WIDTH - RIGHT - 10}" y="{TOP - 8}" fill="#7d3c98">HFS-7 (0-28)</text>')
    parts.append(f'<text x="{LEFT}" y="{HEIGHT - 8}" fill="#333">{first.isoformat()}</text>')
    parts.append(f'<text x="{WIDTH - RIGHT}" y="{HEIGHT - 8}" text-anchor="end" fill="#333">{last.isoformat()}</text>')
    for date in toxin:
        parts.append(
            f'<g class="marker toxin"><title>Botulinum toxin {date.isoformat()}</title>'
            f'<line x1="{x(date):.1f}" y1="{TOP}" x2="{x(date):.1f}" y2="{base}" '
            'stroke="#2e86c1" stroke-dasharray="4 3"/>'
            f'<text x="{x(date) + 3:.1f}" y="{TOP + 10}" fill="#2e86c1">BoNT</text></g>'
        )
    for date in acupuncture:
        parts.append(
            f'<g class="marker acupuncture"><title>Acupuncture {date.isoformat()}</title>'
            f'<rect x="{x(date) - 2:.1f}" y="{base - 10}" width="4" height="10" fill="#27ae60"/></g>'
        )

    def line(points: Sequence[Point], top: float, colour: str, name: str, dash: str = "") -> None:
        if not points:
            return
        ordered = sorted(points, key=lambda p: p.date)
        path = " ".join(f"{'M' if i == 0 else 'L'}{x(p.date):.1f} {y(p.value, top):.1f}" for i, p in enumerate(ordered))
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<path class="series {name}" d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>'
        )
        for p in ordered:
            parts.append(
                f'<circle class="point {name}" cx="{x(p.date):.1f}" cy="{y(p.value, top):.1f}" r="3" fill="{colour}">'
                f"<title>{name} {p.date.isoformat()}: {p.value:g}</title></circle>"
            )

    line(spasms, top_spasms, "#1f618d", "spasms")
    line([Point(p.date, p.value * top_spasms / 10) for p in intensity], top_spasms, "#e67e22", "intensity", "5 3")
    line(hfs7, 28, "#7d3c98", "hfs7")
    legend = [
        ("#1f618d", "spasms/day"),
        ("#e67e22", "intensity (0-10, scaled)"),
        ("#7d3c98", "HFS-7"),
        ("#2e86c1", "toxin session"),
        ("#27ae60", "acupuncture"),
    ]
    for index, (colour, label) in enumerate(legend):
        lx = LEFT + 150 * index
        parts.append(f'<rect x="{lx}" y="{HEIGHT - 30}" width="10" height="10" fill="{colour}"/>')
        parts.append(f'<text x="{lx + 14}" y="{HEIGHT - 21}" fill="#333">{escape(label)}</text>')
    parts.append("</svg>")
    return "\n".join(parts)
