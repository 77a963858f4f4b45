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

from proxy.catalog.snapshot import RouteInfo
from proxy.gateway import tokens
from proxy.gateway.endpoints.base import Endpoint
from proxy.gateway.schemas.basics import (
    MISSING,
    enum,
    fail,
    integer,
    is_int,
    load_body,
    require_model,
    show,
    string,
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


_CHECKS = {
    "encoding_format": enum("float", "base64"),
    "dimensions": integer(1, 1_000_000, "a positive integer"),
    "user": string(nullable=False),
}


def parse(raw: bytes) -> EmbeddingsRequest:
    body = load_body(raw)
    require_model(body)
    for key, check in _CHECKS.items():
        if key in body:
            check(body[key], key)
    return EmbeddingsRequest(
        model=body["model"], inputs=_inputs(body.get("input", MISSING)),
        base64=body.get("encoding_format") == "base64", body=body,
    )  # fmt: skip


def _inputs(value: object) -> list:
    if value is MISSING:
        fail("input", "Missing required parameter: 'input' (a string, or an array of strings or token ids).")
    if type(value) is str:
        return [_text(value, "input")]
    if type(value) is not list or not value:
        fail("input", f"input must be a non-empty string or a non-empty array, got {show(value)}")
    if len(value) > MAX_INPUTS:
        fail("input", f"input must have at most {MAX_INPUTS} items, got {len(value)}")
    if all(is_int(v) for v in value):
        return [_token_ids(value, "input")]
    kind = type(value[0])
    for i, item in enumerate(value):
        if type(item) is not kind or kind not in (str, list):
            fail(f"input[{i}]", "input must be an array of strings, of token ids, or of token-id arrays, "
                 f"one kind only; input[{i}] is {show(item)}")  # fmt: skip
    if kind is str:
        return [_text(item, f"input[{i}]") for i, item in enumerate(value)]
    return [_token_ids(item, f"input[{i}]") for i, item in enumerate(value)]


def _text(value: str, param: str) -> str:
    if not value:
        fail(param, f"{param} must not be an empty string")
    return value


def _token_ids(value: list, param: str) -> list:
    if not value:
        fail(param, f"{param} must not be an empty array of token ids")
    for j, token in enumerate(value):
        if not is_int(token) or token < 0:
            fail(f"{param}[{j}]", f"token ids must be integers of 0 or more, got {show(token)}")
    return value


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
        tally.take_usage({"prompt_tokens": usage.get("prompt_tokens"), "completion_tokens": 0})


def write_answer(request: EmbeddingsRequest, answer: dict) -> bytes:
    if request.base64:
        for item in answer["data"]:
            if isinstance(item["embedding"], list):
                item["embedding"] = encode_base64(item["embedding"])
    return orjson.dumps(answer)


def encode_base64(vector: list) -> str:
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


EMBEDDINGS = Endpoint(
    name="embeddings",
    path="/v1/embeddings",
    mode="embedding",
    upstream_path="/embeddings",
    parse=parse,
    count_input=count_input,
    max_output=lambda _request, _model: 0,
    upstream_body=upstream_body,
    check_answer=check_answer,
    take_answer=take_answer,
    write_answer=write_answer,
    count_output=lambda _tally: 0,
)
