"""A real OpenAI-compatible (and Anthropic-compatible) HTTP server that plays the upstream LLM provider.

The test-suite points the gateway's providers at it, and the benchmark uses it as the "direct upstream"
baseline, so it speaks real HTTP over a real socket and stays cheap per request.

Endpoints, each also under any path prefix (``/{prefix}/v1/...``, see :meth:`FakeUpstream.url_for`):
``POST /v1/chat/completions``, ``POST /v1/completions`` (legacy), ``POST /v1/embeddings``,
``POST /v1/responses``, ``GET /v1/models`` and ``GET /v1/models/{id}``; Anthropic's ``POST /v1/messages``
and ``POST /v1/messages/count_tokens`` (tests/upstream_anthropic.py). Anthropic's SDK appends ``/v1/...`` to
its base URL itself: give it ``url_for(prefix).removesuffix("/v1")``.

Behaviour is chosen by the ``model`` field of the request body (the gateway forwards the provider's upstream
model name there). Grammar: ``<base>[:<param>]``. The same behaviours apply to every POST endpoint; the
stream-only ones do nothing to embeddings, which never stream.

=========================  ===========================================================================
``echo`` / anything else   success; content is ``"You said: " + <last user text>`` (whitespace collapsed);
                           legacy completions: ``"You said: " + <prompt> [+ " " + <suffix>]``;
                           responses right after a ``function_call_output``: ``"Tool said: " + <its output>``
``long:N``                 success with exactly N content words ``"w1 w2 ... wN"``
``no-usage``               success, but ``usage`` is never sent (not even with ``include_usage``; a Response
                           has no ``usage`` key, which the SDK reads as None: the spec allows no null there)
``float-only``             embeddings: always answer float arrays, even when ``base64`` is asked for
``fail-NNN[:S]``           HTTP NNN with an OpenAI (Messages: Anthropic) error body; ``Retry-After: S``
                           (``fail-429``: 1 by default)
``hang``                   accept the request and never answer
``slow-first-byte:S``      wait S seconds before the response headers, then behave normally
``slow-stream[:S]``        streams wait S seconds (default 0.1) between chunks; at least 20 content words
                           (before ``max_tokens`` / ``max_output_tokens``; legacy completions default to 16)
``slow-first-token:S``     streams send their headers at once, then wait S seconds before the first event
``cut-after:N``            chat stream: headers + role chunk + N content chunks, then abort the TCP connection;
                           messages stream: headers + the events before the first content_block_delta + N
                           deltas, then abort;
                           legacy completion stream: headers + N chunks, then abort;
                           responses stream: headers + the events before the first text (or arguments)
                           delta + N events (N text deltas), then abort;
                           non-stream (embeddings too): headers + half the body, then abort
``garbage``                HTTP 200, ``application/json``, body that is not JSON
``early-close``            close the connection without sending any response
``cached:N``               success; OpenAI-style usage says N of the prompt tokens were read from its cache:
                           ``prompt_tokens_details.cached_tokens`` = min(N, prompt_tokens); responses:
                           ``input_tokens_details.cached_tokens`` = min(N, input_tokens)
``deepseek-cache:N``       success; DeepSeek-style usage (chat and legacy completions):
                           ``prompt_cache_hit_tokens`` = min(N, prompt_tokens), ``prompt_cache_miss_tokens``
                           the rest
``reasoning:N``            success; N hidden reasoning tokens: ``completion_tokens_details.reasoning_tokens``
                           = N, added to ``completion_tokens`` (whatever ``max_tokens`` says; no content
                           changes); responses: added to ``output_tokens`` and to
                           ``output_tokens_details.reasoning_tokens``
=========================  ===========================================================================

The last three are usage behaviours: they combine with each other and with one behaviour of the others by
``+``, in any order (``cached:40+reasoning:3``, ``long:5+deepseek-cache:8``, ``slow-stream+cached:2``), and
apply to plain answers and to a stream's usage chunk (or its final Response) alike. Without them a usage has
no details (a Response's ``input_tokens_details.cached_tokens`` is 0). They do nothing to embeddings or to
messages, whose cache is played by ``cache_control`` markers (below). A model name with no usage behaviour
in it is read whole, ``+`` and all.

Chat options honoured on success: ``stream``, ``stream_options.include_usage``, ``max_tokens`` /
``max_completion_tokens`` (truncates, finish_reason ``length``), ``response_format`` ``json_object``
(content is ``{"echo": "<text>"}``) and ``tools`` / ``tool_choice`` (answers with a call to the first, or
the named, tool; after a ``tool`` message, in words, so that an agent's tool loop ends).

Legacy completions take ``prompt`` as a string, strings, token ids or token-id lists (token ``id`` reads as
the word ``t<id>``; a null prompt is ``<|endoftext|>``), and honour ``max_tokens`` (default 16, finish_reason
``length``), ``stop`` (generation ends before the first word whose addition makes the generated text contain
a stop sequence; finish_reason ``stop``), ``suffix`` (the model reads it after the prompt, so its words join
the echo), ``echo`` (the prompt's words come first in ``text``), ``n`` (choice ``prompt_index * n + j``; the
``n`` choices of a prompt are identical), ``best_of`` (only billed), ``logprobs`` (0..5: every token has
logprob ``-(len(token.strip()) % 7 + 1) / 8``; ``text_offset`` counts from the start of the choice's
``text``), ``stream`` and ``stream_options.include_usage``. A stream sends each choice in turn, one chunk per
word, then a chunk with its finish_reason, then [the usage chunk, ``choices: []``] and ``[DONE]``.

Responses (``POST /v1/responses``) take ``input`` as a string (one user message) or items: messages (string
content, or ``input_text`` / ``output_text`` parts; other parts are ignored), ``function_call`` and
``function_call_output`` items (others are accepted and ignored), and honour ``instructions``, ``tools``
(function tools ``{"type": "function", "name", ...}``, echoed with ``strict``/``description``/``parameters``
filled in; built-in tools such as ``web_search`` are accepted, echoed and never called), ``tool_choice``
(``auto``/``required``: the first function tool; a named function; ``allowed_tools``; ``none``),
``max_output_tokens`` (the text is cut to that many words: status ``incomplete``,
``incomplete_details.reason`` ``max_output_tokens``), ``text.format`` ``json_object`` (text
``{"echo": "<text>"}``), ``reasoning`` (an effort other than ``none``) or
``include: ["reasoning.encrypted_content"]`` (a ``reasoning`` item with the summary
``"Thinking about how to answer."`` comes first; ``encrypted_content`` only when included), ``stream`` and
``previous_response_id``. The server keeps the last 10,000 responses it made (not those asked with
``store: false``; ``FakeUpstream.stored_responses``, kept across ``clear()``) as their conversation, input
then output, from the moment they are answered; a request naming one continues it, the new input
after the old (``instructions`` are not carried over); an id it does not know answers 400
``previous_response_not_found`` with ``param: previous_response_id``. With function tools and a conversation
whose last item is not a ``function_call_output``, the answer is one ``function_call`` item (arguments ``{}``,
``call_id`` ``call_...``); after a ``function_call_output`` it is text quoting the output, so tool loops end.
A stream is ``event: <type>`` + ``data: <json>`` events with a ``sequence_number`` from 0:
``response.created``, ``response.in_progress``, then per output item ``response.output_item.added``, its
reasoning summary events (``reasoning_summary_part.added``, one ``reasoning_summary_text.delta`` per word,
``.done``, ``part.done``), message events (``content_part.added``, one ``output_text.delta`` per word,
``output_text.done``, ``content_part.done``) or call events (``function_call_arguments.delta``, ``.done``) and
``response.output_item.done``; last ``response.completed`` or ``response.incomplete`` with the whole Response;
no ``[DONE]``.

Messages (``POST /v1/messages``) speak Anthropic's API. Every request needs a key (``x-api-key``, or
``Authorization: Bearer`` as the official SDK sends it; else 401 ``authentication_error`` "x-api-key header
is required") and an ``anthropic-version`` header (else 400 "anthropic-version: header is required"); then
a JSON body with a ``model`` string. The behaviour is played next, then the body is validated, each
violation a 400 ``invalid_request_error`` with a pydantic-style message (``"max_tokens: Field required"``):
``max_tokens`` an integer >= 1; ``messages`` a non-empty list of ``user``/``assistant`` messages, content a
string or blocks with a ``type`` (``text`` needs ``text``; ``tool_use`` ``id``, ``name``, ``input``;
``tool_result`` ``tool_use_id``), only a final assistant message may be empty, each ``tool_result`` must
answer a ``tool_use`` of the message before and each ``tool_use`` be answered in the next message;
``system`` a string or text blocks; ``tools`` with a ``name`` (custom tools an ``input_schema``);
``tool_choice`` ``auto``/``any``/``tool`` (a known ``name``)/``none``; ``temperature`` and ``top_p`` in
[0, 1], ``top_k`` >= 0, ``stop_sequences`` strings; ``thinking`` ``enabled`` (``budget_tokens`` >= 1024 and
< ``max_tokens``), ``adaptive``, ``between_tools`` or ``disabled``; at most 4 ``cache_control`` markers
(``{"type": "ephemeral", "ttl": "5m"|"1h"}``). Other fields (``metadata``, ``context_management``,
``output_config``, ...) are ignored. Errors are ``{"type": "error", "error": {"type", "message"},
"request_id"}`` with a ``request-id`` header; ``fail-NNN`` picks the type of the status (400
invalid_request_error, 401 authentication_error, 402 billing_error, 403 permission_error, 404
not_found_error, 413 request_too_large, 429 rate_limit_error, 500 api_error, 504 timeout_error, 529
overloaded_error; other 4xx invalid_request_error, 5xx api_error). The answer is a Message (``msg_...``,
``request-id`` header): with thinking (not ``disabled``) a ``thinking`` block ``"Thinking about how to
answer."`` comes first (empty with ``display: "omitted"``; always a ``signature``); then, when custom tools
are given, ``tool_choice`` is not ``none`` and the last user message holds no ``tool_result``, one
``tool_use`` block (``toolu_...``, the first custom tool or the named one, input ``{}``, stop_reason
``tool_use``); otherwise a text block: ``"You said: " + <the last user message's text blocks>`` or, when
that message holds a ``tool_result``, ``"Tool said: " + <the last tool_result's text>``; ``long:N`` says
``w1 ... wN``. The text ends after ``max_tokens`` minus the thinking words (stop_reason ``max_tokens``), or
before the first word whose addition makes it contain a stop sequence (stop_reason ``stop_sequence``,
``stop_sequence`` the one met first), else stop_reason ``end_turn``; no words, no text block. A stream is
``event: <type>`` + ``data: <json>``: ``message_start`` (empty content, null stop_reason, the whole input
usage, output_tokens ``min(1, final)``), per block ``content_block_start`` (the first one followed by a
``ping``), its deltas (one ``text_delta`` or ``thinking_delta`` per word; thinking ends with a
``signature_delta``; a tool's input in two ``input_json_delta``, ``{`` and ``}``), ``content_block_stop``;
then ``message_delta`` (stop_reason, stop_sequence; usage: the input counts and output_tokens) and
``message_stop``; no ``[DONE]``. ``no-usage``: Anthropic always sends usage, so every count is 0 (and the
cache is not touched). ``POST /v1/messages/count_tokens`` validates the same fields but ``max_tokens`` and
answers ``{"input_tokens": N}``, N the sum of a Message's three input buckets (``no-usage`` too), without
touching the cache.

Prompt caching: the prompt is a sequence of blocks in Anthropic's order: tools, system blocks, then each
message's content blocks (string content is one text block). A ``cache_control`` marker on one of them (a
top-level ``cache_control`` marks the last block) is a breakpoint: the prefix up to and including it is
written to ``FakeUpstream.prompt_cache`` (keyed by a hash of the blocks without their markers, the path
prefix and the model; never expires; emptied by ``clear()``). A request reads the longest prefix written
before that ends at one of its breakpoints or at one of the 19 blocks before one:
``cache_read_input_tokens``; the tokens from there to its last breakpoint are
``cache_creation_input_tokens``, each stretch between breakpoints in the ttl bucket of the breakpoint that
closes it (``cache_creation.ephemeral_5m_input_tokens`` / ``ephemeral_1h_input_tokens``); ``input_tokens`` is
the rest, after the last breakpoint. There is no minimum cacheable length.

Embeddings take ``input`` in the same four forms (an empty string is rejected), ``dimensions`` (default 8)
and ``encoding_format`` ``float`` (default) or ``base64`` (little-endian float32, as OpenAI sends). Vectors
come from :func:`embedding_vector`: deterministic, unit length, float32-exact, so both encodings carry the
very same numbers.

Token accounting is deterministic so billing tests can predict it (a "word" is a whitespace-separated word):

* chat: prompt_tokens is the number of words in all message text plus 3 per message; completion_tokens is
  the number of content words, i.e. the number of streamed content chunks (a tool call counts as its 2
  chunks: name and arguments), plus the N of ``reasoning:N``;
* responses: input_tokens is the words of ``instructions`` plus, over the whole conversation (the previous
  responses' inputs and outputs included), 3 + the words of each message, the words of each function call's
  name and arguments (2 for the calls this server makes) and of each function call output's output (reasoning
  and other items are free); output_tokens is the text's words (2 for a function call, as in chat) plus the
  reasoning summary's words, which are also ``output_tokens_details.reasoning_tokens``;
  ``input_tokens_details.cached_tokens`` is 0 (but see ``cached:N`` and ``reasoning:N``);
* legacy completions: prompt_tokens is the number of words (or token ids) of every prompt, plus the words of
  ``suffix`` once per prompt; completion_tokens is, summed over the prompts, the number of generated words
  (the echoed prompt not included) times ``max(n, best_of)``, as OpenAI bills ``best_of``, plus the N of ``reasoning:N``;
* embeddings: prompt_tokens = total_tokens = the words of each string item plus the length of each token
  list;
* messages: the input is 3 + the words of the name and description for each tool (its schema is free),
  the words of the system prompt, and for each message 3 + its blocks: a text block's words, a tool_use's
  name and compact-JSON input words (2 for the calls this server makes), a tool_result's text words
  (thinking, images, documents and others are free); a message's 3 belong to its first block. It is split
  into input_tokens / cache_creation_input_tokens / cache_read_input_tokens as above. output_tokens is the
  text's words (2 for a tool_use) plus 5 for a thinking block.

Run in the foreground with ``python -m tests.upstream --port 9100``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import collections
import functools
import hashlib
import itertools
import json
import math
import os
import signal
import struct
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

try:
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a project dependency; the fallback keeps the tool portable

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads


DEFAULT_MODELS = ("echo", "gpt-x", "long", "slow-stream", "fail-500")
SLOW_STREAM_DELAY = 0.1
SLOW_STREAM_MIN_WORDS = 20
# How often a sleeping handler checks whether its client went away; bounds disconnect-detection latency.
POLL_INTERVAL = 0.02
# A tool call is streamed as two chunks (name, then arguments); usage counts them like content chunks.
TOOL_CALL_TOKENS = 2
FINGERPRINT = "fp_fakeupstream"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
GARBAGE_BODY = b"<html><body>502 this is not JSON {"
DONE_EVENT = b"data: [DONE]\n\n"
DEFAULT_EMBEDDING_DIMENSIONS = 8
LEGACY_MAX_TOKENS = 16  # OpenAI's default for the legacy completions endpoint
LEGACY_MAX_LOGPROBS = 5
END_OF_TEXT = "<|endoftext|>"

_RUN_TAG = os.urandom(4).hex()
_ids = itertools.count(1)


def _new_id(kind: str) -> str:
    """Cheap unique ids (a counter, not uuid4) because this server also runs in the benchmark."""
    return f"{kind}{_RUN_TAG}{next(_ids):012d}"


# --------------------------------------------------------------------------------------------- records


@dataclass(slots=True)
class RecordedRequest:
    """One request as the upstream saw it. ``headers`` keys are lower-cased for predictable lookups;
    ``query`` is the query string (``{"beta": "true"}``), the last value of a repeated key."""

    prefix: str
    path: str
    method: str
    headers: dict[str, str]
    json: Any
    received_at: float
    query: dict[str, str] = field(default_factory=dict)

    @property
    def model(self) -> str | None:
        return self.json.get("model") if isinstance(self.json, dict) else None


@dataclass(slots=True)
class DisconnectRecord:
    """The client went away before the response was complete (``chunks_sent`` = SSE events written)."""

    model: str
    prefix: str
    stream: bool
    chunks_sent: int
    noticed_at: float


# ------------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class UsageReport:
    """What the usage behaviours (``cached:N``, ``deepseek-cache:N``, ``reasoning:N``) make a success's usage
    say; None: the behaviour was not asked for, and the usage keeps its plain shape."""

    cached: int | None = None
    deepseek_hit: int | None = None
    reasoning: int = 0


PLAIN_USAGE = UsageReport()
USAGE_BEHAVIOURS = {"cached": "cached", "deepseek-cache": "deepseek_hit", "reasoning": "reasoning"}


@dataclass(frozen=True, slots=True)
class Behaviour:
    name: str
    param: str | None
    usage: UsageReport = PLAIN_USAGE

    def number(self, default: float) -> float:
        try:
            return float(self.param) if self.param is not None else default
        except ValueError:
            return default

    def integer(self, default: int) -> int:
        return int(self.number(default))

    @property
    def fail_status(self) -> int | None:
        """The HTTP status of a ``fail-NNN`` behaviour, else None."""
        head, _, code = self.name.partition("-")
        if head == "fail" and code.isdigit() and 400 <= int(code) <= 599:
            return int(code)
        return None


@functools.lru_cache(maxsize=4096)
def parse_behaviour(model: str) -> Behaviour:
    """``<base>[:<param>]``, joined with ``+`` to usage behaviours (in any order); a name with no usage
    behaviour in it is read whole, ``+`` and all."""
    parts = model.split("+")
    report: dict[str, int] = {}
    rest = []
    for part in parts:
        base, _, param = part.partition(":")
        if base in USAGE_BEHAVIOURS and param.isdigit():
            report[USAGE_BEHAVIOURS[base]] = int(param)
        else:
            rest.append(part)
    main = "+".join(rest) if report else model
    base, sep, param = (main or "echo").partition(":")
    return Behaviour(base, param if sep else None, UsageReport(**report) if report else PLAIN_USAGE)


def chat_usage(prompt: int, completion: int, report: UsageReport) -> dict[str, Any]:
    """Chat's (and legacy completions') usage object, with what the usage behaviours add: OpenAI's
    ``prompt_tokens_details.cached_tokens`` and ``completion_tokens_details.reasoning_tokens`` (a part of
    ``completion_tokens``), DeepSeek's ``prompt_cache_hit_tokens`` / ``prompt_cache_miss_tokens``."""
    completion += report.reasoning
    usage: dict[str, Any] = {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
    }
    if report.cached is not None:
        usage["prompt_tokens_details"] = {"cached_tokens": min(report.cached, prompt), "audio_tokens": 0}
    if report.reasoning:
        usage["completion_tokens_details"] = {
            "reasoning_tokens": report.reasoning,
            "audio_tokens": 0,
            "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0,
        }
    if report.deepseek_hit is not None:
        hit = min(report.deepseek_hit, prompt)
        usage["prompt_cache_hit_tokens"], usage["prompt_cache_miss_tokens"] = hit, prompt - hit
    return usage


