"""OpenAI's Responses API bridged onto a route that speaks only chat completions.

Three translations, all pure (dicts in, dicts out, no I/O):

- a Responses create body becomes a chat completions body (``chat_body_from_response_request``);
- a chat completion becomes a ``Response`` object (``response_from_chat``);
- a chat completion stream becomes the Responses stream events (``ChatStreamToResponses``), one chunk at a
  time, without holding text back.

What chat can't express is left out rather than approximated: built-in tools (web search, file search, MCP,
code interpreter...) and the items they produce, reasoning sent back as input, and the fields about storage,
truncation and background runs, which are the caller's business. ``unsupported_tools`` names the tools left
out, so that the caller can log them.

Ids are derived from the response's id (``resp_X`` gives ``msg_X``, ``rs_X``, ``fc_X``, then ``msg_X_1``...),
so the same answer always translates to the same object.
"""

import functools
from dataclasses import dataclass, field

from proxy.gateway.translate.chat_parts import first_choice, reasoning_text, text_of

# --- a Responses request as a chat completions body -------------------------------------------------------

# Settings with the same name and meaning on both APIs.
_SAME_SETTINGS = ("temperature", "top_p", "user", "parallel_tool_calls")

# Chat's image parts know only these three levels of detail; any other (``original``) falls back to chat's
# default, ``auto``.
_IMAGE_DETAILS = ("auto", "low", "high")


def chat_body_from_response_request(body: dict, *, history: list[dict] | None = None) -> dict:
    """A chat completions body for a validated Responses create ``body``.

    ``history`` holds the items of the earlier turns (for ``previous_response_id``), in item form; they go
    before the new input. The result has no ``model``, ``stream`` or ``stream_options``: the caller sets them.

    Not forwarded: ``metadata`` (OpenAI's chat endpoint refuses it unless it also stores the completion, and
    it is echoed on the Response anyway), and the fields with no chat equivalent: ``store``,
    ``previous_response_id``, ``include``, ``truncation``, ``reasoning.summary``, ``background``,
    ``prompt_cache_key``, ``service_tier``, ``top_logprobs``, ``max_tool_calls``, ``conversation``...
    """
    out: dict = {"messages": _messages(body, history or [])}
    for key in _SAME_SETTINGS:
        if body.get(key) is not None:
            out[key] = body[key]
    if body.get("max_output_tokens") is not None:
        out["max_completion_tokens"] = body["max_output_tokens"]
    effort = (body.get("reasoning") or {}).get("effort")
    if effort is not None:
        out["reasoning_effort"] = effort
    text = body.get("text") or {}
    response_format = _response_format(text.get("format"))
    if response_format is not None:
        out["response_format"] = response_format
    if text.get("verbosity") is not None:
        out["verbosity"] = text["verbosity"]
    _add_tools(out, body)
    return out


def unsupported_tools(body: dict) -> list[str]:
    """The tools of a Responses body that the chat body leaves out, as ``type`` or ``type:name``.

    A bridged route can only offer function tools: the built-in ones run inside OpenAI. A ``tool_choice``
    that names one of these is left out too."""
    return [_tool_label(tool) for tool in body.get("tools") or () if tool.get("type") != "function"]


def _tool_label(tool: dict) -> str:
    name = tool.get("name") or tool.get("server_label")
    return f"{tool.get('type')}:{name}" if name else str(tool.get("type"))


def _messages(body: dict, history: list[dict]) -> list[dict]:
    messages: list[dict] = []
    instructions = body.get("instructions")
    if isinstance(instructions, str) and instructions:
        messages.append({"role": "system", "content": instructions})
    for item in [*history, *_input_items(body.get("input"))]:
        _add_item(messages, item)
    return messages


def _input_items(value: object) -> list[dict]:
    if isinstance(value, str):
        return [{"type": "message", "role": "user", "content": value}]
    if not isinstance(value, list):
        return []
    return [item for item in value if isinstance(item, dict)]


