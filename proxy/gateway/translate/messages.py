"""Anthropic's Messages API served by a route that speaks only OpenAI chat completions.

Three translations, all pure (dicts in, dicts out, no I/O):

- a Messages request body becomes a chat completions body (``chat_body_from_messages``);
- a chat completion becomes an Anthropic ``Message`` (``message_from_chat``);
- a chat completion stream becomes Anthropic's stream events (``ChatStreamToMessages``), one chunk at a time,
  without holding text back.

The request, field by field:

- ``system`` (a string or text blocks) and the ``system`` messages that lead ``messages`` make one leading
  system message, the texts joined by a blank line; a system message further down stays where it is.
- Text, images (base64 or URL), PDFs given inline (as chat ``file`` parts) and plain-text or content-block
  documents pass. ``tool_use`` blocks become the assistant's ``tool_calls`` with the same ids, and each
  ``tool_result`` a ``tool`` message, put before the rest of its user message because chat wants tool
  messages right after the calls they answer. A tool message carries text only, so a result's images and
  documents follow in the user message after the tool messages.
- Custom tools become function tools, and ``tool_choice`` its chat form (``any`` is ``required``);
  ``disable_parallel_tool_use`` is ``parallel_tool_calls: false``.
- ``max_tokens`` goes under that name: every chat upstream knows it, while ``max_completion_tokens`` is
  unknown to some older servers, which would ignore it and let the answer outgrow the credit hold. (OpenAI's
  reasoning models want the new name; the chat path's own handling of the two names is the place to change
  that for every endpoint at once.)
- ``stop_sequences`` is ``stop``, cut to chat's limit of four; ``temperature`` and ``top_p`` pass as they
  are; ``metadata.user_id`` is ``user``.
- ``thinking`` becomes ``reasoning_effort`` only when thinking is on: ``output_config.effort`` when the
  request sets it (``xhigh`` and ``max`` as ``high``, the highest level every reasoning upstream knows),
  else, for a fixed budget, ``low`` below 4,096 tokens, ``medium`` below 16,384 and ``high`` above. Adaptive
  thinking with no effort leaves the choice to the upstream, as Anthropic leaves it to the model. With
  thinking off nothing is sent: non-reasoning models refuse the field.
- ``output_config.format`` (and the older ``output_format``) is a ``json_schema`` response format.

Left out, because chat can't express them: ``cache_control`` (the text it marks is kept), ``thinking`` and
``redacted_thinking`` blocks (chat can't send reasoning back, and their signatures mean something only to
Anthropic), Anthropic's server tools (web search, bash, text editor, computer use, code execution...) and
the blocks they produce, images, PDFs and files given by URL or Files API id (chat's parts take inline
data), a tool's ``strict`` (OpenAI's strict mode has rules of its own that an Anthropic schema may break),
``top_k`` (OpenAI refuses it, and the route may be OpenAI's), and the fields about Anthropic's own service:
``context_management``, ``service_tier``, ``container``, ``mcp_servers`` and anything unknown.

The answer: reasoning (``reasoning_content`` or ``reasoning``) is a ``thinking`` block with an empty
signature, first; the text follows (an empty text is left out, as Anthropic refuses empty text blocks sent
back); then a ``tool_use`` block per call, with the call's id (or, when the upstream gave none,
``toolu_<message id suffix>_<n>``). Arguments that are not a JSON object give ``input: {}``: Anthropic's
``input`` is always an object, and a tool called with nothing fails on its required parameters, which the
model can read and correct. When the upstream names the stop string it hit (vLLM's ``stop_reason``,
SGLang's ``matched_stop``), the stop reason is ``stop_sequence``. An answer with tool calls stops for
``tool_use`` unless it was cut short, whatever finish reason the upstream gave, and one without stops for
something else: agent loops branch on the stop reason to run the tools.
"""

from dataclasses import dataclass, field

import orjson

from proxy.gateway.translate.chat_parts import first_choice, reasoning_text, text_of

# --- a Messages request as a chat completions body -------------------------------------------------------

# The spec's `stop` array holds at most four strings.
_MAX_STOP = 4

# Anthropic's effort levels as the reasoning efforts chat upstreams know.
_EFFORTS = {"low": "low", "medium": "medium", "high": "high", "xhigh": "high", "max": "high"}


