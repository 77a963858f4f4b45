"""OpenAI chat completions served by an upstream that speaks Anthropic's Messages API.

Three translations, all pure (dicts in, dicts out, no I/O):

- a chat completions body becomes a Messages body (``messages_body_from_chat``);
- a Message becomes a chat completion (``chat_from_message``);
- the Messages stream becomes chat completion chunks (``MessagesStreamToChat``), one event at a time, each
  piece of text passed on as soon as it arrives.

The request. What Anthropic can't express is left out, never refused:

- ``system`` and ``developer`` messages, wherever they stand, become the top-level ``system`` blocks, in
  order: Anthropic has no system role inside the conversation.
- Anthropic wants user and assistant turns to alternate, starting with the user. Consecutive messages of one
  role (tool results count as the user's) merge into one message, tool results first, as Anthropic requires
  of the message after tool calls. A conversation that opens with the assistant, or has only system
  messages, gets a user turn of ``"."`` before it.
- Prompt caching: a part's ``cache_control`` stays on its block, on system parts and tools too; OpenAI's
  ``prompt_cache_breakpoint`` becomes ``cache_control: {"type": "ephemeral"}`` (Anthropic's 5-minute cache;
  OpenAI's 30-minute ttl has no equal); a ``cache_control`` on a whole message goes on its last block.
  Anthropic refuses more than four breakpoints, so only the latest four are kept, as OpenAI would write.
- Text that is empty or only whitespace is left out (Anthropic refuses such blocks). A final assistant
  message is continued by Anthropic rather than answered, and loses its trailing whitespace, which Anthropic
  refuses there.
- Images given as data URLs (JPEG, PNG, GIF, WebP) go inline, http(s) URLs by reference; ``detail`` has no
  equal. A PDF given as a data URL in a ``file`` part becomes a document block titled with the filename.
  Left out: audio, files given by OpenAI file id, other file types.
- Tool calls become ``tool_use`` blocks with their arguments parsed. Arguments that are not a JSON object
  become ``{}``: Anthropic takes an object only, and such arguments come from an answer that was cut off.
  Tool messages become ``tool_result`` blocks carrying their text. Custom (free-form) tools, their calls and
  their results are left out, and so are the deprecated ``functions``, ``function_call`` and ``function``
  messages.
- ``reasoning_content`` of earlier answers is left out: Anthropic takes thinking back only with its
  signature, which chat has no place for.
- ``reasoning_effort`` becomes extended thinking with a budget (``THINKING_BUDGETS``), at most half of
  ``max_tokens`` so that the answer keeps the rest. Thinking is left out when that is under Anthropic's
  minimum of 1024, when ``tool_choice`` forces a tool call (Anthropic refuses both together), and when the
  request continues an assistant turn (it ends with the assistant, or with tool results), where Anthropic
  wants that turn's signed thinking back. With thinking, ``temperature`` and ``top_p`` are left out, as
  Anthropic refuses them there. Models that take only adaptive thinking need another mapping.
- ``temperature`` above 1 becomes 1 (Anthropic's range is 0 to 1). ``top_p`` goes only without
  ``temperature``: recent models refuse the two together.
- ``stop`` becomes ``stop_sequences``, without the sequences that are only whitespace (Anthropic refuses
  them). ``safety_identifier``, or else ``user``, becomes ``metadata.user_id``.
- ``response_format`` becomes an instruction at the end of the system blocks. Anthropic's own structured
  output takes only some models and a subset of JSON Schema; an instruction works with every model.
- Left out: ``n`` (the caller refuses more than one), ``logprobs``, ``top_logprobs``, ``seed``, the
  penalties, ``logit_bias``, ``stream_options``, ``modalities``, ``audio``, ``prediction``, ``store``,
  ``metadata``, ``service_tier``, ``verbosity``, ``web_search_options``, ``prompt_cache_key`` and the other
  prompt cache options, and the tools' ``strict``, which only some models take.

The answer: text blocks become ``content``, thinking blocks ``reasoning_content`` (the field several chat
upstreams use), ``tool_use`` blocks ``tool_calls``. Redacted thinking, signatures, citations and the blocks
of Anthropic's server tools, which ran on Anthropic's side, are not shown.

The completion's id is ``chatcmpl-`` followed by the message id without its ``msg_`` prefix.
"""

