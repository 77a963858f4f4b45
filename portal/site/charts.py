"""Charts as server-rendered SVG. Pure functions: a list of (day, value) in, SVG markup out.

No script and no third-party file: the browser draws the SVG as soon as the HTML arrives. The SVG has fixed
width and height attributes, so it reserves its exact box before it is drawn and nothing on the page moves;
CSS may scale it down on narrow screens, keeping the aspect ratio.
"""

import math
from collections.abc import Callable, Sequence
from datetime import date
from decimal import Decimal
from html import escape

Number = int | float | Decimal

WIDTH, HEIGHT = 400, 170  # about the size a dashboard card draws it at, so text stays ~12 px
PAD_LEFT, PAD_RIGHT, PAD_TOP, PAD_BOTTOM = 58, 8, 10, 26


def nice_ceiling(value: float, *, whole: bool = False) -> float:
    """The smallest round number >= value for the top of an axis: 1, 2, 2.5 or 5 times a power of ten.

    With ``whole`` (counts, like requests) the top and its half are whole numbers (2, 4, 10, 20, 40, 50, 100...),
    so no axis says "12.5 requests".
    """
    if value <= 0:
        return 2.0 if whole else 1.0
    power = 10 ** math.floor(math.log10(value))
    for step in (2, 4, 5, 10, 20) if whole else (1, 2, 2.5, 5, 10):
        top = step * power
        if value <= top * (1 + 1e-9) and (not whole or (top / 2).is_integer()):
            return top
    return 20 * power  # unreachable: the last step always covers value


def chart_svg(
    points: Sequence[tuple[date, Number]],
    *,
    label: str,
    kind: str = "bar",
    value_format: Callable[[Number], str] = str,
    unit: str = "",
) -> str:
    """An accessible SVG bar or line chart of daily values, with a y axis (0, middle, top) and date labels.

    ``label`` names the chart for screen readers; each point also carries a tooltip (an SVG ``<title>``).
    """
    if kind not in ("bar", "line"):
        raise ValueError(f"unknown chart kind {kind!r}")
    values = [float(v) for _, v in points]
    whole = all(isinstance(v, int) for _, v in points)
    top = nice_ceiling(max(values, default=0.0), whole=whole)
    plot_w, plot_h = WIDTH - PAD_LEFT - PAD_RIGHT, HEIGHT - PAD_TOP - PAD_BOTTOM
    total = sum((Decimal(str(v)) for _, v in points), Decimal(0))
    summary = f"{label}: {value_format(total)}{unit} over {len(points)} days"
    parts = [
        f'<svg class="chart" xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{HEIGHT}" '
        f'viewBox="0 0 {WIDTH} {HEIGHT}" role="img" aria-label="{escape(summary)}">',
        f"<title>{escape(summary)}</title>",
    ]
    parts += _axes(top, plot_w, plot_h, value_format)
    if points:
        slot = plot_w / len(points)

        def y_of(v: float) -> float:
            return PAD_TOP + plot_h - v / top * plot_h

        if kind == "bar":
            parts += _bars(points, values, slot, y_of, value_format, unit)
        else:
            parts += _line(points, values, slot, y_of, value_format, unit)
        parts += _date_labels([d for d, _ in points], slot)
    else:
        parts.append(
            f'<text class="chart-empty" x="{PAD_LEFT + plot_w / 2:.1f}" y="{PAD_TOP + plot_h / 2:.1f}" '
            'text-anchor="middle">No data</text>'
        )
    parts.append("</svg>")
    return "".join(parts)


def _axes(top: float, plot_w: float, plot_h: float, value_format) -> list[str]:
    out = []
    for fraction in (0.0, 0.5, 1.0):
        y = PAD_TOP + plot_h - fraction * plot_h
        tick = _tick_value(top * fraction)
        out.append(
            f'<line class="chart-grid" x1="{PAD_LEFT}" x2="{PAD_LEFT + plot_w:.1f}" y1="{y:.1f}" y2="{y:.1f}"/>'
        )
        out.append(
            f'<text class="chart-axis" x="{PAD_LEFT - 8}" y="{y + 4:.1f}" text-anchor="end">'
            f"{escape(value_format(tick))}</text>"
        )
    return out


def _tick_value(value: float) -> Number:
    # Round ticks show as integers when they are whole, so a requests axis never says "2.5" unless it must.
    return int(value) if float(value).is_integer() else Decimal(str(round(value, 6))).normalize()


def _tip(day: date, value: Number, value_format, unit: str) -> str:
    return f"<title>{day:%b %-d}: {escape(value_format(value))}{escape(unit)}</title>"


def _bars(points, values, slot, y_of, value_format, unit) -> list[str]:
    out, base = [], y_of(0)
    gap = min(slot * 0.2, 4)
    for i, ((day, raw), v) in enumerate(zip(points, values, strict=True)):
        x, y = PAD_LEFT + i * slot + gap / 2, y_of(v)
        height = base - y
        if v > 0 and height < 1:
            y, height = base - 1, 1  # a tiny value still shows as a sliver
        out.append(
            f'<rect class="chart-bar" x="{x:.1f}" y="{y:.1f}" width="{slot - gap:.1f}" height="{height:.1f}">'
            f"{_tip(day, raw, value_format, unit)}</rect>"
        )
    return out


def _line(points, values, slot, y_of, value_format, unit) -> list[str]:
    xy = [(PAD_LEFT + (i + 0.5) * slot, y_of(v)) for i, v in enumerate(values)]
    path = " ".join(f"{x:.1f},{y:.1f}" for x, y in xy)
    base = y_of(0)
    area = f"{xy[0][0]:.1f},{base:.1f} {path} {xy[-1][0]:.1f},{base:.1f}"
    out = [
        f'<polygon class="chart-area" points="{area}"/>',
        f'<polyline class="chart-line" points="{path}" fill="none"/>',
    ]
    for (day, raw), (x, y) in zip(points, xy, strict=True):
        out.append(
            f'<circle class="chart-dot" cx="{x:.1f}" cy="{y:.1f}" r="3">'
            f"{_tip(day, raw, value_format, unit)}</circle>"
        )
    return out


def _date_labels(days: list[date], slot: float) -> list[str]:
    """First, middle and last day under the plot: enough to read the range without crowding 390 px screens."""
    picks = sorted({0, len(days) // 2, len(days) - 1})
    anchors = {0: "start", len(days) - 1: "end"}
    out = []
    for i in picks:
        x = PAD_LEFT + (i + 0.5) * slot
        anchor = anchors.get(i, "middle")
        if anchor == "start":
            x = PAD_LEFT
        elif anchor == "end":
            x = WIDTH - PAD_RIGHT
        out.append(
            f'<text class="chart-axis" x="{x:.1f}" y="{HEIGHT - 8}" text-anchor="{anchor}">'
            f"{days[i]:%b %-d}</text>"
        )
    return out
