"""The measured phases. Each one measures "direct" and then "through the gateway", back to back.

Every measured wrk run is preceded by a short unmeasured warm-up with the same settings, so connection pools,
caches and the CPU frequency are in their steady state before counting starts.
"""

import json
import math
import os
import time
import urllib.error
import urllib.request
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any, NamedTuple

from bench import ttfc, wrk
from bench.procs import busiest, cpu_seconds, cpu_snapshot, machine_jiffies, rss_bytes
from bench.setup import FREE_MODEL, UPSTREAM_MODEL, chat_body, embeddings_body, messages_body, responses_body

PATH = "/v1/chat/completions"
DIRECT_KEY = "bench-direct"  # the upstream ignores it; sent so both sides parse the same headers
ANTHROPIC_HEADERS = {"anthropic-version": "2023-06-01"}


class Endpoint(NamedTuple):
    """An endpoint the phases can load: its path and the body every request sends (the model filled in)."""

    path: str
    body: Callable[..., dict]
    direct: str | None = None  # the endpoint the direct side loads instead: the one a bridged route calls
    headers: dict[str, str] = {}  # sent with every request, on both sides


ENDPOINTS = {
    "chat": Endpoint(PATH, chat_body),
    "embeddings": Endpoint("/v1/embeddings", embeddings_body),
    # Bridged on a chat route: the gateway calls the upstream's chat completions, so that is the direct side.
    "responses": Endpoint("/v1/responses", responses_body, direct="chat"),
    "responses_stored": Endpoint("/v1/responses", partial(responses_body, store=True), direct="chat"),
    # Anthropic's Messages API: translated on a chat route (direct: its chat completions), and passed through
    # on an Anthropic-style route (direct: the upstream's own /v1/messages).
    "messages": Endpoint("/v1/messages", messages_body, direct="chat", headers=ANTHROPIC_HEADERS),
    "messages_native": Endpoint("/v1/messages", messages_body, headers=ANTHROPIC_HEADERS),
}
# What a stream phase times, on the direct side and through the gateway: the first mark gives a side its
# percentiles, any other is kept beside them under its name. A bridged Responses stream's first words are its
# first text delta; its direct side is the upstream's chat stream, whose first words are a content chunk.
STREAM_MARKS = {
    "chat": ({"first": ttfc.FIRST_DATA, "content": ttfc.FIRST_CONTENT},) * 2,
    "responses": ({"content": ttfc.FIRST_CONTENT}, {"text_delta": ttfc.FIRST_TEXT_DELTA}),
}


def side(target: str, endpoint: str) -> str:
    """The endpoint ``target`` ("direct" or "gateway") is loaded on when the gateway's is ``endpoint``."""
    return (ENDPOINTS[endpoint].direct or endpoint) if target == "direct" else endpoint


@dataclass
class Ctx:
    """Where to send load and with what."""

    wrk_bin: str
    scripts: Path
    direct: str  # base URL of the upstream
    gateway: str  # base URL of the gateway
    key: str
    seconds: int
    warmup: int
    load_cpus: str | None
    gateway_pid: int
    upstream_pid: int
    sent: Counter = field(default_factory=Counter)  # requests sent to the gateway, per model
    # A supervisor's workers (uvicorn --workers N, granian always), counted with it; they hold the memory.
    gateway_workers: tuple[int, ...] = ()

    def gateway_rss(self) -> int:
        """The resident memory of the processes that serve requests: the workers of a supervisor."""
        return sum(rss_bytes(pid) for pid in self.gateway_workers or (self.gateway_pid,))

    def url(self, target: str, endpoint: str = "chat") -> str:
        return (self.direct if target == "direct" else self.gateway) + ENDPOINTS[side(target, endpoint)].path

    def bearer(self, target: str) -> str:
        return DIRECT_KEY if target == "direct" else self.key

    def script(self, target: str, model: str, endpoint: str = "chat") -> Path:
        endpoint = side(target, endpoint)
        path = self.scripts / f"{target}-{endpoint}-{model}.lua"
        if not path.exists():
            spec = ENDPOINTS[endpoint]
            wrk.write_script(self.scripts, path.stem, spec.body(model), self.bearer(target), spec.headers)
        return path


