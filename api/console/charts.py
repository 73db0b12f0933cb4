"""The overview's charts, drawn here as inline SVG: no JavaScript, no charting library, and
nothing the Content-Security-Policy has to allow (colours come from console.css classes)."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from markupsafe import Markup, escape

WIDTH, HEIGHT = 640, 200
LEFT, BOTTOM, TOP, RIGHT = 48, 24, 12, 12


def _scale(top: float) -> float:
    """A round axis maximum at or above `top`."""
    if top <= 0:
        return 1.0
    for step in (1, 2, 2.5, 5):
        magnitude = 10 ** (len(str(int(top))) - 1)
        if step * magnitude >= top:
            return float(step * magnitude)
    return float(10 * 10 ** (len(str(int(top))) - 1))


def _frame(chart_id: str, title: str, top: float, unit: str, body: list[str]) -> Markup:
    plot_h = HEIGHT - BOTTOM - TOP
    grid = []
    for fraction in (0, 0.5, 1):
        y = TOP + plot_h * (1 - fraction)
        grid.append(
            f'<line class="grid" x1="{LEFT}" y1="{y:.1f}" x2="{WIDTH - RIGHT}" y2="{y:.1f}"/>'
        )
        label = f"{top * fraction:g}{unit}"
        grid.append(
            f'<text class="axis" x="{LEFT - 6}" y="{y + 4:.1f}" text-anchor="end">{label}</text>'
        )
    return Markup(
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {HEIGHT}"'
        f' role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(grid)
        + "".join(body)
        + "</svg>"
    )


def bar_chart(chart_id: str, title: str, points: Sequence[tuple[datetime, int]]) -> Markup:
    """Vertical bars, one per point (e.g. applied per minute), labelled every 15 points."""
    top = _scale(max((value for _, value in points), default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    slot = plot_w / max(len(points), 1)
    body = []
    for index, (moment, value) in enumerate(points):
        height = plot_h * value / top
        x = LEFT + index * slot
        body.append(
            f'<rect class="bar" x="{x + 1:.1f}" y="{TOP + plot_h - height:.1f}"'
            f' width="{max(slot - 2, 1):.1f}" height="{height:.1f}">'
            f"<title>{moment:%H:%M} UTC: {value}</title></rect>"
        )
        if index % 15 == 0:
            body.append(f'<text class="axis" x="{x:.1f}" y="{HEIGHT - 6}">{moment:%H:%M}</text>')
    return _frame(chart_id, title, top, "", body)


def line_chart(
    chart_id: str,
    title: str,
    times: Sequence[datetime],
    series: dict[str, Sequence[float | None]],
    unit: str,
) -> Markup:
    """One polyline per named series over shared times (e.g. latency percentiles); a None
    value is a gap."""
    present = [value for values in series.values() for value in values if value is not None]
    top = _scale(max(present, default=0))
    plot_w, plot_h = WIDTH - LEFT - RIGHT, HEIGHT - BOTTOM - TOP
    step = plot_w / max(len(times) - 1, 1)
    body = []
    for number, (name, values) in enumerate(series.items()):
        points = [(index, value) for index, value in enumerate(values) if value is not None]
        coords = " ".join(
            f"{LEFT + index * step:.1f},{TOP + plot_h * (1 - value / top):.1f}"
            for index, value in points
        )
        if len(points) > 1:
            body.append(f'<polyline class="line line-{number}" points="{coords}"/>')
        for index, value in points:
            body.append(
                f'<circle class="dot line-{number}" cx="{LEFT + index * step:.1f}"'
                f' cy="{TOP + plot_h * (1 - value / top):.1f}" r="3">'
                f"<title>{escape(name)} at {times[index]:%H:%M}: {value:.0f}{unit}</title></circle>"
            )
        body.append(
            f'<text class="legend line-{number}" x="{WIDTH - RIGHT - 60 * (len(series) - number)}"'
            f' y="{TOP + 10}">{escape(name)}</text>'
        )
    for index, moment in enumerate(times):
        last = index == len(times) - 1
        if index % 3 == 0 or last:
            anchor = "end" if last else "middle"
            body.append(
                f'<text class="axis" x="{LEFT + index * step:.1f}" y="{HEIGHT - 6}"'
                f' text-anchor="{anchor}">{moment:%H:%M}</text>'
            )
    return _frame(chart_id, title, top, unit, body)


def horizontal_bars(chart_id: str, title: str, items: Sequence[tuple[str, int]]) -> Markup:
    """One labelled bar per item (e.g. rejections by code), largest first."""
    items = sorted(items, key=lambda item: -item[1])[:10]
    row = 22
    height = TOP + row * max(len(items), 1) + 8
    top = max((value for _, value in items), default=0) or 1
    label_w = 200
    plot_w = WIDTH - label_w - RIGHT - 40
    body = []
    for index, (label, value) in enumerate(items):
        y = TOP + index * row
        length = plot_w * value / top
        body.append(
            f'<text class="axis" x="{label_w - 6}" y="{y + 14}"'
            f' text-anchor="end">{escape(label)}</text>'
            f'<rect class="bar bar-rejected" x="{label_w}" y="{y + 3}"'
            f' width="{max(length, 1):.1f}" height="{row - 6}"/>'
            f'<text class="axis" x="{label_w + length + 6:.1f}" y="{y + 14}">{value}</text>'
        )
    if not items:
        body.append(f'<text class="axis" x="{label_w}" y="{TOP + 14}">no rejections</text>')
    return Markup(
        f'<svg id="{escape(chart_id)}" class="chart" viewBox="0 0 {WIDTH} {height}"'
        f' role="img" aria-label="{escape(title)}"><title>{escape(title)}</title>'
        + "".join(body)
        + "</svg>"
    )
