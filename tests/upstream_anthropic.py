"""Anthropic's Messages API as the fake upstream (tests/upstream.py) speaks it.

Pure functions turn the body of ``POST /v1/messages`` or ``POST /v1/messages/count_tokens`` into a reply:
validation with Anthropic's error messages, the prompt's token and cache accounting, the Message and its
stream events. The one piece of state is :class:`PromptCache`, the prompt prefixes that earlier requests
marked with ``cache_control``. The rules and numbers are documented in tests/upstream.py's docstring.
"""

from __future__ import annotations

import base64
import collections
import hashlib
import itertools
import json
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any

from aiohttp import web

from tests.upstream import (
    REASONING_SUMMARY,
    TOOL_CALL_TOKENS,
    Behaviour,
    InvalidRequest,
    Reply,
    _dumps,
    _is_int,
    _new_id,
    long_words,
    pad_words,
    padding_for,
    words_before_stop,
)

MESSAGE_TOKENS = 3  # per message, as in chat
TOOL_TOKENS = 3  # per tool, on top of the words of its name and description
MAX_CACHE_BREAKPOINTS = 4
# Anthropic looks for a cached prefix at each breakpoint and at the 19 blocks before it.
CACHE_LOOKBACK = 20
CACHE_TTLS = ("5m", "1h")
PROMPT_CACHE_LIMIT = 100_000
MIN_THINKING_BUDGET = 1024
THINKING_TYPES = frozenset({"enabled", "adaptive", "between_tools", "disabled"})
TOOL_CHOICES = frozenset({"auto", "any", "tool", "none"})
ROLES = ("user", "assistant")
SERVICE_TIER = "standard"
ID_HEADER = "request-id"
THINKING_TOKENS = len(REASONING_SUMMARY.split())
# Fields a content block of each type must carry, as Anthropic's validation demands.
REQUIRED_BLOCK_FIELDS: dict[str, tuple[tuple[str, type], ...]] = {
    "text": (("text", str),),
    "tool_use": (("id", str), ("name", str), ("input", dict)),
    "tool_result": (("tool_use_id", str),),
    "thinking": (("thinking", str), ("signature", str)),
}

Block = dict[str, Any]
Turn = tuple[str, list[Block]]  # a message: its role and its content blocks


# ---------------------------------------------------------------------------------------------- errors

_ERRORS: dict[int, tuple[str, str]] = {
    400: ("invalid_request_error", "Invalid request (simulated upstream error)."),
    401: ("authentication_error", "invalid x-api-key (simulated)."),
    402: ("billing_error", "Your credit balance is too low to access the API (simulated)."),
    403: ("permission_error", "Your API key does not have permission to use this resource (simulated)."),
    404: ("not_found_error", "The requested resource could not be found (simulated)."),
    413: ("request_too_large", "Request exceeds the maximum allowed number of bytes (simulated)."),
    429: ("rate_limit_error", "Number of requests has exceeded your rate limit (simulated)."),
    500: ("api_error", "Internal server error (simulated)."),
    504: ("timeout_error", "Request timed out (simulated)."),
    529: ("overloaded_error", "Overloaded (simulated)."),
}


def error_response(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: str | None = None,
) -> web.Response:
    """Anthropic's error shape, ``{"type": "error", "error": {type, message}, "request_id"}``, with the id in
    the ``request-id`` header too. Takes the arguments of OpenAI's renderer; ``param`` and ``code`` have no
    place in Anthropic's errors."""
    del param, code
    fallback = ("api_error" if status >= 500 else "invalid_request_error", f"HTTP {status} (simulated).")
    kind, default_message = _ERRORS.get(status, fallback)
    request_id = _new_id("req_")
    error = {"type": kind, "message": message or default_message}
    headers = {ID_HEADER: request_id}
    if retry_after is not None:
        headers["retry-after"] = retry_after
    body = _dumps({"type": "error", "error": error, "request_id": request_id})
    return web.Response(status=status, body=body, content_type="application/json", headers=headers)


