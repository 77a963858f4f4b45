"""Validation of the body of ``POST /v1/chat/completions`` against OpenAI's ``CreateChatCompletionRequest``.

This runs on every request, so it is hand-written: plain ``type(x) is ...`` checks dispatched through dicts,
no jsonschema, and no copy of the body (the parsed dict is forwarded upstream as-is). Every violation raises
``errors.invalid_request`` with ``param`` spelled the way OpenAI spells it (``messages[2].role``,
``tools[0].function.name``) and a message that says what was wrong and what is allowed.

Where the spec's prose says more than its schema (``stream_options`` only with ``stream: true``,
``top_logprobs`` only with ``logprobs: true``, assistant content unless there are tool calls, metadata limits,
the function-name pattern, ``audio`` required for audio output), the prose is enforced too, as OpenAI does. Unknown fields,
at the top level and inside messages, pass through untouched so that newer client features keep working.
"""

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import NoReturn

import orjson

from proxy import errors

Checker = Callable[[object, str], None]

# No model comes near 2**31 tokens; the cap keeps absurd limits out of upstreams and out of the credit hold,
# which is sized from max_tokens.
MAX_TOKENS_LIMIT = 2**31 - 1
# The spec bounds `seed` by a signed 64-bit integer.
SEED_MIN, SEED_MAX = -(2**63), 2**63 - 1
# "Must be a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64."
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")
_MISSING = object()


@dataclass(slots=True)
class ChatRequest:
    model: str
    messages: list[dict]
    stream: bool
    include_usage: bool  # the client asked for stream_options.include_usage
    max_tokens: int | None  # max_completion_tokens if given, else max_tokens, else None
    n: int  # default 1
    body: dict  # the whole parsed body, untouched, for pass-through


def parse_chat_request(raw: bytes) -> ChatRequest:
    try:
        body = orjson.loads(raw)
    except (orjson.JSONDecodeError, TypeError):
        # orjson also raises JSONDecodeError past its nesting limit, so deep bodies end here, not in a
        # RecursionError.
        raise errors.invalid_request("The request body is not valid JSON.") from None
    return validate_chat_request(body)


def validate_chat_request(body: object) -> ChatRequest:
    if type(body) is not dict:
        _fail(None, f"The request body must be a JSON object, got {_show(body)}.")
    if "model" not in body:
        _fail("model", "You must provide a model parameter (a non-empty string).")
    if "messages" not in body:
        _fail("messages", "Missing required parameter: 'messages' (a non-empty array of messages).")
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


# --- helpers ---------------------------------------------------------------------------------------------


def _fail(param: str | None, message: str) -> NoReturn:
    raise errors.invalid_request(message, param=param)


