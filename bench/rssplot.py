"""RSS over time as a PNG, without adding a plotting library to the project.

With matplotlib importable (it is not a project dependency) the plot is drawn with it. Otherwise the plot is
written as a small hand-made SVG and converted to PNG with ImageMagick's ``convert`` when that is installed;
without either, the SVG is left next to where the PNG would go and its path is returned. ``to_png`` is that
last step alone, for the other hand-made charts (bench/peers/chart.py).
"""

import shutil
import subprocess
from pathlib import Path

COLOURS = ["#1f77b4", "#d62728", "#2ca02c", "#9467bd"]
W, H, LEFT, RIGHT, TOP, BOTTOM = 800, 400, 70, 20, 40, 50


def plot(series: dict[str, list[tuple[float, float]]], path: Path, title: str) -> Path:
    """``series`` maps a label to (seconds, MiB) points. Returns the file written (PNG, or SVG as fallback)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        return _matplotlib(series, path, title)
    except ImportError:
        pass
    return to_png(_svg(series, title), path)


def to_png(svg: str, path: Path, svg_path: Path | None = None) -> Path:
    """Write ``svg`` (next to ``path`` unless ``svg_path`` says where) and convert it to the PNG ``path`` with
    ImageMagick. Returns the PNG, or the SVG when there is no converter or it fails."""
    svg_file = svg_path or path.with_suffix(".svg")
    svg_file.parent.mkdir(parents=True, exist_ok=True)
    svg_file.write_text(svg, encoding="utf-8")
    convert = _convert()
    if convert and subprocess.run([convert, str(svg_file), str(path)], capture_output=True).returncode == 0:
        return path
    return svg_file


def _convert() -> str | None:
    """ImageMagick: ``magick`` (version 7), else the system's ``convert`` (version 6), else any on PATH."""
    return shutil.which("magick") or shutil.which("convert", path="/usr/bin:/bin") or shutil.which("convert")


def _matplotlib(series, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(8, 4), dpi=100)
    for label, points in series.items():
        ax.plot([p[0] / 60 for p in points], [p[1] for p in points], label=label)
    ax.set_xlabel("minutes")
    ax.set_ylabel("RSS (MiB)")
    ax.set_title(title)
    # From zero, with headroom: a flat line at the frame's top edge would be invisible.
    peak = max((p[1] for points in series.values() for p in points), default=1.0)
    ax.set_ylim(0, peak * 1.15)
    ax.legend()
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path)
    plt.close(fig)
    return path


def _nice_step(span: float) -> float:
    for step in (0.1, 0.2, 0.5, 1, 2, 5, 10, 20, 25, 50, 100, 200, 500, 1000):
        if span / step <= 8:
            return step
    return span / 5


def _svg(series: dict[str, list[tuple[float, float]]], title: str) -> str:
    points = [p for s in series.values() for p in s] or [(0.0, 0.0)]
    x_max = max(max(p[0] for p in points) / 60, 1e-6)
    y_step = _nice_step(max(p[1] for p in points) * 1.15)
    y_max = y_step * (int(max(p[1] for p in points) * 1.15 / y_step) + 1)
    pw, ph = W - LEFT - RIGHT, H - TOP - BOTTOM

    def xy(sec: float, mib: float) -> str:
        return f"{LEFT + pw * (sec / 60) / x_max:.1f},{TOP + ph * (1 - mib / y_max):.1f}"

    out = [
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{W}" height="{H}" font-family="sans-serif" font-size="12">',
        f'<rect width="{W}" height="{H}" fill="white"/>',
        f'<text x="{W / 2}" y="22" text-anchor="middle" font-size="14">{title}</text>',
    ]
    y = 0.0
    while y <= y_max + 1e-9:
        py = TOP + ph * (1 - y / y_max)
        out.append(f'<line x1="{LEFT}" x2="{W - RIGHT}" y1="{py:.1f}" y2="{py:.1f}" stroke="#ddd"/>')
        out.append(f'<text x="{LEFT - 6}" y="{py + 4:.1f}" text-anchor="end">{y:g}</text>')
        y += y_step
    x_step = _nice_step(x_max)
    x = 0.0
    while x <= x_max + 1e-9:
        px = LEFT + pw * x / x_max
        out.append(f'<line x1="{px:.1f}" x2="{px:.1f}" y1="{TOP}" y2="{TOP + ph}" stroke="#eee"/>')
        out.append(f'<text x="{px:.1f}" y="{TOP + ph + 18}" text-anchor="middle">{x:g}</text>')
        x += x_step
    out.append(f'<rect x="{LEFT}" y="{TOP}" width="{pw}" height="{ph}" fill="none" stroke="#333"/>')
    out.append(f'<text x="{LEFT + pw / 2}" y="{H - 10}" text-anchor="middle">minutes</text>')
    out.append(
        f'<text x="16" y="{TOP + ph / 2}" text-anchor="middle" transform="rotate(-90 16 {TOP + ph / 2})">RSS (MiB)</text>'
    )
    for n, (label, pts) in enumerate(series.items()):
        colour = COLOURS[n % len(COLOURS)]
        line = " ".join(xy(s, m) for s, m in pts)
        out.append(f'<polyline points="{line}" fill="none" stroke="{colour}" stroke-width="2"/>')
        ly = TOP + 16 + 16 * n
        out.append(
            f'<line x1="{W - RIGHT - 170}" x2="{W - RIGHT - 150}" y1="{ly - 4}" y2="{ly - 4}" '
            f'stroke="{colour}" stroke-width="2"/>'
        )
        out.append(f'<text x="{W - RIGHT - 145}" y="{ly}">{label}</text>')
    out.append("</svg>")
    return "\n".join(out)