import time
import uuid
from collections.abc import Callable, Iterable

import orjson

from billing.usage import from_anthropic

# Anthropic's stop reasons as chat's finish reasons. `pause_turn` (a long turn of Anthropic's server tools,
# paused) has no chat equivalent; the answer so far is complete as it stands, so it is a plain stop.
STOP_TO_FINISH: dict[str, str] = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "pause_turn": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}

# The thinking budget for each reasoning effort; `none` means no thinking.
THINKING_BUDGETS = {
    "minimal": 1024,
    "low": 2048,
    "medium": 8192,
    "high": 16384,
    "xhigh": 32768,
    "max": 65536,
}
_MIN_THINKING_BUDGET = 1024  # Anthropic refuses a smaller budget

_MAX_BREAKPOINTS = 4  # Anthropic refuses a request with more blocks marked for caching
_IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_OPENING = "."  # the user turn put before a conversation that doesn't start with one

_JSON_OBJECT = "Answer with one JSON object and nothing else: no prose, no code fences."
_JSON_SCHEMA = (
    "Answer with one JSON value that conforms to the JSON Schema below and nothing else: no prose, "
    "no code fences.\n"
)


# --- the request ------------------------------------------------------------------------------------------


def messages_body_from_chat(body: dict, *, max_tokens: int) -> dict:
    """An Anthropic Messages body (no model and no stream: the caller sets them) for a validated chat
    completions body; ``max_tokens`` is used when the client sent neither max_tokens nor max_completion_tokens
    (Anthropic requires it)."""
    system, messages = _conversation(body.get("messages") or ())
    instruction = _format_instruction(body.get("response_format"))
    if instruction is not None:
        # Last, so that the client's own breakpoints on the system blocks still mark the same prefix.
        system.append({"type": "text", "text": instruction})
    out: dict = {"max_tokens": _max_tokens(body, max_tokens), "messages": messages}
    if system:
        out["system"] = system
    _add_tools(out, body)
    _add_sampling(out, body)  # after the tools: whether thinking fits depends on tool_choice
    stop = _stop_sequences(body.get("stop"))
    if stop:
        out["stop_sequences"] = stop
    user = body.get("safety_identifier") or body.get("user")
    if isinstance(user, str) and user:
        out["metadata"] = {"user_id": user}
    _keep_latest_breakpoints(out)
    return out


def _max_tokens(body: dict, default: int) -> int:
    for key in ("max_completion_tokens", "max_tokens"):  # OpenAI's current name first
        if body.get(key) is not None:
            return body[key]
    return default


# --- the conversation


def _conversation(messages: Iterable[dict]) -> tuple[list[dict], list[dict]]:
    """The system blocks and the alternating turns of a chat conversation."""
    system: list[dict] = []
    turns: list[dict] = []
    dropped_calls: set[object] = set()  # ids of the calls left out, whose results go too
    for message in messages:
        role = message.get("role")
        content = message.get("content")
        if role in ("system", "developer"):
            target, blocks = "system", _blocks(content, _system_part)
        elif role == "user":
            target, blocks = "user", _blocks(content, _user_part)
        elif role == "assistant":
            target, blocks = "assistant", _assistant_blocks(message, dropped_calls)
        elif role == "tool" and message.get("tool_call_id") not in dropped_calls:
            target, blocks = "user", [_tool_result(message)]
        else:
            continue  # `function` messages: the deprecated functions API has no call ids to pair them by
        _mark_message(blocks, message)
        if target == "system":
            system += blocks
        else:
            _add_turn(turns, target, blocks)
    return system, _well_formed(turns)


def _add_turn(turns: list[dict], role: str, blocks: list[dict]) -> None:
    if not blocks:
        return  # Anthropic refuses a message without content
    if turns and turns[-1]["role"] == role:
        turns[-1]["content"] += blocks
    else:
        turns.append({"role": role, "content": blocks})


def _well_formed(turns: list[dict]) -> list[dict]:
    for turn in turns:
        if turn["role"] == "user":
            turn["content"].sort(key=_not_tool_result)  # stable: each group keeps its order
    if not turns or turns[0]["role"] != "user":
        turns.insert(0, {"role": "user", "content": [{"type": "text", "text": _OPENING}]})
    last = turns[-1]
    if last["role"] == "assistant" and last["content"][-1]["type"] == "text":
        block = last["content"][-1]
        block["text"] = block["text"].rstrip()
        if not block["text"]:
            del last["content"][-1]
            if not last["content"]:
                turns.pop()
    return turns