def refusal(headers: Mapping[str, str], body: Any) -> tuple[int, str] | None:
    """The status and message of a request refused before its fields are read, else None.

    A key comes in ``x-api-key`` or, as the official SDK now sends it, ``Authorization: Bearer``.
    """
    bearer = headers.get("authorization", "")
    if not headers.get("x-api-key") and not (bearer.startswith("Bearer ") and bearer[7:].strip()):
        return 401, "x-api-key header is required"
    if not headers.get("anthropic-version"):
        return 400, "anthropic-version: header is required"
    if not isinstance(body, dict):
        return 400, "The request body is not valid JSON."
    if not isinstance(body.get("model"), str) or not body["model"]:
        return 400, "model: Field required"
    return None


# ---------------------------------------------------------------------------------------------- prompt


@dataclass(slots=True)
class Segment:
    """One block of the prompt, in Anthropic's cache order (tools, system, messages): its input tokens, what
    identifies it in a cache key (``kind`` is "tool", "system", the role of the message the block opens,
    or "" for a message's later blocks) and the ttl of its ``cache_control`` marker (None if unmarked)."""

    tokens: int
    kind: str
    item: Any
    ttl: str | None


@dataclass(slots=True)
class Prompt:
    tools: list[Block]
    turns: list[Turn]
    segments: list[Segment]

    @property
    def tokens(self) -> int:
        return sum(segment.tokens for segment in self.segments)


def _count(value: Any) -> int:
    return len(value.split()) if isinstance(value, str) else 0


def result_text(block: Block) -> str:
    """The text of a tool_result: its content string, or its text blocks joined by spaces."""
    content = block.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part["text"]
            for part in content
            if isinstance(part, dict) and part.get("type") == "text" and isinstance(part.get("text"), str)
        )
    return ""


def block_tokens(block: Block) -> int:
    """Input tokens of a content block: text is its words; a tool use is the words of its name and of its
    input as compact JSON (2 for the calls this server makes); a tool result is the words of its text;
    thinking, images, documents and anything else are free."""
    kind = block["type"]
    if kind == "text":
        return _count(block["text"])
    if kind in ("tool_use", "server_tool_use"):
        arguments = json.dumps(block.get("input"), separators=(",", ":"), ensure_ascii=False)
        return _count(block.get("name")) + _count(arguments)
    if kind == "tool_result":
        return _count(result_text(block))
    return 0


def marker_ttl(marker: Any, where: str) -> str | None:
    """The ttl of a ``cache_control`` marker ("5m" unless it says "1h"), None without a marker."""
    if marker is None:
        return None
    if not isinstance(marker, dict) or marker.get("type") != "ephemeral":
        raise InvalidRequest(f"{where}.type: Input should be 'ephemeral'")
    ttl = marker.get("ttl") or "5m"
    if ttl not in CACHE_TTLS:
        raise InvalidRequest(f"{where}.ttl: Input should be '5m' or '1h'")
    return str(ttl)


def block_ttl(block: Block, where: str) -> str | None:
    """The ttl of a block's marker; a marker on a text block inside a tool_result marks the tool_result."""
    ttl = marker_ttl(block.get("cache_control"), f"{where}.cache_control")
    content = block.get("content") if block["type"] == "tool_result" else None
    if isinstance(content, list):
        for i, part in enumerate(content):
            if isinstance(part, dict):
                ttl = marker_ttl(part.get("cache_control"), f"{where}.content.{i}.cache_control") or ttl
    return ttl


def read_tools(value: Any) -> list[Segment]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise InvalidRequest("tools: Input should be a valid list")
    segments = []
    for i, tool in enumerate(value):
        if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) or not tool["name"]:
            raise InvalidRequest(f"tools.{i}.name: Field required")
        if tool.get("type") in (None, "custom") and not isinstance(tool.get("input_schema"), dict):
            raise InvalidRequest(f"tools.{i}.custom.input_schema: Field required")
        tokens = TOOL_TOKENS + _count(tool["name"]) + _count(tool.get("description"))
        ttl = marker_ttl(tool.get("cache_control"), f"tools.{i}.cache_control")
        segments.append(Segment(tokens, "tool", tool, ttl))
    return segments