def load(
    ctx: Ctx, target: str, model: str, connections: int, threads: int, seconds: int, endpoint: str = "chat"
) -> wrk.WrkResult:
    result = wrk.run(
        ctx.wrk_bin, ctx.url(target, endpoint), ctx.script(target, model, endpoint),
        connections=connections, threads=threads, seconds=seconds, cpus=ctx.load_cpus,
    )  # fmt: skip
    if target == "gateway":
        ctx.sent[model] += result.requests
    return result


def measure(
    ctx: Ctx, target: str, model: str, connections: int, threads: int, endpoint: str = "chat"
) -> dict:
    """Warm up, then one measured run; also how busy each server was during it (% of one core), each of the
    gateway's workers when it has several, and the whole machine (in cores)."""
    warm = load(ctx, target, model, connections, threads, ctx.warmup, endpoint) if ctx.warmup else None
    groups = {"gateway": (ctx.gateway_pid, *ctx.gateway_workers), "upstream": (ctx.upstream_pid,)}
    machine, jiffies = cpu_snapshot(), machine_jiffies()
    before = {pid: cpu_seconds(pid) for pids in groups.values() for pid in pids}
    result = load(ctx, target, model, connections, threads, ctx.seconds, endpoint)
    busy_now, total_now = machine_jiffies()
    used = {pid: cpu_seconds(pid) - seconds for pid, seconds in before.items()}

    def pct(*pids: int) -> float:
        return round(100 * sum(used[pid] for pid in pids) / result.duration_s, 1)

    others = busiest(machine, cpu_snapshot(), result.duration_s, {*before, os.getpid()})
    cores = (os.cpu_count() or 1) * (busy_now - jiffies[0]) / max(total_now - jiffies[1], 1)
    out = {
        "model": model, **result.summary(), "cpu_pct": {name: pct(*pids) for name, pids in groups.items()},
        "machine_busy_cores": round(cores, 2), "other_processes": others, "raw": result.raw,
    }  # fmt: skip
    if ctx.gateway_workers:
        out["worker_cpu_pct"] = [pct(pid) for pid in ctx.gateway_workers]
    if warm is not None:
        out["warmup"] = {"requests": warm.requests, "rps": warm.rps, "non_2xx": warm.non_2xx}
    return out


def compare(ctx: Ctx, model: str, connections: int, threads: int, endpoint: str = "chat") -> dict:
    """The same load, direct then through the gateway, and what the gateway added."""
    direct = measure(ctx, "direct", UPSTREAM_MODEL, connections, threads, endpoint)
    gateway = measure(ctx, "gateway", model, connections, threads, endpoint)
    return {
        "endpoint": ENDPOINTS[endpoint].path,
        "direct_endpoint": ENDPOINTS[side("direct", endpoint)].path,
        "connections": connections,
        "threads": threads,
        "direct": direct,
        "gateway": gateway,
        "added_p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 4),
        "added_p99_ms": round(gateway["p99_ms"] - direct["p99_ms"], 4),
        "rps_ratio": round(gateway["ok_rps"] / direct["ok_rps"], 4) if direct["ok_rps"] else None,
    }


def _added(direct: dict, gateway: dict) -> dict:
    if "p50_ms" not in direct or "p50_ms" not in gateway:
        return {}
    return {
        "added_p50_ms": round(gateway["p50_ms"] - direct["p50_ms"], 4),
        "added_p99_ms": round(gateway["p99_ms"] - direct["p99_ms"], 4),
    }


