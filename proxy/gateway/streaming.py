"""Server-sent events: reading an upstream's stream, relaying it chunk by chunk, and capturing usage.

Chunks are passed on as the upstream wrote them (no re-encoding), except the usage chunk the gateway asked
for on the client's behalf, which is kept back unless the client asked for it too. A failure after the first
byte can no longer change the status, so it is reported in-band: one ``data: {"error": ...}`` event, then
``data: [DONE]``.
"""

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Protocol

import orjson

from billing.usage import Usage, from_openai
from proxy.catalog.snapshot import RouteInfo
from proxy.gateway import errors
from proxy.gateway.http import Incoming
from proxy.gateway.upstream import UPSTREAM_FAULTS

DONE = b"data: [DONE]\n\n"
KEEPALIVE = b": keep-alive\n\n"
SSE_HEADERS = [
    (b"content-type", b"text/event-stream; charset=utf-8"),
    (b"cache-control", b"no-cache"),
    (b"x-accel-buffering", b"no"),
]


@dataclass(slots=True)
class Tally:
    """What one request produced, as far as the gateway saw it."""

    usage: Usage | None = None  # what the upstream reported, as one canonical usage (billing/usage.py)
    raw_usage: dict | None = None  # the upstream's own usage object, kept on the record for audits
    # The input side a stream reported at its start (Anthropic's message_start), before its output was known:
    # what a stream cut before its final usage is billed for, with its output counted locally.
    input_usage: Usage | None = None
    # Set when the client asked for its cost in the answer (``"usage": {"include": true}``): the cost
    # fields to add to a usage object (proxy/gateway/settlement.py ``cost_report``).
    cost_of: Callable[[], dict] | None = None
    finish_reason: str = ""
    pieces: list[str] = field(default_factory=list)  # content seen, for a local count when usage is missing
    first_token_at: float | None = None
    error_code: str = ""
    client_disconnected: bool = False
    route: RouteInfo | None = None  # the route that answered, once one has

    @property
    def completion_tokens(self) -> int | None:
        return self.usage.output if self.usage is not None else None

    def take_usage(self, usage: object) -> None:
        """An OpenAI-style usage object (chat, legacy completions, embeddings): counts that can't be real
        (negative, or past what a record holds) are no usage at all."""
        self.take_canonical(from_openai(usage), usage)

    def take_canonical(self, usage: Usage | None, raw: object) -> None:
        if usage is not None:
            self.usage, self.raw_usage = usage, raw if isinstance(raw, dict) else None

    def take_choices(self, choices: list) -> None:
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            text = choice.get("text")  # a legacy completion's choice
            if isinstance(text, str) and text:
                self.pieces.append(text)
            part = choice.get("delta") or choice.get("message") or {}
            if isinstance(part, dict):
                content = part.get("content")
                if isinstance(content, str) and content:
                    self.pieces.append(content)
                for call in part.get("tool_calls") or ():
                    if isinstance(call, dict) and isinstance(call.get("function"), dict):
                        self.pieces.append(str(call["function"].get("name") or ""))
                        self.pieces.append(str(call["function"].get("arguments") or ""))
            if choice.get("finish_reason"):
                self.finish_reason = str(choice["finish_reason"])


def parse_event(line: bytes) -> tuple[bytes, dict | None] | None:
    """One SSE line: None for anything but data, else (the raw data, its JSON or None for [DONE])."""
    if not line.startswith(b"data:"):
        return None
    data = line[5:].strip()
    if data == b"[DONE]":
        return data, None
    try:
        event = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise ValueError("an event that is not JSON") from None
    if not isinstance(event, dict):
        raise ValueError("an event that is not a JSON object")
    return data, event


def error_event(err: errors.ApiError) -> bytes:
    return b"data: " + err.render() + b"\n\n"


class Lines:
    """The upstream's lines with per-read deadlines: first byte, then idle."""

    def __init__(self, response, first_byte_timeout: float, idle_timeout: float) -> None:
        self.response = response
        self.first_deadline = time.monotonic() + first_byte_timeout
        self.idle_timeout = idle_timeout

    async def next(self, wait: float) -> bytes:
        """The next line; ``b""`` at the end of the stream; TimeoutError after ``wait`` seconds."""
        async with asyncio.timeout(wait):
            return await self.response.content.readline()


async def first_event(lines: Lines, keepalive_after: float) -> tuple[bytes, dict] | None:
    """Wait for the stream's first data event, for up to ``keepalive_after`` seconds.

    Returns None when it is taking that long (the caller then commits to this route and sends keep-alives).
    Raises ValueError for a stream that ends or speaks nonsense first, TimeoutError past the first-byte limit.
    """
    give_up = min(lines.first_deadline, time.monotonic() + keepalive_after)
    while True:
        left = give_up - time.monotonic()
        if left <= 0:
            if time.monotonic() >= lines.first_deadline:
                raise TimeoutError
            return None
        try:
            line = await lines.next(left)
        except TimeoutError:
            if time.monotonic() >= lines.first_deadline:
                raise
            return None  # slow, not late: the caller sends a keep-alive and asks again
        if not line:
            raise ValueError("the stream ended before its first event")
        event = parse_event(line)
        if event is None:
            continue
        if event[1] is None:
            raise ValueError("the stream ended before its first event")
        if "error" in event[1]:
            raise ValueError("the upstream reported an error")
        return event  # type: ignore[return-value]