def read_system(value: Any) -> list[Segment]:
    if value is None:
        return []
    if isinstance(value, str):
        return [Segment(_count(value), "system", {"type": "text", "text": value}, None)]
    if not isinstance(value, list):
        raise InvalidRequest("system: Input should be a valid string or a list of text blocks")
    segments = []
    for i, block in enumerate(value):
        if (
            not isinstance(block, dict)
            or block.get("type") != "text"
            or not isinstance(block.get("text"), str)
        ):
            raise InvalidRequest(f"system.{i}: Input should be a text block with a string 'text'")
        ttl = marker_ttl(block.get("cache_control"), f"system.{i}.cache_control")
        segments.append(Segment(_count(block["text"]), "system", block, ttl))
    return segments


def check_block(block: Any, where: str) -> None:
    if not isinstance(block, dict) or not isinstance(block.get("type"), str):
        raise InvalidRequest(f"{where}.type: Field required")
    for name, kind in REQUIRED_BLOCK_FIELDS.get(block["type"], ()):
        if not isinstance(block.get(name), kind):
            raise InvalidRequest(f"{where}.{block['type']}.{name}: Field required")


def read_turns(value: Any) -> list[Turn]:
    if value is None:
        raise InvalidRequest("messages: Field required")
    if not isinstance(value, list):
        raise InvalidRequest("messages: Input should be a valid list")
    if not value:
        raise InvalidRequest("messages: at least one message is required")
    turns: list[Turn] = []
    for m, message in enumerate(value):
        if not isinstance(message, dict):
            raise InvalidRequest(f"messages.{m}: Input should be a valid dictionary")
        role, content = message.get("role"), message.get("content")
        if role not in ROLES:
            raise InvalidRequest(f"messages.{m}.role: Input should be 'user' or 'assistant'")
        if isinstance(content, str):
            blocks = [{"type": "text", "text": content}] if content else []
        elif isinstance(content, list):
            for b, block in enumerate(content):
                check_block(block, f"messages.{m}.content.{b}")
            blocks = content
        elif content is None:
            raise InvalidRequest(f"messages.{m}.content: Field required")
        else:
            raise InvalidRequest(f"messages.{m}.content: Input should be a valid string or list of blocks")
        if not blocks and not (role == "assistant" and m == len(value) - 1):
            raise InvalidRequest(
                f"messages.{m}: all messages must have non-empty content except for the optional final "
                "assistant message"
            )
        turns.append((str(role), blocks))
    check_tool_pairs(turns)
    return turns


def check_tool_pairs(turns: list[Turn]) -> None:
    """Every tool_result answers a tool_use of the message before; every tool_use is answered next."""
    for m, (role, blocks) in enumerate(turns):
        before = turns[m - 1] if m else ("", [])
        asked = {b["id"] for b in before[1] if b["type"] == "tool_use"} if before[0] == "assistant" else set()
        for b, block in enumerate(blocks):
            if block["type"] == "tool_result" and block["tool_use_id"] not in asked:
                raise InvalidRequest(
                    f"messages.{m}.content.{b}: unexpected `tool_use_id` found in `tool_result` blocks: "
                    f"{block['tool_use_id']}. Each `tool_result` block must have a corresponding `tool_use` "
                    "block in the previous message."
                )
        if role == "assistant" and m + 1 < len(turns):
            answered = {b["tool_use_id"] for b in turns[m + 1][1] if b["type"] == "tool_result"}
            missing = [b["id"] for b in blocks if b["type"] == "tool_use" and b["id"] not in answered]
            if missing:
                raise InvalidRequest(
                    f"messages.{m}: `tool_use` ids were found without `tool_result` blocks immediately "
                    f"after: {', '.join(missing)}. Each `tool_use` block must have a corresponding "
                    "`tool_result` block in the next message."
                )