def _add_item(messages: list[dict], item: dict) -> None:
    kind = item.get("type") or "message"  # the short message form may leave out its type
    if kind == "message":
        messages.append(_message(item))
    elif kind == "function_call":
        _add_call(messages, item)
    elif kind == "function_call_output":
        output = _tool_output(item.get("output"))
        messages.append({"role": "tool", "tool_call_id": item.get("call_id"), "content": output})
    # Anything else is dropped. `reasoning` items: chat has no way to send reasoning back to the model, and
    # their encrypted content means something only to OpenAI. The built-in tools' calls and outputs: their
    # tools are not on this route. Item references: the caller resolves them into history first.


def _message(item: dict) -> dict:
    role = item.get("role")
    # Every chat upstream knows `system`; not all know `developer`, and OpenAI reads a system message as
    # developer on the models that tell them apart.
    if role == "developer":
        role = "system"
    return {"role": role, "content": _content(role, item.get("content"))}


def _content(role: object, content: object) -> str | list[dict]:
    if isinstance(content, str):
        return content
    parts = [part for part in map(_part, content if isinstance(content, list) else ()) if part is not None]
    # An assistant's text goes back as one string: that is what every chat upstream accepts there, and the
    # parts are pieces of one answer.
    if role == "assistant" and all(part["type"] == "text" for part in parts):
        return "".join(part["text"] for part in parts)
    return parts


def _part(part: object) -> dict | None:
    if not isinstance(part, dict):
        return None
    kind = part.get("type")
    if kind in ("input_text", "output_text"):
        return {"type": "text", "text": part.get("text") or ""}
    if kind == "refusal":
        return {"type": "refusal", "refusal": part.get("refusal") or ""}
    if kind == "input_image":
        return _image_part(part)
    if kind == "input_file":
        return _file_part(part)
    return None


def _image_part(part: dict) -> dict | None:
    url = part.get("image_url")
    if not url:
        return None  # an image given only by OpenAI file id: chat's image parts take a URL
    image = {"url": url}
    if part.get("detail") in _IMAGE_DETAILS:
        image["detail"] = part["detail"]
    return {"type": "image_url", "image_url": image}


def _file_part(part: dict) -> dict | None:
    # Chat's file parts take inline data or an OpenAI file id, not a URL to fetch.
    file = {key: part[key] for key in ("file_data", "file_id", "filename") if part.get(key)}
    if not ("file_data" in file or "file_id" in file):
        return None
    return {"type": "file", "file": file}


def _tool_output(output: object) -> str:
    if isinstance(output, str):
        return output
    # Chat's tool messages carry text only, so an output's images and files can't follow it.
    parts = output if isinstance(output, list) else ()
    return "".join(
        p.get("text") or "" for p in parts if isinstance(p, dict) and p.get("type") == "input_text"
    )


def _add_call(messages: list[dict], item: dict) -> None:
    call = {
        "id": item.get("call_id"),
        "type": "function",
        "function": {"name": item.get("name"), "arguments": item.get("arguments") or ""},
    }
    # Chat puts one turn's calls, and any text before them, in a single assistant message; many upstreams
    # refuse two assistant messages in a row, or tool messages that don't follow their calls' message.
    last = messages[-1] if messages else None
    if last is not None and last["role"] == "assistant":
        last.setdefault("tool_calls", []).append(call)
    else:
        messages.append({"role": "assistant", "content": None, "tool_calls": [call]})


def _add_tools(out: dict, body: dict) -> None:
    tools = [_chat_function(tool) for tool in body.get("tools") or () if tool.get("type") == "function"]
    # Chat refuses tool_choice and parallel_tool_calls without tools, so with none left they go too.
    if not tools:
        out.pop("parallel_tool_calls", None)
        return
    out["tools"] = tools
    choice = _chat_tool_choice(body.get("tool_choice"))
    if choice is not None:
        out["tool_choice"] = choice


def _chat_function(tool: dict) -> dict:
    function = {"name": tool.get("name")}
    for key in ("description", "parameters", "strict"):
        if tool.get(key) is not None:
            function[key] = tool[key]
    return {"type": "function", "function": function}


