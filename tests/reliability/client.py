"""A raw HTTP client for load under faults: every exchange ends as one ``Outcome``, whatever happened.

The openai SDK hides what the wire looked like (and retries); here each request is sent once with aiohttp and
the outcome keeps the status, the request id, the body, and how the exchange ended, so a test can tell a clean
failure (an OpenAI-shaped error, or a stream that reports its error in-band and ends with ``[DONE]``) from an
unclean one (a hang, a truncated stream).
"""

import asyncio
import json
import re
import signal
import time
import uuid
from dataclasses import dataclass, field

import aiohttp

from tests.live import Gateway

CLIENT_TIMEOUT = 30.0  # far beyond any answer here: reaching it means the gateway hung
_CONTENT = re.compile(rb'"content":"[^"]')  # a delta with some text in it (not the empty role chunk)


@dataclass
class Outcome:
    marker: str
    stream: bool
    status: int | None = None  # None: no HTTP response at all (refused, reset before the headers)
    request_id: str | None = None
    headers: dict = field(default_factory=dict)
    body: bytes = b""
    broken: str = ""  # the exception that ended the exchange, if any
    started: float = 0.0  # time.monotonic() when it was sent
    elapsed: float = 0.0

    @property
    def admitted(self) -> bool:
        return self.status is not None and 200 <= self.status < 300

    @property
    def events(self) -> list[str]:
        return [
            line[5:].strip()
            for line in self.body.decode(errors="replace").splitlines()
            if line.startswith("data:")
        ]

    @property
    def done(self) -> bool:
        """A stream that ended properly: its last event is [DONE]."""
        events = self.events
        return bool(events) and events[-1] == "[DONE]" and not self.broken

    @property
    def error_event(self) -> dict | None:
        for data in self.events:
            if data.startswith("{") and '"error"' in data:
                payload = json.loads(data)
                if "error" in payload:
                    return payload["error"]
        return None

    def json(self) -> dict:
        return json.loads(self.body)


def chat_body(model: str, text: str, *, stream: bool = False, max_tokens: int = 64, **extra) -> dict:
    body = {
        "model": model,
        "max_tokens": max_tokens,
        "messages": [{"role": "user", "content": text}],
        **extra,
    }
    if stream:
        body["stream"] = True
    return body


def new_marker() -> str:
    return f"m{uuid.uuid4().hex[:12]}"


async def send(
    session: aiohttp.ClientSession, base_url: str, raw_key: str, body: dict, *, on_first_chunk=None
) -> Outcome:
    """POST one chat completion and read the whole answer. ``on_first_chunk`` is called once a stream has
    delivered its first content event."""
    text = body["messages"][-1]["content"]
    outcome = Outcome(marker=text.split()[-1] if text else "", stream=bool(body.get("stream")))
    started = outcome.started = time.monotonic()
    chunks: list[bytes] = []
    try:
        async with session.post(
            f"{base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {raw_key}"},
            timeout=aiohttp.ClientTimeout(total=CLIENT_TIMEOUT),
        ) as response:  # fmt: skip
            outcome.status = response.status
            outcome.headers = {k.lower(): v for k, v in response.headers.items()}
            outcome.request_id = outcome.headers.get("x-request-id")
            waiting = on_first_chunk is not None
            async for chunk in response.content.iter_any():
                chunks.append(chunk)
                if waiting and _CONTENT.search(b"".join(chunks)):
                    waiting = False
                    on_first_chunk()
            outcome.body = b"".join(chunks)
    except (aiohttp.ClientError, OSError, TimeoutError) as exc:
        outcome.broken = type(exc).__name__
        outcome.body = b"".join(chunks)
    outcome.elapsed = time.monotonic() - started
    return outcome


def assert_openai_error(outcome: Outcome) -> dict:
    """A non-2xx answer in OpenAI's shape; returns the inner error object."""
    assert outcome.headers.get("content-type", "").startswith("application/json"), outcome
    payload = outcome.json()
    assert set(payload) == {"error"}, payload
    error = payload["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and error["message"]
    return error


def assert_clean(outcome: Outcome) -> None:
    """The exchange ended cleanly: an answer (not a hang), and a stream that got its headers ended with
    [DONE], with at most one in-band error event before it."""
    assert outcome.broken != "TimeoutError", f"no answer within {CLIENT_TIMEOUT} s: {outcome}"
    assert outcome.status is not None, f"no HTTP answer: {outcome}"
    if not outcome.admitted:
        assert outcome.status >= 400
        assert_openai_error(outcome)
        return
    if outcome.stream:
        assert outcome.done, (
            f"a stream that did not end with [DONE]: {outcome.broken} {outcome.body[-300:]!r}"
        )
        errors = [e for e in outcome.events if e.startswith("{") and '"error"' in e]
        assert len(errors) <= 1
    else:
        assert not outcome.broken and outcome.json()["choices"], outcome


async def run_load(workers: int, make_body, send_one, stop: asyncio.Event) -> list[Outcome]:
    """``workers`` loops sending ``make_body(i)`` through ``send_one`` until ``stop`` is set."""
    outcomes: list[Outcome] = []
    counter = iter(range(10**9))

    async def worker() -> None:
        while not stop.is_set():
            outcomes.append(await send_one(make_body(next(counter))))

    await asyncio.gather(*(worker() for _ in range(workers)))
    return outcomes


def stop_gracefully(gw: Gateway) -> None:
    """SIGTERM, and check it was a graceful stop: uvicorn exits by re-raising the signal once the
    application's shutdown (the final settlement flush) has completed."""
    code = gw.stop(signal.SIGTERM, timeout=30)
    log = gw.log()
    assert code in (0, -signal.SIGTERM), f"the gateway exited with {code}:\n{log[-3000:]}"
    assert "Application shutdown complete" in log, log[-3000:]
    assert "requests unrecorded" not in log, log[-3000:]
