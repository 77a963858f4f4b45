"""Validation of the body of ``POST /v1/messages`` and ``/v1/messages/count_tokens`` (Anthropic's Messages API).

Each violation is a 400 whose message names the field the way Anthropic's own errors do
(``messages.1.content.0.type: ...``); it reaches the client in Anthropic's error shape. What current Claude
clients send beyond the documented minimum passes unchecked: unknown fields (``context_management``,
``output_config``, ``container``...), unknown block types, server tools, and Claude Code's ``system``-role
message at the head of ``messages``. An Anthropic-style route gets all of it as it came; a translated route
uses what it can (proxy/gateway/translate/messages.py).
"""

from proxy.gateway.schemas.basics import (
    MISSING,
    Checker,
    boolean,
    fail,
    integer,
    is_int,
    load_body,
    number,
    object_or_null,
    require_model,
    require_object,
    show,
)  # fmt: skip

ROLES = ("user", "assistant", "system")  # "system" as Claude Code sends it, first in `messages`
TOOL_CHOICES = ("auto", "any", "tool", "none")
THINKING = ("enabled", "disabled", "adaptive")
MIN_THINKING_BUDGET = 1024  # Anthropic's smallest budget_tokens


def checked_messages_body(raw: bytes, *, counting: bool = False) -> dict:
    """The Messages request as an object, each field checked. ``counting``: a count_tokens body, which has
    no ``max_tokens`` and never streams."""
    body = load_body(raw)
    require_model(body)
    if not counting:
        max_tokens = body.get("max_tokens", MISSING)
        if not is_int(max_tokens) or max_tokens < 1:
            fail(
                "max_tokens", f"max_tokens: Field required (an integer of 1 or more), got {show(max_tokens)}"
            )
    _check_messages(body.get("messages", MISSING))
    for key, check in CHECKS.items():
        if key in body:
            check(body[key], key)
    _check_thinking(body)
    return body


def _check_messages(value: object) -> None:
    if type(value) is not list or not value:
        fail("messages", f"messages: Field required (a non-empty array of messages), got {show(value)}")
    for i, message in enumerate(value):
        where = f"messages.{i}"
        message = require_object(message, where, "a message (an object with a role and content)")
        role = message.get("role", MISSING)
        if type(role) is not str or role not in ROLES:
            fail(f"{where}.role", f"{where}.role: Input should be 'user' or 'assistant', got {show(role)}")
        _check_content(message.get("content", MISSING), f"{where}.content")


def _check_content(value: object, where: str) -> None:
    if isinstance(value, str):
        return
    if type(value) is not list:
        fail(where, f"{where}: Input should be a string or an array of content blocks, got {show(value)}")
    for j, block in enumerate(value):
        _check_block(block, f"{where}.{j}")


def _check_block(block: object, where: str) -> None:
    block = require_object(block, where, "a content block (an object with a type)")
    kind = block.get("type", MISSING)
    if type(kind) is not str or not kind:
        fail(f"{where}.type", f"{where}.type: Field required (a string), got {show(kind)}")
    if kind == "text" and type(block.get("text")) is not str:
        fail(
            f"{where}.text", f"{where}.text: Input should be a string, got {show(block.get('text', MISSING))}"
        )
    elif kind in ("image", "document"):
        require_object(block.get("source", MISSING), f"{where}.source", "an object (the block's source)")
    elif kind == "tool_use":
        for key in ("id", "name"):
            if type(block.get(key)) is not str:
                fail(
                    f"{where}.{key}",
                    f"{where}.{key}: Input should be a string, got {show(block.get(key, MISSING))}",
                )
        require_object(block.get("input", MISSING), f"{where}.input", "an object (the tool's input)")
    elif kind == "tool_result":
        if type(block.get("tool_use_id")) is not str:
            fail(f"{where}.tool_use_id", f"{where}.tool_use_id: Input should be a string, "
                 f"got {show(block.get('tool_use_id', MISSING))}")  # fmt: skip
        if "content" in block:
            _check_content(block["content"], f"{where}.content")
    # Other types (thinking, redacted_thinking, search results, server tool blocks...) pass as they are.


def _check_system(value: object, param: str) -> None:
    if isinstance(value, str):
        return
    if type(value) is not list:
        fail(param, f"{param}: Input should be a string or an array of text blocks, got {show(value)}")
    for i, block in enumerate(value):
        block = require_object(block, f"{param}.{i}", "a text block")
        if block.get("type") != "text" or type(block.get("text")) is not str:
            fail(f"{param}.{i}", f"{param}.{i}: Input should be a text block with a string text")


def _check_tools(value: object, param: str) -> None:
    if type(value) is not list:
        fail(param, f"{param}: Input should be an array of tools, got {show(value)}")
    for i, tool in enumerate(value):
        where = f"{param}.{i}"
        tool = require_object(tool, where, "a tool (an object)")
        if type(tool.get("name")) is not str or not tool["name"]:
            fail(
                f"{where}.name",
                f"{where}.name: Field required (a string), got {show(tool.get('name', MISSING))}",
            )
        if tool.get("type") in (None, "custom"):  # a server tool (web search, bash...) has its own fields
            require_object(tool.get("input_schema", MISSING), f"{where}.input_schema", "a JSON schema object")


def _check_tool_choice(value: object, param: str) -> None:
    choice = require_object(value, param, "an object with a type")
    kind = choice.get("type", MISSING)
    if type(kind) is not str or kind not in TOOL_CHOICES:
        fail(
            f"{param}.type",
            f"{param}.type: Input should be one of 'auto', 'any', 'tool', 'none', got {show(kind)}",
        )
    if kind == "tool" and type(choice.get("name")) is not str:
        fail(f"{param}.name", f"{param}.name: Field required when the type is 'tool'")


def _check_stop_sequences(value: object, param: str) -> None:
    if type(value) is not list or any(type(s) is not str for s in value):
        fail(param, f"{param}: Input should be an array of strings, got {show(value)}")


def _check_metadata(value: object, param: str) -> None:
    metadata = require_object(value, param, "an object")
    user_id = metadata.get("user_id")
    if user_id is not None and type(user_id) is not str:
        fail(f"{param}.user_id", f"{param}.user_id: Input should be a string or null, got {show(user_id)}")


def _check_thinking(body: dict) -> None:
    value = body.get("thinking")
    if value is None:
        return
    thinking = require_object(value, "thinking", "an object with a type")
    kind = thinking.get("type", MISSING)
    if type(kind) is not str or kind not in THINKING:
        fail(
            "thinking.type",
            f"thinking.type: Input should be 'enabled', 'disabled' or 'adaptive', got {show(kind)}",
        )
    if kind == "enabled":
        budget = thinking.get("budget_tokens", MISSING)
        if not is_int(budget) or budget < MIN_THINKING_BUDGET:
            fail("thinking.budget_tokens", f"thinking.budget_tokens: Input should be an integer of at least "
                 f"{MIN_THINKING_BUDGET}, got {show(budget)}")  # fmt: skip
        max_tokens = body.get("max_tokens")
        if is_int(max_tokens) and budget >= max_tokens:
            fail("thinking.budget_tokens", "thinking.budget_tokens: must be less than max_tokens")


CHECKS: dict[str, Checker] = {
    "system": _check_system,
    "tools": _check_tools,
    "tool_choice": _check_tool_choice,
    "stop_sequences": _check_stop_sequences,
    "metadata": _check_metadata,
    "stream": boolean(nullable=False),
    "temperature": number(0, 1),
    "top_p": number(0, 1),
    "top_k": integer(0, 2**31 - 1, "an integer of 0 or more"),
    "context_management": object_or_null,
}
