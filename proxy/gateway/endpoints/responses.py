"""``POST /v1/responses``: OpenAI's Responses API, bridged to a chat completions route, or passed through to
a route whose upstream serves ``/responses`` itself (a provider with ``responses = true``).

The request is translated to a chat body (proxy/gateway/translate/responses.py: instructions, input items,
function tools, text formats, reasoning effort, output limit) and the answer back, chunk by chunk for streams:
nothing is buffered. Built-in tools (web search and the like) can't run on a chat route and are left out, as
a bridged route documents, rather than refusing the request.

``store`` defaults to true, as in OpenAI's API: the response is kept before its end goes out, so a follow-up
sent the moment a stream ends finds it, in this process or any other. With Redis it is kept there (one round
trip: a copy named by its account) and written to the database by a batch writer soon after; every read
takes the Redis copy first. What survives a crash is the copy, for its hour: a process that dies before its
batch went leaves the copies, which a sweep in any process writes within a minute or so. A deletion leaves a
tombstone, so a late write never brings a deleted response back (proxy/conversations/stored.py). Without
Redis (one process) it is written to the database before the end goes out, as it is when the Redis write
fails. ``previous_response_id`` puts the stored conversation before the new input; an id of another account,
a deleted one, or one made with ``store: false`` is answered exactly as one that never existed (400 with
``param: previous_response_id``).

A passthrough route gets the client's body with its own model name, and its answer and events go back as they
came. A ``previous_response_id`` is forwarded only to the provider that made that response (it keeps the
state); any other route gets the stored conversation replayed as input items instead.
"""

import logging
import time
import uuid
from dataclasses import dataclass, field

import orjson

from billing.credits import DEFAULT_MAX_OUTPUT
from billing.usage import from_responses
from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import errors, tokens
from proxy.gateway.endpoints import anthropic_route, chat
from proxy.gateway.endpoints.base import ANTHROPIC, OPENAI, PASSTHROUGH, Endpoint, Upstream, as_received
from proxy.gateway.schemas.basics import (
    MISSING,
    checked_body,
)  # fmt: skip
from proxy.gateway.schemas.responses import CHECKS, check_input
from proxy.gateway.streaming import KEEPALIVE, Tally, take_chat_chunk
from proxy.gateway.translate.chat_parts import sse_event
from proxy.gateway.translate.responses import (
    ChatStreamToResponses,
    chat_body_from_response_request,
    response_from_chat,
    unsupported_tools,
)  # fmt: skip
from proxy.gateway.upstream import routed_body

log = logging.getLogger("proxy")


@dataclass(slots=True)
class ResponsesRequest:
    model: str
    body: dict
    stream: bool
    store: bool
    previous_id: str
    # The client asked for a reasoning item: it gets one, empty if the upstream gave none.
    want_reasoning: bool
    response_id: str
    created_at: int
    chat: dict = field(default_factory=dict)  # the chat body it is bridged as (set once its history is read)
    input_items: list[dict] = field(default_factory=list)  # this turn's input, as items with ids
    history: list[dict] = field(default_factory=list)  # the items of the turns it continues
    previous_provider: int | None = None  # the provider that made the previous response itself, if one did
    provider_id: int | None = None  # the passthrough route's provider that is answering it
    request_id: uuid.UUID | None = None  # the gateway's id of the request, its usage record's
    include_usage: bool = False
    prompt_tokens: int | None = None
    output_limit: int | None = None  # the most output it may produce, set once its model is known


def parse(raw: bytes) -> ResponsesRequest:
    body = checked_body(raw, CHECKS)
    check_input(body.get("input", MISSING), "input")
    reasoning, include = body.get("reasoning") or {}, body.get("include")
    want_reasoning = bool(reasoning.get("summary")) or (
        isinstance(include, list) and "reasoning.encrypted_content" in include
    )
    return ResponsesRequest(
        model=body["model"], body=body, stream=body.get("stream") is True, store=body.get("store") is not False,
        previous_id=body.get("previous_response_id") or "", want_reasoning=want_reasoning,
        response_id=f"resp_{uuid.uuid4().hex}", created_at=int(time.time()),
    )  # fmt: skip


