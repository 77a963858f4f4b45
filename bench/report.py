"""Turning the measurements into a verdict: targets marked PASS or MISS, a table, and the JSON record.

The targets are the ones the issues set for the hot path. A latency measured while the gateway answered with
errors is not trusted (an error is faster than a relay), so such a target is a MISS whatever the number.
"""

import json
import os
import platform
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path

from bench.setup import ROOT


@dataclass(frozen=True)
class Target:
    phase: str  # a phase that was not run at all (--skip-paid) makes the target SKIP, not MISS
    key: str
    label: str
    op: str  # "<=", ">=" or "=="
    limit: float
    unit: str
    value: Callable[[dict], float | None]
    trusted: Callable[[dict], bool] = lambda phases: True
    against: str | None = None  # the other phase a relative target is computed from (its neighbours count)


def _get(phases: dict, *path: str) -> float | None:
    node = phases
    for part in path:
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node if isinstance(node, int | float) else None


def _clean(phase: str) -> Callable[[dict], bool]:
    """True when the gateway run of ``phase`` had no error responses and no socket errors."""

    def check(phases: dict) -> bool:
        gateway = phases.get(phase, {}).get("gateway", {})
        return gateway.get("non_2xx") == 0 and gateway.get("socket_errors") == 0

    return check


def _share(phases: dict, part: str, whole: str) -> float | None:
    """The added p50 of phase ``part`` as a percentage of phase ``whole``'s (None when that is not positive)."""
    value, base = _get(phases, part, "added_p50_ms"), _get(phases, whole, "added_p50_ms")
    if value is None or base is None or base <= 0:
        return None
    return round(100 * value / base, 1)


def _beyond(phases: dict, part: tuple[str, ...], whole: tuple[str, ...]) -> float | None:
    """By how many ms the figure at path ``part`` exceeds the one at path ``whole`` (None when one is missing)."""
    value, base = _get(phases, *part), _get(phases, *whole)
    if value is None or base is None:
        return None
    return round(value - base, 4)


def _streamed_cleanly(*names: str) -> Callable[[dict], bool]:
    """True when every streamed request of the phases ``names`` went through the gateway without an error."""
    return lambda phases: all(_get(phases, name, "gateway", "errors") == 0 for name in names)


TARGETS = (
    Target("free_1c", "free_added_p50_1c", "free, 1 conn: added p50", "<=", 1.0, "ms",
           lambda p: _get(p, "free_1c", "added_p50_ms"), _clean("free_1c")),
    Target("free_1c", "free_added_p99_1c", "free, 1 conn: added p99", "<=", 3.0, "ms",
           lambda p: _get(p, "free_1c", "added_p99_ms"), _clean("free_1c")),
    Target("free_32c", "free_rps_32c", "free, 32 conn: gateway req/s", ">=", 1500, "req/s",
           lambda p: _get(p, "free_32c", "gateway", "ok_rps")),
    Target("free_32c", "free_non2xx_32c", "free, 32 conn: non-2xx", "==", 0, "",
           lambda p: _get(p, "free_32c", "gateway", "non_2xx")),
    # Bridged Responses against chat, from the same run; as for embeddings, adding less than chat is no miss.
    Target("responses_1c", "responses_vs_chat_added_p50_1c", "Responses, 1 conn: added p50 vs chat's", "<=",
           0.3, "ms over chat's",
           lambda p: _beyond(p, ("responses_1c", "added_p50_ms"), ("free_1c", "added_p50_ms")),
           lambda p: _clean("responses_1c")(p) and _clean("free_1c")(p), against="free_1c"),
    # The same with ``store: true``, the API's default: what keeping the response adds on top.
    Target("responses_stored_1c", "responses_stored_vs_chat_added_p50_1c",
           "Responses stored, 1 conn: added p50 vs chat's", "<=", 0.3, "ms over chat's",
           lambda p: _beyond(p, ("responses_stored_1c", "added_p50_ms"), ("free_1c", "added_p50_ms")),
           lambda p: _clean("responses_stored_1c")(p) and _clean("free_1c")(p), against="free_1c"),
    # Messages against chat, from the same run: translated on a chat route, and passed through on an
    # Anthropic-style route (whose direct side is the upstream's own /v1/messages).
    Target("messages_1c", "messages_vs_chat_added_p50_1c", "Messages, translated, 1 conn: added p50 vs chat's",
           "<=", 0.5, "ms over chat's",
           lambda p: _beyond(p, ("messages_1c", "added_p50_ms"), ("free_1c", "added_p50_ms")),
           lambda p: _clean("messages_1c")(p) and _clean("free_1c")(p), against="free_1c"),
    Target("messages_native_1c", "messages_native_vs_chat_added_p50_1c",
           "Messages, passed through, 1 conn: added p50 vs chat's", "<=", 0.5, "ms over chat's",
           lambda p: _beyond(p, ("messages_native_1c", "added_p50_ms"), ("free_1c", "added_p50_ms")),
           lambda p: _clean("messages_native_1c")(p) and _clean("free_1c")(p), against="free_1c"),
    # "Within 10 % of chat's" as an upper bound: an endpoint that adds less than chat does is no regression.
    Target("embed_1c", "embed_vs_chat_added_p50_1c", "embeddings, 1 conn: added p50 vs chat", "<=", 110.0,
           "% of chat's", lambda p: _share(p, "embed_1c", "free_1c"),
           lambda p: _clean("embed_1c")(p) and _clean("free_1c")(p), against="free_1c"),
    Target("stream_ttfc", "ttfc_added_p50", "stream: added TTFC p50", "<=", 1.0, "ms",
           lambda p: _get(p, "stream_ttfc", "added_p50_ms"), _streamed_cleanly("stream_ttfc")),
    # Both through the gateway: the bridged stream's first text delta against chat's first content chunk.
    Target("responses_ttfe", "responses_ttfe_vs_chat_p50",
           "Responses stream: first text event p50 vs chat's first chunk", "<=", 0.5, "ms over chat's",
           lambda p: _beyond(p, ("responses_ttfe", "gateway", "p50_ms"),
                             ("stream_ttfc", "gateway", "content", "p50_ms")),
           _streamed_cleanly("responses_ttfe", "stream_ttfc"), against="stream_ttfc"),
    Target("rss", "rss_growth_pct", "gateway RSS growth", "<=", 10.0, "%",
           lambda p: _get(p, "rss", "growth_pct")),
    Target("paid_1c", "paid_added_p50_1c", "paid, 1 conn: added p50", "<=", 1.5, "ms",
           lambda p: _get(p, "paid_1c", "added_p50_ms"), _clean("paid_1c")),
    Target("paid_32c", "paid_rps_32c", "paid, 32 conn: gateway req/s", ">=", 1000, "req/s",
           lambda p: _get(p, "paid_32c", "gateway", "ok_rps")),
    Target("paid_32c", "paid_non2xx_32c", "paid, 32 conn: non-2xx", "==", 0, "",
           lambda p: _get(p, "paid_32c", "gateway", "non_2xx")),
)  # fmt: skip


