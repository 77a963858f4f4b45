"""Validation of the body of ``POST /v1/responses`` against OpenAI's ``CreateResponse``, field by field.

As for chat (proxy/gateway/schemas/__init__.py), every violation is a 400 naming its ``param`` the way OpenAI
spells it (``input[2].content[0].text``, ``tools[1].parameters``), and what real clients send beyond the
minimum passes: unknown fields, built-in tools (``web_search``, ``namespace``, ...) and item types a route may
not run are accepted as they are, for the route to use or leave out.
"""

from proxy.gateway.schemas.basics import (
    MISSING,
    Checker,
    boolean,
    enum,
    fail,
    integer,
    number,
    object_or_null,
    require_enum,
    require_object,
    require_str,
    show,
    string,
)  # fmt: skip
from proxy.gateway.schemas.tools import check_metadata, check_named_schema

ROLES = ("user", "assistant", "system", "developer")
PART_TYPES = ("input_text", "input_image", "input_file", "input_audio", "output_text", "refusal")
EFFORTS = ("none", "minimal", "low", "medium", "high", "xhigh")


def check_input(value: object, param: str) -> None:
    if value is MISSING:
        fail(param, f"Missing required parameter: '{param}' (a string or an array of input items).")
    if isinstance(value, str):
        return
    if type(value) is not list:
        fail(param, f"{param} must be a string or an array of input items, got {show(value)}")
    for i, item in enumerate(value):
        where = f"{param}[{i}]"
        item = require_object(item, where, "an input item (an object)")
        kind = item.get("type", "message")
        if kind == "message":
            _check_message(item, where)
        elif kind == "function_call":
            for key in ("call_id", "name", "arguments"):
                require_str(item, key, where)
        elif kind == "function_call_output":
            require_str(item, "call_id", where)
            if not isinstance(item.get("output"), str | list):
                fail(f"{where}.output", f"{where}.output must be a string or an array of parts")


def _check_message(item: dict, where: str) -> None:
    require_enum(item, "role", where, ROLES)
    content = item.get("content", MISSING)
    if isinstance(content, str):
        return
    if type(content) is not list:
        fail(
            f"{where}.content",
            f"{where}.content must be a string or an array of content parts, got {show(content)}",
        )
    for j, part in enumerate(content):
        at = f"{where}.content[{j}]"
        part = require_object(part, at, "a content part (an object)")
        require_enum(part, "type", at, PART_TYPES)
        if part["type"] in ("input_text", "output_text"):
            require_str(part, "text", at)


def check_tools(value: object, param: str) -> None:
    if value is None:
        return
    if type(value) is not list:
        fail(param, f"{param} must be an array of tools, got {show(value)}")
    for i, tool in enumerate(value):
        where = f"{param}[{i}]"
        tool = require_object(tool, where, "a tool object with a type")
        require_str(tool, "type", where)
        if tool["type"] == "function":
            check_named_schema(tool, where, "parameters")  # Responses' function tools are flat


def check_tool_choice(value: object, param: str) -> None:
    if value is None or value in ("none", "auto", "required"):
        return
    choice = require_object(value, param, "'none', 'auto', 'required' or a tool choice object")
    require_str(choice, "type", param)
    if choice["type"] == "function":
        require_str(choice, "name", param)
    elif choice["type"] == "allowed_tools":
        require_enum(choice, "mode", param, ("auto", "required"))
        if type(choice.get("tools")) is not list:
            fail(f"{param}.tools", f"{param}.tools must be an array of tool objects")


def check_text(value: object, param: str) -> None:
    if value is None:
        return
    text = require_object(value, param, "an object")
    if "verbosity" in text:
        enum("low", "medium", "high")(text["verbosity"], f"{param}.verbosity")
    fmt = text.get("format", MISSING)
    if fmt is MISSING or fmt is None:
        return
    where = f"{param}.format"
    fmt = require_object(fmt, where, "an object with a type")
    require_enum(fmt, "type", where, ("text", "json_object", "json_schema"))
    if fmt["type"] == "json_schema":
        check_named_schema(fmt, where, "schema")  # flat here too, unlike chat's response_format
        if type(fmt.get("schema")) is not dict:
            fail(f"{where}.schema", f"{where}.schema is required: a JSON Schema object")


def check_reasoning(value: object, param: str) -> None:
    if value is None:
        return
    reasoning = require_object(value, param, "an object")
    if "effort" in reasoning:
        enum(*EFFORTS)(reasoning["effort"], f"{param}.effort")
    if "summary" in reasoning:
        enum("auto", "concise", "detailed")(reasoning["summary"], f"{param}.summary")


def check_include(value: object, param: str) -> None:
    if value is None:
        return
    if type(value) is not list or any(type(v) is not str for v in value):
        fail(param, f"{param} must be an array of strings, got {show(value)}")


CHECKS: dict[str, Checker] = {
    "instructions": string(nullable=True),
    "max_output_tokens": integer(1, 2**31 - 1, "a positive integer"),
    "temperature": number(0, 2),
    "top_p": number(0, 1),
    "stream": boolean(nullable=True),
    "store": boolean(nullable=True),
    "previous_response_id": string(nullable=True),
    "parallel_tool_calls": boolean(nullable=True),
    "metadata": check_metadata,
    "user": string(nullable=False),
    "text": check_text,
    "reasoning": check_reasoning,
    "include": check_include,
    "tools": check_tools,
    "tool_choice": check_tool_choice,
    "truncation": enum("auto", "disabled"),
    "prompt": object_or_null,
}