async def prepare(rt, req, key, request: ResponsesRequest) -> None:
    """Read the conversation it continues, and bridge the request as a chat body."""
    request.request_id = req.request_id
    if request.previous_id:
        found = await rt.responses.conversation(key.account_id, request.previous_id)
        if found is None:
            raise errors.invalid_request(
                f"Previous response with id '{errors.clip(request.previous_id)}' not found.",
                param="previous_response_id", code="previous_response_not_found",
            )  # fmt: skip
        request.history, request.previous_provider = found
    left_out = unsupported_tools(request.body)
    if left_out:
        log.info("request's tools a chat route can't run, left out: %s", ", ".join(left_out))
    request.chat = chat_body_from_response_request(request.body, history=request.history)
    request.input_items = _input_items(request.body["input"], request.response_id)


def _input_items(value: str | list, response_id: str) -> list[dict]:
    """This turn's input as stored items: a string is one user message; every item gets an id."""
    items = [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": value}]}] if isinstance(
        value, str) else [dict(item) for item in value]  # fmt: skip
    suffix = response_id.removeprefix("resp_")
    for i, item in enumerate(items):
        item.setdefault("type", "message")
        item.setdefault("id", f"in_{suffix}_{i}")
    return items


def max_output(request: ResponsesRequest, model: ModelInfo) -> int:
    return request.body.get("max_output_tokens") or model.max_output_tokens or DEFAULT_MAX_OUTPUT


def upstream_body(request: ResponsesRequest, route: RouteInfo, stream: bool) -> bytes:
    extra = {"stream": True} if stream else {}
    return routed_body(request.chat, route, stream, extra)


def write_answer(request: ResponsesRequest, completion: dict) -> dict:
    return response_from_chat(
        completion, response_id=request.response_id, created_at=request.created_at, model=request.model,
        request=request.body, completed_at=int(time.time()), want_reasoning=request.want_reasoning,
    )  # fmt: skip


async def keep(rt, key, request: ResponsesRequest, response: dict) -> None:
    """Store a finished response (unless ``store: false``) before the client sees its end: in Redis, for the
    database soon after, or in the database at once without Redis (proxy/conversations/stored.py). A store
    that fails altogether still answers: the response then reads as one that was never stored."""
    if not request.store or response.get("status") == "failed":
        return
    try:
        await rt.responses.keep(
            response_id=response["id"], account_id=key.account_id, key_id=key.id, previous_id=request.previous_id,
            input_items=request.input_items, response=response, provider_id=request.provider_id,
            request_id=request.request_id,
        )  # fmt: skip
    except Exception as exc:  # only its kind: the database's message may quote the prompt
        log.error("response %s could not be stored (%s)", request.response_id, type(exc).__name__)


class ResponsesEvents:
    """A chat stream written for its client as Responses events, each as it happens; the whole response is
    kept before ``response.completed`` goes out."""

    finished = False
    keepalive = KEEPALIVE

    def __init__(self, request: ResponsesRequest, keep) -> None:
        self.request, self.keep = request, keep
        self.events = ChatStreamToResponses(
            response_id=request.response_id, created_at=request.created_at, model=request.model,
            request=request.body,
        )  # fmt: skip
        self.error: dict | None = None
        self.tally: Tally | None = None

    def start(self) -> bytes:
        return b"".join(map(sse_event, self.events.start()))

    async def chunk(self, raw: bytes, chunk: dict, tally: Tally) -> bytes:
        self.tally = tally
        take_chat_chunk(tally, chunk)
        return b"".join(map(sse_event, self.events.feed(chunk)))

    def failure(self, err: errors.ApiError) -> bytes:
        self.error = {"code": err.code or "server_error", "message": err.message}
        return b""

    async def end(self) -> bytes:
        closing = self.events.finish(None, error=self.error, want_reasoning=self.request.want_reasoning)
        response = closing[-1]["response"]
        cost_of = self.tally.cost_of if self.tally is not None else None
        if cost_of is not None and isinstance(response.get("usage"), dict):
            response["usage"] = {**response["usage"], **cost_of()}
        if self.keep is not None:
            await self.keep(closing[-1]["response"])
        return b"".join(map(sse_event, closing))


# --- an Anthropic-style route: the chat bridge, carried on to the Messages API ---------------------------------


def anthropic_body(request: ResponsesRequest, route: RouteInfo, stream: bool) -> bytes:
    return anthropic_route.body_from_chat(request.chat, route, stream, request.output_limit)


def anthropic_answer(request: ResponsesRequest, message: dict) -> dict:
    return write_answer(request, anthropic_route.chat_answer(request, message))


def anthropic_stream(request: ResponsesRequest, keep) -> anthropic_route.ChatOverMessages:
    return anthropic_route.ChatOverMessages(ResponsesEvents(request, keep), request.model)