def _chat_tool_choice(choice: object) -> str | dict | None:
    if isinstance(choice, str):
        return choice if choice in ("auto", "none", "required") else None
    if not isinstance(choice, dict):
        return None
    if choice.get("type") == "function":
        return {"type": "function", "function": {"name": choice.get("name")}}
    if choice.get("type") == "allowed_tools":
        allowed = [
            {"type": "function", "function": {"name": tool.get("name")}}
            for tool in choice.get("tools") or ()
            if isinstance(tool, dict) and tool.get("type") == "function"
        ]
        mode = choice.get("mode") or "auto"
        return (
            {"type": "allowed_tools", "allowed_tools": {"mode": mode, "tools": allowed}} if allowed else None
        )
    return None  # a built-in tool, an MCP server or a custom tool: none of them is on this route


def _response_format(fmt: object) -> dict | None:
    if not isinstance(fmt, dict):
        return None
    if fmt.get("type") == "json_object":
        return {"type": "json_object"}
    if fmt.get("type") == "json_schema":
        schema = {
            key: fmt[key] for key in ("name", "description", "schema", "strict") if fmt.get(key) is not None
        }
        return {"type": "json_schema", "json_schema": schema}
    return None  # {"type": "text"} is chat's default


# --- the Response object -----------------------------------------------------------------------------------

# The error codes OpenAI's ResponseError allows; anything else is reported as the generic one.
_ERROR_CODES = frozenset(
    {
        "server_error", "rate_limit_exceeded", "invalid_prompt", "data_residency_mismatch", "bio_policy",
        "vector_store_timeout", "invalid_image", "invalid_image_format", "invalid_base64_image",
        "invalid_image_url", "image_too_large", "image_too_small", "image_parse_error",
        "image_content_policy_violation", "invalid_image_mode", "image_file_too_large",
        "unsupported_image_media_type", "empty_image_file", "failed_to_download_image", "image_file_not_found",
    }
)  # fmt: skip

# Chat's finish reasons that cut an answer short, as the Responses API's reasons for being incomplete.
_INCOMPLETE_REASONS = {"length": "max_output_tokens", "content_filter": "content_filter"}


def _given(request: dict, key: str, default: object) -> object:
    value = request.get(key)
    return default if value is None else value


def _response_object(request: dict, *, response_id: str, created_at: int, model: str, status: str) -> dict:
    """The Response as it stands before any output: the request's settings echoed, OpenAI's defaults where
    the request left them out, so that the object has every field the spec requires."""
    reasoning = request.get("reasoning") or {}
    text = dict(request.get("text") or {})
    text["format"] = text.get("format") or {"type": "text"}
    text.setdefault("verbosity", "medium")
    response = {
        "id": response_id,
        "object": "response",
        "created_at": created_at,
        "status": status,
        "background": bool(request.get("background")),
        "completed_at": None,
        "error": None,
        "incomplete_details": None,
        "instructions": request.get("instructions"),
        "max_output_tokens": request.get("max_output_tokens"),
        "max_tool_calls": request.get("max_tool_calls"),
        "model": model,
        "output": [],
        "parallel_tool_calls": _given(request, "parallel_tool_calls", True),
        "previous_response_id": request.get("previous_response_id"),
        "prompt_cache_key": request.get("prompt_cache_key"),
        "reasoning": {"effort": None, "summary": None, **reasoning},
        "safety_identifier": request.get("safety_identifier"),
        "service_tier": _given(request, "service_tier", "default"),
        "store": _given(request, "store", True),
        "temperature": _given(request, "temperature", 1.0),
        "text": text,
        "tool_choice": _given(request, "tool_choice", "auto"),
        "tools": [_echo_tool(tool) for tool in request.get("tools") or ()],
        "top_logprobs": _given(request, "top_logprobs", 0),
        "top_p": _given(request, "top_p", 1.0),
        "truncation": _given(request, "truncation", "disabled"),
        "metadata": _given(request, "metadata", {}),
    }
    if isinstance(request.get("user"), str):
        response["user"] = request["user"]  # the spec allows a string here, not null
    return response


