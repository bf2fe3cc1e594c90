"""The outcome chart as a picture: markers where their dates are, tooltips with recorded values, labels that fit."""

from __future__ import annotations

import datetime as dt
import itertools
import re
import xml.etree.ElementTree as ET

import pytest

from hemicare.web.charts import (
    FONT_SIZE,
    HEIGHT,
    LEFT,
    RIGHT,
    TOP,
    WIDTH,
    Point,
    Treatment,
    icon_array,
    outcome_chart,
    text_width,
    time_ticks,
)

SVG = "{http://www.w3.org/2000/svg}"
START = dt.date(2024, 12, 27)


def _history(years: int, *, toxin_weeks: int = 12) -> dict[str, object]:
    days = 365 * years
    dates = [START + dt.timedelta(days=day) for day in range(0, days, 7)]
    return {
        "spasms": [Point(date, 5 + (index * 7) % 20) for index, date in enumerate(dates)],
        "intensity": [Point(date, (index * 3) % 11) for index, date in enumerate(dates)],
        "hfs7": [Point(date, (index * 5) % 29) for index, date in enumerate(dates[::13])],
        "toxin": [START + dt.timedelta(weeks=week) for week in range(0, days // 7, toxin_weeks)],
        "acupuncture": [START + dt.timedelta(days=days - 9 + step * 3) for step in range(3)],
        # On a toxin session's day and the day after one: their labels compete for the same place.
        "surgery": [Treatment(START + dt.timedelta(weeks=toxin_weeks), "MVD", "Microvascular decompression")],
        "procedures": [Treatment(START + dt.timedelta(days=1), "block", "Facial nerve block, left side")],
    }


def _chart(**history: object) -> ET.Element:
    svg = outcome_chart(title="Outcomes over time for demo-001", hfs7_max=28, **history)  # type: ignore[arg-type]
    return ET.fromstring(svg)


def _boxes(root: ET.Element) -> list[tuple[str, float, float, float, float]]:
    """Each text's box as the chart lays it out: (text, left, top, right, bottom)."""
    boxes = []
    for text in root.iter(f"{SVG}text"):
        content = text.text or ""
        x, y = float(text.get("x", 0)), float(text.get("y", 0))
        width = text_width(content)
        left = {"start": x, "middle": x - width / 2, "end": x - width}[text.get("text-anchor", "start")]
        boxes.append((content, left, y - FONT_SIZE, left + width, y))
    return boxes


@pytest.mark.parametrize("years", [1, 2, 10])
def test_every_label_fits_inside_the_chart_and_none_overlaps_another(years: int) -> None:
    boxes = _boxes(_chart(**_history(years)))
    assert boxes
    for text, left, top, right, bottom in boxes:
        assert left >= 0 and right <= WIDTH and top >= 0 and bottom <= HEIGHT, text
    for index, (text, left, top, right, bottom) in enumerate(boxes):
        for other, o_left, o_top, o_right, o_bottom in boxes[index + 1 :]:
            overlap = left < o_right and o_left < right and top < o_bottom and o_top < bottom
            assert not overlap, f"{text!r} overlaps {other!r}"


def test_every_toxin_session_has_its_line_even_where_its_label_would_crowd_another() -> None:
    history = _history(10)
    root = _chart(**history)
    markers = [g for g in root.iter(f"{SVG}g") if g.get("class") == "marker toxin"]
    toxin = history["toxin"]
    assert isinstance(toxin, list)
    assert len(markers) == len(toxin) > 40
    labelled = [g for g in markers if g.find(f"{SVG}text") is not None]
    assert 0 < len(labelled) < len(markers)
    assert [g.findtext(f"{SVG}title") for g in markers] == [f"Botulinum toxin {d.isoformat()}" for d in toxin]


def test_markers_sit_where_their_dates_are_on_the_time_axis() -> None:
    first, middle, last = dt.date(2026, 1, 1), dt.date(2026, 3, 2), dt.date(2026, 5, 1)
    root = _chart(spasms=[Point(first, 3), Point(last, 4)], intensity=[], hfs7=[], toxin=[middle], acupuncture=[last])
    line = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "marker toxin").find(f"{SVG}line")
    assert line is not None
    share = (middle - first).days / (last - first).days
    assert float(line.get("x1", 0)) == pytest.approx(LEFT + (WIDTH - LEFT - RIGHT) * share, abs=0.1)
    mark = next(g for g in root.iter(f"{SVG}g") if g.get("class") == "marker acupuncture").find(f"{SVG}rect")
    assert mark is not None
    assert float(mark.get("x", 0)) + 2 == pytest.approx(WIDTH - RIGHT, abs=0.1)
    points = [c for c in root.iter(f"{SVG}circle") if c.get("class") == "point spasms"]
    assert [float(c.get("cx", 0)) for c in points] == pytest.approx([LEFT, WIDTH - RIGHT], abs=0.1)


def test_surgery_and_nerve_procedures_are_lines_of_their_own_and_keep_their_labels_beside_a_toxin_session() -> None:
    """An MVD or a nerve block changes the spasms as a toxin session does: the chart showed neither, so a fall in
    the spasms after surgery looked like the toxin's doing."""
    first, last = dt.date(2026, 1, 1), dt.date(2026, 5, 1)
    surgery, block = dt.date(2026, 3, 2), dt.date(2026, 2, 1)
    root = _chart(
        spasms=[Point(first, 3), Point(last, 4)],
        intensity=[],
        hfs7=[],
        toxin=[surgery - dt.timedelta(days=1), block],
        acupuncture=[],
        surgery=[Treatment(surgery, "MVD", "Microvascular decompression 2026-03-02")],
        procedures=[Treatment(block, "block", "Facial nerve block, left side 2026-02-01")],
    )
    markers = {g.get("class"): g for g in root.iter(f"{SVG}g") if g.get("class", "").startswith("marker")}
    assert markers.keys() == {"marker toxin", "marker surgery", "marker procedure"}
    share = (surgery - first).days / (last - first).days
    line = markers["marker surgery"].find(f"{SVG}line")
    assert line is not None
    assert float(line.get("x1", 0)) == pytest.approx(LEFT + (WIDTH - LEFT - RIGHT) * share, abs=0.1)
    assert markers["marker surgery"].findtext(f"{SVG}title") == "Microvascular decompression 2026-03-02"
    assert markers["marker procedure"].findtext(f"{SVG}title") == "Facial nerve block, left side 2026-02-01"
    # Each kind is told apart without its colour: surgery solid, a procedure dotted, toxin dashed.
    dashes = {kind: g.find(f"{SVG}line").get("stroke-dasharray") for kind, g in markers.items()}  # type: ignore[union-attr]
    assert dashes == {"marker surgery": None, "marker procedure": "1 3", "marker toxin": "4 3"}
    # A toxin session a day before surgery, another on the block's day: the surgery's and the block's labels stay.
    labels = [t.text for t in root.iter(f"{SVG}text") if float(t.get("y", 0)) == TOP + 10]
    assert "MVD" in labels and "block" in labels
    assert labels.count("BoNT") == 0
    # The lines are drawn in date order, whatever their kind.
    xs = [float(g.find(f"{SVG}line").get("x1", 0)) for g in root.iter(f"{SVG}g") if "marker" in g.get("class", "")]  # type: ignore[union-attr]
    assert xs == sorted(xs)


def test_an_acupuncture_course_is_shaded_from_its_first_session_to_its_last() -> None:
    first, last = dt.date(2026, 1, 1), dt.date(2026, 5, 1)
    course = [dt.date(2026, 2, 1), dt.date(2026, 2, 4), dt.date(2026, 2, 8)]
    root = _chart(
        spasms=[Point(first, 3), Point(last, 4)],
        intensity=[],
        hfs7=[],
        toxin=[],
        acupuncture=[*course, last],
        courses=[course, [last]],
    )
    shaded = [g for g in root.iter(f"{SVG}g") if g.get("class") == "course acupuncture"]
    assert [g.findtext(f"{SVG}title") for g in shaded] == [
        "Acupuncture course: 3 sessions, 2026-02-01 to 2026-02-08",
        "Acupuncture course: 1 session, 2026-05-01 to 2026-05-01",
    ]
    band = shaded[0].find(f"{SVG}rect")
    assert band is not None
    day = (WIDTH - LEFT - RIGHT) / (last - first).days
    assert float(band.get("x", 0)) == pytest.approx(LEFT + day * 31 - 3, abs=0.1)
    assert float(band.get("width", 0)) == pytest.approx(day * 7 + 6, abs=0.1)
    assert len([g for g in root.iter(f"{SVG}g") if g.get("class") == "marker acupuncture"]) == 4


def test_the_legend_runs_to_a_second_row_rather_than_past_the_chart() -> None:
    root = _chart(**_history(1))
    legend = [t for t in root.iter(f"{SVG}text") if t.get("class") == "legend"]
    rows = {t.get("y") for t in legend}
    assert len(rows) == 2
    assert max(float(t.get("x", 0)) + text_width(t.text or "") for t in legend) <= WIDTH
    one_row = _chart(**_history(1) | {"surgery": [], "procedures": []})
    assert len({t.get("y") for t in one_row.iter(f"{SVG}text") if t.get("class") == "legend"}) == 1


def test_tooltips_give_the_value_as_recorded_not_as_drawn() -> None:
    day = dt.date(2026, 2, 1)
    root = _chart(
        spasms=[Point(day, 40, "2.5 per hour x 16 waking hours, a clinic setting")],
        intensity=[Point(day, 6)],
        hfs7=[Point(day, 12)],
        toxin=[],
        acupuncture=[],
    )
    titles = {c.get("class"): c.findtext(f"{SVG}title") for c in root.iter(f"{SVG}circle")}
    assert titles["point spasms"] == "spasms 2026-02-01: 40 (2.5 per hour x 16 waking hours, a clinic setting)"
    # Intensity is drawn scaled to the spasm axis (top 40): at 24 on it, but its tooltip says 6.
    assert titles["point intensity"] == "intensity 2026-02-01: 6"
    assert titles["point hfs7"] == "hfs7 2026-02-01: 12"


def test_an_empty_history_is_a_labelled_empty_chart() -> None:
    root = _chart(spasms=[], intensity=[], hfs7=[], toxin=[], acupuncture=[])
    assert [t.text for t in root.iter(f"{SVG}text")] == ["No outcomes recorded yet"]


def _legend(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{SVG}text") if t.get("class") == "legend"]


def test_the_legend_names_only_what_the_chart_shows() -> None:
    """A patient never needled read "acupuncture" under their chart: a key to marks that are not there."""
    everything = _history(1)
    assert _legend(_chart(**everything)) == [
        "spasms/day",
        "intensity (0-10, scaled)",
        "HFS-7",
        "surgery",
        "nerve procedure",
        "toxin session",
        "acupuncture",
    ]
    toxin_only = _chart(**everything | {"acupuncture": [], "hfs7": [], "surgery": [], "procedures": []})
    assert _legend(toxin_only) == ["spasms/day", "intensity (0-10, scaled)", "toxin session"]


def test_the_title_is_escaped() -> None:
    svg = outcome_chart(spasms=[], intensity=[], hfs7=[], toxin=[], acupuncture=[], hfs7_max=28, title="a <b> & c")
    assert "<title>a &lt;b&gt; &amp; c</title>" in svg
    ET.fromstring(svg)


@pytest.mark.parametrize(
    ("first", "last", "expected"),
    [
        (dt.date(2026, 1, 5), dt.date(2026, 4, 20), ["Feb 2026", "Mar 2026", "Apr 2026"]),
        (dt.date(2025, 12, 1), dt.date(2026, 2, 1), ["Dec 2025", "Jan 2026", "Feb 2026"]),
        (dt.date(2024, 12, 27), dt.date(2026, 11, 26), ["Jan 2025", "Jul 2025", "Jan 2026", "Jul 2026"]),
        (dt.date(2026, 3, 3), dt.date(2026, 3, 20), ["2026-03-03", "2026-03-20"]),
        (dt.date(2026, 3, 3), dt.date(2026, 3, 3), ["2026-03-03"]),
    ],
)
def test_time_ticks(first: dt.date, last: dt.date, expected: list[str]) -> None:
    assert [label for _, label in time_ticks(first, last)] == expected


@pytest.mark.parametrize("months", [1, 5, 13, 30, 61, 150, 400])
def test_time_ticks_are_month_starts_in_the_span_a_whole_step_apart_and_few(months: int) -> None:
    first = dt.date(2020, 2, 17)
    last = first + dt.timedelta(days=30 * months)
    ticks = [date for date, _ in time_ticks(first, last)]
    assert 1 <= len(ticks) <= 7
    if len(ticks) >= 2 and ticks[0].day == 1:
        assert all(first <= date <= last and date.day == 1 for date in ticks)
        steps = {(b.year - a.year) * 12 + b.month - a.month for a, b in itertools.pairwise(ticks)}
        assert len(steps) == 1


def test_month_labels_name_the_month_and_year() -> None:
    labels = [label for _, label in time_ticks(dt.date(2026, 1, 1), dt.date(2026, 12, 31))]
    assert all(re.fullmatch(r"(Jan|Feb|Mar|Apr|May|Jun|Jul|Aug|Sep|Oct|Nov|Dec) 2026", label) for label in labels)


def test_the_right_axis_runs_to_the_scale_maximum_it_is_given() -> None:
    day = dt.date(2026, 2, 1)
    root = ET.fromstring(
        outcome_chart(spasms=[], intensity=[], hfs7=[Point(day, 15)], toxin=[], acupuncture=[], hfs7_max=30, title="t")
    )
    texts = [t.text for t in root.iter(f"{SVG}text")]
    assert "HFS-7 (0-30)" in texts and "30" in texts and "15" in texts


def drawn_squares(svg: str) -> dict[str, list[tuple[int, int]]]:
    """An icon array's squares, by colour, each as the (x, y) of its top left corner: its rows are dashed lines, a
    dash each square (4 wide, 1 apart), each run of them a whole number of dashes."""
    drawn = ET.fromstring(svg)
    assert drawn.get("aria-hidden") == "true"  # the number is written beside it
    (group,) = drawn
    assert (group.get("stroke-width"), group.get("stroke-dasharray"), group.get("fill")) == ("4", "4 1", "none")
    squares: dict[str, list[tuple[int, int]]] = {}
    for path in group:
        for x, y, length in re.findall(r"M(\d+) (\d+)h(\d+)", path.get("d", "")):
            assert int(length) % 5 == 0, path.get("d")
            squares.setdefault(path.get("stroke", ""), []).extend(
                (int(x) + 5 * index, int(y) - 2) for index in range(int(length) // 5)
            )
    return squares


@pytest.mark.parametrize(
    ("count", "per_100"), [(91, "about 91 in 100"), (1, "about 1 in 100"), (100, "about 100 in 100")]
)
def test_an_icon_array_fills_as_many_squares_of_the_hundred_as_the_figure_says(count: int, per_100: str) -> None:
    squares = drawn_squares(str(icon_array({"per_100": per_100, "value": 0.0})))  # the words are drawn, not the value
    filled = squares.get("#1f618d", [])
    assert len(filled) == count and len(filled) + len(squares.get("#d5dbdb", [])) == 100
    assert len(set(filled) | set(squares.get("#d5dbdb", []))) == 100  # no two squares in one place
    # Read like text: the first rows full from the left, the last filled row from its left.
    assert sorted(filled, key=lambda corner: (corner[1], corner[0])) == [
        ((index % 10) * 5, (index // 10) * 5) for index in range(count)
    ]


def test_an_icon_array_of_fewer_than_one_in_a_hundred_is_empty_and_other_figures_have_none() -> None:
    squares = drawn_squares(str(icon_array({"per_100": "fewer than 1 in 100", "value": 0.4})))
    assert list(squares) == ["#d5dbdb"] and len(squares["#d5dbdb"]) == 100
    assert str(icon_array({"per_100": None, "value": 30.0, "unit": "days"})) == ""
    assert str(icon_array({"value": 8.0})) == ""