def chat_body_from_messages(body: dict) -> dict:
    """A chat completions body (no model, stream or stream_options: the caller sets them) for a validated
    Messages request body."""
    out: dict = {"messages": _messages(body)}
    if body.get("max_tokens") is not None:
        out["max_tokens"] = body["max_tokens"]
    stop = [s for s in body.get("stop_sequences") or () if isinstance(s, str)]
    if stop:
        out["stop"] = stop[:_MAX_STOP]
    for key in ("temperature", "top_p"):
        if body.get(key) is not None:
            out[key] = body[key]
    user = _mapping(body.get("metadata")).get("user_id")
    if isinstance(user, str) and user:
        out["user"] = user
    effort = _reasoning_effort(body)
    if effort is not None:
        out["reasoning_effort"] = effort
    response_format = _response_format(body)
    if response_format is not None:
        out["response_format"] = response_format
    _add_tools(out, body)
    return out


def _messages(body: dict) -> list[dict]:
    items = [item for item in body.get("messages") or () if isinstance(item, dict)]
    # Claude Code sends system messages inside `messages` too; the leading ones are part of the system prompt.
    system = [_system_text(body.get("system"))]
    while items and items[0].get("role") == "system":
        system.append(_system_text(items.pop(0).get("content")))
    prompt = "\n\n".join(text for text in system if text)
    messages = [{"role": "system", "content": prompt}] if prompt else []
    for item in items:
        messages += _chat_messages(item)
    return messages


def _system_text(value: object) -> str:
    # A string for every upstream: not all chat templates take parts in a system message.
    if isinstance(value, str):
        return value
    return "\n\n".join(_text_blocks(value))


def _text_blocks(value: object) -> list[str]:
    blocks = value if isinstance(value, list) else ()
    return [b["text"] for b in blocks if isinstance(b, dict) and b.get("type") == "text" and b.get("text")]


def _chat_messages(item: dict) -> list[dict]:
    role, content = item.get("role"), item.get("content")
    if role == "user":
        return _user_messages(content)
    if role == "assistant":
        message = _assistant_message(content)
        return [message] if message is not None else []
    if role == "system":
        text = _system_text(content)
        return [{"role": "system", "content": text}] if text else []
    return []


def _user_messages(content: object) -> list[dict]:
    if isinstance(content, str):
        return [{"role": "user", "content": content}]
    tools: list[dict] = []
    attached: list[dict] = []  # what the tool results carry beside their text
    parts: list[dict] = []
    for block in content if isinstance(content, list) else ():
        if not isinstance(block, dict):
            continue
        if block.get("type") == "tool_result":
            tools.append(_tool_message(block))
            result = block.get("content")
            for inner in result if isinstance(result, list) else ():
                if isinstance(inner, dict) and inner.get("type") != "text":
                    attached += _user_parts(inner)
        else:
            parts += _user_parts(block)
    parts = attached + parts
    if not parts:
        return tools
    if len(parts) == 1 and parts[0]["type"] == "text":
        return [*tools, {"role": "user", "content": parts[0]["text"]}]
    return [*tools, {"role": "user", "content": parts}]


def _user_parts(block: dict) -> list[dict]:
    kind = block.get("type")
    if kind == "text":
        return [_text_part(block.get("text"))] if block.get("text") else []
    if kind == "image":
        url = _image_url(_mapping(block.get("source")))
        return [{"type": "image_url", "image_url": {"url": url}}] if url else []
    if kind == "document":
        return _document_parts(block)
    if kind == "search_result":
        return [_text_part(text) for text in _text_blocks(block.get("content"))]
    # thinking, tool_use, the server tools' blocks, container uploads: nothing a chat user message can hold.
    return []


def _text_part(text: object) -> dict:
    return {"type": "text", "text": text if isinstance(text, str) else ""}


def _image_url(source: dict) -> str | None:
    if source.get("type") == "base64" and source.get("data"):
        return f"data:{source.get('media_type')};base64,{source['data']}"
    if source.get("type") == "url" and source.get("url"):
        return str(source["url"])
    return None  # a Files API id means nothing to the upstream


def _document_parts(block: dict) -> list[dict]:
    source = _mapping(block.get("source"))
    kind = source.get("type")
    if kind == "base64" and source.get("data"):
        data = f"data:{source.get('media_type') or 'application/pdf'};base64,{source['data']}"
        return [{"type": "file", "file": {"filename": _filename(block.get("title")), "file_data": data}}]
    if kind == "text" and source.get("data"):
        return [_text_part(source["data"])]
    if kind == "content":
        inner = source.get("content")
        if isinstance(inner, str):
            return [_text_part(inner)] if inner else []
        return [part for b in inner or () if isinstance(b, dict) for part in _user_parts(b)]
    return []  # a URL or a Files API id: chat's file parts take inline data only


