"""Routes whose provider speaks Anthropic's Messages API (``kind = "anthropic"``), for every endpoint.

Such a provider is called at ``{base_url}/messages`` with ``x-api-key`` and ``anthropic-version`` (set in
proxy/gateway/upstream.py). A Messages client's body goes there as it came, with the route's model name
(proxy/gateway/endpoints/messages.py). A chat completions request is translated to a Messages body and its
answer back (proxy/gateway/translate/anthropic.py), event by event for streams; the Responses API reaches the
same route through its chat bridge, so every ingress API reaches both upstream styles.

Usage is taken as Anthropic reports it: the input is its three buckets added up (``input_tokens`` excludes
cache reads and writes), and the cache reads and writes (5-minute and 1-hour) are recorded beside it. In a
stream, ``message_delta``'s usage replaces ``message_start``'s, never adds to it.
"""

import time
from typing import Any

import orjson

from billing.credits import DEFAULT_MAX_OUTPUT
from billing.usage import from_anthropic
from proxy.catalog.snapshot import RouteInfo
from proxy.gateway import errors
from proxy.gateway.streaming import StreamWriter, Tally
from proxy.gateway.translate.anthropic import (
    STOP_TO_FINISH,
    MessagesStreamToChat,
    chat_from_message,
    messages_body_from_chat,
)  # fmt: skip


def check_message(raw: bytes) -> dict:
    """An Anthropic Message, or ValueError (the route then fails over)."""
    data = orjson.loads(raw)
    if (
        not isinstance(data, dict)
        or data.get("type") != "message"
        or not isinstance(data.get("content"), list)
    ):
        raise ValueError("not a message")
    return data


def take_usage(tally: Tally, usage: object) -> None:
    tally.take_canonical(from_anthropic(usage), usage)


def take_message(tally: Tally, message: dict) -> None:
    """What a plain Message produced: its usage, its text (for a local count if usage is missing), and why
    it stopped, in chat's words (the usage record's finish reason reads the same for every endpoint)."""
    take_usage(tally, message.get("usage"))
    for block in message["content"]:
        if isinstance(block, dict):
            for key in ("text", "thinking"):
                if isinstance(block.get(key), str):
                    tally.pieces.append(block[key])
            if block.get("type") == "tool_use":
                tally.pieces += (str(block.get("name") or ""), orjson.dumps(block.get("input")).decode())
    if message.get("stop_reason"):
        tally.finish_reason = finish_reason(message["stop_reason"])


def take_event(tally: Tally, event: dict, usage: dict) -> None:
    """What one stream event produced. ``usage`` is the stream's usage so far, updated in place: the
    message_start's, with each message_delta's counts put over it."""
    kind = event.get("type")
    if kind == "content_block_delta":
        delta = event.get("delta") or {}
        piece = delta.get("text") or delta.get("thinking") or delta.get("partial_json")
        if isinstance(piece, str):
            if tally.first_token_at is None:
                tally.first_token_at = time.perf_counter()
            tally.pieces.append(piece)
    elif kind == "content_block_start" and tally.first_token_at is None:
        block = event.get("content_block") or {}
        if block.get("type") == "tool_use":
            tally.first_token_at = time.perf_counter()
    elif kind == "message_start":
        # Its output_tokens is a placeholder: only the input is known yet (the final usage comes with
        # message_delta). A stream that ends before then has its output counted locally.
        usage.update((event.get("message") or {}).get("usage") or {})
        tally.input_usage = from_anthropic(usage)
    elif kind == "message_delta":
        usage.update({k: v for k, v in (event.get("usage") or {}).items() if v is not None})
        take_usage(tally, usage)
        stop = (event.get("delta") or {}).get("stop_reason")
        if stop:
            tally.finish_reason = finish_reason(stop)


def finish_reason(stop_reason: object) -> str:
    return STOP_TO_FINISH.get(str(stop_reason), str(stop_reason))


def sse(kind: str, raw: bytes) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + raw + b"\n\n"


def error_event(err: errors.ApiError, request_id: str = "") -> bytes:
    """A failure after the stream began, as Anthropic reports one: an ``error`` event, and nothing after."""
    body = err.anthropic_body(request_id)
    if not request_id:
        body.pop("request_id")
    return sse("error", orjson.dumps(body))


PING = sse("ping", b'{"type":"ping"}')


# --- a chat-shaped request on an Anthropic route -----------------------------------------------------------


def body_from_chat(chat: dict, route: RouteInfo, stream: bool, output_limit: int | None) -> bytes:
    """A Messages body for a chat body (a chat client's, or the Responses API's bridge). Anthropic requires
    ``max_tokens``: without one in the body, it is the limit the request's reservation was sized from."""
    out = messages_body_from_chat(chat, max_tokens=output_limit or DEFAULT_MAX_OUTPUT)
    out["model"] = route.upstream_model
    if stream:
        out["stream"] = True
    return orjson.dumps(out)


class ChatOverMessages:
    """An Anthropic stream turned into chat chunks, each fed at once to ``inner``, the writer the client's
    endpoint uses for chat chunks (plain chat chunks, or Responses events). The translator always makes the
    usage chunk, which the tally needs; ``inner`` keeps it back unless its client asked for it."""

    def __init__(self, inner: StreamWriter, model: str) -> None:
        self.inner, self.keepalive = inner, inner.keepalive
        self.chunks = MessagesStreamToChat(model=model, include_usage=True, created=int(time.time()))
        self.usage: dict = {}
        self.finished = False

    def start(self) -> bytes:
        return self.inner.start()

    async def chunk(self, raw: bytes, event: dict, tally: Tally) -> bytes:
        out = b""
        for chunk in self.chunks.feed(event):
            out += await self.inner.chunk(orjson.dumps(chunk), chunk, tally)
        kind = event.get("type")
        if kind in ("message_start", "message_delta"):
            take_event(tally, event, self.usage)
        elif kind == "message_stop" and tally.usage is not None:
            # The chat usage chunk just fed lumps both cache writes together: Anthropic's own usage stands.
            take_usage(tally, self.usage)
        self.finished = self.chunks.finished
        return out

    def failure(self, err: errors.ApiError) -> bytes:
        return self.inner.failure(err)

    async def end(self) -> bytes:
        return await self.inner.end()


def chat_answer(request: Any, message: dict) -> dict:
    return chat_from_message(message, model=request.model)
