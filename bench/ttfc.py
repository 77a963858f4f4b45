"""Time to first chunk of a streamed completion: what a chat UI waits before the first words appear.

wrk can't see inside a response, so this is a small asyncio + aiohttp client on one keep-alive connection,
sending requests one after another and timing from just before the request goes out to the arrival of the
first ``data:`` line. The same client measures the upstream directly and the gateway, so its own overhead
cancels out in the difference.
"""

import asyncio
import json
import statistics
import time

import aiohttp

from bench.setup import chat_body

try:  # the same fast loop the gateway runs on, so the client adds as little as it can
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an unsorted list (no interpolation, like wrk's histogram)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _one(session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str]) -> float:
    """Seconds to the first ``data:`` line; the rest of the stream is read so the connection is reused."""
    started = time.perf_counter()
    first: float | None = None
    async with session.post(url, data=payload, headers=headers) as resp:
        if resp.status != 200:
            text = (await resp.read())[:300]
            raise RuntimeError(f"HTTP {resp.status}: {text!r}")
        async for line in resp.content:
            if first is None and line.startswith(b"data:"):
                first = time.perf_counter() - started
    if first is None:
        raise RuntimeError("the stream had no data: event")
    return first


async def _series(url: str, key: str, model: str, count: int, warmup: int) -> dict:
    payload = json.dumps(chat_body(model, stream=True)).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    samples: list[float] = []
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(warmup + count):
            try:
                elapsed = await _one(session, url, payload, headers)
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                errors.append(str(exc))
                continue
            if i >= warmup:
                samples.append(elapsed)
    return _summary(samples, errors)


def _summary(samples: list[float], errors: list[str]) -> dict:
    result: dict = {"requests": len(samples), "errors": len(errors), "first_errors": errors[:3]}
    if samples:
        ms = [s * 1000 for s in samples]
        result.update(
            p50_ms=round(percentile(ms, 50), 4),
            p90_ms=round(percentile(ms, 90), 4),
            p99_ms=round(percentile(ms, 99), 4),
            mean_ms=round(statistics.fmean(ms), 4),
            min_ms=round(min(ms), 4),
            max_ms=round(max(ms), 4),
        )
    return result


def measure(url: str, key: str, model: str, *, count: int, warmup: int) -> dict:
    """``count`` sequential streamed requests after ``warmup`` unmeasured ones; percentiles in ms."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        return runner.run(_series(url, key, model, count, warmup))