def _echo_tool(tool: dict) -> dict:
    # The Response's function tools must carry `strict` and `parameters`; null says the request gave none.
    if tool.get("type") != "function":
        return tool
    return {**tool, "parameters": tool.get("parameters"), "strict": tool.get("strict")}


def _response_usage(usage: object) -> dict | None:
    """A chat ``usage`` in the Responses API's form, or None when there is none."""
    if not isinstance(usage, dict):
        return None
    prompt, completion = _count(usage.get("prompt_tokens")), _count(usage.get("completion_tokens"))
    prompt_details = _mapping(usage.get("prompt_tokens_details"))
    completion_details = _mapping(usage.get("completion_tokens_details"))
    # DeepSeek reports its cache hits under a name of its own.
    cached = prompt_details.get("cached_tokens", usage.get("prompt_cache_hit_tokens"))
    return {
        "input_tokens": prompt,
        "input_tokens_details": {
            "cached_tokens": _count(cached),
            "cache_write_tokens": _count(prompt_details.get("cache_write_tokens")),
        },
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": _count(completion_details.get("reasoning_tokens"))},
        "total_tokens": _count(usage.get("total_tokens"), prompt + completion),
    }


def _mapping(value: object) -> dict:
    return value if isinstance(value, dict) else {}


def _count(value: object, default: int = 0) -> int:
    return value if type(value) is int and value >= 0 else default


def response_from_chat(
    completion: dict, *, response_id: str, created_at: int, model: str, request: dict,
    completed_at: int | None = None, want_reasoning: bool = False,
) -> dict:  # fmt: skip
    """The ``Response`` object for a chat ``completion`` (its first choice) to the Responses ``request``.

    A plain completion is translated as a stream of one chunk, so that both paths build the same items, ids
    and statuses. ``completed_at`` is stamped when the response completed; ``want_reasoning`` adds an empty
    reasoning item when the completion carries no reasoning."""
    stream = ChatStreamToResponses(
        response_id=response_id,
        created_at=created_at,
        model=model,
        request=request,
        completed_at=completed_at,
    )
    stream.feed(_as_chunk(completion))
    return stream.finish(completion.get("usage"), want_reasoning=want_reasoning)[-1]["response"]


def _as_chunk(completion: dict) -> dict:
    """A completion as the one chunk of a stream that would have produced it."""
    choices = completion.get("choices") or [{}]
    choice = choices[0] if isinstance(choices[0], dict) else {}
    message = choice.get("message") or {}
    calls = [
        {**call, "index": i}
        for i, call in enumerate(message.get("tool_calls") or ())
        if isinstance(call, dict)
    ]
    delta = {**message, "tool_calls": calls}
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": choice.get("finish_reason")}]}


# --- the output items, as they stream -----------------------------------------------------------------------
#
# Each item returns its events without sequence numbers; the translator stamps them in the order it sends
# them. `done(status)` closes whatever of the item is still open, innermost first, and ends with the item's
# `response.output_item.done`; `shape(status)` is the item as the Response's output shows it.


@dataclass(slots=True)
class _Part:
    kind: str  # "output_text" or "refusal"
    pieces: list[str] = field(default_factory=list)

    def shape(self) -> dict:
        text = "".join(self.pieces)
        if self.kind == "refusal":
            return {"type": "refusal", "refusal": text}
        return {"type": "output_text", "text": text, "annotations": [], "logprobs": []}


