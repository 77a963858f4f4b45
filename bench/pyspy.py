"""Optional profiling of the gateway under load with py-spy (``--profile``), to see where its time goes.

py-spy samples the running process from outside, so the gateway runs unmodified. Raw collapsed stacks give
the functions with the most *own* time (leaf frames); a flame graph of the same load is kept to look at.
"""

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

from bench.phases import Ctx, load
from bench.setup import ROOT, BenchError

_FRAME = re.compile(r"^(?P<func>.*) \((?P<file>.*?)(?::\d+)?\)$")


def find() -> str | None:
    """py-spy on PATH or next to this Python (a virtualenv's bin); None when not installed."""
    beside = Path(sys.executable).parent / "py-spy"
    return shutil.which("py-spy") or (str(beside) if beside.exists() else None)


def short_path(path: str) -> str:
    """File names relative to the project or to site-packages, so reports don't depend on where it runs."""
    path = path.replace(str(ROOT) + "/", "")
    return re.sub(r"^.*/(site|dist)-packages/", "", path)


def record(binary: str, ctx: Ctx, model: str, out: Path, fmt: str, seconds: int, *extra: str) -> None:
    """Sample the gateway for ``seconds`` while wrk keeps 32 connections busy on it."""
    cmd = [binary, "record", "--pid", str(ctx.gateway_pid), "--duration", str(seconds), "--rate", "100"]
    cmd += ["--format", fmt, "--output", str(out), *extra]
    spy = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    try:
        load(ctx, "gateway", model, 32, 2, seconds + 2)
        _, err = spy.communicate(timeout=60)
    finally:
        if spy.poll() is None:
            spy.kill()
            spy.wait()
    if spy.returncode != 0 or not out.exists():
        raise BenchError(f"py-spy record failed (exit {spy.returncode}): {err.strip()[-800:]}")


def threads(collapsed: str) -> dict[str, float]:
    """Share of active samples in the event loop thread and in worker threads (sync database calls)."""
    counts: Counter = Counter()
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if stack and count_text.isdigit():
            kind = "worker threads" if stack.startswith("Thread._bootstrap") else "event loop"
            counts[kind] += int(count_text)
    total = sum(counts.values()) or 1
    return {kind: round(100 * n / total, 1) for kind, n in counts.items()}


def top_functions(collapsed: str, limit: int = 15) -> list[dict]:
    """Functions by own time (samples where they are the leaf), with their inclusive share too."""
    own: Counter = Counter()
    total: Counter = Counter()
    samples = 0
    for line in collapsed.splitlines():
        stack, _, count_text = line.rpartition(" ")
        if not stack or not count_text.isdigit():
            continue
        count = int(count_text)
        samples += count
        frames = [_name(frame) for frame in stack.split(";")]
        own[frames[-1]] += count
        for name in set(frames):
            total[name] += count
    return [
        {
            "function": name,
            "own_pct": round(100 * n / samples, 2),
            "total_pct": round(100 * total[name] / samples, 2),
            "samples": n,
        }
        for name, n in own.most_common(limit)
    ]


def _name(frame: str) -> str:
    match = _FRAME.match(frame)
    if not match:
        return frame
    return f"{match['func']} ({short_path(match['file'])})"


def profile(binary: str, ctx: Ctx, model: str, out_dir: Path, seconds: int, tag: str = "") -> dict:
    """Three windows under the same load: stacks of active threads, stacks holding the GIL, a flame graph.

    Holding the GIL is what one Python process can't do in parallel, so the ``gil`` table is the one that
    says what limits throughput; the ``active`` table also shows threads waiting on the database.
    """
    raw, gil, svg = (out_dir / f"profile{tag}{suffix}" for suffix in (".txt", "-gil.txt", ".svg"))
    record(binary, ctx, model, raw, "raw", seconds)
    record(binary, ctx, model, gil, "raw", seconds, "--gil")
    record(binary, ctx, model, svg, "flamegraph", seconds)
    return {
        "model": model,
        "seconds": seconds,
        "files": [raw.name, gil.name, svg.name],
        "threads": threads(raw.read_text()),
        "top_gil": top_functions(gil.read_text()),
        "top_active": top_functions(raw.read_text()),
    }