class ChatChunks:
    """How a chat-style stream reaches its client: each chunk as the upstream wrote it (no re-encoding), but
    the usage chunk the gateway asked for on the client's behalf, unless the client asked for it too; a
    failure as one error event; and ``[DONE]``."""

    finished = False  # a chat stream ends with [DONE]
    keepalive = KEEPALIVE

    def __init__(self, include_usage: bool) -> None:
        self.include_usage = include_usage

    def start(self) -> bytes:
        return b""

    async def chunk(self, raw: bytes, chunk: dict, tally: Tally) -> bytes:
        take_chat_chunk(tally, chunk)
        usage = chunk.get("usage")
        if usage is not None and not chunk.get("choices") and not self.include_usage:
            return b""
        if isinstance(usage, dict) and tally.cost_of is not None:
            raw = orjson.dumps({**chunk, "usage": {**usage, **tally.cost_of()}})
        return b"data: " + raw + b"\n\n"

    def failure(self, err: errors.ApiError) -> bytes:
        return error_event(err)

    async def end(self) -> bytes:
        return DONE


class StreamWriter(Protocol):
    finished: bool  # the stream has said all it will: its end needs no [DONE]
    keepalive: bytes  # what keeps the client's connection alive while the upstream is silent

    def start(self) -> bytes: ...
    async def chunk(self, raw: bytes, chunk: dict, tally: Tally) -> bytes: ...
    def failure(self, err: errors.ApiError) -> bytes: ...
    async def end(self) -> bytes: ...


def take_chat_chunk(tally: Tally, chunk: dict) -> None:
    """What one chat chunk produced: its usage, its text, and when the first text came."""
    choices = chunk.get("choices")
    if chunk.get("usage") is not None:
        tally.take_usage(chunk["usage"])
    if isinstance(choices, list) and choices:
        if tally.first_token_at is None:
            tally.first_token_at = time.perf_counter()
        tally.take_choices(choices)


async def relay_stream(
    req: Incoming, lines: Lines, first: tuple[bytes, dict] | None, tally: Tally, *, writer: StreamWriter,
    keepalive_every: float,
) -> None:  # fmt: skip
    """Send the response headers and relay every chat chunk until [DONE], the end, or a failure, written for
    the client by ``writer``."""
    await req.send(
        {"type": "http.response.start", "status": 200, "headers": SSE_HEADERS + req.common_headers()}
    )
    req.response_started = True
    await _write(req, writer.start())
    try:
        if first is None:
            first = await _wait_first(req, lines, keepalive_every, writer.keepalive)
        await _forward(req, first, tally, writer)
        while True:
            line = await lines.next(lines.idle_timeout)
            if not line:
                if writer.finished:
                    break
                raise ValueError("the stream ended without [DONE]")
            event = parse_event(line)
            if event is None:
                continue
            raw, chunk = event
            if chunk is None:
                break
            if "error" in chunk:
                tally.error_code = "upstream_error"
                await _write(req, writer.failure(_reported(chunk)))
                break
            await _forward(req, (raw, chunk), tally, writer)
    except TimeoutError:
        tally.error_code = "upstream_timeout"
        await _write(req, writer.failure(errors.upstream_timeout()))
    except UPSTREAM_FAULTS:
        # The reason stays in our records; the client learns only that the upstream failed.
        tally.error_code = "upstream_cut"
        await _write(req, writer.failure(errors.bad_gateway("The upstream provider failed mid-stream.")))
    await req.send({"type": "http.response.body", "body": await writer.end(), "more_body": False})


def _reported(event: dict) -> errors.ApiError:
    """An error the upstream reported in its stream, for the client: Anthropic's type (``overloaded_error``,
    say) is kept for an Anthropic client; its message is not passed on, as it may quote the request."""
    err = errors.bad_gateway("The upstream provider failed mid-stream.")
    reported = event.get("error")
    kind = reported.get("type") if isinstance(reported, dict) else None
    if event.get("type") == "error" and isinstance(kind, str) and kind in errors.ANTHROPIC_TYPES.values():
        err.anthropic_type = kind
    return err


async def _write(req: Incoming, data: bytes) -> None:
    if data:
        await req.send({"type": "http.response.body", "body": data, "more_body": True})


async def _wait_first(
    req: Incoming, lines: Lines, keepalive_every: float, keepalive: bytes
) -> tuple[bytes, dict]:
    """Keep the client's connection alive (SSE comments, or the client dialect's own ping) until the first
    event or the first-byte limit."""
    while True:
        await req.send({"type": "http.response.body", "body": keepalive, "more_body": True})
        event = await first_event(lines, keepalive_every)
        if event is not None:
            return event


async def _forward(req: Incoming, event: tuple[bytes, dict], tally: Tally, writer: StreamWriter) -> None:
    raw, chunk = event
    await _write(req, await writer.chunk(raw, chunk, tally))