def _filename(title: object) -> str:
    # Upstreams may tell a file's kind by its extension, so a PDF's name keeps ".pdf".
    if not isinstance(title, str) or not title:
        return "document.pdf"
    return title if title.lower().endswith(".pdf") else f"{title}.pdf"


def _tool_message(block: dict) -> dict:
    content = block.get("content")
    text = content if isinstance(content, str) else "\n".join(_text_blocks(content))
    if block.get("is_error") is True:
        # Chat has no error flag for a tool's output; the model still has to know the call failed.
        text = f"Error: {text}" if text else "Error"
    return {"role": "tool", "tool_call_id": block.get("tool_use_id"), "content": text}


def _assistant_message(content: object) -> dict | None:
    if isinstance(content, str):
        return {"role": "assistant", "content": content}
    blocks = [b for b in content if isinstance(b, dict)] if isinstance(content, list) else []
    # Text blocks in one turn are pieces of one answer (citations cut it mid-sentence), so they join as
    # they are.
    texts = [b.get("text") or "" for b in blocks if b.get("type") == "text"]
    calls = [_tool_call(b) for b in blocks if b.get("type") == "tool_use"]
    if not (texts or calls):
        return None  # only thinking, or server tools' blocks: nothing chat can send back
    message: dict = {"role": "assistant", "content": "".join(texts) if texts else None}
    if calls:
        message["tool_calls"] = calls
    return message


def _tool_call(block: dict) -> dict:
    arguments = orjson.dumps(block.get("input") or {}).decode()
    return {
        "id": block.get("id"),
        "type": "function",
        "function": {"name": block.get("name"), "arguments": arguments},
    }


def _add_tools(out: dict, body: dict) -> None:
    # A tool with a type other than "custom" is one of Anthropic's server tools, which run inside Anthropic.
    tools = [
        _chat_function(tool)
        for tool in body.get("tools") or ()
        if isinstance(tool, dict) and tool.get("type") in (None, "custom")
    ]
    if not tools:
        return  # chat refuses tool_choice and parallel_tool_calls without tools
    out["tools"] = tools
    choice = _mapping(body.get("tool_choice"))
    kind = choice.get("type")
    names = {tool["function"]["name"] for tool in tools}
    if kind in ("auto", "none"):
        out["tool_choice"] = kind
    elif kind == "any":
        out["tool_choice"] = "required"
    elif kind == "tool" and choice.get("name") in names:
        out["tool_choice"] = {"type": "function", "function": {"name": choice["name"]}}
    if choice.get("disable_parallel_tool_use") is True and kind != "none":
        out["parallel_tool_calls"] = False


def _chat_function(tool: dict) -> dict:
    function = {"name": tool.get("name")}
    if tool.get("description"):
        function["description"] = tool["description"]
    if isinstance(tool.get("input_schema"), dict):
        function["parameters"] = tool["input_schema"]
    return {"type": "function", "function": function}


def _reasoning_effort(body: dict) -> str | None:
    thinking = _mapping(body.get("thinking"))
    kind = thinking.get("type")
    if kind in (None, "disabled"):
        return None
    effort = _mapping(body.get("output_config")).get("effort")
    if effort in _EFFORTS:
        return _EFFORTS[effort]
    if kind != "enabled":
        return None
    budget = thinking.get("budget_tokens")
    if type(budget) is not int:
        return "medium"
    # Claude Code's "think", "think hard" and "ultrathink" ask for about 4k, 10k and 32k tokens.
    return "low" if budget < 4096 else "medium" if budget < 16384 else "high"


def _response_format(body: dict) -> dict | None:
    fmt = _mapping(_mapping(body.get("output_config")).get("format") or body.get("output_format"))
    if fmt.get("type") != "json_schema" or not isinstance(fmt.get("schema"), dict):
        return None
    # Not strict: OpenAI's strict mode wants every property required, which Anthropic's schemas need not be.
    return {"type": "json_schema", "json_schema": {"name": "output", "schema": fmt["schema"]}}


# --- the answer --------------------------------------------------------------------------------------------

# Chat's finish reasons as Anthropic's stop reasons. A content filter stopping the answer is what Anthropic
# reports as a refusal; any reason not here (an upstream's own) is a plain end of turn.
FINISH_TO_STOP: dict[str, str] = {
    "stop": "end_turn",
    "length": "max_tokens",
    "tool_calls": "tool_use",
    "function_call": "tool_use",
    "content_filter": "refusal",
}


