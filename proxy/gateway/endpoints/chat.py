"""``POST /v1/chat/completions``: OpenAI's chat completions, plain and streamed, passed through to an
OpenAI-style route with the route's model name, or translated for an Anthropic-style route
(proxy/gateway/endpoints/anthropic_route.py)."""

import orjson

from billing.credits import DEFAULT_MAX_OUTPUT
from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import errors, tokens
from proxy.gateway.endpoints import anthropic_route
from proxy.gateway.endpoints.base import ANTHROPIC, OPENAI, Endpoint, Upstream, as_received
from proxy.gateway.schemas import ChatRequest, parse_chat_request
from proxy.gateway.streaming import ChatChunks, Tally
from proxy.gateway.upstream import routed_body


def max_output(request: ChatRequest, model: ModelInfo) -> int:
    return (request.max_tokens or model.max_output_tokens or DEFAULT_MAX_OUTPUT) * max(request.n, 1)


def upstream_body(request: ChatRequest, route: RouteInfo, stream: bool) -> bytes:
    """One output limit per request: when ``max_tokens`` and ``max_completion_tokens`` disagree, the second
    wins (it is OpenAI's current name, and what the reservation was sized from), and it goes upstream under
    both names. Whichever of the two an upstream honours, it can't produce more than was reserved."""
    body = request.body
    limit = body.get("max_completion_tokens")
    extra = {"max_tokens": limit} if limit is not None and body.get("max_tokens") not in (None, limit) else {}
    return routed_body(body, route, stream, extra)


def check_answer(raw: bytes) -> dict:
    """The upstream's completion, with the fields OpenAI's schema requires filled in when an upstream omits
    them (strict clients validate them). Raises ValueError for anything that is not a completion."""
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError("not a chat completion")
    data.setdefault("object", "chat.completion")
    for choice in data["choices"]:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise ValueError("a choice without a message")
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", "stop")
        choice["message"].setdefault("refusal", None)
        choice["message"].setdefault("content", None)
    return data


def anthropic_body(request: ChatRequest, route: RouteInfo, stream: bool) -> bytes:
    """The request as a Messages body; without an output limit of its own, it gets the one its reservation
    was sized from."""
    if request.n > 1:  # Anthropic's API makes one answer a call; the client would get fewer than it asked for
        raise errors.invalid_request(
            f"This model's provider answers one choice per request; n must be 1, got {request.n}.", param="n"
        )
    limit = request.max_tokens or request.output_limit
    return anthropic_route.body_from_chat(request.body, route, stream, limit)


def anthropic_stream(request: ChatRequest, _keep) -> anthropic_route.ChatOverMessages:
    return anthropic_route.ChatOverMessages(ChatChunks(request.include_usage), request.model)


def take_answer(tally: Tally, answer: dict) -> None:
    tally.take_choices(answer["choices"])
    tally.take_usage(answer.get("usage"))


CHAT = Endpoint(
    name="chat.completions",
    path="/v1/chat/completions",
    mode="chat",
    parse=parse_chat_request,
    count_input=lambda request: (
        tokens.count_messages(request.messages) + tokens.count_tools(request.body.get("tools"))
    ),
    max_output=max_output,
    count_output=lambda tally: tokens.count_completion(tally.pieces),
    upstreams={
        OPENAI: Upstream(
            path="/chat/completions",
            body=upstream_body,
            check_answer=check_answer,
            take_answer=take_answer,
            write_answer=as_received,
        ),
        ANTHROPIC: Upstream(
            path="/messages",
            body=anthropic_body,
            check_answer=anthropic_route.check_message,
            take_answer=anthropic_route.take_message,
            write_answer=anthropic_route.chat_answer,
            stream_writer=anthropic_stream,
        ),
    },
)