@dataclass(slots=True)
class _Message:
    id: str
    output_index: int
    parts: list[_Part] = field(default_factory=list)
    part_open: bool = False

    def shape(self, status: str) -> dict:
        content = [part.shape() for part in self.parts]
        return {"id": self.id, "type": "message", "role": "assistant", "status": status, "content": content}

    def delta(self, kind: str, text: str) -> list[dict]:
        events = [] if self.part_open and self.parts[-1].kind == kind else self.open_part(kind)
        self.parts[-1].pieces.append(text)
        if kind == "refusal":
            return [*events, {"type": "response.refusal.delta", **self._where(), "delta": text}]
        return [
            *events,
            {"type": "response.output_text.delta", **self._where(), "delta": text, "logprobs": []},
        ]

    def open_part(self, kind: str) -> list[dict]:
        events = self._close_part()
        self.parts.append(_Part(kind))
        self.part_open = True
        return [
            *events,
            {"type": "response.content_part.added", **self._where(), "part": _Part(kind).shape()},
        ]

    def done(self, status: str) -> list[dict]:
        item = {
            "type": "response.output_item.done",
            "output_index": self.output_index,
            "item": self.shape(status),
        }
        return [*self._close_part(), item]

    def _close_part(self) -> list[dict]:
        if not self.part_open:
            return []
        self.part_open = False
        part = self.parts[-1].shape()
        if part["type"] == "refusal":
            finished = {"type": "response.refusal.done", **self._where(), "refusal": part["refusal"]}
        else:
            finished = {
                "type": "response.output_text.done",
                **self._where(),
                "text": part["text"],
                "logprobs": [],
            }
        return [finished, {"type": "response.content_part.done", **self._where(), "part": part}]

    def _where(self) -> dict:
        # The open part is always the last one.
        return {"item_id": self.id, "output_index": self.output_index, "content_index": len(self.parts) - 1}


@dataclass(slots=True)
class _Reasoning:
    """Chat's reasoning text (DeepSeek's ``reasoning_content``, others' ``reasoning``), as a summary."""

    id: str
    output_index: int
    pieces: list[str] = field(default_factory=list)

    def shape(self, status: str) -> dict:
        summary = [{"type": "summary_text", "text": "".join(self.pieces)}] if self.pieces else []
        return {"id": self.id, "type": "reasoning", "status": status, "summary": summary}

    def delta(self, text: str) -> list[dict]:
        events = []
        if not self.pieces:
            part = {"type": "summary_text", "text": ""}
            events.append({"type": "response.reasoning_summary_part.added", **self._where(), "part": part})
        self.pieces.append(text)
        return [*events, {"type": "response.reasoning_summary_text.delta", **self._where(), "delta": text}]

    def done(self, status: str) -> list[dict]:
        events = []
        if self.pieces:
            part = self.shape(status)["summary"][0]
            events.append(
                {"type": "response.reasoning_summary_text.done", **self._where(), "text": part["text"]}
            )
            events.append({"type": "response.reasoning_summary_part.done", **self._where(), "part": part})
        item = {
            "type": "response.output_item.done",
            "output_index": self.output_index,
            "item": self.shape(status),
        }
        return [*events, item]

    def _where(self) -> dict:
        return {"item_id": self.id, "output_index": self.output_index, "summary_index": 0}


@dataclass(slots=True)
class _Call:
    id: str
    output_index: int
    call_id: str
    name: str
    pieces: list[str] = field(default_factory=list)

    def shape(self, status: str) -> dict:
        arguments = "".join(self.pieces)
        return {
            "id": self.id, "type": "function_call", "status": status,
            "call_id": self.call_id, "name": self.name, "arguments": arguments,
        }  # fmt: skip

    def delta(self, text: str) -> list[dict]:
        self.pieces.append(text)
        where = {"item_id": self.id, "output_index": self.output_index}
        return [{"type": "response.function_call_arguments.delta", **where, "delta": text}]

    def done(self, status: str) -> list[dict]:
        item = self.shape(status)
        where = {"item_id": self.id, "output_index": self.output_index}
        arguments = {"type": "response.function_call_arguments.done", **where, "name": self.name}
        finished = {"type": "response.output_item.done", "output_index": self.output_index, "item": item}
        return [{**arguments, "arguments": item["arguments"]}, finished]


_Item = _Message | _Reasoning | _Call


# --- the stream ---------------------------------------------------------------------------------------------