def _not_tool_result(block: dict) -> bool:
    return block["type"] != "tool_result"


def _mark_message(blocks: list[dict], message: dict) -> None:
    # OpenAI's parts are the only place for a breakpoint, but some clients mark a whole message whose
    # content is a string; the breakpoint then ends that message.
    cache = message.get("cache_control")
    if isinstance(cache, dict) and blocks and "cache_control" not in blocks[-1]:
        blocks[-1]["cache_control"] = cache


# --- content parts


def _blocks(content: object, part_block: Callable[[dict], dict | None]) -> list[dict]:
    if isinstance(content, str):
        block = _text(content)
        return [block] if block is not None else []
    parts = content if isinstance(content, list) else ()
    blocks = [_cached(part_block(part), part) for part in parts if isinstance(part, dict)]
    return [block for block in blocks if block is not None]


def _text(text: object) -> dict | None:
    if not isinstance(text, str) or not text.strip():
        return None
    return {"type": "text", "text": text}


def _cached(block: dict | None, part: dict) -> dict | None:
    cache = _breakpoint(part)
    if block is not None and cache is not None:
        block["cache_control"] = cache
    return block


def _breakpoint(part: dict) -> dict | None:
    """The cache_control a part asks for: its own, or one for OpenAI's explicit breakpoint."""
    cache = part.get("cache_control")
    if isinstance(cache, dict):
        return cache
    if isinstance(part.get("prompt_cache_breakpoint"), dict):
        return {"type": "ephemeral"}
    return None


def _system_part(part: dict) -> dict | None:
    return _text(part.get("text")) if part.get("type") == "text" else None


def _user_part(part: dict) -> dict | None:
    kind = part.get("type")
    if kind == "text":
        return _text(part.get("text"))
    if kind == "image_url":
        return _image(part.get("image_url"))
    if kind == "file":
        return _document(part.get("file"))
    return None  # input_audio: Anthropic takes no audio


def _assistant_part(part: dict) -> dict | None:
    kind = part.get("type")
    if kind == "text":
        return _text(part.get("text"))
    if kind == "refusal":
        return _text(part.get("refusal"))
    return None


def _data_url(url: str) -> tuple[str, str] | None:
    """(media type, base64 data) of a base64 data URL, or None for anything else."""
    if not url.startswith("data:"):
        return None
    header, comma, data = url[5:].partition(",")
    media_type, *params = header.split(";")
    if not comma or "base64" not in params:
        return None  # Anthropic takes inline data only as base64
    return media_type.strip().lower(), data


def _image(image: object) -> dict | None:
    url = image.get("url") if isinstance(image, dict) else None
    if not isinstance(url, str):
        return None
    inline = _data_url(url)
    if inline is not None:
        media_type, data = inline
        if media_type not in _IMAGE_TYPES:
            return None
        return {"type": "image", "source": {"type": "base64", "media_type": media_type, "data": data}}
    if url.lower().startswith(("https://", "http://")):
        return {"type": "image", "source": {"type": "url", "url": url}}
    return None


def _document(file: object) -> dict | None:
    data = file.get("file_data") if isinstance(file, dict) else None
    inline = _data_url(data) if isinstance(data, str) else None
    if inline is None or inline[0] != "application/pdf":
        return None
    source = {"type": "base64", "media_type": "application/pdf", "data": inline[1]}
    block = {"type": "document", "source": source}
    filename = file.get("filename") if isinstance(file, dict) else None
    if isinstance(filename, str) and filename:
        block["title"] = filename
    return block


# --- tool calls and their results


def _assistant_blocks(message: dict, dropped_calls: set[object]) -> list[dict]:
    blocks = _blocks(message.get("content"), _assistant_part)
    for call in message.get("tool_calls") or ():
        if not isinstance(call, dict):
            continue
        if call.get("type", "function") == "function":
            blocks.append(_tool_use(call))
        else:
            dropped_calls.add(call.get("id"))
    return blocks


