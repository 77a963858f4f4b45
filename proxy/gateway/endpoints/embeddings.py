"""``POST /v1/embeddings``: OpenAI's embeddings, passed through to an OpenAI-style route.

``input`` is a string, a list of strings, a list of token ids or a list of token-id lists: at most 2,048
inputs, none of them empty. ``encoding_format`` is ``float`` (the default) or ``base64``; an upstream that
answers floats when base64 was asked for is answered in base64 all the same (the little-endian float32 bytes,
as OpenAI encodes them). Billed at the model's input price on the upstream's ``usage.prompt_tokens``, counted
locally when it sends none; the local count is also the worst case that is reserved.
"""

import base64
import struct
from dataclasses import dataclass

import orjson

from billing.usage import from_openai
from proxy.catalog.snapshot import RouteInfo
from proxy.gateway import tokens
from proxy.gateway.endpoints.base import OPENAI, Endpoint, Upstream
from proxy.gateway.schemas.basics import (
    MISSING,
    checked_body,
    enum,
    integer,
    string,
    texts_or_tokens,
)
from proxy.gateway.streaming import Tally
from proxy.gateway.upstream import routed_body

MAX_INPUTS = 2048


@dataclass(slots=True)
class EmbeddingsRequest:
    model: str
    inputs: list  # strings, or lists of token ids: one item per embedding
    base64: bool  # the client asked for encoding_format "base64"
    body: dict
    stream: bool = False
    include_usage: bool = False
    prompt_tokens: int | None = None
    output_limit: int | None = None  # the most output it may produce, set once its model is known


_CHECKS = {
    "encoding_format": enum("float", "base64"),
    "dimensions": integer(1, 1_000_000, "a positive integer"),
    "user": string(nullable=False),
}


def parse(raw: bytes) -> EmbeddingsRequest:
    body = checked_body(raw, _CHECKS)
    inputs = texts_or_tokens(body.get("input", MISSING), "input", empty_text=False, max_items=MAX_INPUTS)
    return EmbeddingsRequest(
        model=body["model"], inputs=inputs, base64=body.get("encoding_format") == "base64", body=body
    )


def count_input(request: EmbeddingsRequest) -> int:
    return sum(tokens.count_text(item) if type(item) is str else len(item) for item in request.inputs)


def upstream_body(request: EmbeddingsRequest, route: RouteInfo, _stream: bool) -> bytes:
    return routed_body(request.body, route, False)


def check_answer(raw: bytes) -> dict:
    """The upstream's embeddings, with the fields OpenAI's schema requires filled in. ValueError otherwise."""
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise ValueError("not an embeddings list")
    data.setdefault("object", "list")
    for i, item in enumerate(data["data"]):
        vector = item.get("embedding") if isinstance(item, dict) else None
        if not isinstance(vector, str) and not (isinstance(vector, list) and all(map(_is_number, vector))):
            raise ValueError("an item without an embedding")
        item.setdefault("object", "embedding")
        item.setdefault("index", i)
    return data


def _is_number(value: object) -> bool:
    return type(value) is float or type(value) is int


def take_answer(tally: Tally, answer: dict) -> None:
    usage = answer.get("usage")
    if isinstance(usage, dict):  # embeddings produce no output tokens
        tally.take_canonical(
            from_openai({"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": 0}), usage
        )


def write_answer(request: EmbeddingsRequest, answer: dict) -> dict:
    if request.base64:
        for item in answer["data"]:
            if isinstance(item["embedding"], list):
                item["embedding"] = encode_base64(item["embedding"])
    return answer


def encode_base64(vector: list) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


EMBEDDINGS = Endpoint(
    name="embeddings",
    path="/v1/embeddings",
    mode="embedding",
    parse=parse,
    count_input=count_input,
    max_output=lambda _request, _model: 0,
    count_output=lambda _tally: 0,
    upstreams={
        OPENAI: Upstream(
            path="/embeddings",
            body=upstream_body,
            check_answer=check_answer,
            take_answer=take_answer,
            write_answer=write_answer,
        ),
    },
)