def turn_segments(turns: list[Turn]) -> list[Segment]:
    segments = []
    for m, (role, blocks) in enumerate(turns):
        if not blocks:  # an empty final assistant message still costs its overhead
            segments.append(Segment(MESSAGE_TOKENS, role, None, None))
        for b, block in enumerate(blocks):
            tokens = block_tokens(block) + (MESSAGE_TOKENS if b == 0 else 0)
            ttl = block_ttl(block, f"messages.{m}.content.{b}")
            segments.append(Segment(tokens, role if b == 0 else "", block, ttl))
    return segments


def read_prompt(body: dict[str, Any]) -> Prompt:
    """The validated prompt of a Messages or count_tokens request, as segments in cache order."""
    tools = read_tools(body.get("tools"))
    turns = read_turns(body.get("messages"))
    segments = tools + read_system(body.get("system")) + turn_segments(turns)
    # A top-level marker stands for one on the last block.
    top = marker_ttl(body.get("cache_control"), "cache_control")
    if top is not None and segments[-1].ttl is None:
        segments[-1].ttl = top
    breakpoints = sum(1 for segment in segments if segment.ttl)
    if breakpoints > MAX_CACHE_BREAKPOINTS:
        raise InvalidRequest(
            f"A maximum of {MAX_CACHE_BREAKPOINTS} blocks with cache_control may be provided. Found {breakpoints}."
        )
    return Prompt([segment.item for segment in tools], turns, segments)


# ------------------------------------------------------------------------------------------ the cache


class PromptCache:
    """Digests of the prompt prefixes written by earlier requests. Entries never expire (a ttl only picks the
    usage bucket they are billed in); beyond ``limit`` the least recently used are forgotten."""

    def __init__(self, limit: int = PROMPT_CACHE_LIMIT) -> None:
        self._limit = max(limit, 0)
        self._entries: collections.OrderedDict[bytes, None] = collections.OrderedDict()
        self._lock = threading.Lock()

    def hit(self, digest: bytes) -> bool:
        with self._lock:
            if digest not in self._entries:
                return False
            self._entries.move_to_end(digest)
            return True

    def write(self, digests: Iterable[bytes]) -> None:
        with self._lock:
            for digest in digests:
                self._entries[digest] = None
                self._entries.move_to_end(digest)
            while len(self._entries) > self._limit:
                self._entries.popitem(last=False)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()

    def __len__(self) -> int:
        with self._lock:
            return len(self._entries)


def _unmarked(item: Any) -> Any:
    """A block without its cache_control markers, so that moving a marker keeps the prefix's key."""
    if not isinstance(item, dict):
        return item
    clean = {k: v for k, v in item.items() if k != "cache_control"}
    if isinstance(clean.get("content"), list):
        clean["content"] = [_unmarked(part) for part in clean["content"]]
    return clean


def prefix_digests(scope: str, segments: list[Segment]) -> list[bytes]:
    """The key of each prefix of ``segments``: a sha256 chain over the scope and each block's JSON."""
    digest = hashlib.sha256(scope.encode()).digest()
    digests = []
    for segment in segments:
        data = json.dumps([segment.kind, _unmarked(segment.item)], sort_keys=True, separators=(",", ":"))
        digest = hashlib.sha256(digest + data.encode()).digest()
        digests.append(digest)
    return digests