_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (simulated upstream error)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    403: ("permission_error", None, "You are not allowed to use this model (simulated)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (simulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (simulated)."),
    500: ("server_error", None, "The server had an error while processing your request (simulated)."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded (simulated)."),
}


def error_response(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: str | None = None,
) -> web.Response:
    """An OpenAI-style error (``{"error": {message, type, param, code}}``)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    fallback = (kind, None, f"HTTP {status} (simulated).")
    kind, default_code, default_message = _ERROR_KINDS.get(status, fallback)
    error = {"message": message or default_message, "type": kind, "param": param}
    body = {"error": {**error, "code": code or default_code}}
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.Response(status=status, body=_dumps(body), content_type="application/json", headers=headers)


class InvalidRequest(ValueError):
    """A request a real upstream would refuse with a 400; raised while planning the answer."""

    def __init__(self, message: str, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.param = param
        self.code = code


@dataclass(slots=True)
class Reply:
    """A planned successful answer: a JSON body, or SSE events of which the first ``lead`` carry no content
    (so ``cut-after:N`` counts content events whatever the endpoint's stream opens with)."""

    request_id: str
    payload: bytes | list[bytes]
    lead: int = 1
    id_header: str = "x-request-id"  # the response header that carries request_id


# A planner turns (request body, behaviour, stream?) into a Reply, or raises InvalidRequest.
Planner = Callable[[dict[str, Any], Behaviour, bool], Reply]


def wants_usage(body: dict[str, Any]) -> bool:
    return bool((body.get("stream_options") or {}).get("include_usage"))


def pad_words(words: list[str], pad_to: int) -> list[str]:
    if len(words) < pad_to:
        return words + [f"word{i}" for i in range(1, pad_to - len(words) + 1)]
    return words


def long_words(behaviour: Behaviour) -> list[str]:
    return [f"w{i}" for i in range(1, behaviour.integer(10) + 1)]


def padding_for(behaviour: Behaviour) -> int:
    """How many words the echoed text is padded to, so that slow and cut streams have enough chunks."""
    if behaviour.name == "slow-stream":
        return SLOW_STREAM_MIN_WORDS
    if behaviour.name == "cut-after":
        return behaviour.integer(3) + 1  # so the cut always lands before the end of the content
    return 0


# ------------------------------------------------------------------------------------------ completion


def message_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a content-part array joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_prompt_tokens(messages: list[Any]) -> int:
    return sum(3 + len(message_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def pick_tool(body: dict[str, Any]) -> str | None:
    """Name of the tool to call, or None when the reply should be plain content."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    messages = body.get("messages")
    if (
        isinstance(messages, list)
        and messages
        and isinstance(messages[-1], dict)
        and messages[-1].get("role") == "tool"
    ):
        return None  # the tool has answered: reply in words, so that an agent's loop ends
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        if named:
            return str(named)
    first = tools[0] if isinstance(tools[0], dict) else {}
    return str((first.get("function") or {}).get("name") or first.get("name") or "tool")


def completion_limit(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 0)
    return None


def reply_words(body: dict[str, Any], behaviour: Behaviour, pad_to: int) -> list[str]:
    """The content words of the reply; the content is always ``" ".join(words)``."""
    if behaviour.name == "long":
        return long_words(behaviour)
    text_words = pad_words(last_user_text(body.get("messages") or []).split(), pad_to)
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        # The text has no whitespace but single spaces, so splitting the JSON on spaces is lossless.
        return json.dumps({"echo": " ".join(text_words)}, ensure_ascii=False).split(" ")
    return ["You", "said:", *text_words]


@dataclass(slots=True)
class Completion:
    """Everything needed to answer a successful request, computed once for either wire format."""

    id: str
    created: int
    model: str
    words: list[str]
    tool_name: str | None
    tool_call_id: str
    finish_reason: str
    prompt_tokens: int
    send_usage: bool
    report: UsageReport = PLAIN_USAGE

    @property
    def completion_tokens(self) -> int:
        return TOOL_CALL_TOKENS if self.tool_name else len(self.words)

    @property
    def usage(self) -> dict[str, Any]:
        return chat_usage(self.prompt_tokens, self.completion_tokens, self.report)


def plan_completion(body: dict[str, Any], behaviour: Behaviour) -> Completion:
    messages = body.get("messages") or []
    tool_name = pick_tool(body)
    words: list[str] = []
    finish_reason = "tool_calls" if tool_name else "stop"
    if not tool_name:
        words = reply_words(body, behaviour, padding_for(behaviour))
        limit = completion_limit(body)
        if limit is not None and len(words) > limit:
            words, finish_reason = words[:limit], "length"
    return Completion(
        id=_new_id("chatcmpl-"),
        created=int(time.time()),
        model=str(body.get("model")),
        words=words,
        tool_name=tool_name,
        tool_call_id=_new_id("call_") if tool_name else "",
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(messages if isinstance(messages, list) else []),
        send_usage=behaviour.name != "no-usage",
        report=behaviour.usage,
    )


def completion_body(c: Completion) -> bytes:
    """A ``chat.completion`` object (CreateChatCompletionResponse)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if c.tool_name else " ".join(c.words),
        "refusal": None,
        "annotations": [],
    }
    if c.tool_name:
        message["tool_calls"] = [
            {"id": c.tool_call_id, "type": "function", "function": {"name": c.tool_name, "arguments": "{}"}}
        ]
    body: dict[str, Any] = {
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": c.finish_reason}],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if c.send_usage:
        body["usage"] = c.usage
    return _dumps(body)


def stream_events(c: Completion, include_usage: bool) -> list[bytes]:
    """All SSE events of a stream, in order: role chunk, content chunks, finish chunk, [usage], [DONE]."""
    base = {
        "id": c.id,
        "object": "chat.completion.chunk",
        "created": c.created,
        "model": c.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None  # as OpenAI does: every chunk but the last carries usage: null

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    if c.tool_name:
        # OpenAI's shape: the first delta opens the call (id, type, name, empty arguments), the next one
        # carries the arguments.
        opening = {"index": 0, "id": c.tool_call_id, "type": "function"}
        opening["function"] = {"name": c.tool_name, "arguments": ""}
        events = [
            chunk({"role": "assistant", "content": None, "tool_calls": [opening]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        ]
    else:
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(c.words)]
    events.append(chunk({}, c.finish_reason))
    if include_usage and c.send_usage:
        events.append(b"data: " + _dumps({**base, "choices": [], "usage": c.usage}) + b"\n\n")
    events.append(DONE_EVENT)
    return events


def chat_reply(body: dict[str, Any], behaviour: Behaviour, stream: bool) -> Reply:
    completion = plan_completion(body, behaviour)
    if stream:
        return Reply(completion.id, stream_events(completion, wants_usage(body)))
    return Reply(completion.id, completion_body(completion))


# ------------------------------------------------------------------------------------ prompts and inputs

# One prompt of a legacy completion, or one input of an embedding: a text or a list of token ids.
Item = str | list[int]


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def input_items(value: Any, param: str) -> list[Item]:
    """The items of a ``prompt`` or ``input``: a string, an array of strings, an array of token ids (one
    item) or an array of token-id arrays."""
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and value:
        if all(isinstance(v, str) for v in value):
            return value
        if all(_is_int(v) for v in value):
            return [value]
        if all(isinstance(v, list) and v and all(_is_int(t) for t in v) for v in value):
            return value
    raise InvalidRequest(
        f"'{param}' must be a string, an array of strings, an array of tokens or an array of token arrays.",
        param,
    )


def item_words(item: Item) -> list[str]:
    return item.split() if isinstance(item, str) else [f"t{t}" for t in item]


def int_param(body: dict[str, Any], name: str, default: int, minimum: int, maximum: int | None = None) -> int:
    value = body.get(name)
    if value is None:
        return default
    if not _is_int(value) or value < minimum or (maximum is not None and value > maximum):
        bounds = f"between {minimum} and {maximum}" if maximum is not None else f"at least {minimum}"
        raise InvalidRequest(f"'{name}' must be an integer {bounds}.", name)
    return value


# ------------------------------------------------------------------------------------------ embeddings


def _canonical_json(item: Any) -> bytes:
    return json.dumps(item, separators=(",", ":"), ensure_ascii=False).encode()


@functools.lru_cache(maxsize=4096)
def _vector(canonical: bytes, dimensions: int) -> tuple[float, ...]:
    digest = hashlib.sha256(canonical).digest()
    stream = [digest]
    while len(stream) * 8 < dimensions:  # 8 four-byte components per digest
        digest = hashlib.sha256(digest).digest()
        stream.append(digest)
    units = struct.unpack_from(f"<{dimensions}I", b"".join(stream))
    raw = [u / 2**31 - 1.0 for u in units]
    norm = math.sqrt(sum(x * x for x in raw)) or 1.0
    # Rounded to float32 so that the float and the base64 encodings carry exactly the same numbers.
    return struct.unpack(f"<{dimensions}f", struct.pack(f"<{dimensions}f", *(x / norm for x in raw)))


def embedding_vector(
    item: str | Sequence[int], dimensions: int = DEFAULT_EMBEDDING_DIMENSIONS
) -> list[float]:
    """The embedding of one input item (a text or token ids), as the fake upstream answers it.

    The sha256 digest of the item's compact UTF-8 JSON (``"text"`` or ``[1,2,3]``), extended as needed by
    hashing the previous digest again, is read as little-endian uint32s, mapped to [-1, 1), normalised to
    unit length and rounded to float32.
    """
    return list(_vector(_canonical_json(item if isinstance(item, str) else list(item)), dimensions))


def embedding_base64(vector: Sequence[float]) -> str:
    """OpenAI's ``base64`` encoding of an embedding: its little-endian float32 bytes."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode("ascii")


def embeddings_reply(body: dict[str, Any], behaviour: Behaviour, stream: bool) -> Reply:
    """A CreateEmbeddingResponse; embeddings never stream, whatever ``stream`` says."""
    items = input_items(body.get("input"), "input")
    if "" in items:
        raise InvalidRequest("'input' cannot contain an empty string.", "input")
    dimensions = int_param(body, "dimensions", DEFAULT_EMBEDDING_DIMENSIONS, 1)
    encoding = body.get("encoding_format") or "float"
    if encoding not in ("float", "base64"):
        raise InvalidRequest("'encoding_format' must be 'float' or 'base64'.", "encoding_format")
    as_base64 = encoding == "base64" and behaviour.name != "float-only"
    data = []
    for index, item in enumerate(items):
        vector = embedding_vector(item, dimensions)
        data.append(
            {
                "object": "embedding",
                "index": index,
                "embedding": embedding_base64(vector) if as_base64 else vector,
            }
        )
    answer: dict[str, Any] = {"object": "list", "data": data, "model": str(body.get("model"))}
    if behaviour.name != "no-usage":
        tokens = sum(len(item.split()) if isinstance(item, str) else len(item) for item in items)
        answer["usage"] = {"prompt_tokens": tokens, "total_tokens": tokens}
    return Reply(_new_id("req_"), _dumps(answer))


# ---------------------------------------------------------------------------------- legacy completions


@dataclass(slots=True)
class TextChoice:
    index: int
    tokens: list[str]  # the words of ``text``, each but the first with its leading space
    finish_reason: str

    @property
    def text(self) -> str:
        return "".join(self.tokens)


@dataclass(slots=True)
class TextCompletion:
    """Everything needed to answer a legacy completion, computed once for either wire format."""

    id: str
    created: int
    model: str
    choices: list[TextChoice]
    logprobs: int | None
    prompt_tokens: int
    completion_tokens: int
    send_usage: bool
    report: UsageReport = PLAIN_USAGE

    @property
    def usage(self) -> dict[str, Any]:
        return chat_usage(self.prompt_tokens, self.completion_tokens, self.report)


def stop_sequences(value: Any) -> list[str]:
    if value is None:
        return []
    if isinstance(value, str):
        return [value] if value else []
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return [s for s in value if s]
    raise InvalidRequest("'stop' must be a string or an array of strings.", "stop")


def words_before_stop(words: list[str], stops: list[str]) -> int | None:
    """How many words come before the first one whose addition makes the text contain a stop sequence."""
    text = " ".join(words)
    ends = [text.find(s) + len(s) for s in stops if s in text]
    if not ends:
        return None
    end, position = min(ends), 0
    for i, word in enumerate(words):
        position += len(word)
        if position >= end:
            return i
        position += 1
    return len(words)


def generate_words(
    prompt_words: list[str], suffix_words: list[str], behaviour: Behaviour, stops: list[str], limit: int
) -> tuple[list[str], str]:
    """The generated words of one prompt and their finish_reason."""
    if behaviour.name == "long":
        words = long_words(behaviour)
    else:
        words = ["You", "said:", *pad_words(prompt_words + suffix_words, padding_for(behaviour))]
    kept = words_before_stop(words, stops) if stops else None
    if len(words) > limit and (kept is None or kept >= limit):
        return words[:limit], "length"
    return (words, "stop") if kept is None else (words[:kept], "stop")


def plan_text_completion(body: dict[str, Any], behaviour: Behaviour) -> TextCompletion:
    if "prompt" not in body:
        raise InvalidRequest("you must provide a prompt parameter", "prompt")
    prompts = [END_OF_TEXT] if body["prompt"] is None else input_items(body["prompt"], "prompt")
    suffix = body.get("suffix")
    if suffix is not None and not isinstance(suffix, str):
        raise InvalidRequest("'suffix' must be a string.", "suffix")
    suffix_words = suffix.split() if suffix else []
    stops = stop_sequences(body.get("stop"))
    limit = int_param(body, "max_tokens", LEGACY_MAX_TOKENS, 0)
    n = int_param(body, "n", 1, 1)
    # best_of candidates are generated, and billed, for every prompt; only n of them are returned.
    runs = max(n, int_param(body, "best_of", 1, 0))
    logprobs = (
        None if body.get("logprobs") is None else int_param(body, "logprobs", 0, 0, LEGACY_MAX_LOGPROBS)
    )
    echo = bool(body.get("echo"))
    choices: list[TextChoice] = []
    prompt_tokens = completion_tokens = 0
    for p, prompt in enumerate(prompts):
        words = item_words(prompt)
        prompt_tokens += len(words) + len(suffix_words)
        generated, finish_reason = generate_words(words, suffix_words, behaviour, stops, limit)
        completion_tokens += len(generated) * runs
        shown = words + generated if echo else generated
        tokens = [word if i == 0 else " " + word for i, word in enumerate(shown)]
        choices += [TextChoice(p * n + j, tokens, finish_reason) for j in range(n)]
    return TextCompletion(
        id=_new_id("cmpl-"),
        created=int(time.time()),
        model=str(body.get("model")),
        choices=choices,
        logprobs=logprobs,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        send_usage=behaviour.name != "no-usage",
        report=behaviour.usage,
    )


def token_logprob(token: str) -> float:
    """A made-up but stable logprob: a multiple of 1/8, so it survives JSON exactly."""
    return -((len(token.strip()) % 7) + 1) / 8


def logprobs_object(tokens: list[str], top: int, offset: int = 0) -> dict[str, Any]:
    """The legacy ``logprobs`` of ``tokens``, which start ``offset`` characters into the choice's text."""
    token_logprobs = [token_logprob(t) for t in tokens]
    top_logprobs = []
    for token, logprob in zip(tokens, token_logprobs, strict=True):
        alternatives = {token: logprob}
        for k in range(1, top):
            alternatives.setdefault(f" alt{k}", logprob - k)
        top_logprobs.append(alternatives)
    offsets = list(itertools.accumulate((len(t) for t in tokens[:-1]), initial=offset)) if tokens else []
    return {
        "tokens": tokens,
        "token_logprobs": token_logprobs,
        "top_logprobs": top_logprobs,
        "text_offset": offsets,
    }


def text_completion_body(c: TextCompletion) -> bytes:
    """A ``text_completion`` object (CreateCompletionResponse)."""
    choices = [
        {
            "text": choice.text,
            "index": choice.index,
            "logprobs": None if c.logprobs is None else logprobs_object(choice.tokens, c.logprobs),
            "finish_reason": choice.finish_reason,
        }
        for choice in c.choices
    ]
    body: dict[str, Any] = {
        "id": c.id,
        "object": "text_completion",
        "created": c.created,
        "model": c.model,
        "choices": choices,
        "system_fingerprint": FINGERPRINT,
    }
    if c.send_usage:
        body["usage"] = c.usage
    return _dumps(body)


def text_stream_events(c: TextCompletion, include_usage: bool) -> list[bytes]:
    """All SSE events of a legacy stream: each choice's word chunks and finish chunk, [usage], [DONE]."""
    base: dict[str, Any] = {
        "id": c.id,
        "object": "text_completion",
        "created": c.created,
        "model": c.model,
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None

    def chunk(index: int, text: str, logprobs: dict[str, Any] | None, finish_reason: str | None) -> bytes:
        choice = {"text": text, "index": index, "logprobs": logprobs, "finish_reason": finish_reason}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    events = []
    for choice in c.choices:
        offset = 0
        for token in choice.tokens:
            logprobs = None if c.logprobs is None else logprobs_object([token], c.logprobs, offset)
            events.append(chunk(choice.index, token, logprobs, None))
            offset += len(token)
        logprobs = None if c.logprobs is None else logprobs_object([], c.logprobs)
        events.append(chunk(choice.index, "", logprobs, choice.finish_reason))
    if include_usage and c.send_usage:
        events.append(b"data: " + _dumps({**base, "choices": [], "usage": c.usage}) + b"\n\n")
    events.append(DONE_EVENT)
    return events


def text_completion_reply(body: dict[str, Any], behaviour: Behaviour, stream: bool) -> Reply:
    completion = plan_text_completion(body, behaviour)
    if stream:
        return Reply(completion.id, text_stream_events(completion, wants_usage(body)), lead=0)
    return Reply(completion.id, text_completion_body(completion))


# ------------------------------------------------------------------------------------------- responses

RESPONSE_STORE_LIMIT = 10_000
REASONING_SUMMARY = "Thinking about how to answer."
ENCRYPTED_REASONING_INCLUDE = "reasoning.encrypted_content"
RESPONSE_TEXT_PARTS = frozenset({"input_text", "output_text"})


class ResponseStore:
    """The conversations of the responses this server made, by response id: each one's input items (those
    of its own previous responses first) followed by its output items. Only the last ``limit`` are kept."""

    def __init__(self, limit: int = RESPONSE_STORE_LIMIT) -> None:
        self._limit = max(limit, 0)
        self._items: collections.OrderedDict[str, list[dict[str, Any]]] = collections.OrderedDict()
        self._lock = threading.Lock()

    def get(self, response_id: str) -> list[dict[str, Any]] | None:
        with self._lock:
            return self._items.get(response_id)

    def keep(self, response_id: str, conversation: list[dict[str, Any]]) -> None:
        with self._lock:
            self._items[response_id] = conversation
            while len(self._items) > self._limit:
                self._items.popitem(last=False)

    def __contains__(self, response_id: object) -> bool:
        with self._lock:
            return response_id in self._items

    def __len__(self) -> int:
        with self._lock:
            return len(self._items)


def words_of(value: Any) -> list[str]:
    return value.split() if isinstance(value, str) else []


def item_text(item: dict[str, Any]) -> str:
    """The text of an input or output item: a message's content (a string or its ``input_text`` /
    ``output_text`` parts), a function call's name and arguments, a function call output's output."""
    kind = item.get("type")
    if kind == "function_call":
        return f"{item.get('name') or ''} {item.get('arguments') or ''}"
    content = item.get("output") if kind == "function_call_output" else item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in RESPONSE_TEXT_PARTS
            and isinstance(part.get("text"), str)
        )
    return ""


def is_message(item: dict[str, Any]) -> bool:
    return item.get("type", "message") == "message" and "role" in item


def item_tokens(item: dict[str, Any]) -> int:
    """Input tokens of one item: a message is 3 + its words; a function call or a function call output is
    its words; anything else (reasoning, built-in tool calls, ...) is free."""
    if is_message(item):
        return 3 + len(item_text(item).split())
    if item.get("type") in ("function_call", "function_call_output"):
        return len(item_text(item).split())
    return 0


def response_input(body: dict[str, Any]) -> list[dict[str, Any]]:
    """The request's ``input`` as items: a string is one user message."""
    value = body.get("input")
    if value is None:
        return []
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if isinstance(value, list):
        for index, item in enumerate(value):
            if not isinstance(item, dict):
                raise InvalidRequest(
                    f"Invalid type for 'input[{index}]': expected an object.", f"input[{index}]"
                )
        return value
    raise InvalidRequest("Invalid type for 'input': expected a string or an array of input items.", "input")


def response_tools(value: Any) -> list[dict[str, Any]]:
    """The request's tools as the Response echoes them: function tools with every field the spec requires,
    built-in tools (``web_search``, ...) as given."""
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("Invalid type for 'tools': expected an array.", "tools")
    tools = []
    for index, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("type"), str):
            raise InvalidRequest(
                f"Missing required parameter: 'tools[{index}].type'.", f"tools[{index}].type"
            )
        if tool["type"] != "function":
            tools.append(tool)
            continue
        name = tool.get("name")
        if not isinstance(name, str) or not name:
            raise InvalidRequest(
                f"Missing required parameter: 'tools[{index}].name'.", f"tools[{index}].name"
            )
        strict = tool.get("strict")
        tools.append(
            {
                "type": "function",
                "name": name,
                "description": tool.get("description"),
                "parameters": tool.get("parameters"),
                "strict": True if strict is None else strict,
            }
        )
    return tools


def pick_response_tool(choice: Any, tools: list[dict[str, Any]]) -> str | None:
    """Name of the function tool to call, or None when the answer is text."""
    functions = [tool["name"] for tool in tools if tool["type"] == "function"]
    if choice is None or choice in ("auto", "required"):
        return functions[0] if functions else None
    if choice == "none":
        return None
    if isinstance(choice, dict) and choice.get("type") == "function":
        name = choice.get("name")
        if name not in functions:
            raise InvalidRequest(
                f"Tool choice 'function' with name '{name}' not found in 'tools'.", "tool_choice"
            )
        return str(name)
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        allowed = [t.get("name") for t in choice.get("tools") or [] if isinstance(t, dict)]
        return next((name for name in functions if name in allowed), None)
    if isinstance(choice, dict) and isinstance(choice.get("type"), str):
        return None  # a built-in tool is forced; built-in tools are accepted and never called
    raise InvalidRequest("Invalid value for 'tool_choice'.", "tool_choice")


def wants_reasoning(body: dict[str, Any]) -> bool:
    include = body.get("include")
    if isinstance(include, list) and ENCRYPTED_REASONING_INCLUDE in include:
        return True
    reasoning = body.get("reasoning")
    return (
        isinstance(reasoning, dict)
        and any(v is not None for v in reasoning.values())
        and reasoning.get("effort") != "none"
    )


def response_words(
    conversation: list[dict[str, Any]], body: dict[str, Any], behaviour: Behaviour, after_tool: bool
) -> list[str]:
    """The words of the answer text; the text is always ``" ".join(words)``."""
    if behaviour.name == "long":
        return long_words(behaviour)
    if after_tool:
        lead, text = ["Tool", "said:"], item_text(conversation[-1])
    else:
        lead = ["You", "said:"]
        users = (item for item in reversed(conversation) if is_message(item) and item.get("role") == "user")
        text = item_text(next(users, {}))
    words = pad_words(text.split(), padding_for(behaviour))
    text_param = body.get("text")
    text_format = text_param.get("format") if isinstance(text_param, dict) else None
    if isinstance(text_format, dict) and text_format.get("type") == "json_object":
        return json.dumps({"echo": " ".join(words)}, ensure_ascii=False).split(" ")
    return [*lead, *words]


def _number(value: Any, default: float) -> float:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else default


def response_settings(body: dict[str, Any], tools: list[dict[str, Any]]) -> dict[str, Any]:
    """The request settings a Response echoes."""
    reasoning: dict[str, Any] = body["reasoning"] if isinstance(body.get("reasoning"), dict) else {}
    text_param: dict[str, Any] = body["text"] if isinstance(body.get("text"), dict) else {}
    settings: dict[str, Any] = {
        "background": False,
        "instructions": body.get("instructions"),
        "max_output_tokens": body.get("max_output_tokens"),
        "max_tool_calls": body.get("max_tool_calls"),
        "metadata": body.get("metadata") if isinstance(body.get("metadata"), dict) else {},
        "parallel_tool_calls": body.get("parallel_tool_calls") is not False,
        "previous_response_id": body.get("previous_response_id"),
        "prompt_cache_key": body.get("prompt_cache_key"),
        "reasoning": {"effort": reasoning.get("effort"), "summary": reasoning.get("summary")},
        "safety_identifier": body.get("safety_identifier"),
        "service_tier": "default",
        "store": body.get("store") is not False,
        "temperature": _number(body.get("temperature"), 1.0),
        "text": {
            "format": text_param.get("format") or {"type": "text"},
            "verbosity": text_param.get("verbosity") or "medium",
        },
        "tool_choice": body.get("tool_choice") if body.get("tool_choice") is not None else "auto",
        "tools": tools,
        "top_logprobs": body.get("top_logprobs") or 0,
        "top_p": _number(body.get("top_p"), 1.0),
        "truncation": body.get("truncation") or "disabled",
    }
    if isinstance(body.get("user"), str):
        settings["user"] = body["user"]
    return settings


def plan_response(
    body: dict[str, Any], behaviour: Behaviour, store: ResponseStore
) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """The finished Response object, and the conversation it answered (previous responses first)."""
    previous_id = body.get("previous_response_id")
    history: list[dict[str, Any]] = []
    if previous_id is not None:
        found = store.get(previous_id) if isinstance(previous_id, str) else None
        if found is None:
            raise InvalidRequest(
                f"Previous response with id '{previous_id}' not found.",
                "previous_response_id",
                code="previous_response_not_found",
            )
        history = found
    conversation = history + response_input(body)
    instructions = body.get("instructions")
    if instructions is not None and not isinstance(instructions, str):
        raise InvalidRequest("Invalid type for 'instructions': expected a string.", "instructions")
    limit = body.get("max_output_tokens")
    if limit is not None and (not _is_int(limit) or limit < 0):
        raise InvalidRequest("'max_output_tokens' must be a non-negative integer.", "max_output_tokens")
    tools = response_tools(body.get("tools"))
    tool_name = pick_response_tool(body.get("tool_choice"), tools)
    after_tool = bool(conversation) and conversation[-1].get("type") == "function_call_output"

    output: list[dict[str, Any]] = []
    reasoning_tokens = 0
    if wants_reasoning(body):
        reasoning: dict[str, Any] = {
            "id": _new_id("rs_"),
            "type": "reasoning",
            "summary": [{"type": "summary_text", "text": REASONING_SUMMARY}],
        }
        include = body.get("include")
        if isinstance(include, list) and ENCRYPTED_REASONING_INCLUDE in include:
            sealed = hashlib.sha256(f"{reasoning['id']}|{REASONING_SUMMARY}".encode()).digest()
            reasoning["encrypted_content"] = base64.b64encode(sealed).decode("ascii")
        output.append(reasoning)
        reasoning_tokens = len(REASONING_SUMMARY.split())
    status, incomplete_details = "completed", None
    if tool_name and not after_tool:
        output.append(
            {
                "id": _new_id("fc_"),
                "type": "function_call",
                "status": "completed",
                "arguments": "{}",
                "call_id": _new_id("call_"),
                "name": tool_name,
            }
        )
        visible_tokens = TOOL_CALL_TOKENS
    else:
        words = response_words(conversation, body, behaviour, after_tool)
        if limit is not None and len(words) > limit:
            words = words[:limit]
            status, incomplete_details = "incomplete", {"reason": "max_output_tokens"}
        part = {"type": "output_text", "text": " ".join(words), "annotations": [], "logprobs": []}
        output.append(
            {
                "id": _new_id("msg_"),
                "type": "message",
                "status": status,
                "role": "assistant",
                "content": [part],
            }
        )
        visible_tokens = len(words)

    created_at = int(time.time())
    response: dict[str, Any] = {
        "id": _new_id("resp_"),
        "object": "response",
        "created_at": created_at,
        "status": status,
        "completed_at": created_at if status == "completed" else None,
        "error": None,
        "incomplete_details": incomplete_details,
        "model": str(body.get("model")),
        "output": output,
        **response_settings(body, tools),
    }
    if behaviour.name != "no-usage":
        input_tokens = len(words_of(instructions)) + sum(item_tokens(item) for item in conversation)
        reasoning_tokens += behaviour.usage.reasoning
        output_tokens = visible_tokens + reasoning_tokens
        cached = min(behaviour.usage.cached or 0, input_tokens)
        response["usage"] = {
            "input_tokens": input_tokens,
            "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
            "output_tokens": output_tokens,
            "output_tokens_details": {"reasoning_tokens": reasoning_tokens},
            "total_tokens": input_tokens + output_tokens,
        }
    return response, conversation


def response_stream_events(response: dict[str, Any]) -> tuple[list[bytes], int]:
    """The SSE events of a streamed Response, and how many come before the first text or arguments delta."""
    events: list[bytes] = []
    sequence = itertools.count()
    lead: int | None = None

    def emit(kind: str, **fields: Any) -> None:
        data = {"type": kind, **fields, "sequence_number": next(sequence)}
        events.append(b"event: " + kind.encode() + b"\ndata: " + _dumps(data) + b"\n\n")

    def deltas(text: str) -> list[str]:
        return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))] if text else []

    # The in-progress snapshot: nothing produced yet, so no usage (the spec has no null usage).
    snapshot = {key: value for key, value in response.items() if key != "usage"}
    snapshot.update(status="in_progress", completed_at=None, incomplete_details=None, output=[])
    emit("response.created", response=snapshot)
    emit("response.in_progress", response=snapshot)
    for index, item in enumerate(response["output"]):
        item_id = item["id"]
        at = {"item_id": item_id, "output_index": index}
        if item["type"] == "reasoning":
            emit("response.output_item.added", output_index=index, item={**item, "summary": []})
            for s, part in enumerate(item["summary"]):
                empty = {"type": "summary_text", "text": ""}
                emit("response.reasoning_summary_part.added", **at, summary_index=s, part=empty)
                for delta in deltas(part["text"]):
                    emit("response.reasoning_summary_text.delta", **at, summary_index=s, delta=delta)
                emit("response.reasoning_summary_text.done", **at, summary_index=s, text=part["text"])
                emit("response.reasoning_summary_part.done", **at, summary_index=s, part=part)
        elif item["type"] == "function_call":
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "arguments": ""},
            )
            lead = len(events) if lead is None else lead
            emit("response.function_call_arguments.delta", **at, delta=item["arguments"])
            emit(
                "response.function_call_arguments.done", **at, name=item["name"], arguments=item["arguments"]
            )
        else:
            emit(
                "response.output_item.added",
                output_index=index,
                item={**item, "status": "in_progress", "content": []},
            )
            for c, part in enumerate(item["content"]):
                emit("response.content_part.added", **at, content_index=c, part={**part, "text": ""})
                lead = len(events) if lead is None else lead
                for delta in deltas(part["text"]):
                    emit("response.output_text.delta", **at, content_index=c, delta=delta, logprobs=[])
                emit("response.output_text.done", **at, content_index=c, text=part["text"], logprobs=[])
                emit("response.content_part.done", **at, content_index=c, part=part)
        emit("response.output_item.done", output_index=index, item=item)
    final = "response.completed" if response["status"] == "completed" else "response.incomplete"
    emit(final, response=response)
    return events, len(events) if lead is None else lead


