"""Time to first chunk of a streamed completion: what a chat UI waits before the first words appear.

wrk can't see inside a response, so this is a small asyncio + aiohttp client on one keep-alive connection,
sending requests one after another and timing from just before the request goes out to the arrival of a
line of the stream: the first ``data:`` line, the first chat chunk that carries text, or the first text
delta of a Responses stream (see :class:`Mark`). The same client measures the upstream directly and the
gateway, so its own overhead cancels out in the difference.
"""

import asyncio
import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import aiohttp

try:  # the same fast loop the gateway runs on, so the client adds as little as it can
    import uvloop
except ImportError:  # pragma: no cover - uvloop comes with uvicorn[standard]
    uvloop = None


@dataclass(frozen=True)
class Mark:
    """A line of a stream to time the arrival of (the first one that ``test`` accepts); ``what`` names it."""

    what: str
    test: Callable[[bytes], bool]


def _has_content(line: bytes) -> bool:
    """A chat chunk whose first choice's delta carries text (the role chunk before it carries none)."""
    if not line.startswith(b"data:"):
        return False
    try:
        chunk = json.loads(line[5:])
    except ValueError:  # [DONE]
        return False
    choices = chunk.get("choices") if isinstance(chunk, dict) else None
    delta = (
        choices[0].get("delta")
        if isinstance(choices, list) and choices and isinstance(choices[0], dict)
        else None
    )
    return isinstance(delta, dict) and bool(delta.get("content"))


FIRST_DATA = Mark("data: event", lambda line: line.startswith(b"data:"))
FIRST_CONTENT = Mark("content chunk", _has_content)
# A Responses event is its ``event:`` line and its ``data:`` line, written together: the first names it.
FIRST_TEXT_DELTA = Mark(
    "response.output_text.delta event", lambda line: line.rstrip() == b"event: response.output_text.delta"
)


def percentile(values: list[float], pct: float) -> float:
    """Nearest-rank percentile of an unsorted list (no interpolation, like wrk's histogram)."""
    ordered = sorted(values)
    rank = max(1, min(len(ordered), round(pct / 100 * len(ordered) + 0.5)))
    return ordered[rank - 1]


async def _one(
    session: aiohttp.ClientSession, url: str, payload: bytes, headers: dict[str, str], marks: dict[str, Mark]
) -> dict[str, float]:
    """Seconds to each mark; the rest of the stream is read so the connection is reused."""
    started = time.perf_counter()
    seen: dict[str, float] = {}
    async with session.post(url, data=payload, headers=headers) as resp:
        if resp.status != 200:
            text = (await resp.read())[:300]
            raise RuntimeError(f"HTTP {resp.status}: {text!r}")
        async for line in resp.content:
            if len(seen) < len(marks):
                elapsed = time.perf_counter() - started
                for name, mark in marks.items():
                    if name not in seen and mark.test(line):
                        seen[name] = elapsed
    missing = [mark.what for name, mark in marks.items() if name not in seen]
    if missing:
        raise RuntimeError(f"the stream had no {' and no '.join(missing)}")
    return seen


async def _series(url: str, key: str, body: dict, marks: dict[str, Mark], count: int, warmup: int) -> dict:
    payload = json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    connector = aiohttp.TCPConnector(limit=1, force_close=False)
    samples: dict[str, list[float]] = {name: [] for name in marks}
    errors: list[str] = []
    async with aiohttp.ClientSession(connector=connector) as session:
        for i in range(warmup + count):
            try:
                elapsed = await _one(session, url, payload, headers, marks)
            except (aiohttp.ClientError, RuntimeError, TimeoutError) as exc:
                errors.append(str(exc))
                continue
            if i >= warmup:
                for name, seconds in elapsed.items():
                    samples[name].append(seconds)
    return _summary(samples, errors)


def _percentiles(samples: list[float]) -> dict:
    if not samples:
        return {}
    ms = [s * 1000 for s in samples]
    return {
        "p50_ms": round(percentile(ms, 50), 4),
        "p90_ms": round(percentile(ms, 90), 4),
        "p99_ms": round(percentile(ms, 99), 4),
        "mean_ms": round(statistics.fmean(ms), 4),
        "min_ms": round(min(ms), 4),
        "max_ms": round(max(ms), 4),
    }


def _summary(samples: dict[str, list[float]], errors: list[str]) -> dict:
    """The first mark's percentiles at the top, every other mark's under its name."""
    first, *others = samples
    result: dict = {"requests": len(samples[first]), "errors": len(errors), "first_errors": errors[:3]}
    result.update(_percentiles(samples[first]))
    for name in others:
        result[name] = _percentiles(samples[name])
    return result


def measure(url: str, key: str, body: dict, marks: dict[str, Mark], *, count: int, warmup: int) -> dict:
    """``count`` sequential streamed requests after ``warmup`` unmeasured ones; percentiles in ms to each mark
    (a request that misses one is an error)."""
    with asyncio.Runner(loop_factory=uvloop.new_event_loop if uvloop else None) as runner:
        return runner.run(_series(url, key, body, marks, count, warmup))