def prompt_usage(cache: PromptCache, scope: str, segments: list[Segment]) -> dict[str, Any]:
    """The input side of ``usage``; writes the request's marked prefixes to ``cache``.

    Read: the longest prefix an earlier request wrote, ending at a breakpoint or at one of the 19 blocks
    before one. Created: from there to the last breakpoint, each stretch billed at the ttl of the breakpoint
    that closes it. Input: what follows the last breakpoint (or everything, without breakpoints).
    """
    total = sum(segment.tokens for segment in segments)
    marks = [i for i, segment in enumerate(segments) if segment.ttl]
    read = created_5m = created_1h = 0
    if marks:  # hashing only happens for requests that use caching
        last = marks[-1]
        ends = list(itertools.accumulate(segment.tokens for segment in segments[: last + 1]))
        digests = prefix_digests(scope, segments[: last + 1])
        near = {j for i in marks for j in range(max(0, i - CACHE_LOOKBACK + 1), i + 1)}
        hit = max((j for j in near if cache.hit(digests[j])), default=None)
        covered = read = ends[hit] if hit is not None else 0
        for i in marks:
            if ends[i] > covered:
                if segments[i].ttl == "1h":
                    created_1h += ends[i] - covered
                else:
                    created_5m += ends[i] - covered
                covered = ends[i]
        cache.write(digests[i] for i in marks)
    return usage_body(total - read - created_5m - created_1h, read, created_5m, created_1h)


def usage_body(
    input_tokens: int = 0, read: int = 0, created_5m: int = 0, created_1h: int = 0, output_tokens: int = 0
) -> dict[str, Any]:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": created_5m + created_1h,
        "cache_read_input_tokens": read,
        "cache_creation": {"ephemeral_5m_input_tokens": created_5m, "ephemeral_1h_input_tokens": created_1h},
        "output_tokens": output_tokens,
        "service_tier": SERVICE_TIER,
    }


# ------------------------------------------------------------------------------------------ the answer


def max_tokens(body: dict[str, Any]) -> int:
    value = body.get("max_tokens")
    if value is None:
        raise InvalidRequest("max_tokens: Field required")
    if not _is_int(value):
        raise InvalidRequest("max_tokens: Input should be a valid integer")
    if value < 1:
        raise InvalidRequest("max_tokens: Input should be greater than or equal to 1")
    return int(value)


def check_options(body: dict[str, Any]) -> list[str]:
    """Validate the sampling options; the stop sequences."""
    for name in ("temperature", "top_p"):
        value = body.get(name)
        if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
            raise InvalidRequest(f"{name}: Input should be a valid number")
        if value is not None and not 0 <= value <= 1:
            raise InvalidRequest(f"{name}: Input should be between 0 and 1")
    top_k = body.get("top_k")
    if top_k is not None and (not _is_int(top_k) or top_k < 0):
        raise InvalidRequest("top_k: Input should be a non-negative integer")
    if body.get("stream") is not None and not isinstance(body["stream"], bool):
        raise InvalidRequest("stream: Input should be a valid boolean")
    if body.get("metadata") is not None and not isinstance(body["metadata"], dict):
        raise InvalidRequest("metadata: Input should be a valid dictionary")
    stops = body.get("stop_sequences")
    if stops is None:
        return []
    if not isinstance(stops, list) or not all(isinstance(s, str) for s in stops):
        raise InvalidRequest("stop_sequences: Input should be a valid list of strings")
    return [s for s in stops if s]


def thinking_display(body: dict[str, Any], limit: int | None) -> str | None:
    """ "summarized" or "omitted" when the answer opens with a thinking block, else None."""
    thinking = body.get("thinking")
    if thinking is None:
        return None
    if not isinstance(thinking, dict) or thinking.get("type") not in THINKING_TYPES:
        raise InvalidRequest("thinking.type: Input should be 'enabled', 'adaptive' or 'disabled'")
    kind = thinking["type"]
    if kind == "disabled":
        return None
    if kind == "enabled":
        if not _is_int(thinking.get("budget_tokens")):
            raise InvalidRequest("thinking.enabled.budget_tokens: Field required")
        budget = int(thinking["budget_tokens"])
        if budget < MIN_THINKING_BUDGET:
            raise InvalidRequest(
                f"thinking.enabled.budget_tokens: Input should be greater than or equal to {MIN_THINKING_BUDGET}"
            )
        if limit is not None and budget >= limit:
            raise InvalidRequest("`max_tokens` must be greater than `thinking.budget_tokens`")
    return "omitted" if thinking.get("display") == "omitted" else "summarized"


