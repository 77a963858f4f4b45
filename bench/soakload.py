"""An open-loop load generator: requests go out on a fixed schedule, whatever the answers do.

A closed-loop client (wrk, or N workers each waiting for its answer) slows down when the server does and so
hides the queueing a real population of clients would cause. Here request i is due at ``start + i / rate``;
it is sent then (on one asyncio loop, aiohttp, one connection pool per target) unless ``max_in_flight``
requests are already waiting, in which case it is counted as ``skipped`` (the client's own overload, kept
apart from the server's errors). Each request is recorded: when it was sent, the status, the latency to the
end of the body (for a stream: to the end of the stream), whether it streamed, and its ``x-request-id``.
"""

import asyncio
import itertools
import json
import random
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import aiohttp

from bench.ttfc import percentile

try:  # the same fast loop the gateway runs on
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None

PATH = "/v1/chat/completions"


@dataclass(frozen=True)
class Sent:
    """One request as the client saw it. ``status`` 0 means no HTTP answer (``error`` says why)."""

    t: float  # seconds since the start of the run, when it went out
    status: int
    ms: float
    stream: bool
    model: str
    target: int  # index of the base URL it went to
    request_id: str | None
    error: str | None = None


@dataclass
class Plan:
    """What to send: base URLs (round robin), keys and models (at random), and the share of streams."""

    targets: list[str]
    keys: list[str]
    models: list[str]
    stream_share: float = 0.3
    seed: int = 7
    _rng: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._rng = random.Random(self.seed)

    def pick(self, i: int) -> tuple[int, str, str, bool]:
        rng = self._rng
        return (
            i % len(self.targets),
            rng.choice(self.keys),
            rng.choice(self.models),
            rng.random() < self.stream_share,
        )


def body(model: str, stream: bool) -> bytes:
    payload: dict = {
        "model": model,
        "messages": [{"role": "user", "content": "hello there"}],
        "max_tokens": 16,
    }
    if stream:
        payload["stream"] = True
    return json.dumps(payload, separators=(",", ":")).encode()


async def _one(session: aiohttp.ClientSession, plan: Plan, i: int, t0: float) -> Sent:
    target, key, model, stream = plan.pick(i)
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    sent_at = time.perf_counter()
    status, rid, error = 0, None, None
    try:
        async with session.post(
            plan.targets[target] + PATH, data=body(model, stream), headers=headers
        ) as resp:
            status, rid = resp.status, resp.headers.get("x-request-id")
            async for _ in resp.content.iter_any():  # read to the end: a stream's latency is its whole length
                pass
    except (TimeoutError, aiohttp.ClientError, OSError) as exc:
        error = type(exc).__name__
    done = time.perf_counter()
    return Sent(
        round(sent_at - t0, 4), status, round((done - sent_at) * 1000, 3), stream, model, target, rid, error
    )


async def run_open(
    plan: Plan,
    rate: float,
    seconds: float,
    *,
    max_in_flight: int = 256,
    on_tick: Callable[[float], None] | None = None,
) -> dict:
    """Send ``rate`` requests per second for ``seconds``; every record, and how many were skipped."""
    records: list[Sent] = []
    skipped, in_flight = 0, 0
    limit = aiohttp.TCPConnector(limit=max_in_flight, limit_per_host=max_in_flight)
    timeout = aiohttp.ClientTimeout(total=30)
    async with aiohttp.ClientSession(connector=limit, timeout=timeout) as session:
        t0 = time.perf_counter()
        tasks: set[asyncio.Task] = set()

        def finished(task: asyncio.Task) -> None:
            nonlocal in_flight
            in_flight -= 1
            tasks.discard(task)
            records.append(task.result())

        next_tick = 5.0
        for i in itertools.count():
            due = i / rate
            if due >= seconds:
                break
            delay = t0 + due - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            if on_tick and due >= next_tick:
                on_tick(due)
                next_tick += 5.0
            if in_flight >= max_in_flight:
                skipped += 1
                continue
            in_flight += 1
            task = asyncio.create_task(_one(session, plan, i, t0))
            tasks.add(task)
            task.add_done_callback(finished)
        if tasks:
            await asyncio.wait(set(tasks))
        elapsed = time.perf_counter() - t0
    return {"records": records, "skipped": skipped, "elapsed_s": elapsed, "rate": rate}


async def run_closed(plan: Plan, concurrency: int, seconds: float) -> dict:
    """``concurrency`` workers back to back for ``seconds``: what the targets manage with this mix."""
    records: list[Sent] = []
    counter = itertools.count()
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=30)) as session:
        t0 = time.perf_counter()

        async def worker() -> None:
            while time.perf_counter() - t0 < seconds:
                records.append(await _one(session, plan, next(counter), t0))

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - t0
    ok = sum(1 for r in records if 200 <= r.status < 300)
    return {"records": records, "elapsed_s": elapsed, "ok_rps": ok / elapsed if elapsed else 0.0}


def run(coro):
    """Run a coroutine on uvloop when available."""
    if uvloop is not None:
        return uvloop.run(coro)
    return asyncio.run(coro)


def latency_summary(records: list[Sent]) -> dict:
    """Percentiles (ms) of the 2xx answers, all together and split by plain / streamed."""
    out = {}
    for name, keep in (
        ("all", lambda r: True),
        ("plain", lambda r: not r.stream),
        ("stream", lambda r: r.stream),
    ):
        values = [r.ms for r in records if 200 <= r.status < 300 and keep(r)]
        if values:
            out[name] = {
                "n": len(values),
                "p50_ms": percentile(values, 50),
                "p99_ms": percentile(values, 99),
                "p999_ms": percentile(values, 99.9),
                "max_ms": max(values),
            }
    return out
