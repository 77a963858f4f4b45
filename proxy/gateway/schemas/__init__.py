"""Validation of the body of ``POST /v1/chat/completions`` against OpenAI's ``CreateChatCompletionRequest``.

This runs on every request, so it is hand-written: plain ``type(x) is ...`` checks dispatched through dicts,
no jsonschema, and no copy of the body (the parsed dict is forwarded upstream as-is). Every violation raises
``errors.invalid_request`` with ``param`` spelled the way OpenAI spells it (``messages[2].role``,
``tools[0].function.name``) and a message that says what was wrong and what is allowed.

Where the spec's prose says more than its schema (``stream_options`` only with ``stream: true``,
``top_logprobs`` only with ``logprobs: true``, assistant content unless there are tool calls, metadata limits,
the function-name pattern, ``audio`` required for audio output), the prose is enforced too, as OpenAI does. Unknown fields,
at the top level and inside messages, pass through untouched so that newer client features keep working.

This module holds the entry points, the table of top-level fields and the rules between fields; ``basics``
has the failure helper and generic checkers, ``messages`` the messages and their content parts, and
``tools`` the structured top-level fields.
"""

from dataclasses import dataclass

from proxy.gateway.schemas.basics import (
    Checker,
    boolean,
    enum,
    fail,
    integer,
    load_body,
    number,
    object_or_null,
    show,
    string,
)
from proxy.gateway.schemas.messages import check_messages
from proxy.gateway.schemas.tools import (
    check_audio,
    check_function_call,
    check_functions,
    check_logit_bias,
    check_metadata,
    check_modalities,
    check_moderation,
    check_prediction,
    check_response_format,
    check_stop,
    check_stream_options,
    check_tool_choice,
    check_tools,
    check_web_search,
)

__all__ = ["MAX_TOKENS_LIMIT", "ChatRequest", "parse_chat_request", "validate_chat_request"]

# No model comes near 2**31 tokens; the cap keeps absurd limits out of upstreams and out of the credit hold,
# which is sized from max_tokens.
MAX_TOKENS_LIMIT = 2**31 - 1
# The spec bounds `seed` by a signed 64-bit integer.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[dict]
    stream: bool
    include_usage: bool  # the client asked for stream_options.include_usage
    max_tokens: int | None  # max_completion_tokens if given, else max_tokens, else None
    n: int  # default 1
    body: dict  # the whole parsed body, untouched, for pass-through
    prompt_tokens: int | None = None  # the local count of the prompt, once one was needed before the relay
    output_limit: int | None = None  # the most output it may produce, set once its model is known


def parse_chat_request(raw: bytes) -> ChatRequest:
    return validate_chat_request(load_body(raw))


def validate_chat_request(body: object) -> ChatRequest:
    if type(body) is not dict:
        fail(None, f"The request body must be a JSON object, got {show(body)}.")
    if "model" not in body:
        fail("model", "You must provide a model parameter (a non-empty string).")
    if "messages" not in body:
        fail("messages", "Missing required parameter: 'messages' (a non-empty array of messages).")
    for key, value in body.items():
        check = _FIELD_CHECKS.get(key) if type(key) is str else None
        if check is not None:
            check(value, key)
    _check_cross_field(body)

    stream = body.get("stream") is True
    options = body.get("stream_options")
    max_tokens = body.get("max_completion_tokens")
    if max_tokens is None:
        max_tokens = body.get("max_tokens")
    return ChatRequest(
        model=body["model"],
        messages=body["messages"],
        stream=stream,
        include_usage=stream and type(options) is dict and options.get("include_usage") is True,
        max_tokens=max_tokens,
        n=body.get("n") or 1,
        body=body,
    )


# --- top-level fields --------------------------------------------------------------------------------------


def _check_model(value: object, param: str) -> None:
    if type(value) is not str or not value:
        fail(param, f"{param} must be a non-empty string naming the model, got {show(value)}")


_token_limit = integer(1, MAX_TOKENS_LIMIT, f"a positive integer of at most {MAX_TOKENS_LIMIT}")

_FIELD_CHECKS: dict[str, Checker] = {
    "model": _check_model,
    "messages": check_messages,
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "n": integer(1, 128),
    "presence_penalty": number(-2, 2),
    "frequency_penalty": number(-2, 2),
    "stop": check_stop,
    "max_tokens": _token_limit,
    "max_completion_tokens": _token_limit,
    "seed": integer(SEED_MIN, SEED_MAX, "a 64-bit signed integer"),
    "logprobs": boolean(nullable=True),
    "top_logprobs": integer(0, 20),
    "logit_bias": check_logit_bias,
    "stream": boolean(nullable=True),
    "stream_options": check_stream_options,
    "user": string(nullable=False),
    "safety_identifier": string(nullable=True, max_length=64),
    "prompt_cache_key": string(nullable=True),
    "prompt_cache_retention": enum("in_memory", "24h"),
    "prompt_cache_options": object_or_null,
    "tools": check_tools,
    "tool_choice": check_tool_choice,
    "parallel_tool_calls": boolean(nullable=False),
    "function_call": check_function_call,
    "functions": check_functions,
    "response_format": check_response_format,
    "metadata": check_metadata,
    "modalities": check_modalities,
    "reasoning_effort": enum("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    "verbosity": enum("low", "medium", "high"),
    "service_tier": enum("auto", "default", "flex", "scale", "priority", "fast"),
    "store": boolean(nullable=True),
    "prediction": check_prediction,
    "audio": check_audio,
    "web_search_options": check_web_search,
    "moderation": check_moderation,
}


def _check_cross_field(body: dict) -> None:
    """Rules the spec states in prose between two fields; each field's own type is already checked."""
    if body.get("stream_options") is not None and body.get("stream") is not True:
        fail("stream_options", "stream_options is only allowed when stream is true; set stream or remove it")
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        fail("top_logprobs", "top_logprobs is only allowed when logprobs is true; set logprobs or remove it")
    modalities = body.get("modalities")
    if modalities and "audio" in modalities and body.get("audio") is None:
        fail("audio", "audio (with voice and format) is required when modalities includes 'audio'")
