"""Validation of ``messages``: each role's fields, its content parts, and the tool calls of assistant messages.

Unknown keys inside a message pass through untouched, so newer client features keep working.
"""

from collections.abc import Callable

from proxy.gateway.schemas.basics import (
    MISSING,
    child,
    choices,
    fail,
    require_enum,
    require_object,
    require_str,
    show,
)

# --- content parts -----------------------------------------------------------------------------------------


def _check_breakpoint(part: dict, param: str) -> None:
    if part["prompt_cache_breakpoint"] is not None:
        point = child(part, "prompt_cache_breakpoint", param, "an object with mode 'explicit'")
        require_enum(point, "mode", f"{param}.prompt_cache_breakpoint", ("explicit",))


def _part_text(part: dict, param: str) -> None:
    require_str(part, "text", param)


def _part_refusal(part: dict, param: str) -> None:
    require_str(part, "refusal", param)


def _part_image(part: dict, param: str) -> None:
    image = child(part, "image_url", param, "an object with a string url")
    require_str(image, "url", f"{param}.image_url")
    require_enum(image, "detail", f"{param}.image_url", ("auto", "low", "high"), optional=True)


def _part_audio(part: dict, param: str) -> None:
    audio = child(part, "input_audio", param, "an object with data and format")
    require_str(audio, "data", f"{param}.input_audio")
    require_enum(audio, "format", f"{param}.input_audio", ("wav", "mp3"))


def _part_file(part: dict, param: str) -> None:
    file = child(part, "file", param, "an object")
    for key in ("filename", "file_data", "file_id"):
        require_str(file, key, f"{param}.file", optional=True)


PartCheckers = dict[str, Callable[[dict, str], None]]
TEXT_PARTS: PartCheckers = {"text": _part_text}
_USER_PARTS: PartCheckers = {
    "text": _part_text,
    "image_url": _part_image,
    "input_audio": _part_audio,
    "file": _part_file,
}
_ASSISTANT_PARTS: PartCheckers = {"text": _part_text, "refusal": _part_refusal}


def check_parts(content: list, param: str, kinds: PartCheckers) -> None:
    for index, part in enumerate(content):
        where = f"{param}[{index}]"
        if type(part) is not dict:
            fail(where, f"{where} must be a content part object with a type, got {show(part)}")
        kind = part.get("type")
        check = kinds.get(kind) if type(kind) is str else None
        if check is None:
            fail(f"{where}.type", f"{where}.type must be one of {choices(tuple(kinds))}, got {show(kind)}")
        check(part, where)
        if "prompt_cache_breakpoint" in part:
            _check_breakpoint(part, where)


def _check_content(msg: dict, param: str, kinds: PartCheckers, *, nullable: bool = False) -> None:
    content = msg.get("content", MISSING)
    if type(content) is str or (nullable and (content is None or content is MISSING)):
        return
    where = f"{param}.content"
    if type(content) is list and content:
        check_parts(content, where, kinds)
        return
    if content is MISSING:
        fail(where, f"{where} is required for {msg['role']} messages")
    fail(where, f"{where} must be a string or a non-empty array of content parts, got {show(content)}")


# --- messages ----------------------------------------------------------------------------------------------


def _msg_text_only(msg: dict, param: str) -> None:
    # system and developer messages: text parts only.
    _check_content(msg, param, TEXT_PARTS)


def _msg_user(msg: dict, param: str) -> None:
    _check_content(msg, param, _USER_PARTS)


def _msg_tool(msg: dict, param: str) -> None:
    _check_content(msg, param, TEXT_PARTS)
    require_str(msg, "tool_call_id", param)


def _msg_function(msg: dict, param: str) -> None:
    # Deprecated, but still in the spec: content is required yet may be null, and name is required.
    if "content" not in msg:
        fail(f"{param}.content", f"{param}.content is required for function messages (a string or null)")
    content = msg["content"]
    if content is not None and type(content) is not str:
        fail(f"{param}.content", f"{param}.content must be a string or null, got {show(content)}")
    require_str(msg, "name", param)


def _msg_assistant(msg: dict, param: str) -> None:
    tool_calls = msg.get("tool_calls")
    # Tolerate `tool_calls: null`: SDKs round-trip response messages that way.
    if tool_calls is not None:
        _check_tool_calls(tool_calls, f"{param}.tool_calls")
    call = msg.get("function_call")
    if call is not None:
        call = child(msg, "function_call", param, "an object with name and arguments, or null")
        require_str(call, "name", f"{param}.function_call")
        require_str(call, "arguments", f"{param}.function_call")
    audio = msg.get("audio")
    if audio is not None:
        require_str(child(msg, "audio", param, "an object with an id, or null"), "id", f"{param}.audio")
    refusal = msg.get("refusal")
    if refusal is not None and type(refusal) is not str:
        fail(f"{param}.refusal", f"{param}.refusal must be a string or null, got {show(refusal)}")
    # The spec: content is "Required unless tool_calls or function_call is specified". A reference to a
    # previous audio reply stands in for content too (OpenAI's audio guide sends exactly that).
    if msg.get("content") is None and not (tool_calls or call is not None or audio is not None):
        fail(
            f"{param}.content", f"{param}.content must be a string or content parts unless tool_calls is set"
        )
    _check_content(msg, param, _ASSISTANT_PARTS, nullable=True)


def _check_tool_calls(value: object, param: str) -> None:
    if type(value) is not list:
        fail(param, f"{param} must be an array of tool calls, got {show(value)}")
    for index, call in enumerate(value):
        where = f"{param}[{index}]"
        call = require_object(call, where, "a tool call object")
        require_str(call, "id", where)
        require_enum(call, "type", where, ("function", "custom"))
        kind = call["type"]
        payload_fields = _TOOL_CALL_FIELDS[kind]
        payload = child(call, kind, where, f"an object with {' and '.join(payload_fields)}")
        for key in payload_fields:
            require_str(payload, key, f"{where}.{kind}")


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
_ROLES = choices(tuple(_ROLE_CHECKS))


def check_messages(value: object, param: str) -> None:
    if type(value) is not list or not value:
        fail(param, f"{param} must be a non-empty array of message objects, got {show(value)}")
    for index, msg in enumerate(value):
        where = f"messages[{index}]"
        if type(msg) is not dict:
            fail(where, f"{where} must be a message object with a role, got {show(msg)}")
        role = msg.get("role", MISSING)
        check = _ROLE_CHECKS.get(role) if type(role) is str else None
        if check is None:
            fail(f"{where}.role", f"{where}.role must be one of {_ROLES}, got {show(role)}")
        name = msg.get("name", MISSING)
        if name is not MISSING and type(name) is not str:
            fail(f"{where}.name", f"{where}.name must be a string, got {show(name)}")
        check(msg, where)
