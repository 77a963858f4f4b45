"""Validation of the structured top-level fields: tools and tool_choice, the deprecated functions and
function_call, response_format, and the smaller objects and arrays (stop, logit_bias, metadata,
stream_options, modalities, prediction, audio, web_search_options, moderation).

Each checker takes the field's value and its ``param`` name, and is registered in the package's field table.
"""

import re

from proxy.gateway.schemas.basics import (
    MISSING,
    child,
    fail,
    is_int,
    require_enum,
    require_object,
    require_str,
    show,
)
from proxy.gateway.schemas.messages import TEXT_PARTS, check_parts

# "Must be a-z, A-Z, 0-9, or contain underscores and dashes, with a maximum length of 64."
_NAME_RE = re.compile(r"[a-zA-Z0-9_-]{1,64}")


# --- small structured fields -------------------------------------------------------------------------------


def check_stop(value: object, param: str) -> None:
    if value is None or type(value) is str:
        return
    # The spec's StopConfiguration array has minItems 1 and maxItems 4.
    if type(value) is not list or not 1 <= len(value) <= 4 or any(type(s) is not str for s in value):
        fail(param, f"{param} must be null, a string, or an array of 1 to 4 strings, got {show(value)}")


def check_logit_bias(value: object, param: str) -> None:
    if value is None:
        return
    for token, bias in require_object(value, param, "an object mapping token ids to biases").items():
        # The spec types the values as integers; the range is from its description.
        if not is_int(bias) or not -100 <= bias <= 100:
            fail(
                f"{param}.{token}", f"{param} values must be integers between -100 and 100, got {show(bias)}"
            )


def check_metadata(value: object, param: str) -> None:
    if value is None:
        return
    pairs = require_object(value, param, "an object of string values, or null")
    # Limits from the spec's Metadata description.
    if len(pairs) > 16:
        fail(param, f"{param} may have at most 16 key-value pairs, got {len(pairs)}")
    for key, item in pairs.items():
        if type(key) is not str or len(key) > 64:
            fail(param, f"{param} keys must be strings of at most 64 characters, got {show(key)}")
        if type(item) is not str or len(item) > 512:
            fail(
                f"{param}.{key}",
                f"{param} values must be strings of at most 512 characters, got {show(item)}",
            )


def check_stream_options(value: object, param: str) -> None:
    if value is None:
        return
    options = require_object(value, param, "an object or null")
    for key in ("include_usage", "include_obfuscation"):
        flag = options.get(key)
        if key in options and type(flag) is not bool:
            fail(f"{param}.{key}", f"{param}.{key} must be a boolean, got {show(flag)}")


def check_modalities(value: object, param: str) -> None:
    if value is None:
        return
    if type(value) is not list or any(type(m) is not str or m not in ("text", "audio") for m in value):
        fail(param, f"{param} must be null or an array of 'text' and 'audio', got {show(value)}")


# --- tools and functions -----------------------------------------------------------------------------------


def _require_name(obj: dict, param: str) -> None:
    name = obj.get("name", MISSING)
    if type(name) is not str or not _NAME_RE.fullmatch(name):
        fail(f"{param}.name", f"{param}.name must be 1 to 64 of a-z, A-Z, 0-9, '_' and '-', got {show(name)}")


def check_named_schema(obj: dict, param: str, schema_key: str) -> None:
    """A name, an optional description, an optional JSON Schema under ``schema_key`` and an optional strict
    flag: the spec's FunctionObject ("parameters") and response_format's json_schema ("schema") alike."""
    _require_name(obj, param)
    require_str(obj, "description", param, optional=True)
    schema = obj.get(schema_key, MISSING)
    if schema is not MISSING and type(schema) is not dict:
        where = f"{param}.{schema_key}"
        fail(where, f"{where} must be a JSON Schema object, got {show(schema)}")
    strict = obj.get("strict")
    if strict is not None and type(strict) is not bool:
        fail(f"{param}.strict", f"{param}.strict must be a boolean or null, got {show(strict)}")


def _check_function_def(fn: object, param: str) -> None:
    check_named_schema(require_object(fn, param, "a function definition object"), param, "parameters")


