"""The peers run as a bar chart: requests/s at 32 connections above, p50 at 1 connection below, one bar per
target, its value written beside it. A hand-made SVG, turned into a PNG by bench/rssplot.py's converter, so the
project needs no plotting library."""

from html import escape
from pathlib import Path

from bench.peers.targets import Target
from bench.rssplot import to_png

W, LEFT, RIGHT, BAR, GAP = 1000, 330, 110, 22, 9
COLOURS = {
    "direct": "#9e9e9e",
    "bare_relay": "#bdbdbd",
    "gateway_free": "#1f77b4",
    "gateway_paid": "#6baed6",
    "litellm": "#d62728",
    "portkey": "#ff7f0e",
}


def _panel(y: float, title: str, bars: list[tuple[str, str, float | None]], shown) -> tuple[list[str], float]:
    """One panel's SVG elements from its top ``y``; the elements and the panel's bottom."""
    out = [f'<text x="{LEFT}" y="{y + 16}" font-size="15" font-weight="bold">{escape(title)}</text>']
    top = y + 30
    peak = max((value for _, _, value in bars if value), default=1.0)
    width = W - LEFT - RIGHT
    out.append(
        f'<line x1="{LEFT}" x2="{LEFT}" y1="{top - 4}" y2="{top + len(bars) * (BAR + GAP)}" stroke="#444"/>'
    )
    for n, (name, label, value) in enumerate(bars):
        by = top + n * (BAR + GAP)
        out.append(
            f'<text x="{LEFT - 10}" y="{by + BAR / 2 + 5}" text-anchor="end" font-size="13">{escape(label)}</text>'
        )
        if value is None:
            out.append(
                f'<text x="{LEFT + 8}" y="{by + BAR / 2 + 5}" font-size="13" fill="#777">not measured</text>'
            )
            continue
        length = max(1.0, width * value / peak)
        colour = COLOURS.get(name, "#555")
        out.append(f'<rect x="{LEFT}" y="{by}" width="{length:.1f}" height="{BAR}" fill="{colour}"/>')
        out.append(
            f'<text x="{LEFT + length + 6:.1f}" y="{by + BAR / 2 + 5}" font-size="13">{shown(value)}</text>'
        )
    return out, top + len(bars) * (BAR + GAP)


def svg(targets: list[Target], summary: dict[str, dict], title: str, footnote: str) -> str:
    labels = {
        t.name: t.label if t.processes == "1 process" else f"{t.label} ({t.processes})" for t in targets
    }
    rates = [(t.name, labels[t.name], summary.get(t.name, {}).get("ok_rps")) for t in targets]
    p50s = [(t.name, labels[t.name], summary.get(t.name, {}).get("p50_1c_ms")) for t in targets]
    body = [
        f'<text x="{W / 2}" y="28" text-anchor="middle" font-size="17" font-weight="bold">{escape(title)}</text>'
    ]
    first, bottom = _panel(
        50, "requests/s at 32 connections (higher is better)", rates, lambda v: f"{v:,.0f}"
    )
    second, bottom = _panel(
        bottom + 24, "p50 latency at 1 connection (lower is better)", p50s, lambda v: f"{v:.2f} ms"
    )
    body += first + second
    height = bottom + 44
    body.append(f'<text x="{W / 2}" y="{height - 16}" text-anchor="middle" font-size="12" fill="#555">'
                f"{escape(footnote)}</text>")  # fmt: skip
    head = (
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{height:.0f}" font-family="DejaVu Sans" stroke="none">'
        f'<rect width="{W}" height="{height:.0f}" fill="white"/>'
    )
    return "\n".join([head, *body, "</svg>"])


def draw(
    targets: list[Target], summary: dict[str, dict], png: Path, svg_path: Path, title: str, footnote: str
) -> Path:
    """The chart as ``png``; the SVG (kept at ``svg_path``) when no converter could make the PNG."""
    return to_png(svg(targets, summary, title, footnote), png, svg_path)