def _tool_use(call: dict) -> dict:
    function = call.get("function") or {}
    arguments = _arguments(function.get("arguments"))
    return {"type": "tool_use", "id": call.get("id"), "name": function.get("name"), "input": arguments}


def _arguments(text: object) -> dict:
    if not isinstance(text, str) or not text:
        return {}
    try:
        value = orjson.loads(text)
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _tool_result(message: dict) -> dict:
    content = message.get("content")
    texts: list[str] = []
    cache: dict | None = None
    if isinstance(content, str):
        texts.append(content)
    for part in content if isinstance(content, list) else ():
        if isinstance(part, dict) and part.get("type") == "text":
            texts.append(part.get("text") or "")
            # The result is one block, so the parts' breakpoints all fall on it.
            cache = _breakpoint(part) or cache
    block: dict = {"type": "tool_result", "tool_use_id": message.get("tool_call_id")}
    text = "".join(texts)
    if text.strip():
        block["content"] = text
    if cache is not None:
        block["cache_control"] = cache
    return block


# --- tools, sampling, stop


def _add_tools(out: dict, body: dict) -> None:
    tools = [_tool(tool) for tool in body.get("tools") or () if tool.get("type") == "function"]
    choice = body.get("tool_choice")
    if isinstance(choice, dict) and choice.get("type") == "allowed_tools":
        # Anthropic can't narrow the tools per request, so the tools not allowed aren't offered.
        allowed = choice.get("allowed_tools") or {}
        names = {(tool.get("function") or {}).get("name") for tool in allowed.get("tools") or ()}
        tools = [tool for tool in tools if tool["name"] in names]
        choice = "required" if allowed.get("mode") == "required" else "auto"
    if not tools:
        return  # a tool choice means nothing without tools
    out["tools"] = tools
    anthropic_choice = _tool_choice(choice)
    if body.get("parallel_tool_calls") is False:
        anthropic_choice = anthropic_choice or {"type": "auto"}
        if anthropic_choice["type"] != "none":
            anthropic_choice["disable_parallel_tool_use"] = True
    if anthropic_choice is not None:
        out["tool_choice"] = anthropic_choice


def _tool(tool: dict) -> dict:
    function = tool.get("function") or {}
    schema = function.get("parameters") or {"type": "object", "properties": {}}  # Anthropic requires one
    out = {"name": function.get("name"), "input_schema": schema}
    if function.get("description"):
        out["description"] = function["description"]
    cache = tool.get("cache_control", function.get("cache_control"))
    if isinstance(cache, dict):
        out["cache_control"] = cache
    return out


def _tool_choice(choice: object) -> dict | None:
    if isinstance(choice, str):
        kind = {"auto": "auto", "required": "any", "none": "none"}.get(choice)
        return {"type": kind} if kind else None
    if isinstance(choice, dict) and choice.get("type") == "function":
        return {"type": "tool", "name": (choice.get("function") or {}).get("name")}
    return None  # a custom tool: none is offered


def _add_sampling(out: dict, body: dict) -> None:
    thinking = _thinking(body.get("reasoning_effort"), out)
    if thinking is not None:
        out["thinking"] = thinking
        return
    temperature = body.get("temperature")
    if temperature is not None:
        out["temperature"] = min(temperature, 1.0)
    elif body.get("top_p") is not None:
        out["top_p"] = body["top_p"]


