"""Charts drawn as inline SVG on the server: no JavaScript, no chart library, readable without CSS.

Each function takes plain numbers and returns safe markup; hovering a bar or a point shows its exact
value (an SVG <title>), so the pictures never hide the figures behind them.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import SafeString, mark_safe

WIDTH, HEIGHT = 720, 230
LEFT, RIGHT, TOP, BOTTOM = 52, 12, 30, 26
X_LABELS = 6
GRID_LINES = 4


@dataclass(frozen=True)
class Series:
    label: str
    values: Sequence[float | None]
    colour: str


def nice_ceiling(value: float) -> float:
    """The round number (1, 2, 2.5 or 5 × 10ⁿ) at or above `value`, for the top of an axis."""
    if value <= 0:
        return 1.0
    power = 10 ** math.floor(math.log10(value))
    return next(step * power for step in (1, 2, 2.5, 5, 10) if step * power >= value)


def axis_top(peak: float, *, whole: bool) -> float:
    """The top of an axis whose GRID_LINES ticks are round numbers; whole-number ticks for counts."""
    step = nice_ceiling(peak / GRID_LINES)
    if whole:
        step = max(1.0, nice_ceiling(math.ceil(step)))  # 2.5 becomes 5, 0.25 becomes 1
    return step * GRID_LINES


def number(value: float) -> str:
    if value == int(value) or abs(value) >= 100:
        return f"{value:,.0f}"
    return f"{value:,.2f}".rstrip("0").rstrip(".")


def time_format(times: Sequence[datetime]) -> str:
    if len(times) < 2:
        return "%H:%M"
    step = (times[1] - times[0]).total_seconds()
    return "%H:%M:%S" if step < 60 else "%H:%M" if step < 86400 else "%d %b"


def frame(
    chart_id: str, title: str, unit: str, top: float, times: Sequence[datetime], series: Sequence[Series]
) -> list[str]:
    """The SVG opening, grid, y labels, x labels and legend shared by the time charts."""
    plot_h = HEIGHT - TOP - BOTTOM
    parts = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {HEIGHT}" role="img" '
        f'aria-labelledby="{chart_id}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    for line in range(GRID_LINES + 1):
        value = top * line / GRID_LINES
        y = TOP + plot_h - plot_h * line / GRID_LINES
        parts.append(f'<line class="grid" x1="{LEFT}" x2="{WIDTH - RIGHT}" y1="{y:.1f}" y2="{y:.1f}"/>')
        parts.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{number(value)}</text>'
        )
    parts.append(f'<text class="unit" x="4" y="{TOP - 12}">{escape(unit)}</text>')
    fmt = time_format(times)
    step = max(1, math.ceil(len(times) / X_LABELS))
    for index in range(0, len(times), step):
        x = x_centre(index, len(times))
        label = timezone.localtime(times[index]).strftime(fmt)
        parts.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="middle">{label}</text>')
    x = WIDTH - RIGHT
    for item in reversed(series):
        width = 16 + 7 * len(item.label)
        x -= width
        parts.append(
            f'<g class="legend"><rect x="{x}" y="6" width="10" height="10" rx="2" fill="{item.colour}"/>'
            f'<text x="{x + 14}" y="15">{escape(item.label)}</text></g>'
        )
    return parts


def x_centre(index: int, count: int) -> float:
    slot = (WIDTH - LEFT - RIGHT) / max(count, 1)
    return LEFT + slot * (index + 0.5)


def empty(chart_id: str, title: str, message: str) -> SafeString:
    return mark_safe(
        f'<svg class="chart empty" id="{chart_id}" viewBox="0 0 {WIDTH} 80" role="img" aria-labelledby="{chart_id}-title" '
        f'xmlns="http://www.w3.org/2000/svg"><title id="{chart_id}-title">{escape(title)}</title>'
        f'<text class="axis" x="{WIDTH / 2}" y="44" text-anchor="middle">{escape(message)}</text></svg>'
    )


def stacked_bars(
    chart_id: str,
    title: str,
    unit: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    empty_text: str,
) -> SafeString:
    """One bar per time bucket, the series stacked bottom to top."""
    totals = [sum(s.values[i] or 0 for s in series) for i in range(len(times))]
    if not times or not any(totals):
        return empty(chart_id, title, empty_text)
    top = axis_top(max(totals), whole=True)
    plot_h = HEIGHT - TOP - BOTTOM
    slot = (WIDTH - LEFT - RIGHT) / len(times)
    bar_w = max(1.0, slot * 0.78)
    parts = frame(chart_id, title, unit, top, times, series)
    fmt = time_format(times)
    for index, when in enumerate(times):
        base = TOP + plot_h
        for item in series:
            value = item.values[index] or 0
            if not value:
                continue
            height = plot_h * value / top
            base -= height
            label = f"{timezone.localtime(when).strftime(fmt)}: {number(value)} {item.label.lower()}"
            parts.append(
                f'<rect class="chart-bar" x="{LEFT + slot * index + (slot - bar_w) / 2:.1f}" y="{base:.1f}" '
                f'width="{bar_w:.1f}" height="{height:.1f}" fill="{item.colour}"><title>{escape(label)}</title></rect>'
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def lines(
    chart_id: str,
    title: str,
    unit: str,
    times: Sequence[datetime],
    series: Sequence[Series],
    *,
    empty_text: str,
) -> SafeString:
    """One line per series across the buckets, a dot on each bucket that has a value; the line joins
    across empty buckets, since sparse work would otherwise show as dots alone."""
    values = [v for s in series for v in s.values if v is not None]
    if not times or not values:
        return empty(chart_id, title, empty_text)
    top = axis_top(max(values), whole=False)
    plot_h = HEIGHT - TOP - BOTTOM
    parts = frame(chart_id, title, unit, top, times, series)
    fmt = time_format(times)
    for item in series:
        points: list[str] = []
        for index, value in enumerate(item.values):
            if value is None:
                continue
            x, y = x_centre(index, len(times)), TOP + plot_h - plot_h * value / top
            points.append(f"{x:.1f},{y:.1f}")
            label = f"{timezone.localtime(times[index]).strftime(fmt)}: {item.label.lower()} {number(value)} {unit}"
            parts.append(
                f'<circle class="point" cx="{x:.1f}" cy="{y:.1f}" r="2.5" fill="{item.colour}"><title>{escape(label)}</title></circle>'
            )
        if len(points) > 1:
            parts.insert(
                len(parts) - len(points),
                f'<polyline class="line" points="{" ".join(points)}" fill="none" stroke="{item.colour}"/>',
            )
    parts.append("</svg>")
    return mark_safe("".join(parts))


def horizontal_bars(
    chart_id: str, title: str, rows: Sequence[tuple[str, Sequence[tuple[str, int, str]]]]
) -> SafeString:
    """One bar per row (a queue), split into labelled parts (queued, running, …) with their counts."""
    row_h, label_w = 30, 120
    height = TOP + row_h * len(rows) + 8
    biggest = max((sum(n for _, n, _ in parts) for _, parts in rows), default=0)
    top = nice_ceiling(biggest) if biggest else 1.0
    plot_w = WIDTH - label_w - RIGHT - 60
    legend = {label: colour for _, parts in rows for label, _, colour in parts}
    svg = [
        f'<svg class="chart" id="{chart_id}" viewBox="0 0 {WIDTH} {height}" role="img" '
        f'aria-labelledby="{chart_id}-title" xmlns="http://www.w3.org/2000/svg">',
        f'<title id="{chart_id}-title">{escape(title)}</title>',
    ]
    x = WIDTH - RIGHT
    for label, colour in reversed(legend.items()):
        x -= 16 + 7 * len(label)
        svg.append(
            f'<g class="legend"><rect x="{x}" y="6" width="10" height="10" rx="2" fill="{colour}"/>'
            f'<text x="{x + 14}" y="15">{escape(label)}</text></g>'
        )
    for index, (name, parts) in enumerate(rows):
        y = TOP + row_h * index
        svg.append(f'<text class="row-label" x="0" y="{y + 18}">{escape(name)}</text>')
        svg.append(f'<rect class="track" x="{label_w}" y="{y + 4}" width="{plot_w}" height="20" rx="4"/>')
        left = float(label_w)
        for label, count, colour in parts:
            if not count:
                continue
            width = max(2.0, plot_w * count / top)
            svg.append(
                f'<rect class="chart-bar" x="{left:.1f}" y="{y + 4}" width="{width:.1f}" height="20" fill="{colour}">'
                f"<title>{escape(name)}: {number(count)} {escape(label)}</title></rect>"
            )
            left += width
        total = sum(n for _, n, _ in parts)
        svg.append(f'<text class="row-total" x="{left + 6:.1f}" y="{y + 18}">{number(total)}</text>')
    svg.append("</svg>")
    return mark_safe("".join(svg))