class ChatStreamToResponses:
    """A chat completion stream, chunk by chunk, as the Responses API's stream events.

    ``start()`` gives ``response.created`` and ``response.in_progress``; ``feed(chunk)`` the events one parsed
    chunk causes, with its text at once; ``finish(usage)`` closes what is open and ends the stream. Every
    event has a ``sequence_number``, counting from 0.

    Reasoning and the message come one after the other, as OpenAI sends them: each is done when something
    else begins (and a later return to it opens a new item). Function calls stay open until the end, because
    chat may interleave the argument deltas of parallel calls (by their ``index``). At the end, what is still
    open closes in output order, with ``incomplete`` status if the stream was cut short or failed.
    """

    def __init__(
        self, *, response_id: str, created_at: int, model: str, request: dict, completed_at: int | None = None
    ) -> None:
        self._response = functools.partial(
            _response_object, request, response_id=response_id, created_at=created_at, model=model
        )
        self._suffix = response_id.removeprefix("resp_")
        self._completed_at = completed_at
        self._sequence = 0
        self._ids: dict[str, int] = {}  # how many ids each prefix has handed out
        self._items: list[_Item] = []  # in output order
        self._finished: dict[int, dict] = {}  # output index -> the item as it was done
        self._current: _Message | _Reasoning | None = None  # the open message or reasoning item
        self._calls: dict[object, _Call] = {}  # chat's tool call index (or id) -> its item
        self._finish_reason: str | None = None
        self._usage: dict | None = None  # a usage chunk seen on the way

    def start(self) -> list[dict]:
        return self._stamp(
            [
                {"type": "response.created", "response": self._response(status="in_progress")},
                {"type": "response.in_progress", "response": self._response(status="in_progress")},
            ]
        )

    def feed(self, chunk: dict) -> list[dict]:
        if isinstance(chunk.get("usage"), dict):
            self._usage = chunk["usage"]
        choice = first_choice(chunk)
        if choice is None:
            return []
        delta = choice.get("delta")
        if not isinstance(delta, dict):
            delta = {}
        events = []
        reasoning = reasoning_text(delta)
        if reasoning:
            events += self._reasoning_delta(reasoning)
        for kind, key in (("output_text", "content"), ("refusal", "refusal")):
            text = text_of(delta.get(key))
            if text:
                events += self._message_delta(kind, text)
        for call in delta.get("tool_calls") or ():
            if isinstance(call, dict):
                events += self._call_delta(call)
        if choice.get("finish_reason"):
            self._finish_reason = str(choice["finish_reason"])
        return self._stamp(events)

    def finish(
        self, usage: dict | None, *, error: dict | None = None, want_reasoning: bool = False
    ) -> list[dict]:
        """Close every open part and item, then end with ``response.completed``, ``response.incomplete``
        (chat stopped for ``length`` or ``content_filter``) or ``response.failed`` (``error`` given, as
        ``{"code", "message"}``). ``usage`` is chat's; a usage chunk fed earlier stands in when it is None."""
        status = "failed" if error is not None else "completed"
        if error is None and self._finish_reason in _INCOMPLETE_REASONS:
            status = "incomplete"
        # What is still open when the stream ends shares its fate.
        ending = "completed" if status == "completed" else "incomplete"
        open_items: list[_Item] = [*([self._current] if self._current else []), *self._calls.values()]
        events = [event for item in sorted(open_items, key=_position) for event in self._close(item, ending)]
        self._current, self._calls = None, {}
        if error is None:
            events += self._placeholders(want_reasoning, ending)
        response = self._final_response(status, usage, error)
        if error is not None:  # as OpenAI does: the error on its own, then the failed response
            failure = response["error"]
            events.append(
                {"type": "error", "code": failure["code"], "message": failure["message"], "param": None}
            )
        return self._stamp([*events, {"type": f"response.{status}", "response": response}])

    def _final_response(self, status: str, usage: dict | None, error: dict | None) -> dict:
        response = self._response(status=status)
        response["output"] = [self._finished[index] for index in sorted(self._finished)]
        if status == "completed":
            response["completed_at"] = self._completed_at
        elif status == "incomplete":
            response["incomplete_details"] = {"reason": _INCOMPLETE_REASONS[str(self._finish_reason)]}
        else:
            response["error"] = _response_error(error or {})
        answer_usage = _response_usage(usage if usage is not None else self._usage)
        if answer_usage is not None:
            response["usage"] = answer_usage  # the spec's usage is an object or absent, never null
        return response

    # --- deltas

    def _reasoning_delta(self, text: str) -> list[dict]:
        events: list[dict] = []
        current = self._current
        if not isinstance(current, _Reasoning):
            events += self._close_current()
            current = _Reasoning(self._next_id("rs"), len(self._items))
            events += self._open(current)
            self._current = current
        return events + current.delta(text)

    def _message_delta(self, kind: str, text: str) -> list[dict]:
        events: list[dict] = []
        current = self._current
        if not isinstance(current, _Message):
            events += self._close_current()
            current = _Message(self._next_id("msg"), len(self._items))
            events += self._open(current)
            self._current = current
        return events + current.delta(kind, text)

    def _call_delta(self, delta: dict) -> list[dict]:
        function = _mapping(delta.get("function"))
        name, arguments = function.get("name"), function.get("arguments")
        key = self._call_key(delta)
        events: list[dict] = []
        call = self._calls.get(key)
        if call is None:
            events += self._close_current()
            call_id = delta.get("id") or self._next_id("call")
            call = _Call(self._next_id("fc"), len(self._items), str(call_id), str(name or ""))
            self._calls[key] = call
            events += self._open(call)
        elif name and not call.name:
            # Set once, never appended: some upstreams repeat the whole name in every delta.
            call.name = str(name)
        if isinstance(arguments, str) and arguments:
            events += call.delta(arguments)
        return events

    def _call_key(self, delta: dict) -> object:
        """Which call a delta belongs to: chat's ``index``; failing that (some upstreams leave it out), its
        ``id``; and a delta with neither continues the latest call."""
        if type(delta.get("index")) is int:
            return delta["index"]
        if delta.get("id"):
            return delta["id"]
        return next(reversed(self._calls), 0)

    # --- items

    def _open(self, item: _Item) -> list[dict]:
        self._items.append(item)
        added = {"type": "response.output_item.added", "output_index": item.output_index}
        return [{**added, "item": item.shape("in_progress")}]

    def _close(self, item: _Item, status: str) -> list[dict]:
        events = item.done(status)
        self._finished[item.output_index] = events[-1]["item"]
        return events

    def _close_current(self) -> list[dict]:
        if self._current is None:
            return []
        events, self._current = self._close(self._current, "completed"), None
        return events

    def _placeholders(self, want_reasoning: bool, ending: str) -> list[dict]:
        """The items an answer shows even when chat sent nothing for them: an empty reasoning item when the
        caller wants one, and a message (however empty) unless the answer is function calls."""
        events: list[dict] = []
        if want_reasoning and not any(isinstance(item, _Reasoning) for item in self._items):
            reasoning = _Reasoning(self._next_id("rs"), len(self._items))
            events += self._open(reasoning) + self._close(reasoning, "completed")
        if not any(isinstance(item, _Message | _Call) for item in self._items):
            message = _Message(self._next_id("msg"), len(self._items))
            events += self._open(message) + message.open_part("output_text") + self._close(message, ending)
        return events

    # --- the envelope

    def _next_id(self, prefix: str) -> str:
        count = self._ids.get(prefix, 0)
        self._ids[prefix] = count + 1
        return f"{prefix}_{self._suffix}" if count == 0 else f"{prefix}_{self._suffix}_{count}"

    def _stamp(self, events: list[dict]) -> list[dict]:
        for event in events:
            event["sequence_number"] = self._sequence
            self._sequence += 1
        return events


def _position(item: _Item) -> int:
    return item.output_index


def _response_error(error: dict) -> dict:
    code = error.get("code")
    message = error.get("message")
    return {
        "code": code if code in _ERROR_CODES else "server_error",
        "message": message if isinstance(message, str) and message else "The upstream provider failed.",
    }
