"""``POST /v1/completions``: OpenAI's legacy text completions, plain and streamed, passed through to an
OpenAI-style route.

``prompt`` is a string, a list of strings, a list of token ids or a list of token-id lists. Every choice of
every prompt is billed, and with ``best_of`` the upstream generates (and bills) that many per prompt, so the
worst case is ``max_tokens x max(n, best_of)`` per prompt. OpenAI's default ``max_tokens`` is 16; it is sent
upstream explicitly when the client leaves it out, so that an upstream with another default can't produce
more than was reserved.
"""

from dataclasses import dataclass

import orjson

from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import tokens
from proxy.gateway.endpoints import chat
from proxy.gateway.endpoints.base import OPENAI, Endpoint, Upstream, as_received
from proxy.gateway.schemas import MAX_TOKENS_LIMIT, SEED_MAX, SEED_MIN
from proxy.gateway.schemas.basics import (
    MISSING,
    Checker,
    boolean,
    checked_body,
    fail,
    integer,
    number,
    string,
    texts_or_tokens,
)  # fmt: skip
from proxy.gateway.schemas.tools import check_logit_bias, check_stop, check_stream_options
from proxy.gateway.upstream import routed_body

DEFAULT_MAX_TOKENS = 16  # OpenAI's, for this endpoint


@dataclass(slots=True)
class CompletionRequest:
    model: str
    prompts: list  # strings, or lists of token ids: one item per prompt
    stream: bool
    include_usage: bool
    max_tokens: int  # the client's, or the default
    choices_each: int  # completions generated (and billed) per prompt: max(n, best_of)
    body: dict
    prompt_tokens: int | None = None
    output_limit: int | None = None  # the most output it may produce, set once its model is known


_CHECKS: dict[str, Checker] = {
    "best_of": integer(0, 20),
    "echo": boolean(nullable=True),
    "frequency_penalty": number(-2, 2),
    "presence_penalty": number(-2, 2),
    "logit_bias": check_logit_bias,
    "logprobs": integer(0, 5),
    "max_tokens": integer(0, MAX_TOKENS_LIMIT, f"an integer from 0 to {MAX_TOKENS_LIMIT}"),
    "n": integer(1, 128),
    "seed": integer(SEED_MIN, SEED_MAX, "a 64-bit signed integer"),
    "stop": check_stop,
    "stream": boolean(nullable=True),
    "stream_options": check_stream_options,
    "suffix": string(nullable=True),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "user": string(nullable=False),
}


def parse(raw: bytes) -> CompletionRequest:
    body = checked_body(raw, _CHECKS)
    stream = body.get("stream") is True
    if body.get("stream_options") is not None and not stream:
        fail("stream_options", "stream_options is only allowed when stream is true; set stream or remove it")
    n, best_of = body.get("n") or 1, body.get("best_of")
    if best_of is not None and best_of < n:
        fail(
            "best_of",
            f"best_of ({best_of}) must be at least n ({n}): it is how many completions are generated",
        )
    if stream and best_of is not None and best_of > 1:
        fail("best_of", "best_of can't be used with stream: its completions are compared before any is sent")
    options = body.get("stream_options")
    max_tokens = body.get("max_tokens")
    return CompletionRequest(
        model=body["model"], prompts=texts_or_tokens(body.get("prompt", MISSING), "prompt", empty_text=True),
        stream=stream,
        include_usage=stream and type(options) is dict and options.get("include_usage") is True,
        max_tokens=DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        choices_each=max(n, best_of or 1), body=body,
    )  # fmt: skip


def count_input(request: CompletionRequest) -> int:
    return sum(tokens.count_text(p) if type(p) is str else len(p) for p in request.prompts)


def max_output(request: CompletionRequest, _model: ModelInfo) -> int:
    return request.max_tokens * request.choices_each * len(request.prompts)


def upstream_body(request: CompletionRequest, route: RouteInfo, stream: bool) -> bytes:
    extra = {"max_tokens": DEFAULT_MAX_TOKENS} if request.body.get("max_tokens") is None else None
    return routed_body(request.body, route, stream, extra)


def check_answer(raw: bytes) -> dict:
    """The upstream's completion, with the fields OpenAI's schema requires filled in. ValueError otherwise."""
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError("not a text completion")
    data.setdefault("object", "text_completion")
    for i, choice in enumerate(data["choices"]):
        if not isinstance(choice, dict) or not isinstance(choice.get("text"), str):
            raise ValueError("a choice without text")
        choice.setdefault("index", i)
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", "stop")
    return data


COMPLETIONS = Endpoint(
    name="completions",
    path="/v1/completions",
    mode="completion",
    parse=parse,
    count_input=count_input,
    max_output=max_output,
    count_output=lambda tally: tokens.count_completion(tally.pieces),
    upstreams={
        OPENAI: Upstream(
            path="/completions",
            body=upstream_body,
            check_answer=check_answer,
            take_answer=chat.take_answer,  # legacy choices carry their text where chat's carry a message
            write_answer=as_received,
        ),
    },
)