def pick_tool(body: dict[str, Any], prompt: Prompt) -> str | None:
    """Name of the tool to call, or None when the answer is text."""
    choice = body.get("tool_choice")
    kind: Any = "auto"
    if choice is not None:
        kind = choice.get("type") if isinstance(choice, dict) else None
        if kind not in TOOL_CHOICES:
            raise InvalidRequest("tool_choice.type: Input should be 'auto', 'any', 'tool' or 'none'")
    named = choice.get("name") if kind == "tool" and isinstance(choice, dict) else None
    if kind == "tool" and not isinstance(named, str):
        raise InvalidRequest("tool_choice.tool.name: Field required")
    if named is not None and named not in {tool["name"] for tool in prompt.tools}:
        raise InvalidRequest(f"tool_choice.name: Tool '{named}' not found in tools")
    last_user = next((blocks for role, blocks in reversed(prompt.turns) if role == "user"), [])
    if kind == "none" or any(block["type"] == "tool_result" for block in last_user):
        return None  # the tool has answered: reply in words, so that an agent's loop ends
    custom = [tool["name"] for tool in prompt.tools if tool.get("type") in (None, "custom")]
    return named or (custom[0] if custom else None)


def answer_words(turns: list[Turn], behaviour: Behaviour) -> list[str]:
    """The words of the answer text: an echo of the last user message, or of its last tool result."""
    if behaviour.name == "long":
        return long_words(behaviour)
    blocks = next((blocks for role, blocks in reversed(turns) if role == "user"), [])
    results = [block for block in blocks if block["type"] == "tool_result"]
    if results:
        lead, text = ["Tool", "said:"], result_text(results[-1])
    else:
        lead, text = ["You", "said:"], " ".join(b["text"] for b in blocks if b["type"] == "text")
    return [*lead, *pad_words(text.split(), padding_for(behaviour))]


def cut_words(words: list[str], stops: list[str], limit: int) -> tuple[list[str], str, str | None]:
    """The words said, the stop_reason and the stop_sequence met: generation ends after ``limit`` words, or
    before the first word whose addition makes the text contain a stop sequence (which is not sent)."""
    kept = words_before_stop(words, stops) if stops else None
    if len(words) > limit and (kept is None or kept >= limit):
        return words[:limit], "max_tokens", None
    if kept is None:
        return words, "end_turn", None
    text = " ".join(words)
    met = min((s for s in stops if s in text), key=lambda s: text.find(s) + len(s))
    return words[:kept], "stop_sequence", met


def plan_message(
    cache: PromptCache, scope: str, body: dict[str, Any], behaviour: Behaviour
) -> dict[str, Any]:
    """The finished Message answering ``body``; ``scope`` keeps the cache entries of providers apart."""
    limit = max_tokens(body)
    stops = check_options(body)
    prompt = read_prompt(body)
    display = thinking_display(body, limit)
    tool = pick_tool(body, prompt)
    message_id = _new_id("msg_")
    content: list[Block] = []
    output = 0
    if display is not None:
        thinking = REASONING_SUMMARY if display == "summarized" else ""
        sealed = hashlib.sha256(f"{message_id}|{REASONING_SUMMARY}".encode()).digest()
        signature = base64.b64encode(sealed).decode("ascii")
        content.append({"type": "thinking", "thinking": thinking, "signature": signature})
        output += THINKING_TOKENS
    stop_sequence = None
    if tool is not None:
        content.append({"type": "tool_use", "id": _new_id("toolu_"), "name": tool, "input": {}})
        output += TOOL_CALL_TOKENS
        stop_reason = "tool_use"
    else:
        words, stop_reason, stop_sequence = cut_words(
            answer_words(prompt.turns, behaviour), stops, max(limit - output, 0)
        )
        if words:
            content.append({"type": "text", "text": " ".join(words)})
        output += len(words)
    if behaviour.name == "no-usage":
        usage = usage_body()  # Anthropic always sends usage; this provider reports nothing in it
    else:
        usage = prompt_usage(cache, f"{scope}\n{body['model']}", prompt.segments)
        usage["output_tokens"] = output
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage,
    }