def stream_ttfc(ctx: Ctx, count: int, warmup: int, endpoint: str = "chat") -> dict:
    """Time to the first event of a stream, direct and through the gateway (the marks: ``STREAM_MARKS``).

    A mark timed on both sides beside the first one (chat's first content chunk) gets its added time too.
    """
    out: dict = {"endpoint": ENDPOINTS[endpoint].path, "requests": count, "warmup": warmup}
    sides = zip(("direct", "gateway"), (UPSTREAM_MODEL, FREE_MODEL), STREAM_MARKS[endpoint], strict=True)
    for target, model, marks in sides:
        body = ENDPOINTS[side(target, endpoint)].body(model, stream=True)
        url, key = ctx.url(target, endpoint), ctx.bearer(target)
        out[target] = ttfc.measure(url, key, body, marks, count=count, warmup=warmup)
    ctx.sent[FREE_MODEL] += count + warmup
    direct, gateway = out["direct"], out["gateway"]
    out.update(_added(direct, gateway))
    for name in sorted(direct.keys() & gateway.keys()):
        if isinstance(direct[name], dict) and isinstance(gateway[name], dict):
            out[name] = _added(direct[name], gateway[name])
    return out


def drive(ctx: Ctx, model: str, requests: int, rps_hint: float, max_runs: int = 12) -> tuple[int, list[dict]]:
    """Send at least ``requests`` through the gateway at 32 connections, in wrk runs sized from the rate.

    wrk has no request-count mode, so runs are timed from the last measured rate and repeated until enough
    requests went through (bounded, so a stalled gateway can't keep the benchmark running forever).
    """
    done, runs = 0, []
    rate = max(rps_hint, 100.0)
    while done < requests and len(runs) < max_runs:
        seconds = min(60, max(2, math.ceil((requests - done) / rate * 1.05)))
        result = load(ctx, "gateway", model, 32, 2, seconds)
        done += result.requests
        rate = max(result.rps, 100.0)
        runs.append(
            {"seconds": seconds, "requests": result.requests, "rps": result.rps, "non_2xx": result.non_2xx}
        )
        runs[-1]["rss_mb"] = round(ctx.gateway_rss() / 2**20, 2)
    return done, runs


def rss_growth(ctx: Ctx, warm_requests: int, requests: int, rps_hint: float) -> dict:
    """The gateway's resident memory after a warm-up, and again after ``requests`` more requests."""
    warm_done, warm_runs = drive(ctx, FREE_MODEL, warm_requests, rps_hint)
    time.sleep(1.0)  # let the settlement queue drain, so its buffers are not counted as growth
    before = ctx.gateway_rss()
    done, runs = drive(ctx, FREE_MODEL, requests, warm_runs[-1]["rps"] if warm_runs else rps_hint)
    time.sleep(1.0)
    after = ctx.gateway_rss()
    return {
        "warmup_requests": warm_done,
        "requests": done,
        "rss_before_mb": round(before / 2**20, 2),
        "rss_after_mb": round(after / 2**20, 2),
        "growth_pct": round(100 * (after - before) / before, 2),
        "runs": runs,
        "non_2xx": sum(run["non_2xx"] for run in warm_runs + runs),
    }


def post(url: str, data: bytes, headers: dict) -> tuple[int, bytes, Any]:
    """One POST: its status, body and headers, an error status included (OSError when nothing answered)."""
    request = urllib.request.Request(url, data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as resp:
            return resp.status, resp.read(), resp.headers
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), exc.headers


def probe(ctx: Ctx, target: str, model: str, *, stream: bool = False, endpoint: str = "chat") -> dict:
    """One request, to see (and record) exactly what the client gets before putting load on it."""
    url = ctx.url(target, endpoint)
    make = ENDPOINTS[side(target, endpoint)].body
    data = json.dumps(make(model, stream=True) if stream else make(model)).encode()
    headers = {"Authorization": f"Bearer {ctx.bearer(target)}", "Content-Type": "application/json"}
    headers.update(ENDPOINTS[side(target, endpoint)].headers)
    started = time.perf_counter()
    try:
        status, body, got = post(url, data, headers)
    except OSError as exc:
        return {"model": model, "stream": stream, "error": str(exc)}
    if target == "gateway":
        ctx.sent[model] += 1
    return {
        "model": model,
        "stream": stream,
        "status": status,
        "ms": round((time.perf_counter() - started) * 1000, 3),
        "server_timing": got.get("server-timing"),
        "body": body[:400].decode("utf-8", "replace"),
    }