def usage_from_chat(usage: dict | None) -> dict:
    """A chat ``usage`` as Anthropic's: the prompt split into uncached, cache-read and cache-written tokens
    (Anthropic's ``input_tokens`` counts only the first). Zeros when there is none."""
    usage = _mapping(usage)
    details = _mapping(usage.get("prompt_tokens_details"))
    prompt = _count(usage.get("prompt_tokens"))
    # DeepSeek reports its cache hits under a name of its own.
    read = _count(details.get("cached_tokens", usage.get("prompt_cache_hit_tokens")))
    written = _count(details.get("cache_write_tokens"))
    return {
        "input_tokens": max(prompt - read - written, 0),
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": _count(usage.get("completion_tokens")),
    }


def message_from_chat(completion: dict, *, message_id: str, model: str) -> dict:
    """An Anthropic Message object (type "message", role "assistant", content blocks, stop_reason,
    stop_sequence, usage) for a chat completion (OpenAI shape)."""
    choice = first_choice(completion) or {}
    message = _mapping(choice.get("message"))
    content: list[dict] = []
    reasoning = reasoning_text(message)
    if reasoning:
        content.append({"type": "thinking", "thinking": reasoning, "signature": ""})
    text = text_of(message.get("content")) or text_of(message.get("refusal"))
    if text:
        content.append({"type": "text", "text": text})
    calls = [call for call in message.get("tool_calls") or () if isinstance(call, dict)]
    for n, call in enumerate(calls):
        function = _mapping(call.get("function"))
        if not function.get("name"):
            continue  # as in the stream, where a tool_use block can't open without its name
        content.append(
            {
                "type": "tool_use",
                "id": str(call.get("id") or _tool_id(message_id, n)),
                "name": str(function["name"]),
                "input": _tool_input(function.get("arguments")),
            }
        )
    tool_use = any(block["type"] == "tool_use" for block in content)
    stop_reason, stop_sequence = _stop(choice, tool_use=tool_use)
    return {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage_from_chat(completion.get("usage")),
    }


def _tool_id(message_id: str, n: int) -> str:
    return f"toolu_{message_id.removeprefix('msg_')}_{n}"


def _tool_input(arguments: object) -> dict:
    if isinstance(arguments, dict):
        return arguments  # a few upstreams send the object itself
    try:
        value = orjson.loads(arguments) if isinstance(arguments, str) and arguments else {}
    except orjson.JSONDecodeError:
        return {}
    return value if isinstance(value, dict) else {}


def _stop(choice: dict, *, tool_use: bool) -> tuple[str, str | None]:
    reason = FINISH_TO_STOP.get(str(choice.get("finish_reason")), "end_turn")
    if reason == "tool_use" or (reason == "end_turn" and tool_use):
        # Agent loops run the tool_use blocks when the turn stops for them, so the two must agree.
        return ("tool_use" if tool_use else "end_turn"), None
    if reason != "end_turn":
        return reason, None
    matched = choice.get("stop_reason") or choice.get("matched_stop")
    if isinstance(matched, str) and matched:  # a number here is a stop token, not one of the client's strings
        return "stop_sequence", matched
    return "end_turn", None


# --- the stream ---------------------------------------------------------------------------------------------


@dataclass(slots=True)
class _Call:
    id: str
    name: str = ""
    given_id: bool = False  # the upstream named it, rather than us
    index: int | None = None  # its content block, once open
    early: list[str] = field(default_factory=list)  # argument pieces that came before its name


