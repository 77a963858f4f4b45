"""``POST /v1/messages``: Anthropic's Messages API, for Claude Code and the Anthropic SDKs.

On an Anthropic-style route the body goes upstream as it came, with the route's model name, so
``cache_control``, thinking signatures, documents and every field a current client sends stay intact; the
answer and the stream's events come back unchanged. On an OpenAI-compatible route the request is translated
to chat completions (proxy/gateway/translate/messages.py) and the answer back, event by event for streams.

Its errors are Anthropic's (``{"type": "error", "error": {"type", "message"}}``, with Anthropic's statuses),
and a stream that fails after it began ends with an ``error`` event. A slow upstream gets ``ping`` events
while the client waits. ``max_tokens`` is required, as Anthropic has it, and is the most output the request
can be billed for.
"""

import uuid
from dataclasses import dataclass, field

import orjson

from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import errors, tokens
from proxy.gateway.endpoints import anthropic_route, chat
from proxy.gateway.endpoints.base import ANTHROPIC, OPENAI, Endpoint, Upstream, as_received
from proxy.gateway.schemas.anthropic import checked_messages_body
from proxy.gateway.streaming import Tally, take_chat_chunk
from proxy.gateway.translate.chat_parts import sse_event as sse
from proxy.gateway.translate.messages import (
    ChatStreamToMessages,
    chat_body_from_messages,
    message_from_chat,
)  # fmt: skip
from proxy.gateway.upstream import routed_body


@dataclass(slots=True)
class MessagesRequest:
    model: str
    body: dict
    stream: bool
    max_tokens: int
    message_id: str
    chat: dict = field(default_factory=dict)  # the chat body it is translated to, for an OpenAI-style route
    include_usage: bool = False
    prompt_tokens: int | None = None
    output_limit: int | None = None


def parse(raw: bytes) -> MessagesRequest:
    body = checked_messages_body(raw)
    return MessagesRequest(
        model=body["model"], body=body, stream=body.get("stream") is True, max_tokens=body["max_tokens"],
        message_id=f"msg_{uuid.uuid4().hex}", chat=chat_body_from_messages(body),
    )  # fmt: skip


def count_input(request: MessagesRequest) -> int:
    """The translated messages (the system prompt among them) and every tool offered, server tools too."""
    return tokens.count_messages(request.chat.get("messages") or []) + tokens.count_tools(
        request.body.get("tools")
    )


# --- an Anthropic-style route: the body and the answer as they are -----------------------------------------


def passthrough_body(request: MessagesRequest, route: RouteInfo, _stream: bool) -> bytes:
    body = {**request.body, "model": route.upstream_model}
    body.pop("usage", None)  # the gateway's own option: its cost in the answer
    return orjson.dumps(body)


class MessagesPassthrough:
    """An Anthropic route's events as they came, each with its ``event:`` line."""

    finished = False
    keepalive = anthropic_route.PING

    def __init__(self, request: MessagesRequest, _keep) -> None:
        self.usage: dict = {}

    def start(self) -> bytes:
        return b""

    async def chunk(self, raw: bytes, event: dict, tally: Tally) -> bytes:
        kind = str(event.get("type") or "")
        anthropic_route.take_event(tally, event, self.usage)
        if kind == "message_stop":
            self.finished = True
        elif kind == "message_delta" and tally.cost_of is not None and isinstance(event.get("usage"), dict):
            raw = orjson.dumps({**event, "usage": {**event["usage"], **tally.cost_of()}})
        return anthropic_route.sse(kind, raw)

    def failure(self, err: errors.ApiError) -> bytes:
        return anthropic_route.error_event(err)

    async def end(self) -> bytes:
        return b""


# --- an OpenAI-style route: translated -------------------------------------------------------------------


def chat_route_body(request: MessagesRequest, route: RouteInfo, stream: bool) -> bytes:
    return routed_body(request.chat, route, stream, {"stream": True} if stream else None)


def write_answer(request: MessagesRequest, completion: dict) -> dict:
    return message_from_chat(completion, message_id=request.message_id, model=request.model)


class MessagesEvents:
    """A chat stream written for its client as Anthropic's events, each as it happens."""

    finished = False
    keepalive = anthropic_route.PING

    def __init__(self, request: MessagesRequest, _keep) -> None:
        self.events = ChatStreamToMessages(
            message_id=request.message_id, model=request.model, input_tokens=_input_estimate(request)
        )
        self.failed = False
        self.tally: Tally | None = None

    def start(self) -> bytes:
        return b"".join(map(sse, self.events.start()))

    async def chunk(self, raw: bytes, chunk: dict, tally: Tally) -> bytes:
        self.tally = tally
        take_chat_chunk(tally, chunk)
        return b"".join(map(sse, self.events.feed(chunk)))

    def failure(self, err: errors.ApiError) -> bytes:
        self.failed = True
        return anthropic_route.error_event(err)

    async def end(self) -> bytes:
        if self.failed:
            return b""
        closing = self.events.finish(output_tokens=self._output_tokens())
        cost_of = self.tally.cost_of if self.tally is not None else None
        if cost_of is not None:  # the closing message_delta's usage
            closing[-2]["usage"] = {**closing[-2]["usage"], **cost_of()}
        return b"".join(map(sse, closing))

    def _output_tokens(self) -> int:
        """What the final usage says was produced when the upstream sent no usage: the local count."""
        tally = self.tally
        if tally is None or tally.usage is not None:
            return 0  # the translator has the upstream's own count
        return tokens.count_completion(tally.pieces)


def _input_estimate(request: MessagesRequest) -> int:
    """``message_start`` carries the input's size before the upstream has said it: the local count (the
    final ``message_delta`` carries the upstream's own)."""
    if request.prompt_tokens is None:
        request.prompt_tokens = count_input(request)
    return request.prompt_tokens


def max_output(request: MessagesRequest, model: ModelInfo) -> int:
    return request.max_tokens


MESSAGES = Endpoint(
    name="messages",
    path="/v1/messages",
    mode="chat",
    parse=parse,
    count_input=count_input,
    max_output=max_output,
    count_output=lambda tally: tokens.count_completion(tally.pieces),
    upstreams={
        ANTHROPIC: Upstream(
            path="/messages",
            body=passthrough_body,
            check_answer=anthropic_route.check_message,
            take_answer=anthropic_route.take_message,
            write_answer=as_received,
            stream_writer=MessagesPassthrough,
        ),
        OPENAI: Upstream(
            path="/chat/completions",
            body=chat_route_body,
            check_answer=chat.check_answer,
            take_answer=chat.take_answer,
            write_answer=write_answer,
            stream_writer=MessagesEvents,
        ),
    },
)