NOISY_PCT = 25.0  # another process using this much of a core during a measured run skews a 2-core machine
BACKING_SERVICES = ("postgres", "redis-server")  # part of the system under test, not neighbours


def _noise(phases: dict, target: Target) -> str:
    """Why a number may not be trusted: a busy neighbour, or a gateway "faster" than the upstream alone."""
    if target.unit not in ("ms", "req/s") and target.against is None:
        return ""  # an error count doesn't depend on how busy the machine was
    busiest = 0.0
    for name in (target.phase, target.against):
        phase = phases.get(name or "", {})
        for side in ("direct", "gateway"):
            for proc in (phase.get(side) or {}).get("other_processes", []):
                if not proc["cmd"].startswith(BACKING_SERVICES):
                    busiest = max(busiest, proc["cpu_pct"])
    if target.against:  # the figure compares two phases: a gateway "faster" than the upstream in either
        negative = any(
            (_get(phases, name, "added_p50_ms") or 0) < 0 for name in (target.phase, target.against)
        )
    else:
        negative = target.unit == "ms" and (target.value(phases) or 0) < 0
    if negative:
        return "negative: the direct run was disturbed"
    return f"noisy: a neighbour used {busiest:.0f}% CPU" if busiest >= NOISY_PCT else ""


def verdicts(phases: dict) -> list[dict]:
    out = []
    for target in TARGETS:
        value = target.value(phases)
        if target.phase not in phases:
            status, note = "SKIP", "not run"
        elif value is None:
            status, note = "MISS", "not measured"
        elif not target.trusted(phases):
            status, note = "MISS", "gateway answered with errors"
        else:
            met = {"<=": value <= target.limit, ">=": value >= target.limit, "==": value == target.limit}
            status, note = (
                ("PASS" if met[target.op] else "MISS"),
                _noise(phases, target),
            )
        out.append({
            "key": target.key, "label": target.label, "value": value, "op": target.op,
            "limit": target.limit, "unit": target.unit, "status": status, "note": note,
        })  # fmt: skip
    return out


def machine(wrk_version: str) -> dict:
    """Facts that decide whether two result files can be compared at all."""
    model = ""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    versions = {}
    for package in ("django", "uvicorn", "uvloop", "httptools", "aiohttp", "redis", "psycopg"):
        try:
            versions[package] = metadata.version(package)
        except metadata.PackageNotFoundError:
            versions[package] = None
    commit = subprocess.run(["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True)
    return {
        "cpu_count": os.cpu_count(),
        "cpus_usable": len(os.sched_getaffinity(0)),
        "cpu_model": model,
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "load_average": os.getloadavg(),
        "wrk": wrk_version,
        "packages": versions,
        "commit": commit.stdout.strip() or None,
    }


def write_json(results: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(results, indent=2, default=str) + "\n", encoding="utf-8")
