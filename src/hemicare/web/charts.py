"""Figures drawn by the server as SVG: outcome charts (diary spasms and intensity, HFS-7, with treatments on the time
axis) and the icon arrays of the options side by side."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from functools import cache
from html import escape
from typing import Any

from markupsafe import Markup

WIDTH, HEIGHT = 760, 300
LEFT, RIGHT, TOP, BOTTOM = 56, 56, 36, 68
FONT_SIZE = 11
CHAR_WIDTH = 6.5  # a generous average width of one character at FONT_SIZE in a sans-serif font
MAX_TICKS = 7
LEGEND_ROW = 16  # the height of a row of the legend
MONTH_STEPS = (1, 2, 3, 6, 12, 24, 60)
MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


@dataclass(frozen=True)
class Point:
    date: dt.date
    value: float
    note: str = ""  # shown in the point's tooltip, e.g. how the value was derived from what was recorded


@dataclass(frozen=True)
class Treatment:
    """A treatment drawn as a line across the chart: its date, the short label over the line and its tooltip."""

    date: dt.date
    label: str
    title: str


# How each kind of treatment line is drawn: colour, dashes (told apart without colour too) and its name in the legend.
# Labels are placed in this order, so that a surgery's label is never the one left out beside a toxin session's.
LINES = {
    "surgery": ("#c0392b", "", "surgery"),
    "procedure": ("#566573", "1 3", "nerve procedure"),
    "toxin": ("#2e86c1", "4 3", "toxin session"),
}


def text_width(text: str) -> float:
    """The width a label is laid out with (generous, so that labels placed apart stay apart)."""
    return len(text) * CHAR_WIDTH


def _month_start(date: dt.date, months_ahead: int = 0) -> dt.date:
    index = date.year * 12 + date.month - 1 + months_ahead
    return dt.date(index // 12, index % 12 + 1, 1)


def time_ticks(first: dt.date, last: dt.date) -> list[tuple[dt.date, str]]:
    """Labelled dates for the time axis: month starts a whole number of months apart, at most MAX_TICKS of them;
    a span too short for two month starts is labelled by its first and last day."""
    for step in MONTH_STEPS:
        tick = _month_start(first, 0 if first.day == 1 else 1)
        while (tick.month - 1) % step:
            tick = _month_start(tick, 1)
        ticks = []
        while tick <= last:
            ticks.append(tick)
            tick = _month_start(tick, step)
        if len(ticks) <= MAX_TICKS:
            break
    if len(ticks) < 2:
        return [(first, first.isoformat()), (last, last.isoformat())] if last != first else [(first, first.isoformat())]
    return [(tick, f"{MONTHS[tick.month - 1]} {tick.year}") for tick in ticks]


def outcome_chart(
    *,
    spasms: Sequence[Point],
    intensity: Sequence[Point],
    hfs7: Sequence[Point],
    toxin: Sequence[dt.date],
    acupuncture: Sequence[dt.date],
    hfs7_max: float,
    title: str,
    surgery: Sequence[Treatment] = (),
    procedures: Sequence[Treatment] = (),
    courses: Sequence[Sequence[dt.date]] = (),
) -> str:
    """A line chart over time; an empty history gives a labelled empty chart, not an error.

    Left axis: spasms per day (intensity 0-10 drawn to the same height); right axis: HFS-7 total, 0 to ``hfs7_max``
    (the scale's maximum in the knowledge base). Toxin sessions are dashed lines labelled BoNT, surgery and nerve
    procedures lines of their own with their labels, acupuncture sessions green marks on the time axis, each course of
    them (``courses``, each its session dates) shaded from its first session to its last. No two labels
    overlap: a label that would touch one already placed is left out (its line and tooltip remain), surgery's placed
    first, then the procedures', then the toxin sessions'.
    """
    lines = {
        "surgery": surgery,
        "procedure": procedures,
        "toxin": [Treatment(date, "BoNT", f"Botulinum toxin {date.isoformat()}") for date in toxin],
    }
    dates = [p.date for p in (*spasms, *intensity, *hfs7)] + list(acupuncture)
    dates += [treatment.date for drawn in lines.values() for treatment in drawn]
    dates += [date for course in courses for date in course]
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-label="{escape(title)}" class="chart" font-family="sans-serif" font-size="{FONT_SIZE}">',
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
    base = HEIGHT - BOTTOM
    plot_right = WIDTH - RIGHT

    def x(date: dt.date) -> float:
        return LEFT + (plot_right - LEFT) * (date - first).days / span

    def y(value: float, top: float) -> float:
        return TOP + (base - TOP) * (1 - value / top)

    def label(x_at: float, y_at: float, text: str, colour: str, anchor: str = "start", css: str = "") -> None:
        css_class = f' class="{css}"' if css else ""
        place = f'x="{x_at:.1f}" y="{y_at:.1f}" text-anchor="{anchor}"'
        parts.append(f'<text{css_class} {place} fill="{colour}">{escape(text)}</text>')

    parts.append(f'<line x1="{LEFT}" y1="{base}" x2="{plot_right}" y2="{base}" stroke="#999"/>')
    parts.append(f'<line x1="{LEFT}" y1="{TOP}" x2="{LEFT}" y2="{base}" stroke="#999"/>')
    parts.append(f'<line x1="{plot_right}" y1="{TOP}" x2="{plot_right}" y2="{base}" stroke="#999"/>')
    for fraction in (0, 0.5, 1):
        label(LEFT - 6, y(top_spasms * fraction, top_spasms) + 4, f"{top_spasms * fraction:.0f}", "#1f618d", "end")
        label(plot_right + 6, y(hfs7_max * fraction, hfs7_max) + 4, f"{hfs7_max * fraction:.0f}", "#7d3c98")
    label(8, 14, "spasms/day", "#1f618d")
    label(WIDTH - 8, 14, f"HFS-7 (0-{hfs7_max:g})", "#7d3c98", "end")

    for tick, text in time_ticks(first, last):
        at = x(tick)
        parts.append(f'<line x1="{at:.1f}" y1="{base}" x2="{at:.1f}" y2="{base + 4}" stroke="#999"/>')
        # Centred under its mark, but kept inside the chart.
        half = text_width(text) / 2
        label(min(max(at, half + 2), WIDTH - half - 2), base + 17, text, "#333", "middle", "tick")

    placed: list[tuple[float, float]] = []  # the labels over the lines so far, as (left, right)
    drawn_lines: list[tuple[float, str]] = []
    for kind, (colour, dashes, _) in LINES.items():
        for treatment in lines[kind]:
            at = x(treatment.date)
            width = text_width(treatment.label)
            # Right of the line, or left of it where the right would run past the plot.
            start = at + 3 if at + 3 + width <= plot_right else at - 3 - width
            text = ""
            if all(start > right + 4 or start + width + 4 < left for left, right in placed):
                text = f'<text x="{start:.1f}" y="{TOP + 10}" fill="{colour}">{escape(treatment.label)}</text>'
                placed.append((start, start + width))
            dashing = f' stroke-dasharray="{dashes}"' if dashes else ""
            drawn_lines.append(
                (
                    at,
                    f'<g class="marker {kind}"><title>{escape(treatment.title)}</title>'
                    f'<line x1="{at:.1f}" y1="{TOP}" x2="{at:.1f}" y2="{base}" stroke="{colour}"{dashing}/>'
                    f"{text}</g>",
                )
            )
    parts.extend(svg for _, svg in sorted(drawn_lines, key=lambda line: line[0]))
    for course in courses:
        first_day, last_day = min(course), max(course)
        left, right = x(first_day) - 3, x(last_day) + 3
        sessions = f"{len(course)} session{'s' if len(course) > 1 else ''}"
        parts.append(
            f'<g class="course acupuncture"><title>Acupuncture course: {sessions}, {first_day.isoformat()} to '
            f'{last_day.isoformat()}</title><rect x="{left:.1f}" y="{base - 12}" width="{right - left:.1f}" '
            f'height="12" fill="#27ae60" fill-opacity="0.25"/></g>'
        )
    for date in acupuncture:
        parts.append(
            f'<g class="marker acupuncture"><title>Acupuncture {date.isoformat()}</title>'
            f'<rect x="{x(date) - 2:.1f}" y="{base - 10}" width="4" height="10" fill="#27ae60"/></g>'
        )

    def line(points: Sequence[Point], top: float, colour: str, name: str, dash: str = "", scale: float = 1) -> None:
        """A series drawn at ``value * scale``; its tooltips give the value as recorded."""
        if not points:
            return
        ordered = sorted(points, key=lambda p: p.date)
        at = [(x(p.date), y(p.value * scale, top)) for p in ordered]
        path = " ".join(f"{'M' if i == 0 else 'L'}{px:.1f} {py:.1f}" for i, (px, py) in enumerate(at))
        dashing = f' stroke-dasharray="{dash}"' if dash else ""
        parts.append(
            f'<path class="series {name}" d="{path}" fill="none" stroke="{colour}" stroke-width="2"{dashing}/>'
        )
        for p, (px, py) in zip(ordered, at, strict=True):
            note = f" ({escape(p.note)})" if p.note else ""
            parts.append(
                f'<circle class="point {name}" cx="{px:.1f}" cy="{py:.1f}" r="3" fill="{colour}">'
                f"<title>{name} {p.date.isoformat()}: {p.value:g}{note}</title></circle>"
            )

    line(spasms, top_spasms, "#1f618d", "spasms")
    line(intensity, top_spasms, "#e67e22", "intensity", "5 3", scale=top_spasms / 10)
    line(hfs7, hfs7_max, "#7d3c98", "hfs7")
    legend = [  # only what the chart draws: a patient never needled is not shown "acupuncture"
        (spasms, "#1f618d", "spasms/day"),
        (intensity, "#e67e22", "intensity (0-10, scaled)"),
        (hfs7, "#7d3c98", "HFS-7"),
        *((lines[kind], colour, name) for kind, (colour, _, name) in LINES.items()),
        (acupuncture, "#27ae60", "acupuncture"),
    ]
    # Laid out in rows as wide as the chart, then drawn from the bottom up, so that one row keeps its place.
    rows: list[list[tuple[float, str, str]]] = [[]]
    at = float(LEFT)
    for drawn, colour, name in legend:
        if not drawn:
            continue
        if rows[-1] and at + 14 + text_width(name) > WIDTH - 8:
            rows.append([])
            at = float(LEFT)
        rows[-1].append((at, colour, name))
        at += 14 + text_width(name) + 18
    for row_number, row in enumerate(rows):
        bottom = HEIGHT - 14 - LEGEND_ROW * (len(rows) - 1 - row_number)
        for at, colour, name in row:
            parts.append(f'<rect x="{at:.1f}" y="{bottom - 9}" width="10" height="10" fill="{colour}"/>')
            label(at + 14, bottom, name, "#333", css="legend")
    parts.append("</svg>")
    return "\n".join(parts)


ICON_CELL, ICON_STEP = 4, 5  # an icon array's square and the distance from one square to the next, in pixels
ICONS_FILLED = "#1f618d"  # the accent colour: the people the figure counts
ICONS_EMPTY = "#d5dbdb"  # the line colour: the rest of the hundred
_PER_100 = re.compile(r"about (\d+) in 100")


def chances_in_100(figure: Mapping[str, Any]) -> int | None:
    """How many of a hundred a figure's words count ("about 91 in 100": 91; "fewer than 1 in 100": 0), or None for a
    figure that is not a chance. The words are what is drawn, so that picture and number never disagree."""
    words = figure.get("per_100") or ""
    said = _PER_100.fullmatch(words)
    if said is not None:
        return min(100, int(said.group(1)))
    return 0 if words.startswith("fewer than") else None


def icon_array(figure: Mapping[str, Any]) -> Markup:
    """A figure read "about N in 100" (``per_100``) drawn as a hundred squares in rows of ten, the first N filled: a
    second way to see a chance beside the number, as decision-aid standards (IPDAS) ask. "Fewer than 1 in 100"
    fills none. Hidden from screen readers, which read the number written beside it; empty for other figures."""
    count = chances_in_100(figure)
    return Markup("") if count is None else _icons(count)


@cache  # a hundred and one drawings at most, each made once: a patient page has a score of them
def _icons(count: int) -> Markup:
    # Each row is a dashed line ten squares long (a dash the square's width, a gap to the next): a drawing of a few
    # hundred bytes, not a path per square. Every run is a whole number of dash periods, so the squares fall in the
    # same places whether a browser restarts the dashes at each run or carries them on.
    full, left = divmod(count, 10)
    runs: dict[bool, list[str]] = {True: [], False: []}
    for row in range(10):
        middle = row * ICON_STEP + ICON_CELL // 2
        filled = 10 if row < full else left if row == full else 0
        if filled:
            runs[True].append(f"M0 {middle}h{filled * ICON_STEP}")
        if filled < 10:
            runs[False].append(f"M{filled * ICON_STEP} {middle}h{(10 - filled) * ICON_STEP}")
    size = 10 * ICON_STEP - (ICON_STEP - ICON_CELL)
    drawn = "".join(
        f'<path stroke="{colour}" d="{"".join(runs[filled])}"/>'
        for filled, colour in ((True, ICONS_FILLED), (False, ICONS_EMPTY))
        if runs[filled]
    )
    dashes = f'stroke-width="{ICON_CELL}" stroke-dasharray="{ICON_CELL} {ICON_STEP - ICON_CELL}" fill="none"'
    return Markup(
        f'<svg class="icons" xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {size} {size}" width="{size}" '
        f'height="{size}" aria-hidden="true" focusable="false"><g {dashes}>{drawn}</g></svg>'
    )
