"""SVG charts: bars and lines drawn to scale, every mark titled with its value, valid SVG, escaped labels."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

import pytest

from dashboard.charts import HEIGHT, Series, axis_top, horizontal_bars, lines, nice_ceiling, stacked_bars

SVG = "{http://www.w3.org/2000/svg}"
TIMES = [datetime(2026, 3, 2, 9, 0, tzinfo=UTC) + timedelta(minutes=n) for n in range(4)]


def parse(markup: str) -> ET.Element:
    return ET.fromstring(str(markup))


def marks(svg: ET.Element, tag: str) -> list[ET.Element]:
    return [element for element in svg.iter(f"{SVG}{tag}") if element.get("class") in ("chart-bar", "point")]


@pytest.mark.parametrize(("value", "top"), [(0, 1), (7, 10), (12, 20), (23, 25), (260, 500), (0.4, 0.5)])
def test_the_axis_tops_out_at_a_round_number(value, top):
    assert nice_ceiling(value) == top


@pytest.mark.parametrize(
    ("peak", "whole", "top"),
    [(1, True, 4), (7, True, 8), (23, True, 40), (130, True, 200), (2.6, False, 4), (0.3, False, 0.4)],
)
def test_axis_ticks_are_round_and_whole_numbers_for_counts(peak, whole, top):
    assert axis_top(peak, whole=whole) == pytest.approx(top)


def test_stacked_bars_are_drawn_to_scale_and_titled_with_their_values():
    svg = parse(
        stacked_bars(
            "t", "Tasks finished", "tasks", TIMES,
            [Series("Succeeded", [10, 0, 5, 20], "#0a0"), Series("Failed", [0, 0, 5, 0], "#a00")],
            empty_text="none",
        )
    )  # fmt: skip
    bars = marks(svg, "rect")
    assert len(bars) == 4  # zero values draw nothing
    heights = {bar.find(f"{SVG}title").text: float(bar.get("height")) for bar in bars}
    assert heights["09:00: 10 succeeded"] == pytest.approx(heights["09:03: 20 succeeded"] / 2, abs=0.1)
    assert heights["09:02: 5 failed"] == pytest.approx(heights["09:02: 5 succeeded"], abs=0.1)
    assert svg.find(f"{SVG}title").text == "Tasks finished" and svg.get("role") == "img"
    assert {t.text for t in svg.iter(f"{SVG}text")} >= {"Succeeded", "Failed", "20", "09:00"}


def test_a_line_joins_the_buckets_that_have_a_value_with_a_dot_on_each():
    svg = parse(
        lines(
            "l",
            "Task time",
            "seconds",
            TIMES,
            [Series("Average", [1.0, None, 2.0, 3.0], "#00a")],
            empty_text="-",
        )
    )
    polylines = list(svg.iter(f"{SVG}polyline"))
    assert len(polylines) == 1 and len(polylines[0].get("points").split()) == 3  # 09:01 has no value
    points = marks(svg, "circle")
    assert [p.find(f"{SVG}title").text for p in points][0] == "09:00: average 1 seconds"
    assert all(0 <= float(p.get("cy")) <= HEIGHT for p in points)


def test_an_empty_chart_says_so_instead_of_drawing_nothing():
    svg = parse(
        stacked_bars(
            "e",
            "Failures",
            "tasks",
            TIMES,
            [Series("Timed out", [0, 0, 0, 0], "#000")],
            empty_text="Nothing failed.",
        )
    )
    assert "empty" in svg.get("class") and [t.text for t in svg.iter(f"{SVG}text")] == ["Nothing failed."]


def test_queue_bars_split_each_queue_into_its_parts_and_escape_names():
    svg = parse(
        horizontal_bars(
            "q", "Jobs per queue",
            [("default", [("running", 2, "#00f"), ("waiting", 6, "#fa0")]), ("<control>", [("running", 0, "#00f"), ("waiting", 0, "#fa0")])],
        )
    )  # fmt: skip
    bars = marks(svg, "rect")
    assert [b.find(f"{SVG}title").text for b in bars] == ["default: 2 running", "default: 6 waiting"]
    assert float(bars[1].get("width")) == pytest.approx(3 * float(bars[0].get("width")), abs=0.1)
    assert "<control>" in [t.text for t in svg.iter(f"{SVG}text")]  # escaped in the markup, parsed back here