def responses_reply(store: ResponseStore, body: dict[str, Any], behaviour: Behaviour, stream: bool) -> Reply:
    """A Response (or its event stream); kept in ``store`` for ``previous_response_id`` unless ``store`` is
    false in the request."""
    response, conversation = plan_response(body, behaviour, store)
    if response["store"]:
        store.keep(response["id"], conversation + response["output"])
    if stream:
        events, lead = response_stream_events(response)
        return Reply(response["id"], events, lead=lead)
    return Reply(response["id"], _dumps(response))


# -------------------------------------------------------------------------------------------- models


def models_body(models: tuple[str, ...]) -> bytes:
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake-upstream"} for m in models]
    return _dumps({"object": "list", "data": data})


def split_prefix(path: str) -> str:
    """The provider prefix of a path: ``/p2/v1/models`` -> ``p2``; ``/v1/models`` -> ``""``."""
    head, sep, _ = path.partition("/v1/")
    return head.strip("/") if sep else ""


def client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# -------------------------------------------------------------------------------------------- server


class FakeUpstream:
    """An OpenAI-compatible upstream on a real port, run in a background thread (or in the foreground).

    Several fake "providers" can share one server: give each a different :meth:`url_for` prefix and tell their
    requests apart by ``RecordedRequest.prefix``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: tuple[str, ...] = DEFAULT_MODELS,
        log_limit: int | None = 10_000,
        response_limit: int = RESPONSE_STORE_LIMIT,
    ) -> None:
        self.host = host
        self._port = port
        self._models_body = models_body(tuple(models))
        self._model_ids = frozenset(models)
        self._log_enabled = log_limit != 0
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=log_limit)
        self._disconnects: list[DisconnectRecord] = []
        # Responses this server made, for previous_response_id; kept across clear(), ids never repeat.
        self.stored_responses = ResponseStore(response_limit)
        self._plan_response: Planner = functools.partial(responses_reply, self.stored_responses)
        # Imported here, not at the top: tests.upstream_anthropic builds on this module.
        from tests import upstream_anthropic

        self._messages_api = upstream_anthropic
        # Prompt prefixes written by cache_control markers; forgotten by clear().
        self.prompt_cache = upstream_anthropic.PromptCache()
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping = False

    # ------------------------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    def url_for(self, prefix: str) -> str:
        """Base URL of a provider living under ``prefix``: ``url_for("p2")`` -> ``http://host:port/p2/v1``."""
        prefix = prefix.strip("/")
        return f"http://{self.host}:{self._port}/{prefix}/v1" if prefix else self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def disconnects(self) -> list[DisconnectRecord]:
        with self._cond:
            return list(self._disconnects)

    def clear(self) -> None:
        """Forget recorded requests, disconnects and the prompt cache (call between tests sharing one
        server)."""
        with self._cond:
            self._requests.clear()
            self._disconnects.clear()
        self.prompt_cache.clear()

    def find(self, prefix: str | None = None, model: str | None = None) -> list[RecordedRequest]:
        wanted = None if prefix is None else prefix.strip("/")
        return [
            r
            for r in self.requests
            if (wanted is None or r.prefix == wanted) and (model is None or r.model == model)
        ]

    def count(self, prefix: str | None = None, model: str | None = None) -> int:
        return len(self.find(prefix, model))

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, prefix: str | None = None, model: str | None = None
    ) -> bool:
        """Block until at least ``n`` matching requests were received; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count(prefix, model) >= n, timeout)

    def wait_for_disconnect(
        self, timeout: float = 1.0, model: str | None = None, since: float | None = None
    ) -> DisconnectRecord | None:
        """The first recorded disconnect (optionally of ``model``, noticed at or after ``since``), waiting
        up to ``timeout`` seconds for one; None if none came."""

        def first() -> DisconnectRecord | None:
            for record in self._disconnects:
                if (model is None or record.model == model) and (since is None or record.noticed_at >= since):
                    return record
            return None

        with self._cond:
            self._cond.wait_for(lambda: first() is not None, timeout)
            return first()

    def start(self) -> FakeUpstream:
        """Serve from a daemon thread with its own event loop; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already running")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run_thread, name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving: hanging and streaming handlers are released and their connections aborted."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        asyncio.run(self._serve_until_signal())

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ lifecycle

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # surfaced to the caller of start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        # access_log=None: logging every request would dominate the cost of a request in the benchmark.
        self._runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, backlog=1024)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self._stopping = True  # sleeping handlers poll this and let go of their connections
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_until_signal(self) -> None:
        await self._startup()
        print(f"fake upstream listening on {self.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for root in ("", "/{prefix:.+}"):
            app.router.add_get(root + "/v1/models", self._list_models)
            app.router.add_get(root + "/v1/models/{model_id}", self._get_model)
            app.router.add_post(root + "/v1/chat/completions", self._chat_completions)
            app.router.add_post(root + "/v1/completions", self._completions)
            app.router.add_post(root + "/v1/embeddings", self._embeddings)
            app.router.add_post(root + "/v1/responses", self._responses)
            app.router.add_post(root + "/v1/messages", self._messages)
            app.router.add_post(root + "/v1/messages/count_tokens", self._count_tokens)
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)
        return app

    # ------------------------------------------------------------------------------------- recording

    def _record(self, request: web.Request, body: Any) -> None:
        if not self._log_enabled:
            return
        record = RecordedRequest(
            prefix=split_prefix(request.path),
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
            received_at=time.monotonic(),
            query=dict(request.query),
        )
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()

    def _note_disconnect(self, request: web.Request, model: str, stream: bool, chunks_sent: int) -> None:
        record = DisconnectRecord(model, split_prefix(request.path), stream, chunks_sent, time.monotonic())
        with self._cond:
            self._disconnects.append(record)
            self._cond.notify_all()

    async def _pause(self, request: web.Request, seconds: float) -> bool:
        """Sleep, waking early (returning False) once the client is gone or the server is stopping.

        aiohttp does not cancel handlers when the peer disconnects, so polling the transport is what makes
        disconnects visible within ``POLL_INTERVAL`` even during long sleeps.
        """
        deadline = time.monotonic() + seconds
        while not (self._stopping or client_gone(request)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(remaining, POLL_INTERVAL))
        return False

    def _let_go(self, request: web.Request, model: str, stream: bool, chunks_sent: int) -> web.StreamResponse:
        """After a pause was cut short: record a client disconnect, or drop the connection if stopping."""
        if self._stopping:
            if request.transport is not None:
                request.transport.abort()
        else:
            self._note_disconnect(request, model, stream, chunks_sent)
        return web.Response()  # never reaches the wire: the connection is closed

    # -------------------------------------------------------------------------------------- handlers

    async def _list_models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.Response(body=self._models_body, content_type="application/json")

    async def _get_model(self, request: web.Request) -> web.Response:
        self._record(request, None)
        model_id = request.match_info["model_id"]
        if model_id not in self._model_ids:
            return error_response(404, f"The model '{model_id}' does not exist", param="model")
        body = {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-upstream"}
        return web.Response(body=_dumps(body), content_type="application/json")

    async def _unknown_path(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return error_response(404, f"Unknown path: {request.method} {request.path}", code="unknown_url")

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        return await self._respond(request, body, body["model"], bool(body.get("stream")))

    async def _completions(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        return await self._serve(
            request, body, body["model"], bool(body.get("stream")), text_completion_reply
        )

    async def _embeddings(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        return await self._serve(request, body, body["model"], False, embeddings_reply)

    async def _responses(self, request: web.Request) -> web.StreamResponse:
        body = await self._read_json(request)
        if isinstance(body, web.Response):
            return body
        return await self._serve(request, body, body["model"], bool(body.get("stream")), self._plan_response)

    async def _messages(self, request: web.Request) -> web.StreamResponse:
        plan = functools.partial(
            self._messages_api.messages_reply, self.prompt_cache, split_prefix(request.path)
        )
        return await self._anthropic(request, plan, streams=True)

    async def _count_tokens(self, request: web.Request) -> web.StreamResponse:
        return await self._anthropic(request, self._messages_api.count_tokens_reply, streams=False)

    async def _anthropic(self, request: web.Request, plan: Planner, streams: bool) -> web.StreamResponse:
        """Serve an endpoint of Anthropic's Messages API: its headers checked, its errors in its shape."""
        api = self._messages_api
        body = await self._read_body(request)
        refused = api.refusal(request.headers, body)
        if refused is not None:
            return api.error_response(*refused)
        stream = streams and body.get("stream") is True
        return await self._serve(request, body, body["model"], stream, plan, api.error_response)

    async def _read_body(self, request: web.Request) -> Any:
        """The JSON body of a POST (None when it is not JSON), recorded."""
        raw = await request.read()
        try:
            body = _loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(request, body)
        return body

    async def _read_json(self, request: web.Request) -> dict[str, Any] | web.Response:
        """The body of a POST, recorded; or the 400 a real upstream gives a body without JSON or model."""
        body = await self._read_body(request)
        if not isinstance(body, dict):
            return error_response(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(400, "you must provide a model parameter", param="model")
        return body

    async def _respond(
        self, request: web.Request, body: dict[str, Any], model: str, stream: bool
    ) -> web.StreamResponse:
        """Answer a chat completion; subclasses override this to add chat behaviours."""
        return await self._serve(request, body, model, stream, chat_reply)

    async def _serve(
        self, request: web.Request, body: dict[str, Any], model: str, stream: bool, plan: Planner,
        errors: Callable[..., web.Response] = error_response,
    ) -> web.StreamResponse:  # fmt: skip
        """Play the behaviour ``model`` names; on success send what ``plan`` makes of the request.
        ``errors`` renders failures in the endpoint's dialect (OpenAI's by default)."""
        behaviour = parse_behaviour(model)
        status = behaviour.fail_status
        if status is not None:
            retry_after = behaviour.param or ("1" if status == 429 else None)
            return errors(status, retry_after=retry_after)
        name = behaviour.name
        if name == "garbage":
            return web.Response(body=GARBAGE_BODY, content_type="application/json")
        if name == "early-close":
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        if name == "hang":
            await self._pause(request, math.inf)
            return self._let_go(request, model, stream, 0)
        if name == "slow-first-byte" and not await self._pause(request, behaviour.number(1.0)):
            return self._let_go(request, model, stream, 0)
        try:
            reply = plan(body, behaviour, stream)
        except InvalidRequest as exc:
            return errors(400, str(exc), param=exc.param, code=exc.code)
        cut_after = behaviour.integer(3) if name == "cut-after" else None
        if isinstance(reply.payload, list):
            delay = behaviour.number(SLOW_STREAM_DELAY) if name == "slow-stream" else 0.0
            first_delay = behaviour.number(1.0) if name == "slow-first-token" else 0.0
            return await self._stream(
                request, model, reply.payload, delay, cut_after, first_delay, reply.lead
            )
        if cut_after is not None:
            return await self._cut_body(request, reply.payload)
        headers = {reply.id_header: reply.request_id}
        return web.Response(body=reply.payload, content_type="application/json", headers=headers)

    async def _stream(
        self, request: web.Request, model: str, events: list[bytes], delay: float, cut_after: int | None,
        first_delay: float = 0.0, lead: int = 1,
    ) -> web.StreamResponse:  # fmt: skip
        """Write SSE events one by one, noticing a client that goes away mid-stream.

        ``cut_after`` aborts the connection after the ``lead`` opening events and that many more.
        """
        response = web.StreamResponse(headers=SSE_HEADERS)
        limit = len(events) if cut_after is None else min(len(events), lead + cut_after)
        sent = 0
        try:
            await response.prepare(request)
            if first_delay and not await self._pause(request, first_delay):
                return self._let_go(request, model, True, 0)
            for event in events[:limit]:
                if sent and delay and not await self._pause(request, delay):
                    return self._let_go(request, model, True, sent)
                await response.write(event)
                sent += 1
        except ConnectionError:
            self._note_disconnect(request, model, True, sent)
            return response
        except asyncio.CancelledError:
            if not self._stopping:
                self._note_disconnect(request, model, True, sent)
            raise
        if cut_after is not None:
            await self._abort_when_flushed(request)
        return response

    async def _cut_body(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Promise the whole body in Content-Length, send half of it, then abort the connection."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:
            return response
        await self._abort_when_flushed(request)
        return response

    async def _abort_when_flushed(self, request: web.Request) -> None:
        """Abort the TCP connection once what was written has left the process (abort drops the buffer)."""
        transport = request.transport
        if transport is None:
            return
        for _ in range(200):  # at most ~1 s
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.005)
        transport.abort()


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake upstream provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-limit", type=int, default=0, help="keep the last N requests (default: none)")
    args = parser.parse_args(argv)
    FakeUpstream(args.host, args.port, log_limit=args.log_limit).serve_forever()


if __name__ == "__main__":
    # Serve from the importable module rather than this __main__ copy, so that tests.upstream_anthropic
    # (which imports tests.upstream) and the server share one InvalidRequest class.
    from tests.upstream import main as serve

    serve()