# --- passthrough: a route whose upstream serves /responses itself ------------------------------------------------

TERMINAL = frozenset({"response.completed", "response.incomplete", "response.failed"})


def passthrough_body(request: ResponsesRequest, route: RouteInfo, stream: bool) -> bytes:
    """The client's body with the route's model name; a conversation this provider doesn't keep is replayed."""
    body = {**request.body, "model": route.upstream_model}
    body.pop("usage", None)  # the gateway's own option: its cost in the answer
    if request.previous_id and request.previous_provider != route.provider.id:
        body.pop("previous_response_id", None)
        body["input"] = [
            item for item in request.history if item.get("type") != "reasoning"
        ] + request.input_items
    request.provider_id = route.provider.id  # the routes are tried one at a time: the last one asked answers
    return orjson.dumps(body)


def check_response(raw: bytes) -> dict:
    data = orjson.loads(raw)
    if (
        not isinstance(data, dict)
        or data.get("object") != "response"
        or not isinstance(data.get("output"), list)
    ):
        raise ValueError("not a response")
    return data


def take_response(tally: Tally, response: dict) -> None:
    tally.take_canonical(from_responses(response.get("usage")), response.get("usage"))
    for item in response.get("output") or ():
        for part in (item.get("content") or ()) if isinstance(item, dict) else ():
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                tally.pieces.append(part["text"])
    if response.get("status") == "incomplete":
        tally.finish_reason = "length"


class ResponsesPassthrough:
    """A passthrough route's events as they came, each with its ``event:`` line; the response is kept before
    its terminal event goes out. A stream cut short ends with a ``response.failed`` the gateway writes."""

    finished = False
    keepalive = KEEPALIVE

    def __init__(self, request: ResponsesRequest, keep) -> None:
        self.request, self.keep = request, keep
        self.last: dict = {}  # the response as the latest event showed it
        self.sequence = -1

    def start(self) -> bytes:
        return b""

    async def chunk(self, raw: bytes, event: dict, tally: Tally) -> bytes:
        kind = str(event.get("type") or "")
        self.sequence = event.get("sequence_number", self.sequence + 1)
        if isinstance(event.get("response"), dict):
            self.last = event["response"]
        if kind == "response.output_text.delta" and isinstance(event.get("delta"), str):
            if tally.first_token_at is None:
                tally.first_token_at = time.perf_counter()
            tally.pieces.append(event["delta"])
        if kind in TERMINAL:
            self.finished = True
            tally.pieces.clear()  # the whole text comes again with the response
            take_response(tally, self.last)
            if kind != "response.failed" and self.keep is not None:
                await self.keep(self.last)
        return b"event: " + kind.encode() + b"\ndata: " + raw + b"\n\n"

    def failure(self, err: errors.ApiError) -> bytes:
        """As OpenAI ends a failed stream: the error on its own, then the failed response."""
        error = {"code": "server_error", "message": err.message}
        failed = {**self.last, "status": "failed", "error": error}
        alone = {"type": "error", **error, "param": None, "sequence_number": self.sequence + 1}
        return sse_event(alone) + sse_event(
            {"type": "response.failed", "response": failed, "sequence_number": self.sequence + 2}
        )

    async def end(self) -> bytes:
        return b""


RESPONSES = Endpoint(
    name="responses",
    path="/v1/responses",
    mode="chat",
    parse=parse,
    count_input=lambda request: (
        tokens.count_messages(request.chat.get("messages") or [])
        + tokens.count_tools(request.body.get("tools"))
    ),
    max_output=max_output,
    count_output=lambda tally: tokens.count_completion(tally.pieces),
    upstreams={
        OPENAI: Upstream(
            path="/chat/completions",
            body=upstream_body,
            check_answer=chat.check_answer,
            take_answer=chat.take_answer,
            write_answer=write_answer,
            stream_writer=ResponsesEvents,
        ),
        PASSTHROUGH: Upstream(
            path="/responses",
            body=passthrough_body,
            check_answer=check_response,
            take_answer=take_response,
            write_answer=as_received,
            stream_writer=ResponsesPassthrough,
        ),
        ANTHROPIC: Upstream(
            path="/messages",
            body=anthropic_body,
            check_answer=anthropic_route.check_message,
            take_answer=anthropic_route.take_message,
            write_answer=anthropic_answer,
            stream_writer=anthropic_stream,
        ),
    },
    prepare=prepare,
    keep=keep,
)