def _thinking(effort: object, out: dict) -> dict | None:
    budget = THINKING_BUDGETS.get(effort) if isinstance(effort, str) else None
    if budget is None:
        return None
    budget = min(budget, out["max_tokens"] // 2)
    forced = out.get("tool_choice", {}).get("type") in ("any", "tool")
    if budget < _MIN_THINKING_BUDGET or forced or _continues_turn(out["messages"]):
        return None
    return {"type": "enabled", "budget_tokens": budget}


def _continues_turn(messages: list[dict]) -> bool:
    """Whether the request goes on with an assistant turn: a prefill, or the results of its tool calls."""
    last = messages[-1]
    return last["role"] == "assistant" or any(block["type"] == "tool_result" for block in last["content"])


def _stop_sequences(stop: object) -> list[str]:
    sequences = [stop] if isinstance(stop, str) else stop if isinstance(stop, list) else []
    return [sequence for sequence in sequences if isinstance(sequence, str) and sequence.strip()]


def _format_instruction(response_format: object) -> str | None:
    if not isinstance(response_format, dict):
        return None
    if response_format.get("type") == "json_object":
        return _JSON_OBJECT
    if response_format.get("type") == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or {}
        return _JSON_SCHEMA + orjson.dumps(schema).decode()
    return None  # {"type": "text"} is the default


def _keep_latest_breakpoints(out: dict) -> None:
    # In Anthropic's prompt order: tools, then system, then messages.
    blocks = [*out.get("tools", ()), *out.get("system", ())]
    blocks += [block for message in out["messages"] for block in message["content"]]
    marked = [block for block in blocks if "cache_control" in block]
    for block in marked[:-_MAX_BREAKPOINTS]:
        del block["cache_control"]


# --- usage ------------------------------------------------------------------------------------------------


def chat_usage(usage: dict | None) -> dict | None:
    """Anthropic usage -> chat usage: prompt_tokens = input_tokens + cache_read_input_tokens +
    cache_creation_input_tokens (Anthropic's input_tokens exclude the cached buckets; OpenAI's prompt_tokens
    include them), completion_tokens = output_tokens, total_tokens, prompt_tokens_details.cached_tokens =
    cache_read_input_tokens."""
    counts = from_anthropic(usage)
    if counts is None:
        return None
    details = {
        "cached_tokens": counts.cache_read,
        "cache_write_tokens": counts.cache_write_5m + counts.cache_write_1h,
    }
    out = {
        "prompt_tokens": counts.prompt,
        "completion_tokens": counts.output,
        "total_tokens": counts.prompt + counts.output,
        "prompt_tokens_details": details,
    }
    if counts.reasoning:
        out["completion_tokens_details"] = {"reasoning_tokens": counts.reasoning}
    return out


# --- the answer -------------------------------------------------------------------------------------------


def chat_from_message(message: dict, *, model: str) -> dict:
    """A chat completion (object "chat.completion", id derived from the message id, created now, one choice
    with message/finish_reason/logprobs None, usage) for an Anthropic Message."""
    texts: list[str] = []
    thinking: list[str] = []
    calls: list[dict] = []
    for block in message.get("content") or ():
        kind = block.get("type") if isinstance(block, dict) else None
        if kind == "text":
            texts.append(block.get("text") or "")
        elif kind == "thinking":
            thinking.append(block.get("thinking") or "")
        elif kind == "tool_use":
            calls.append(_tool_call(block))
    # As OpenAI does: no content beside tool calls, and an empty string for an empty answer.
    content = "".join(texts) if texts else None if calls else ""
    reply: dict = {"role": "assistant", "content": content, "refusal": None, "annotations": []}
    if calls:
        reply["tool_calls"] = calls
    if thinking:
        reply["reasoning_content"] = "".join(thinking)
    choice = {
        "index": 0,
        "message": reply,
        "finish_reason": _finish_reason(message.get("stop_reason")),
        "logprobs": None,
    }
    completion = {
        "id": _chat_id(message.get("id")),
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [choice],
    }
    usage = chat_usage(message.get("usage"))
    if usage is not None:
        completion["usage"] = usage
    return completion


def _tool_call(block: dict) -> dict:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def _finish_reason(stop_reason: object) -> str:
    return STOP_TO_FINISH.get(stop_reason, "stop") if isinstance(stop_reason, str) else "stop"


def _chat_id(message_id: object) -> str:
    if isinstance(message_id, str) and message_id:
        return "chatcmpl-" + message_id.removeprefix("msg_")
    return "chatcmpl-" + uuid.uuid4().hex


# --- the stream -------------------------------------------------------------------------------------------


class MessagesStreamToChat:
    """Anthropic stream events in (dicts as parsed from each `data:` line), chat completion chunks out.

    The first chunk gives the role; then each text or thinking delta is one chunk, at once. A ``tool_use``
    block opens a tool call (numbered from 0 in order, whatever its block index) and its JSON pieces follow
    as the call's arguments. ``message_delta`` gives the finish reason, and after ``message_stop`` a usage
    chunk follows when the client asked for one. ``ping`` gives nothing; the caller deals with ``error``
    events before they get here.
    """

    def __init__(self, *, model: str, include_usage: bool, created: int) -> None:
        self.finished = False  # True once message_stop was fed
        # The Anthropic usage as it stands: message_start's, with message_delta's counts replacing (never
        # added to) it, as message_delta's counts are cumulative.
        self.usage: dict | None = None
        self._model = model
        self._include_usage = include_usage
        self._created = created
        self._id: str | None = None
        self._opened = False  # the role chunk went out
        self._finish_sent = False
        self._calls: dict[object, int] = {}  # content block index -> tool call index

    def feed(self, event: dict) -> list[dict]:
        kind = event.get("type")
        if self.finished:
            return []
        if kind == "message_start":
            return self._start(event)
        if kind == "content_block_start":
            return self._block_start(event)
        if kind == "content_block_delta":
            return self._block_delta(event)
        if kind == "message_delta":
            return self._message_delta(event)
        if kind == "message_stop":
            return self._stop()
        return []  # ping, content_block_stop, and events of later API versions

    def _start(self, event: dict) -> list[dict]:
        message = event.get("message") or {}
        self._id = _chat_id(message.get("id"))
        if isinstance(message.get("usage"), dict):
            self.usage = dict(message["usage"])
        return self._open()

    def _block_start(self, event: dict) -> list[dict]:
        block = event.get("content_block") or {}
        kind = block.get("type")
        if kind == "text":
            return self._text("content", block.get("text"))
        if kind == "thinking":
            return self._text("reasoning_content", block.get("thinking"))
        if kind == "tool_use":
            index = len(self._calls)
            self._calls[event.get("index")] = index
            function = {"name": block.get("name"), "arguments": ""}
            return self._emit(
                {
                    "tool_calls": [
                        {"index": index, "id": block.get("id"), "type": "function", "function": function}
                    ]
                }
            )
        return []  # redacted thinking, and the blocks of Anthropic's server tools

    def _block_delta(self, event: dict) -> list[dict]:
        delta = event.get("delta") or {}
        kind = delta.get("type")
        if kind == "text_delta":
            return self._text("content", delta.get("text"))
        if kind == "thinking_delta":
            return self._text("reasoning_content", delta.get("thinking"))
        if kind == "input_json_delta":
            index = self._calls.get(event.get("index"))  # None for a server tool's input
            piece = delta.get("partial_json")
            if index is not None and isinstance(piece, str) and piece:
                return self._emit({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
        return []  # signatures and citations have no place in chat

    def _message_delta(self, event: dict) -> list[dict]:
        usage = event.get("usage")
        if isinstance(usage, dict):
            # A count left out or null is one message_delta doesn't restate.
            given = {key: value for key, value in usage.items() if value is not None}
            self.usage = {**(self.usage or {}), **given}
        stop_reason = (event.get("delta") or {}).get("stop_reason")
        if stop_reason is None or self._finish_sent:
            return []
        return self._finish(stop_reason)

    def _stop(self) -> list[dict]:
        self.finished = True
        # A stream that never said why it stopped still ends like a chat stream, with a finish reason.
        chunks = [] if self._finish_sent else self._finish(None)
        usage = chat_usage(self.usage)
        if self._include_usage and usage is not None:
            chunks.append({**self._envelope(), "choices": [], "usage": usage})
        return chunks

    # --- chunks

    def _text(self, key: str, text: object) -> list[dict]:
        return self._emit({key: text}) if isinstance(text, str) and text else []

    def _finish(self, stop_reason: object) -> list[dict]:
        self._finish_sent = True
        return self._emit({}, _finish_reason(stop_reason))

    def _emit(self, delta: dict, finish_reason: str | None = None) -> list[dict]:
        return [*self._open(), self._chunk(delta, finish_reason)]

    def _open(self) -> list[dict]:
        if self._opened:
            return []
        self._opened = True
        return [self._chunk({"role": "assistant", "content": ""}, None)]

    def _chunk(self, delta: dict, finish_reason: str | None) -> dict:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        chunk = {**self._envelope(), "choices": [choice]}
        if self._include_usage:
            chunk["usage"] = None  # as OpenAI sends it: null on every chunk but the last
        return chunk

    def _envelope(self) -> dict:
        if self._id is None:
            self._id = _chat_id(None)  # a stream without message_start
        return {
            "id": self._id,
            "object": "chat.completion.chunk",
            "created": self._created,
            "model": self._model,
        }