# ---------------------------------------------------------------------------------------------- stream


def sse(kind: str, **fields: Any) -> bytes:
    return b"event: " + kind.encode() + b"\ndata: " + _dumps({"type": kind, **fields}) + b"\n\n"


PING = sse("ping")


def word_pieces(text: str) -> list[str]:
    return [word if i == 0 else " " + word for i, word in enumerate(text.split(" "))] if text else []


def opening_block(block: Block) -> Block:
    if block["type"] == "text":
        return {"type": "text", "text": ""}
    if block["type"] == "thinking":
        return {"type": "thinking", "thinking": "", "signature": ""}
    return {**block, "input": {}}


def block_deltas(block: Block) -> list[Block]:
    if block["type"] == "text":
        return [{"type": "text_delta", "text": piece} for piece in word_pieces(block["text"])]
    if block["type"] == "thinking":
        deltas = [{"type": "thinking_delta", "thinking": piece} for piece in word_pieces(block["thinking"])]
        return [*deltas, {"type": "signature_delta", "signature": block["signature"]}]
    arguments = json.dumps(block["input"], separators=(",", ":"))
    return [{"type": "input_json_delta", "partial_json": part} for part in (arguments[:1], arguments[1:])]


def message_events(message: dict[str, Any]) -> tuple[list[bytes], int]:
    """The SSE events of a streamed Message, and how many come before the first content_block_delta."""
    usage = message["usage"]
    opening_usage = {**usage, "output_tokens": min(usage["output_tokens"], 1)}
    start = {**message, "content": [], "stop_reason": None, "stop_sequence": None, "usage": opening_usage}
    events = [sse("message_start", message=start)]
    lead: int | None = None
    for index, block in enumerate(message["content"]):
        events.append(sse("content_block_start", index=index, content_block=opening_block(block)))
        if index == 0:
            events.append(PING)  # where Anthropic sends it: after the first block opens
        lead = len(events) if lead is None else lead
        events += [sse("content_block_delta", index=index, delta=delta) for delta in block_deltas(block)]
        events.append(sse("content_block_stop", index=index))
    if not message["content"]:
        events.append(PING)
    # message_delta's usage is cumulative and, as Anthropic now sends it, repeats the input counts.
    keys = ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens", "output_tokens")
    delta = {"stop_reason": message["stop_reason"], "stop_sequence": message["stop_sequence"]}
    events.append(sse("message_delta", delta=delta, usage={key: usage[key] for key in keys}))
    events.append(sse("message_stop"))
    return events, len(events) if lead is None else lead


# -------------------------------------------------------------------------------------------- planners


def messages_reply(
    cache: PromptCache, scope: str, body: dict[str, Any], behaviour: Behaviour, stream: bool
) -> Reply:
    """A Message (or its event stream) for ``POST /v1/messages``."""
    message = plan_message(cache, scope, body, behaviour)
    if stream:
        events, lead = message_events(message)
        return Reply(_new_id("req_"), events, lead=lead, id_header=ID_HEADER)
    return Reply(_new_id("req_"), _dumps(message), id_header=ID_HEADER)


def count_tokens_reply(body: dict[str, Any], behaviour: Behaviour, stream: bool) -> Reply:
    """``{"input_tokens": N}`` for ``POST /v1/messages/count_tokens``: every bucket of a Message's input,
    together; the cache is neither read nor written."""
    prompt = read_prompt(body)
    thinking_display(body, None)
    pick_tool(body, prompt)
    return Reply(_new_id("req_"), _dumps({"input_tokens": prompt.tokens}), id_header=ID_HEADER)