def _check_custom_tool(custom: object, param: str) -> None:
    custom = require_object(custom, param, "an object with a name")
    require_str(custom, "name", param)
    require_str(custom, "description", param, optional=True)
    fmt = custom.get("format", MISSING)
    if fmt is MISSING:
        return
    fmt = require_object(fmt, f"{param}.format", "an object")
    require_enum(fmt, "type", f"{param}.format", ("text", "grammar"))
    if fmt["type"] == "grammar":
        grammar = child(fmt, "grammar", f"{param}.format", "an object")
        require_str(grammar, "definition", f"{param}.format.grammar")
        require_enum(grammar, "syntax", f"{param}.format.grammar", ("lark", "regex"))


def check_tools(value: object, param: str) -> None:
    if type(value) is not list:
        fail(param, f"{param} must be an array of tool objects, got {show(value)}")
    for index, tool in enumerate(value):
        where = f"{param}[{index}]"
        tool = require_object(tool, where, "a tool object")
        require_enum(tool, "type", where, ("function", "custom"))
        if tool["type"] == "function":
            _check_function_def(tool.get("function"), f"{where}.function")
        else:
            _check_custom_tool(tool.get("custom"), f"{where}.custom")


def check_tool_choice(value: object, param: str) -> None:
    if type(value) is str:
        if value not in ("none", "auto", "required"):
            fail(
                param,
                f"{param} must be 'none', 'auto', 'required' or a tool choice object, got {show(value)}",
            )
        return
    choice = require_object(value, param, "'none', 'auto', 'required' or a tool choice object")
    require_enum(choice, "type", param, ("function", "custom", "allowed_tools"))
    kind = choice["type"]
    if kind == "allowed_tools":
        allowed = child(choice, "allowed_tools", param, "an object")
        require_enum(allowed, "mode", f"{param}.allowed_tools", ("auto", "required"))
        tools = allowed.get("tools")
        if type(tools) is not list or any(type(t) is not dict for t in tools):
            fail(
                f"{param}.allowed_tools.tools",
                f"{param}.allowed_tools.tools must be an array of tool objects, got {show(tools)}",
            )
    else:
        require_str(child(choice, kind, param, "an object with a name"), "name", f"{param}.{kind}")


def check_function_call(value: object, param: str) -> None:
    if type(value) is str and value in ("none", "auto"):
        return
    if type(value) is not dict:
        fail(param, f"{param} must be 'none', 'auto' or an object with a name, got {show(value)}")
    require_str(value, "name", param)


def check_functions(value: object, param: str) -> None:
    if type(value) is not list or not 1 <= len(value) <= 128:
        fail(param, f"{param} must be an array of 1 to 128 function definitions, got {show(value)}")
    for index, fn in enumerate(value):
        _check_function_def(fn, f"{param}[{index}]")


# --- output shaping and extras -----------------------------------------------------------------------------


def check_response_format(value: object, param: str) -> None:
    fmt = require_object(value, param, "an object with a type")
    require_enum(fmt, "type", param, ("text", "json_object", "json_schema"))
    if fmt["type"] != "json_schema":
        return
    spec = child(fmt, "json_schema", param, "an object with a name")
    check_named_schema(spec, f"{param}.json_schema", "schema")


def check_prediction(value: object, param: str) -> None:
    if value is None:
        return
    prediction = require_object(value, param, "an object with type 'content', or null")
    require_enum(prediction, "type", param, ("content",))
    content = prediction.get("content", MISSING)
    if type(content) is list and content:
        check_parts(content, f"{param}.content", TEXT_PARTS)
    elif type(content) is not str:
        fail(
            f"{param}.content",
            f"{param}.content must be a string or a non-empty array of text parts, got {show(content)}",
        )


def check_audio(value: object, param: str) -> None:
    if value is None:
        return
    audio = require_object(value, param, "an object with voice and format, or null")
    voice = audio.get("voice", MISSING)
    if type(voice) is dict:
        require_str(voice, "id", f"{param}.voice")
    elif type(voice) is not str:
        fail(
            f"{param}.voice",
            f"{param}.voice must be a voice name or an object with an id, got {show(voice)}",
        )
    require_enum(audio, "format", param, ("wav", "aac", "mp3", "flac", "opus", "pcm16"))


def check_web_search(value: object, param: str) -> None:
    options = require_object(value, param, "an object")
    location = options.get("user_location")
    if location is not None:
        location = require_object(location, f"{param}.user_location", "an object or null")
        require_enum(location, "type", f"{param}.user_location", ("approximate",))
        child(location, "approximate", f"{param}.user_location", "an object")
    require_enum(options, "search_context_size", param, ("low", "medium", "high"), optional=True)


def check_moderation(value: object, param: str) -> None:
    if value is not None:
        require_str(require_object(value, param, "an object with a model, or null"), "model", param)