class ChatStreamToMessages:
    """Chat completion chunks in, Anthropic stream events out (dicts, each with its "type").

    ``start()`` gives ``message_start``; ``feed(chunk)`` the block events one parsed chunk causes, its text at
    once; ``finish()`` closes the open block and ends with ``message_delta`` and ``message_stop``.

    One content block is open at a time, as Anthropic sends them: reasoning, text and each tool call open a
    block of their own, closing the one before, and a return to an earlier kind opens a new block. Chat
    upstreams send parallel calls one after another; should one interleave them, a late piece of an earlier
    call's arguments still goes to that call's block (by its index, which is how clients gather the input).
    """

    def __init__(self, *, message_id: str, model: str, input_tokens: int) -> None:
        self._message_id = message_id
        self._model = model
        self._input_tokens = max(input_tokens, 0)
        self._blocks = 0  # how many blocks have opened
        self._open: str | None = None  # "thinking", "text" or "tool_use": the kind of the open block
        self._calls: dict[object, _Call] = {}  # chat's tool call index (or id) -> the call
        self._latest: _Call | None = None
        self._choice: dict = {}  # the finish reason and stop string seen so far
        self._usage: dict | None = None

    def start(self) -> list[dict]:
        usage = {
            "input_tokens": self._input_tokens,
            "cache_creation_input_tokens": 0,
            "cache_read_input_tokens": 0,
            "output_tokens": 0,
        }
        message: dict = {
            "id": self._message_id,
            "type": "message",
            "role": "assistant",
            "model": self._model,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": usage,
        }
        return [{"type": "message_start", "message": message}]

    def feed(self, chunk: dict) -> list[dict]:
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choice = first_choice(chunk)
        if choice is None:
            return []
        delta = _mapping(choice.get("delta"))
        events: list[dict] = []
        reasoning = reasoning_text(delta)
        if reasoning:
            events += self._piece("thinking", reasoning)
        for key in ("content", "refusal"):
            text = text_of(delta.get(key))
            if text:
                events += self._piece("text", text)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events += self._call_delta(call)
        for key in ("finish_reason", "stop_reason", "matched_stop"):
            if choice.get(key) is not None:
                self._choice[key] = choice[key]
        return events

    def finish(self, *, output_tokens: int = 0) -> list[dict]:
        """Close the open block and end the message. ``output_tokens`` is the caller's own count, reported
        when the chunks gave no usage."""
        events = self._close()
        tool_use = any(call.index is not None for call in self._calls.values())
        stop_reason, stop_sequence = _stop(self._choice, tool_use=tool_use)
        usage = {"output_tokens": max(output_tokens, 0)}
        if self._usage is not None:
            usage = usage_from_chat(self._usage)  # the real counts replace message_start's estimate
        delta = {"stop_reason": stop_reason, "stop_sequence": stop_sequence}
        return [*events, {"type": "message_delta", "delta": delta, "usage": usage}, {"type": "message_stop"}]

    # --- blocks

    def _piece(self, kind: str, text: str) -> list[dict]:
        events: list[dict] = []
        if self._open != kind:
            events += self._close()
            block = {"type": kind, kind: ""}
            if kind == "thinking":
                block["signature"] = ""
            events += self._start(kind, block)
        delta = {"type": f"{kind}_delta", kind: text}
        return [*events, {"type": "content_block_delta", "index": self._blocks - 1, "delta": delta}]

    def _call_delta(self, delta: dict) -> list[dict]:
        function = _mapping(delta.get("function"))
        name, arguments = function.get("name"), function.get("arguments")
        call = self._call_for(delta)
        if isinstance(name, str) and name and not call.name:
            call.name = name  # set once: some upstreams repeat the whole name in every delta
        pieces = [arguments] if isinstance(arguments, str) and arguments else []
        if call.index is None:
            if not call.name:
                call.early += pieces  # a tool_use block can't open without its name
                return []
            pieces, call.early = call.early + pieces, []
            events = self._close()
            block = {"type": "tool_use", "id": call.id, "name": call.name, "input": {}}
            events += self._start("tool_use", block)
            call.index = self._blocks - 1
        else:
            events = []
        return events + [
            {
                "type": "content_block_delta",
                "index": call.index,
                "delta": {"type": "input_json_delta", "partial_json": piece},
            }
            for piece in pieces
        ]

    def _call_for(self, delta: dict) -> _Call:
        """The call a delta belongs to: chat's ``index``; failing that (some upstreams leave it out), its
        ``id``; and a delta with neither continues the latest call. A new id at a known index is a new call:
        a few upstreams number every call 0."""
        given = delta.get("id") if isinstance(delta.get("id"), str) and delta.get("id") else None
        key = delta["index"] if type(delta.get("index")) is int else given
        call = self._calls.get(key) if key is not None else self._latest
        if call is None or (given is not None and call.given_id and given != call.id):
            call = _Call(id=given or _tool_id(self._message_id, len(self._calls)), given_id=given is not None)
            self._calls[key if key is not None else len(self._calls)] = call
        self._latest = call
        return call

    def _start(self, kind: str, block: dict) -> list[dict]:
        self._open = kind
        self._blocks += 1
        return [{"type": "content_block_start", "index": self._blocks - 1, "content_block": block}]

    def _close(self) -> list[dict]:
        if self._open is None:
            return []
        index = self._blocks - 1
        events = []
        if self._open == "thinking":
            # Anthropic ends every thinking block with its signature; chat's reasoning has none to give.
            events.append(
                {
                    "type": "content_block_delta",
                    "index": index,
                    "delta": {"type": "signature_delta", "signature": ""},
                }
            )
        self._open = None
        return [*events, {"type": "content_block_stop", "index": index}]


# --- chat's fields ------------------------------------------------------------------------------------------


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value: object) -> int:
    return value if type(value) is int and value >= 0 else 0