def _show(value: object) -> str:
    """A short, safe rendering of a client's value for an error message (never echoes a large payload)."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    kind = type(value)
    if kind is int:
        # repr() of a huge int is slow and may even raise (int max str digits).
        return repr(value) if value.bit_length() <= 64 else "a very large integer"
    if kind is float:
        return repr(value)
    if kind is str:
        return repr(value) if len(value) <= 40 else repr(value[:40]) + "..."
    if kind is list:
        return "an array"
    if kind is dict:
        return "an object"
    if value is _MISSING:
        return "nothing"
    return f"a {kind.__name__}"


def _is_int(value: object) -> bool:
    # bool is a subclass of int; JSON true must not pass as 1.
    return type(value) is int


def _is_number(value: object) -> bool:
    kind = type(value)
    return kind is int or kind is float


def _require_object(value: object, param: str, what: str) -> dict:
    if type(value) is not dict:
        _fail(param, f"{param} must be {what}, got {_show(value)}")
    return value


def _child(obj: dict, key: str, param: str, what: str) -> dict:
    """``obj[key]``, which must be an object; ``param`` names ``obj``."""
    return _require_object(obj.get(key, _MISSING), f"{param}.{key}", what)


def _require_str(obj: dict, key: str, param: str, *, optional: bool = False) -> None:
    value = obj.get(key, _MISSING)
    if value is _MISSING and optional:
        return
    if type(value) is not str:
        _fail(f"{param}.{key}", f"{param}.{key} must be a string, got {_show(value)}")


def _require_enum(
    obj: dict, key: str, param: str, allowed: tuple[str, ...], *, optional: bool = False
) -> None:
    value = obj.get(key, _MISSING)
    if value is _MISSING and optional:
        return
    # Check the type first: `[] in allowed` is fine, but a set/dict lookup of a list would raise TypeError.
    if type(value) is not str or value not in allowed:
        _fail(f"{param}.{key}", f"{param}.{key} must be one of {_choices(allowed)}, got {_show(value)}")


def _choices(allowed: tuple[str, ...]) -> str:
    return ", ".join(repr(a) for a in allowed)


# --- generic field checkers --------------------------------------------------------------------------------


def _number(low: float, high: float) -> Checker:
    def check(value: object, param: str) -> None:
        # Written as `not low <= v <= high` so NaN and infinities (possible only via direct calls) fail too.
        if value is not None and (not _is_number(value) or not low <= value <= high):
            _fail(param, f"{param} must be a number between {low} and {high}, got {_show(value)}")

    return check


def _integer(low: int, high: int, what: str | None = None) -> Checker:
    what = what or f"an integer between {low} and {high}"

    def check(value: object, param: str) -> None:
        if value is not None and (not _is_int(value) or not low <= value <= high):
            _fail(param, f"{param} must be {what}, got {_show(value)}")

    return check


def _boolean(*, nullable: bool) -> Checker:
    def check(value: object, param: str) -> None:
        if type(value) is not bool and not (nullable and value is None):
            _fail(param, f"{param} must be a boolean{' or null' if nullable else ''}, got {_show(value)}")

    return check


def _string(*, nullable: bool, max_length: int | None = None) -> Checker:
    def check(value: object, param: str) -> None:
        if nullable and value is None:
            return
        if type(value) is not str:
            _fail(param, f"{param} must be a string{' or null' if nullable else ''}, got {_show(value)}")
        if max_length is not None and len(value) > max_length:
            _fail(param, f"{param} must be at most {max_length} characters long, got {len(value)}")

    return check


def _enum(*allowed: str, nullable: bool = True) -> Checker:
    def check(value: object, param: str) -> None:
        if nullable and value is None:
            return
        if type(value) is not str or value not in allowed:
            _fail(param, f"{param} must be one of {_choices(allowed)}, got {_show(value)}")

    return check


def _object(value: object, param: str) -> None:
    # For nested configs we pass through to the upstream; checking the outer type is cheap and catches typos.
    if value is not None and type(value) is not dict:
        _fail(param, f"{param} must be an object or null, got {_show(value)}")


# --- content parts -----------------------------------------------------------------------------------------


def _check_breakpoint(part: dict, param: str) -> None:
    if part["prompt_cache_breakpoint"] is not None:
        point = _child(part, "prompt_cache_breakpoint", param, "an object with mode 'explicit'")
        _require_enum(point, "mode", f"{param}.prompt_cache_breakpoint", ("explicit",))


def _part_text(part: dict, param: str) -> None:
    _require_str(part, "text", param)


def _part_refusal(part: dict, param: str) -> None:
    _require_str(part, "refusal", param)


def _part_image(part: dict, param: str) -> None:
    image = _child(part, "image_url", param, "an object with a string url")
    _require_str(image, "url", f"{param}.image_url")
    _require_enum(image, "detail", f"{param}.image_url", ("auto", "low", "high"), optional=True)


def _part_audio(part: dict, param: str) -> None:
    audio = _child(part, "input_audio", param, "an object with data and format")
    _require_str(audio, "data", f"{param}.input_audio")
    _require_enum(audio, "format", f"{param}.input_audio", ("wav", "mp3"))


def _part_file(part: dict, param: str) -> None:
    file = _child(part, "file", param, "an object")
    for key in ("filename", "file_data", "file_id"):
        _require_str(file, key, f"{param}.file", optional=True)


PartCheckers = dict[str, Callable[[dict, str], None]]
_TEXT_PARTS: PartCheckers = {"text": _part_text}
_USER_PARTS: PartCheckers = {
    "text": _part_text,
    "image_url": _part_image,
    "input_audio": _part_audio,
    "file": _part_file,
}
_ASSISTANT_PARTS: PartCheckers = {"text": _part_text, "refusal": _part_refusal}


def _check_parts(content: list, param: str, kinds: PartCheckers) -> None:
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if type(part) is not dict:
            _fail(where, f"{where} must be a content part object with a type, got {_show(part)}")
        kind = part.get("type")
        check = kinds.get(kind) if type(kind) is str else None
        if check is None:
            _fail(f"{where}.type", f"{where}.type must be one of {_choices(tuple(kinds))}, got {_show(kind)}")
        check(part, where)
        if "prompt_cache_breakpoint" in part:
            _check_breakpoint(part, where)


def _check_content(msg: dict, param: str, kinds: PartCheckers, *, nullable: bool = False) -> None:
    content = msg.get("content", _MISSING)
    if type(content) is str or (nullable and (content is None or content is _MISSING)):
        return
    where = f"{param}.content"
    if type(content) is list and content:
        _check_parts(content, where, kinds)
        return
    if content is _MISSING:
        _fail(where, f"{where} is required for {msg['role']} messages")
    _fail(where, f"{where} must be a string or a non-empty array of content parts, got {_show(content)}")


# --- messages ----------------------------------------------------------------------------------------------


def _msg_text_only(msg: dict, param: str) -> None:
    # system and developer messages: text parts only.
    _check_content(msg, param, _TEXT_PARTS)


def _msg_user(msg: dict, param: str) -> None:
    _check_content(msg, param, _USER_PARTS)


def _msg_tool(msg: dict, param: str) -> None:
    _check_content(msg, param, _TEXT_PARTS)
    _require_str(msg, "tool_call_id", param)


def _msg_function(msg: dict, param: str) -> None:
    # Deprecated, but still in the spec: content is required yet may be null, and name is required.
    if "content" not in msg:
        _fail(f"{param}.content", f"{param}.content is required for function messages (a string or null)")
    content = msg["content"]
    if content is not None and type(content) is not str:
        _fail(f"{param}.content", f"{param}.content must be a string or null, got {_show(content)}")
    _require_str(msg, "name", param)


def _msg_assistant(msg: dict, param: str) -> None:
    tool_calls = msg.get("tool_calls")
    # Tolerate `tool_calls: null`: SDKs round-trip response messages that way.
    if tool_calls is not None:
        _check_tool_calls(tool_calls, f"{param}.tool_calls")
    call = msg.get("function_call")
    if call is not None:
        call = _child(msg, "function_call", param, "an object with name and arguments, or null")
        _require_str(call, "name", f"{param}.function_call")
        _require_str(call, "arguments", f"{param}.function_call")
    audio = msg.get("audio")
    if audio is not None:
        _require_str(_child(msg, "audio", param, "an object with an id, or null"), "id", f"{param}.audio")
    refusal = msg.get("refusal")
    if refusal is not None and type(refusal) is not str:
        _fail(f"{param}.refusal", f"{param}.refusal must be a string or null, got {_show(refusal)}")
    # The spec: content is "Required unless tool_calls or function_call is specified". A reference to a
    # previous audio reply stands in for content too (OpenAI's audio guide sends exactly that).
    if msg.get("content") is None and not (tool_calls or call is not None or audio is not None):
        _fail(
            f"{param}.content", f"{param}.content must be a string or content parts unless tool_calls is set"
        )
    _check_content(msg, param, _ASSISTANT_PARTS, nullable=True)


def _check_tool_calls(value: object, param: str) -> None:
    if type(value) is not list:
        _fail(param, f"{param} must be an array of tool calls, got {_show(value)}")
    for index, call in enumerate(value):
        where = f"{param}[{index}]"
        call = _require_object(call, where, "a tool call object")
        _require_str(call, "id", where)
        _require_enum(call, "type", where, ("function", "custom"))
        kind = call["type"]
        payload_fields = _TOOL_CALL_FIELDS[kind]
        payload = _child(call, kind, where, f"an object with {' and '.join(payload_fields)}")
        for key in payload_fields:
            _require_str(payload, key, f"{where}.{kind}")


# A function call carries JSON-encoded arguments, a custom tool call free-form input; both are strings.
_TOOL_CALL_FIELDS = {"function": ("name", "arguments"), "custom": ("name", "input")}


_ROLE_CHECKS: dict[str, Callable[[dict, str], None]] = {
    "system": _msg_text_only,
    "developer": _msg_text_only,
    "user": _msg_user,
    "assistant": _msg_assistant,
    "tool": _msg_tool,
    "function": _msg_function,
}
_ROLES = _choices(tuple(_ROLE_CHECKS))


def _check_messages(value: object, param: str) -> None:
    if type(value) is not list or not value:
        _fail(param, f"{param} must be a non-empty array of message objects, got {_show(value)}")
    for index, msg in enumerate(value):
        where = f"messages[{index}]"
        if type(msg) is not dict:
            _fail(where, f"{where} must be a message object with a role, got {_show(msg)}")
        role = msg.get("role", _MISSING)
        check = _ROLE_CHECKS.get(role) if type(role) is str else None
        if check is None:
            _fail(f"{where}.role", f"{where}.role must be one of {_ROLES}, got {_show(role)}")
        name = msg.get("name", _MISSING)
        if name is not _MISSING and type(name) is not str:
            _fail(f"{where}.name", f"{where}.name must be a string, got {_show(name)}")
        check(msg, where)


# --- top-level fields --------------------------------------------------------------------------------------


def _check_model(value: object, param: str) -> None:
    if type(value) is not str or not value:
        _fail(param, f"{param} must be a non-empty string naming the model, got {_show(value)}")


def _check_stop(value: object, param: str) -> None:
    if value is None or type(value) is str:
        return
    # The spec's StopConfiguration array has minItems 1 and maxItems 4.
    if type(value) is not list or not 1 <= len(value) <= 4 or any(type(s) is not str for s in value):
        _fail(param, f"{param} must be null, a string, or an array of 1 to 4 strings, got {_show(value)}")


def _check_logit_bias(value: object, param: str) -> None:
    if value is None:
        return
    for token, bias in _require_object(value, param, "an object mapping token ids to biases").items():
        # The spec types the values as integers; the range is from its description.
        if not _is_int(bias) or not -100 <= bias <= 100:
            _fail(
                f"{param}.{token}", f"{param} values must be integers between -100 and 100, got {_show(bias)}"
            )


def _check_metadata(value: object, param: str) -> None:
    if value is None:
        return
    pairs = _require_object(value, param, "an object of string values, or null")
    # Limits from the spec's Metadata description.
    if len(pairs) > 16:
        _fail(param, f"{param} may have at most 16 key-value pairs, got {len(pairs)}")
    for key, item in pairs.items():
        if type(key) is not str or len(key) > 64:
            _fail(param, f"{param} keys must be strings of at most 64 characters, got {_show(key)}")
        if type(item) is not str or len(item) > 512:
            _fail(
                f"{param}.{key}",
                f"{param} values must be strings of at most 512 characters, got {_show(item)}",
            )


def _check_stream_options(value: object, param: str) -> None:
    if value is None:
        return
    options = _require_object(value, param, "an object or null")
    for key in ("include_usage", "include_obfuscation"):
        flag = options.get(key)
        if key in options and type(flag) is not bool:
            _fail(f"{param}.{key}", f"{param}.{key} must be a boolean, got {_show(flag)}")


def _check_modalities(value: object, param: str) -> None:
    if value is None:
        return
    if type(value) is not list or any(type(m) is not str or m not in ("text", "audio") for m in value):
        _fail(param, f"{param} must be null or an array of 'text' and 'audio', got {_show(value)}")


def _require_name(obj: dict, param: str) -> None:
    name = obj.get("name", _MISSING)
    if type(name) is not str or not _NAME_RE.fullmatch(name):
        _fail(
            f"{param}.name", f"{param}.name must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-', got {_show(name)}"
        )


def _check_function_def(fn: object, param: str) -> None:
    fn = _require_object(fn, param, "a function definition object")
    _require_name(fn, param)
    _require_str(fn, "description", param, optional=True)
    params = fn.get("parameters", _MISSING)
    if params is not _MISSING and type(params) is not dict:
        _fail(f"{param}.parameters", f"{param}.parameters must be a JSON Schema object, got {_show(params)}")
    strict = fn.get("strict")
    if strict is not None and type(strict) is not bool:
        _fail(f"{param}.strict", f"{param}.strict must be a boolean or null, got {_show(strict)}")


def _check_custom_tool(custom: object, param: str) -> None:
    custom = _require_object(custom, param, "an object with a name")
    _require_str(custom, "name", param)
    _require_str(custom, "description", param, optional=True)
    fmt = custom.get("format", _MISSING)
    if fmt is _MISSING:
        return
    fmt = _require_object(fmt, f"{param}.format", "an object")
    _require_enum(fmt, "type", f"{param}.format", ("text", "grammar"))
    if fmt["type"] == "grammar":
        grammar = _child(fmt, "grammar", f"{param}.format", "an object")
        _require_str(grammar, "definition", f"{param}.format.grammar")
        _require_enum(grammar, "syntax", f"{param}.format.grammar", ("lark", "regex"))


def _check_tools(value: object, param: str) -> None:
    if type(value) is not list:
        _fail(param, f"{param} must be an array of tool objects, got {_show(value)}")
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        tool = _require_object(tool, where, "a tool object")
        _require_enum(tool, "type", where, ("function", "custom"))
        if tool["type"] == "function":
            _check_function_def(tool.get("function"), f"{where}.function")
        else:
            _check_custom_tool(tool.get("custom"), f"{where}.custom")


def _check_tool_choice(value: object, param: str) -> None:
    if type(value) is str:
        if value not in ("none", "auto", "required"):
            _fail(
                param,
                f"{param} must be 'none', 'auto', 'required' or a tool choice object, got {_show(value)}",
            )
        return
    choice = _require_object(value, param, "'none', 'auto', 'required' or a tool choice object")
    _require_enum(choice, "type", param, ("function", "custom", "allowed_tools"))
    kind = choice["type"]
    if kind == "allowed_tools":
        allowed = _child(choice, "allowed_tools", param, "an object")
        _require_enum(allowed, "mode", f"{param}.allowed_tools", ("auto", "required"))
        tools = allowed.get("tools")
        if type(tools) is not list or any(type(t) is not dict for t in tools):
            _fail(
                f"{param}.allowed_tools.tools",
                f"{param}.allowed_tools.tools must be an array of tool objects, got {_show(tools)}",
            )
    else:
        _require_str(_child(choice, kind, param, "an object with a name"), "name", f"{param}.{kind}")


def _check_function_call(value: object, param: str) -> None:
    if type(value) is str and value in ("none", "auto"):
        return
    if type(value) is not dict:
        _fail(param, f"{param} must be 'none', 'auto' or an object with a name, got {_show(value)}")
    _require_str(value, "name", param)


def _check_functions(value: object, param: str) -> None:
    if type(value) is not list or not 1 <= len(value) <= 128:
        _fail(param, f"{param} must be an array of 1 to 128 function definitions, got {_show(value)}")
    for index, fn in enumerate(value):
        _check_function_def(fn, f"{param}[{index}]")


def _check_response_format(value: object, param: str) -> None:
    fmt = _require_object(value, param, "an object with a type")
    _require_enum(fmt, "type", param, ("text", "json_object", "json_schema"))
    if fmt["type"] != "json_schema":
        return
    where = f"{param}.json_schema"
    spec = _child(fmt, "json_schema", param, "an object with a name")
    _require_name(spec, where)
    _require_str(spec, "description", where, optional=True)
    schema = spec.get("schema", _MISSING)
    if schema is not _MISSING and type(schema) is not dict:
        _fail(f"{where}.schema", f"{where}.schema must be a JSON Schema object, got {_show(schema)}")
    strict = spec.get("strict")
    if strict is not None and type(strict) is not bool:
        _fail(f"{where}.strict", f"{where}.strict must be a boolean or null, got {_show(strict)}")


def _check_prediction(value: object, param: str) -> None:
    if value is None:
        return
    prediction = _require_object(value, param, "an object with type 'content', or null")
    _require_enum(prediction, "type", param, ("content",))
    content = prediction.get("content", _MISSING)
    if type(content) is list and content:
        _check_parts(content, f"{param}.content", _TEXT_PARTS)
    elif type(content) is not str:
        _fail(
            f"{param}.content",
            f"{param}.content must be a string or a non-empty array of text parts, got {_show(content)}",
        )


def _check_audio(value: object, param: str) -> None:
    if value is None:
        return
    audio = _require_object(value, param, "an object with voice and format, or null")
    voice = audio.get("voice", _MISSING)
    if type(voice) is dict:
        _require_str(voice, "id", f"{param}.voice")
    elif type(voice) is not str:
        _fail(
            f"{param}.voice",
            f"{param}.voice must be a voice name or an object with an id, got {_show(voice)}",
        )
    _require_enum(audio, "format", param, ("wav", "aac", "mp3", "flac", "opus", "pcm16"))


def _check_web_search(value: object, param: str) -> None:
    options = _require_object(value, param, "an object")
    location = options.get("user_location")
    if location is not None:
        location = _require_object(location, f"{param}.user_location", "an object or null")
        _require_enum(location, "type", f"{param}.user_location", ("approximate",))
        _child(location, "approximate", f"{param}.user_location", "an object")
    _require_enum(options, "search_context_size", param, ("low", "medium", "high"), optional=True)


def _check_moderation(value: object, param: str) -> None:
    if value is not None:
        _require_str(_require_object(value, param, "an object with a model, or null"), "model", param)


_token_limit = _integer(1, MAX_TOKENS_LIMIT, f"a positive integer of at most {MAX_TOKENS_LIMIT}")

_FIELD_CHECKS: dict[str, Checker] = {
    "model": _check_model,
    "messages": _check_messages,
    "temperature": _number(0, 2),
    "top_p": _number(0, 1),
    "n": _integer(1, 128),
    "presence_penalty": _number(-2, 2),
    "frequency_penalty": _number(-2, 2),
    "stop": _check_stop,
    "max_tokens": _token_limit,
    "max_completion_tokens": _token_limit,
    "seed": _integer(SEED_MIN, SEED_MAX, "a 64-bit signed integer"),
    "logprobs": _boolean(nullable=True),
    "top_logprobs": _integer(0, 20),
    "logit_bias": _check_logit_bias,
    "stream": _boolean(nullable=True),
    "stream_options": _check_stream_options,
    "user": _string(nullable=False),
    "safety_identifier": _string(nullable=True, max_length=64),
    "prompt_cache_key": _string(nullable=True),
    "prompt_cache_retention": _enum("in_memory", "24h"),
    "prompt_cache_options": _object,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "parallel_tool_calls": _boolean(nullable=False),
    "function_call": _check_function_call,
    "functions": _check_functions,
    "response_format": _check_response_format,
    "metadata": _check_metadata,
    "modalities": _check_modalities,
    "reasoning_effort": _enum("none", "minimal", "low", "medium", "high", "xhigh", "max"),
    "verbosity": _enum("low", "medium", "high"),
    "service_tier": _enum("auto", "default", "flex", "scale", "priority", "fast"),
    "store": _boolean(nullable=True),
    "prediction": _check_prediction,
    "audio": _check_audio,
    "web_search_options": _check_web_search,
    "moderation": _check_moderation,
}


def _check_cross_field(body: dict) -> None:
    """Rules the spec states in prose between two fields; each field's own type is already checked."""
    if body.get("stream_options") is not None and body.get("stream") is not True:
        _fail("stream_options", "stream_options is only allowed when stream is true; set stream or remove it")
    if body.get("top_logprobs") is not None and body.get("logprobs") is not True:
        _fail("top_logprobs", "top_logprobs is only allowed when logprobs is true; set logprobs or remove it")
    modalities = body.get("modalities")
    if modalities and "audio" in modalities and body.get("audio") is None:
        _fail("audio", "audio (with voice and format) is required when modalities includes 'audio'")
