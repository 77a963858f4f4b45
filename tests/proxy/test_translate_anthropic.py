"""Golden tests of chat completions served by an Anthropic Messages upstream (proxy/gateway/translate/anthropic.py).

Inputs and the exact expected outputs are written here. Every chat body fed in is one the chat route's own
validator accepts; every completion and chunk produced is validated against OpenAI's spec and read by the
openai SDK's models, and two streams are also assembled by the SDK's own stream helper. The Anthropic
messages and events fed in are checked against the anthropic SDK's types where it is installed.
"""

import copy
import time

import anthropic
import httpx2
import openai
import orjson
import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from billing.usage import Usage, from_anthropic
from proxy.gateway.schemas import validate_chat_request
from proxy.gateway.translate.anthropic import (
    STOP_TO_FINISH,
    MessagesStreamToChat,
    chat_from_message,
    chat_usage,
    messages_body_from_chat,
)
from tests.spec import validator_for

MODEL = "claude-sonnet"  # the gateway's name for the model, echoed on every answer
UPSTREAM_MODEL = "claude-sonnet-4-5-20250929"
CREATED = 1741476777
CHAT_ID = "chatcmpl-01AbC"
PNG = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
PDF = "JVBERi0xLjQKJcOkw7zDtsOfCjIgMCBvYmoKPDwvTGVuZ3RoIDMgMCBSPj4Kc3RyZWFtCg=="

WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}
ANTHROPIC_WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
PING_TOOL = {"type": "function", "function": {"name": "ping"}}
ANTHROPIC_PING = {"name": "ping", "input_schema": {"type": "object", "properties": {}}}


# --- helpers ------------------------------------------------------------------------------------------------


def _translate(body: dict, max_tokens: int = 4096) -> dict:
    """The Messages body for ``body``, after checking that the chat route accepts ``body`` and that the
    translation left it untouched."""
    validate_chat_request(body)
    before = copy.deepcopy(body)
    out = messages_body_from_chat(body, max_tokens=max_tokens)
    assert body == before
    assert "model" not in out and "stream" not in out
    return out


def _body(*messages: dict, **fields: object) -> dict:
    return {"model": MODEL, "messages": list(messages), **fields}


def _user(content: object) -> dict:
    return {"role": "user", "content": content}


def _assistant(content: object = None, **fields: object) -> dict:
    return {"role": "assistant", "content": content, **fields}


def _tool(call_id: str, content: object) -> dict:
    return {"role": "tool", "tool_call_id": call_id, "content": content}


def _call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


def _text(text: str, **fields: object) -> dict:
    return {"type": "text", "text": text, **fields}


def _turn(role: str, *blocks: dict) -> dict:
    return {"role": role, "content": list(blocks)}


def _only(*blocks: dict, max_tokens: int = 4096) -> dict:
    """The Messages body of a single user turn."""
    return {"max_tokens": max_tokens, "messages": [_turn("user", *blocks)]}


EPHEMERAL = {"type": "ephemeral"}
HI = _user("Hi")
HI_TURN = _turn("user", _text("Hi"))


def _valid(schema: str, value: object) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator_for(schema).iter_errors(value)]
    assert not errors, errors


# --- the request: the conversation --------------------------------------------------------------------------


def test_a_string_user_message_is_one_text_block() -> None:
    assert _translate(_body(_user("Hello!"))) == _only(_text("Hello!"))


def test_system_and_developer_messages_anywhere_become_the_system_blocks_in_order() -> None:
    body = _body(
        {"role": "system", "content": "You are terse."},
        _user("Hi"),
        {"role": "developer", "content": [_text("Answer in French."), _text("  ")]},
        _assistant("Bonjour"),
        {"role": "system", "content": [_text("Be kind.")]},
        _user("Pourquoi ?"),
    )
    assert _translate(body) == {
        "max_tokens": 4096,
        "system": [_text("You are terse."), _text("Answer in French."), _text("Be kind.")],
        "messages": [HI_TURN, _turn("assistant", _text("Bonjour")), _turn("user", _text("Pourquoi ?"))],
    }


def test_images_by_data_url_go_inline_and_by_http_url_by_reference() -> None:
    content = [
        _text("What is in these?"),
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}", "detail": "high"}},
        {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
        # Left out: a type Anthropic doesn't read, and inline data that isn't base64.
        {"type": "image_url", "image_url": {"url": "data:image/svg+xml;base64,PHN2Zy8+"}},
        {"type": "image_url", "image_url": {"url": "data:image/png,not-base64"}},
    ]
    assert _translate(_body(_user(content))) == _only(
        _text("What is in these?"),
        {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
        {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
    )


def test_a_pdf_file_part_is_a_document_block_and_other_files_and_audio_are_left_out() -> None:
    content = [
        _text("Summarise the report."),
        {
            "type": "file",
            "file": {"filename": "report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
        },
        {"type": "file", "file": {"file_data": f"data:application/pdf;base64,{PDF}"}},
        {"type": "file", "file": {"file_id": "file-abc123"}},
        {"type": "file", "file": {"filename": "notes.txt", "file_data": "data:text/plain;base64,aGk="}},
        {"type": "input_audio", "input_audio": {"data": "UklGRg==", "format": "wav"}},
    ]
    pdf = {"type": "base64", "media_type": "application/pdf", "data": PDF}
    assert _translate(_body(_user(content))) == _only(
        _text("Summarise the report."),
        {"type": "document", "source": pdf, "title": "report.pdf"},
        {"type": "document", "source": pdf},
    )


def test_a_tool_loop_becomes_tool_use_then_one_user_turn_of_results_and_the_next_text() -> None:
    body = _body(
        _user("Weather in Paris and Rome?"),
        _assistant(
            "Let me check.",
            tool_calls=[
                _call("toolu_01", "get_weather", '{"city":"Paris"}'),
                _call("toolu_02", "get_weather", '{"city": "Rome"}'),
            ],
        ),
        _tool("toolu_01", "18°C, sunny"),
        _tool("toolu_02", [_text("21°C, "), _text("cloudy")]),
        _user("Thanks! And tomorrow?"),
        tools=[WEATHER],
    )
    assert _translate(body) == {
        "max_tokens": 4096,
        "messages": [
            _turn("user", _text("Weather in Paris and Rome?")),
            _turn(
                "assistant",
                _text("Let me check."),
                {"type": "tool_use", "id": "toolu_01", "name": "get_weather", "input": {"city": "Paris"}},
                {"type": "tool_use", "id": "toolu_02", "name": "get_weather", "input": {"city": "Rome"}},
            ),
            _turn(
                "user",
                {"type": "tool_result", "tool_use_id": "toolu_01", "content": "18°C, sunny"},
                {"type": "tool_result", "tool_use_id": "toolu_02", "content": "21°C, cloudy"},
                _text("Thanks! And tomorrow?"),
            ),
        ],
        "tools": [ANTHROPIC_WEATHER],
    }


@pytest.mark.parametrize("arguments", ["", "{not json", "[1, 2]", '"Paris"', "null"])
def test_call_arguments_that_are_not_a_json_object_become_an_empty_input(arguments: str) -> None:
    body = _body(HI, _assistant(tool_calls=[_call("toolu_01", "ping", arguments)]), _tool("toolu_01", "pong"))
    assert _translate(body)["messages"][1] == _turn(
        "assistant", {"type": "tool_use", "id": "toolu_01", "name": "ping", "input": {}}
    )


def test_tool_results_go_before_the_text_of_their_user_turn() -> None:
    # Anthropic wants the message after tool calls to begin with their results.
    body = _body(
        HI,
        _assistant(tool_calls=[_call("toolu_01", "ping", "{}")]),
        _user("Still there?"),
        _tool("toolu_01", "pong"),
    )
    assert _translate(body)["messages"][2] == _turn(
        "user", {"type": "tool_result", "tool_use_id": "toolu_01", "content": "pong"}, _text("Still there?")
    )


def test_consecutive_messages_of_one_role_merge_into_one_turn() -> None:
    body = _body(_user("a"), _user([_text("b")]), _assistant("c"), _assistant([_text("d")]), _user("e"))
    assert _translate(body)["messages"] == [
        _turn("user", _text("a"), _text("b")),
        _turn("assistant", _text("c"), _text("d")),
        _turn("user", _text("e")),
    ]


def test_a_conversation_that_opens_with_the_assistant_gets_a_user_turn_first() -> None:
    body = _body({"role": "system", "content": "Be brief."}, _assistant("How can I help?"), _user("Hello"))
    assert _translate(body) == {
        "max_tokens": 4096,
        "system": [_text("Be brief.")],
        "messages": [
            _turn("user", _text(".")),
            _turn("assistant", _text("How can I help?")),
            _turn("user", _text("Hello")),
        ],
    }


def test_a_conversation_of_system_messages_only_gets_a_user_turn() -> None:
    assert _translate(_body({"role": "system", "content": "Write a haiku."})) == {
        "max_tokens": 4096,
        "system": [_text("Write a haiku.")],
        "messages": [_turn("user", _text("."))],
    }


def test_a_final_assistant_message_loses_its_trailing_whitespace() -> None:
    body = _body(_user("Say hi"), _assistant("Hi there \n"))
    assert _translate(body)["messages"] == [
        _turn("user", _text("Say hi")),
        _turn("assistant", _text("Hi there")),
    ]
    body = _body(_user("Say hi"), _assistant([_text("Hi"), _text(" \n")]))
    assert _translate(body)["messages"] == [_turn("user", _text("Say hi")), _turn("assistant", _text("Hi"))]


def test_empty_text_is_left_out_and_so_are_the_messages_it_empties() -> None:
    body = _body(
        _user([_text(""), _text("Hi")]),
        _assistant("", tool_calls=[_call("toolu_01", "ping", "{}")]),
        _tool("toolu_01", ""),
        _user(" "),
    )
    assert _translate(body)["messages"] == [
        HI_TURN,
        _turn("assistant", {"type": "tool_use", "id": "toolu_01", "name": "ping", "input": {}}),
        _turn("user", {"type": "tool_result", "tool_use_id": "toolu_01"}),
    ]


def test_earlier_reasoning_names_and_the_deprecated_function_messages_are_left_out() -> None:
    body = _body(
        {"role": "user", "content": "What is 2+2?", "name": "ana"},
        _assistant("4", reasoning_content="2 and 2 make 4."),
        _user("And f?"),
        _assistant(None, function_call={"name": "f", "arguments": "{}"}),
        {"role": "function", "name": "f", "content": "result"},
        _user("Thanks"),
    )
    assert _translate(body)["messages"] == [
        _turn("user", _text("What is 2+2?")),
        _turn("assistant", _text("4")),
        _turn("user", _text("And f?"), _text("Thanks")),
    ]


def test_custom_tool_calls_and_their_results_are_left_out() -> None:
    custom = {"id": "call_c", "type": "custom", "custom": {"name": "grammar", "input": "SELECT 1"}}
    body = _body(
        HI,
        _assistant(tool_calls=[custom, _call("toolu_01", "ping", "{}")]),
        _tool("call_c", "ok"),
        _tool("toolu_01", "pong"),
    )
    assert _translate(body)["messages"] == [
        HI_TURN,
        _turn("assistant", {"type": "tool_use", "id": "toolu_01", "name": "ping", "input": {}}),
        _turn("user", {"type": "tool_result", "tool_use_id": "toolu_01", "content": "pong"}),
    ]


# --- the request: prompt caching ----------------------------------------------------------------------------


def test_cache_control_on_parts_system_parts_and_tools_is_kept() -> None:
    hour = {"type": "ephemeral", "ttl": "1h"}
    body = _body(
        {"role": "system", "content": [_text("Long rules.", cache_control=hour), _text("Short rules.")]},
        _user([_text("A long document.", cache_control=EPHEMERAL), _text("A question.")]),
        tools=[{**WEATHER, "cache_control": EPHEMERAL}],
    )
    assert _translate(body) == {
        "max_tokens": 4096,
        "system": [_text("Long rules.", cache_control=hour), _text("Short rules.")],
        "messages": [_turn("user", _text("A long document.", cache_control=EPHEMERAL), _text("A question."))],
        "tools": [{**ANTHROPIC_WEATHER, "cache_control": EPHEMERAL}],
    }


def test_openai_breakpoints_become_ephemeral_cache_control() -> None:
    breakpoint_ = {"mode": "explicit"}
    image = {"url": "https://example.com/chart.png"}
    content = [
        {"type": "image_url", "image_url": image, "prompt_cache_breakpoint": breakpoint_},
        _text("Describe it.", prompt_cache_breakpoint=breakpoint_),
    ]
    assert _translate(_body(_user(content))) == _only(
        {"type": "image", "source": {"type": "url", "url": image["url"]}, "cache_control": EPHEMERAL},
        _text("Describe it.", cache_control=EPHEMERAL),
    )


def test_a_breakpoint_on_a_whole_message_or_on_tool_result_parts_ends_that_message() -> None:
    body = _body(
        {"role": "system", "content": "Long rules.", "cache_control": EPHEMERAL},
        {"role": "user", "content": [_text("a"), _text("b")], "cache_control": EPHEMERAL},
        _assistant(tool_calls=[_call("toolu_01", "ping", "{}")]),
        _tool("toolu_01", [_text("pong", cache_control=EPHEMERAL)]),
    )
    out = _translate(body)
    assert out["system"] == [_text("Long rules.", cache_control=EPHEMERAL)]
    assert out["messages"] == [
        _turn("user", _text("a"), _text("b", cache_control=EPHEMERAL)),
        _turn("assistant", {"type": "tool_use", "id": "toolu_01", "name": "ping", "input": {}}),
        _turn(
            "user",
            {"type": "tool_result", "tool_use_id": "toolu_01", "content": "pong", "cache_control": EPHEMERAL},
        ),
    ]


def test_only_the_latest_four_breakpoints_are_kept() -> None:
    # In Anthropic's prompt order: tools, system, messages.
    body = _body(
        {
            "role": "system",
            "content": [_text("s1", cache_control=EPHEMERAL), _text("s2", cache_control=EPHEMERAL)],
        },
        _user([_text("u1", cache_control=EPHEMERAL), _text("u2", cache_control=EPHEMERAL)]),
        _assistant("a1"),
        _user([_text("u3", cache_control=EPHEMERAL)]),
        tools=[{**PING_TOOL, "cache_control": EPHEMERAL}],
    )
    out = _translate(body)
    assert out["tools"] == [ANTHROPIC_PING]
    assert out["system"] == [_text("s1"), _text("s2", cache_control=EPHEMERAL)]
    assert out["messages"] == [
        _turn("user", _text("u1", cache_control=EPHEMERAL), _text("u2", cache_control=EPHEMERAL)),
        _turn("assistant", _text("a1")),
        _turn("user", _text("u3", cache_control=EPHEMERAL)),
    ]


# --- the request: tools ---------------------------------------------------------------------------------------


def test_function_tools_keep_name_description_and_schema_and_the_others_are_left_out() -> None:
    body = _body(
        HI,
        tools=[
            WEATHER,
            PING_TOOL,
            {"type": "function", "function": {"name": "noop", "description": "", "parameters": {}}},
            {"type": "custom", "custom": {"name": "grammar"}},
        ],
    )
    assert _translate(body)["tools"] == [
        ANTHROPIC_WEATHER,
        ANTHROPIC_PING,
        {"name": "noop", "input_schema": {"type": "object", "properties": {}}},
    ]


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        ("auto", {"type": "auto"}),
        ("required", {"type": "any"}),
        ("none", {"type": "none"}),
        ({"type": "function", "function": {"name": "get_weather"}}, {"type": "tool", "name": "get_weather"}),
        (None, None),
    ],
    ids=["auto", "required", "none", "named", "absent"],
)
def test_tool_choice_forms(tool_choice: object, expected: dict | None) -> None:
    fields = {} if tool_choice is None else {"tool_choice": tool_choice}
    out = _translate(_body(HI, tools=[WEATHER, PING_TOOL], **fields))
    assert out.get("tool_choice") == expected
    assert out["tools"] == [ANTHROPIC_WEATHER, ANTHROPIC_PING]


def test_allowed_tools_offers_only_those_tools() -> None:
    allowed = {"mode": "required", "tools": [{"type": "function", "function": {"name": "ping"}}]}
    out = _translate(
        _body(HI, tools=[WEATHER, PING_TOOL], tool_choice={"type": "allowed_tools", "allowed_tools": allowed})
    )
    assert (out["tools"], out["tool_choice"]) == ([ANTHROPIC_PING], {"type": "any"})
    allowed = {"mode": "auto", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}
    out = _translate(
        _body(HI, tools=[WEATHER, PING_TOOL], tool_choice={"type": "allowed_tools", "allowed_tools": allowed})
    )
    assert (out["tools"], out["tool_choice"]) == ([ANTHROPIC_WEATHER], {"type": "auto"})


@pytest.mark.parametrize(
    ("tool_choice", "expected"),
    [
        (None, {"type": "auto", "disable_parallel_tool_use": True}),
        ("auto", {"type": "auto", "disable_parallel_tool_use": True}),
        ("required", {"type": "any", "disable_parallel_tool_use": True}),
        (
            {"type": "function", "function": {"name": "ping"}},
            {"type": "tool", "name": "ping", "disable_parallel_tool_use": True},
        ),
        ("none", {"type": "none"}),  # Anthropic's `none` takes no such flag: no call at all is made
    ],
    ids=["absent", "auto", "required", "named", "none"],
)
def test_parallel_tool_calls_false_disables_parallel_tool_use(tool_choice: object, expected: dict) -> None:
    fields = {} if tool_choice is None else {"tool_choice": tool_choice}
    out = _translate(_body(HI, tools=[PING_TOOL], parallel_tool_calls=False, **fields))
    assert out["tool_choice"] == expected


def test_without_tools_left_there_is_no_tool_choice() -> None:
    assert _translate(_body(HI, parallel_tool_calls=False)) == _only(_text("Hi"))
    custom_only = [{"type": "custom", "custom": {"name": "grammar"}}]
    assert _translate(_body(HI, tools=custom_only, tool_choice="required")) == _only(_text("Hi"))


# --- the request: settings ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fields", "expected"),
    [({}, 4096), ({"max_tokens": 300}, 300), ({"max_tokens": 300, "max_completion_tokens": 200}, 200)],
    ids=["default", "max_tokens", "max_completion_tokens-wins"],
)
def test_the_output_limit(fields: dict, expected: int) -> None:
    assert _translate(_body(HI, **fields))["max_tokens"] == expected


@pytest.mark.parametrize(
    ("effort", "budget"),
    [("minimal", 1024), ("low", 2048), ("medium", 8192), ("high", 16384), ("xhigh", 32768), ("max", 65536)],
)
def test_reasoning_effort_becomes_a_thinking_budget(effort: str, budget: int) -> None:
    out = _translate(_body(HI, reasoning_effort=effort, max_completion_tokens=200_000))
    assert out == {
        "max_tokens": 200_000,
        "messages": [HI_TURN],
        "thinking": {"type": "enabled", "budget_tokens": budget},
    }


def test_the_thinking_budget_leaves_half_of_max_tokens_to_the_answer() -> None:
    out = _translate(_body(HI, reasoning_effort="high", max_tokens=8000))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 4000}
    # The caller's default limit applies the same way.
    out = _translate(_body(HI, reasoning_effort="high"), max_tokens=4096)
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_thinking_is_left_out_when_its_minimum_budget_does_not_fit() -> None:
    assert "thinking" not in _translate(_body(HI, reasoning_effort="medium", max_tokens=2047))
    fits = _translate(_body(HI, reasoning_effort="medium", max_tokens=2048))
    assert fits["thinking"] == {"type": "enabled", "budget_tokens": 1024}


def test_no_reasoning_effort_or_none_means_no_thinking() -> None:
    assert _translate(_body(HI, reasoning_effort="none")) == _only(_text("Hi"))
    assert _translate(_body(HI)) == _only(_text("Hi"))


@pytest.mark.parametrize("tool_choice", ["required", {"type": "function", "function": {"name": "ping"}}])
def test_thinking_is_left_out_when_a_tool_call_is_forced(tool_choice: object) -> None:
    out = _translate(
        _body(HI, tools=[PING_TOOL], tool_choice=tool_choice, reasoning_effort="low", temperature=0.2)
    )
    assert "thinking" not in out
    assert out["temperature"] == 0.2
    out = _translate(_body(HI, tools=[PING_TOOL], tool_choice="auto", reasoning_effort="low"))
    assert out["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_thinking_is_left_out_when_the_request_continues_an_assistant_turn() -> None:
    # Anthropic would want the turn's signed thinking back, which chat doesn't keep.
    tool_loop = _body(
        HI, _assistant(tool_calls=[_call("toolu_01", "ping", "{}")]), _tool("toolu_01", "pong"),
        tools=[PING_TOOL], reasoning_effort="low",
    )  # fmt: skip
    assert "thinking" not in _translate(tool_loop)
    prefill = _body(HI, _assistant("Well,"), reasoning_effort="low")
    assert "thinking" not in _translate(prefill)
    next_question = _body(
        *tool_loop["messages"],
        _assistant("Pong."),
        _user("Again?"),
        tools=[PING_TOOL],
        reasoning_effort="low",
    )
    assert _translate(next_question)["thinking"] == {"type": "enabled", "budget_tokens": 2048}


def test_with_thinking_temperature_and_top_p_are_left_out() -> None:
    out = _translate(_body(HI, reasoning_effort="medium", temperature=0.2, top_p=0.5))
    assert out == {
        "max_tokens": 4096,
        "messages": [HI_TURN],
        "thinking": {"type": "enabled", "budget_tokens": 2048},
    }


@pytest.mark.parametrize(
    ("fields", "expected"),
    [
        ({"temperature": 1.7}, {"temperature": 1.0}),
        ({"temperature": 0.3}, {"temperature": 0.3}),
        ({"temperature": 0}, {"temperature": 0}),
        ({"top_p": 0.9}, {"top_p": 0.9}),
        ({"temperature": 0.3, "top_p": 0.9}, {"temperature": 0.3}),  # recent models refuse both together
    ],
    ids=["clamped", "kept", "zero", "top-p", "both"],
)
def test_sampling_settings(fields: dict, expected: dict) -> None:
    assert _translate(_body(HI, **fields)) == {**_only(_text("Hi")), **expected}


@pytest.mark.parametrize(
    ("stop", "expected"),
    [("END", ["END"]), (["END", "\n", "  ", "STOP"], ["END", "STOP"]), (["\n\n"], None), (None, None)],
    ids=["string", "list", "whitespace-only", "null"],
)
def test_stop_becomes_stop_sequences_without_the_whitespace_only_ones(
    stop: object, expected: list | None
) -> None:
    assert _translate(_body(HI, stop=stop)).get("stop_sequences") == expected


def test_user_and_safety_identifier_become_metadata_user_id() -> None:
    assert _translate(_body(HI, user="user-42"))["metadata"] == {"user_id": "user-42"}
    both = _body(HI, user="user-42", safety_identifier="hashed-42")
    assert _translate(both)["metadata"] == {"user_id": "hashed-42"}  # the field OpenAI replaced user with
    assert "metadata" not in _translate(_body(HI, user=""))


def test_response_format_becomes_an_instruction_after_the_system_blocks() -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}
    out = _translate(
        _body(
            {"role": "system", "content": [_text("Be brief.", cache_control=EPHEMERAL)]},
            HI,
            response_format={
                "type": "json_schema",
                "json_schema": {"name": "city", "schema": schema, "strict": True},
            },
        )
    )
    assert out["system"] == [
        _text("Be brief.", cache_control=EPHEMERAL),
        _text(
            "Answer with one JSON value that conforms to the JSON Schema below and nothing else: no prose, "
            'no code fences.\n{"type":"object","properties":{"city":{"type":"string"}},"required":["city"]}'
        ),
    ]
    out = _translate(_body(HI, response_format={"type": "json_object"}))
    assert out["system"] == [_text("Answer with one JSON object and nothing else: no prose, no code fences.")]
    assert "system" not in _translate(_body(HI, response_format={"type": "text"}))


def test_fields_anthropic_has_no_equivalent_for_are_left_out() -> None:
    body = _body(
        HI,
        n=1,
        logprobs=True,
        top_logprobs=2,
        seed=7,
        frequency_penalty=0.5,
        presence_penalty=0.5,
        logit_bias={"50256": -100},
        stream=True,
        stream_options={"include_usage": True},
        metadata={"ticket": "T-1"},
        service_tier="auto",
        store=False,
        prompt_cache_key="tenant-1",
        verbosity="low",
        modalities=["text"],
    )
    assert _translate(body) == _only(_text("Hi"))


# --- usage --------------------------------------------------------------------------------------------------

CACHED_USAGE = {
    "input_tokens": 100,
    "cache_creation_input_tokens": 2000,
    "cache_read_input_tokens": 3000,
    "cache_creation": {"ephemeral_5m_input_tokens": 1500, "ephemeral_1h_input_tokens": 500},
    "output_tokens": 50,
    "service_tier": "standard",
}


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (
            CACHED_USAGE,
            Usage(input=100, cache_read=3000, cache_write_5m=1500, cache_write_1h=500, output=50),
        ),
        (
            {**CACHED_USAGE, "cache_creation": None},
            Usage(input=100, cache_read=3000, cache_write_5m=2000, cache_write_1h=0, output=50),
        ),
        (
            {
                **CACHED_USAGE,
                "cache_creation": {"ephemeral_5m_input_tokens": None, "ephemeral_1h_input_tokens": None},
            },
            Usage(input=100, cache_read=3000, cache_write_5m=2000, cache_write_1h=0, output=50),
        ),
        (
            {**CACHED_USAGE, "cache_creation": {"ephemeral_1h_input_tokens": 2000}},
            Usage(input=100, cache_read=3000, cache_write_5m=0, cache_write_1h=2000, output=50),
        ),
        ({"input_tokens": 10, "output_tokens": 2}, Usage(10, 0, 0, 0, 2)),
        (
            {
                "input_tokens": 10,
                "output_tokens": 2,
                "cache_read_input_tokens": None,
                "cache_creation_input_tokens": None,
            },
            Usage(10, 0, 0, 0, 2),
        ),
    ],
    ids=["split", "no-split", "null-split", "all-1h", "plain", "null-cache"],
)
def test_anthropic_usage_in_canonical_form(usage: dict, expected: Usage) -> None:
    assert from_anthropic(usage) == expected


@pytest.mark.parametrize(
    "usage",
    [
        None,
        {},
        {"input_tokens": 10},
        {"output_tokens": 2},
        {"input_tokens": -1, "output_tokens": 2},
        {"input_tokens": "10", "output_tokens": 2},
        {"input_tokens": True, "output_tokens": 2},
        ["input_tokens", 10],
    ],
)
def test_an_object_that_is_not_usage_has_no_counts(usage: object) -> None:
    assert from_anthropic(usage) is None  # type: ignore[arg-type]
    assert chat_usage(usage) is None  # type: ignore[arg-type]


def test_chat_usage_counts_the_cached_buckets_in_the_prompt() -> None:
    assert chat_usage(CACHED_USAGE) == {
        "prompt_tokens": 5100,
        "completion_tokens": 50,
        "total_tokens": 5150,
        "prompt_tokens_details": {"cached_tokens": 3000, "cache_write_tokens": 2000},
    }
    with_thinking = {"input_tokens": 7, "output_tokens": 90, "output_tokens_details": {"thinking_tokens": 60}}
    assert chat_usage(with_thinking) == {
        "prompt_tokens": 7,
        "completion_tokens": 90,
        "total_tokens": 97,
        "prompt_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
        "completion_tokens_details": {"reasoning_tokens": 60},
    }


# --- the answer ---------------------------------------------------------------------------------------------


def _message(*content: dict, stop_reason: str | None = "end_turn", usage: dict | None = None) -> dict:
    return {
        "id": "msg_01AbC",
        "type": "message",
        "role": "assistant",
        "model": UPSTREAM_MODEL,
        "content": list(content),
        "stop_reason": stop_reason,
        "stop_sequence": None,
        "usage": usage or {"input_tokens": 12, "output_tokens": 5},
    }


def _answer(message: dict) -> dict:
    """The chat completion for ``message``, valid for the spec and the SDK, with its time stamp checked and
    then fixed."""
    before = int(time.time())
    completion = chat_from_message(message, model=MODEL)
    assert before <= completion["created"] <= time.time()
    _valid("CreateChatCompletionResponse", completion)
    ChatCompletion.model_validate(completion)
    return {**completion, "created": CREATED}


def _completion(reply: dict, finish_reason: str = "stop", usage: dict | None = None) -> dict:
    message = {"role": "assistant", "content": None, "refusal": None, "annotations": [], **reply}
    return {
        "id": CHAT_ID,
        "object": "chat.completion",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "message": message, "finish_reason": finish_reason, "logprobs": None}],
        "usage": usage or _chat_usage(12, 5),
    }


def _chat_usage(prompt: int, completion: int, cached: int = 0, written: int = 0) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        "prompt_tokens_details": {"cached_tokens": cached, "cache_write_tokens": written},
    }


def _tool_use(block_id: str, name: str, tool_input: dict) -> dict:
    return {"type": "tool_use", "id": block_id, "name": name, "input": tool_input}


def _chat_call(call_id: str, name: str, arguments: str) -> dict:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": arguments}}


TEXT_MESSAGE = _message(_text("Hello"), _text(" there!"))
TOOL_MESSAGE = _message(
    _text("Let me check."),
    _tool_use("toolu_01", "get_weather", {"city": "Paris"}),
    _tool_use("toolu_02", "get_weather", {"city": "Zürich", "units": ["c"]}),
    stop_reason="tool_use",
)
THINKING_MESSAGE = _message(
    {"type": "thinking", "thinking": "The user greets me.", "signature": "EqQBCgIYAhIM"},
    {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
    _text("Hi!"),
)


def test_text_blocks_are_the_content() -> None:
    assert _answer(TEXT_MESSAGE) == _completion({"content": "Hello there!"})


def test_tool_use_blocks_are_tool_calls_with_compact_json_arguments() -> None:
    assert _answer(TOOL_MESSAGE) == _completion(
        {
            "content": "Let me check.",
            "tool_calls": [
                _chat_call("toolu_01", "get_weather", '{"city":"Paris"}'),
                _chat_call("toolu_02", "get_weather", '{"city":"Zürich","units":["c"]}'),
            ],
        },
        "tool_calls",
    )
    calls_only = _message(_tool_use("toolu_01", "ping", {}), stop_reason="tool_use")
    assert _answer(calls_only) == _completion(
        {"content": None, "tool_calls": [_chat_call("toolu_01", "ping", "{}")]}, "tool_calls"
    )


def test_thinking_blocks_are_the_reasoning_content_and_redacted_thinking_is_not_shown() -> None:
    assert _answer(THINKING_MESSAGE) == _completion(
        {"content": "Hi!", "reasoning_content": "The user greets me."}
    )


def test_an_empty_answer_has_empty_content() -> None:
    assert _answer(_message()) == _completion({"content": ""})


def test_server_tool_blocks_and_citations_are_not_shown() -> None:
    message = _message(
        {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {"query": "weather"}},
        {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
        _text("Sunny.", citations=[{"type": "web_search_result_location", "url": "https://example.com",
                                    "title": "Weather", "encrypted_index": "Eo8B", "cited_text": "Sunny"}]),
    )  # fmt: skip
    assert _answer(message) == _completion({"content": "Sunny."})


@pytest.mark.parametrize(
    ("stop_reason", "finish_reason"),
    [
        ("end_turn", "stop"),
        ("stop_sequence", "stop"),
        ("pause_turn", "stop"),
        ("max_tokens", "length"),
        ("model_context_window_exceeded", "length"),
        ("tool_use", "tool_calls"),
        ("refusal", "content_filter"),
        ("a_reason_of_a_later_version", "stop"),
        (None, "stop"),
    ],
)
def test_stop_reasons_are_finish_reasons(stop_reason: str | None, finish_reason: str) -> None:
    assert (
        _answer(_message(_text("Hi"), stop_reason=stop_reason))["choices"][0]["finish_reason"]
        == finish_reason
    )
    if stop_reason in STOP_TO_FINISH:
        assert STOP_TO_FINISH[stop_reason] == finish_reason


def test_the_answer_usage_includes_the_cache_buckets() -> None:
    completion = _answer(_message(_text("Hi"), usage=CACHED_USAGE))
    assert completion["usage"] == _chat_usage(5100, 50, cached=3000, written=2000)


def test_without_usage_the_completion_has_none() -> None:
    message = {**_message(_text("Hi")), "usage": None}
    assert "usage" not in chat_from_message(message, model=MODEL)


def test_the_id_follows_the_message_id() -> None:
    assert chat_from_message(_message(), model=MODEL)["id"] == CHAT_ID
    no_id = {key: value for key, value in _message().items() if key != "id"}
    made_up = chat_from_message(no_id, model=MODEL)["id"]
    assert made_up.startswith("chatcmpl-") and len(made_up) > len("chatcmpl-")


# --- the stream ---------------------------------------------------------------------------------------------

START_USAGE = {
    "input_tokens": 12,
    "cache_creation_input_tokens": 0,
    "cache_read_input_tokens": 0,
    "output_tokens": 1,
}


def _start(usage: dict | None = None) -> dict:
    message = {**_message(usage=usage or START_USAGE), "content": [], "stop_reason": None}
    return {"type": "message_start", "message": message}


def _block(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _delta(index: int, **delta: object) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": delta}


def _text_delta(index: int, text: str) -> dict:
    return _delta(index, type="text_delta", text=text)


def _json_delta(index: int, piece: str) -> dict:
    return _delta(index, type="input_json_delta", partial_json=piece)


def _block_stop(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def _message_delta(stop_reason: str | None, usage: dict | None = None) -> dict:
    delta = {"stop_reason": stop_reason, "stop_sequence": None}
    return {"type": "message_delta", "delta": delta, "usage": usage or {"output_tokens": 5}}


PING = {"type": "ping"}
STOP = {"type": "message_stop"}
TEXT_BLOCK = {"type": "text", "text": ""}
THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}

STREAMS = {
    "text": [
        _start(), _block(0, TEXT_BLOCK), PING, _text_delta(0, "Hello"), _text_delta(0, " there!"), _block_stop(0),
        _message_delta("end_turn"), STOP,
    ],
    "thinking_then_text": [
        _start(), _block(0, THINKING_BLOCK), _delta(0, type="thinking_delta", thinking="The user "),
        _delta(0, type="thinking_delta", thinking="greets me."), _delta(0, type="signature_delta", signature="EqQBCgIYAhIM"),
        _block_stop(0), _block(1, {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"}), _block_stop(1),
        _block(2, TEXT_BLOCK), _text_delta(2, "Hi!"), _block_stop(2), _message_delta("end_turn"), STOP,
    ],
    "text_then_tool_calls": [
        _start(), _block(0, TEXT_BLOCK), _text_delta(0, "Let me check."), _block_stop(0),
        _block(1, _tool_use("toolu_01", "get_weather", {})), _json_delta(1, ""), _json_delta(1, '{"city": '),
        _json_delta(1, '"Paris"}'), _block_stop(1),
        _block(2, _tool_use("toolu_02", "get_weather", {})), _json_delta(2, '{"city": "Zürich", '),
        _json_delta(2, '"units": ["c"]}'), _block_stop(2),
        _message_delta("tool_use"), STOP,
    ],
    "server_tool": [
        _start(), _block(0, {"type": "server_tool_use", "id": "srvtoolu_01", "name": "web_search", "input": {}}),
        _json_delta(0, '{"query": "weather"}'), _block_stop(0),
        _block(1, {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []}), _block_stop(1),
        _block(2, {"type": "text", "text": "", "citations": []}),
        _delta(2, type="citations_delta", citation={"type": "web_search_result_location", "url": "https://example.com",
                                                    "title": "Weather", "encrypted_index": "Eo8B", "cited_text": "Sunny"}),
        _text_delta(2, "Sunny."), _block_stop(2), _message_delta("end_turn"), STOP,
    ],
}  # fmt: skip


def _run(events: list[dict], *, include_usage: bool = False) -> list[dict]:
    stream = MessagesStreamToChat(model=MODEL, include_usage=include_usage, created=CREATED)
    chunks = []
    for event in events:
        assert not stream.finished
        chunks += stream.feed(event)
    assert stream.finished == (events[-1] == STOP)
    for chunk in chunks:
        _valid("CreateChatCompletionStreamResponse", chunk)
        ChatCompletionChunk.model_validate(chunk)
    return chunks


def _chunk(delta: dict | None = None, finish_reason: str | None = None) -> dict:
    return {
        "id": CHAT_ID,
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": MODEL,
        "choices": [{"index": 0, "delta": delta or {}, "logprobs": None, "finish_reason": finish_reason}],
    }


ROLE = _chunk({"role": "assistant", "content": ""})


def test_a_text_stream() -> None:
    assert _run(STREAMS["text"]) == [
        ROLE,
        _chunk({"content": "Hello"}),
        _chunk({"content": " there!"}),
        _chunk(finish_reason="stop"),
    ]


def test_thinking_then_text() -> None:
    assert _run(STREAMS["thinking_then_text"]) == [
        ROLE,
        _chunk({"reasoning_content": "The user "}),
        _chunk({"reasoning_content": "greets me."}),
        _chunk({"content": "Hi!"}),
        _chunk(finish_reason="stop"),
    ]


def test_text_then_two_tool_calls_numbered_from_zero_with_their_json_pieces() -> None:
    def call(index: int, **fields: object) -> dict:
        return _chunk({"tool_calls": [{"index": index, **fields}]})

    assert _run(STREAMS["text_then_tool_calls"]) == [
        ROLE,
        _chunk({"content": "Let me check."}),
        call(0, id="toolu_01", type="function", function={"name": "get_weather", "arguments": ""}),
        call(0, function={"arguments": '{"city": '}),
        call(0, function={"arguments": '"Paris"}'}),
        call(1, id="toolu_02", type="function", function={"name": "get_weather", "arguments": ""}),
        call(1, function={"arguments": '{"city": "Zürich", '}),
        call(1, function={"arguments": '"units": ["c"]}'}),
        _chunk(finish_reason="tool_calls"),
    ]


def test_server_tool_blocks_and_citations_are_not_streamed() -> None:
    assert _run(STREAMS["server_tool"]) == [ROLE, _chunk({"content": "Sunny."}), _chunk(finish_reason="stop")]


def test_usage_from_message_start_is_replaced_not_added_to_by_message_delta() -> None:
    start = {**START_USAGE, "cache_creation_input_tokens": 100, "cache_read_input_tokens": 200}
    events = [_start(start), _block(0, TEXT_BLOCK), _text_delta(0, "Hi"), _block_stop(0)]
    stream = MessagesStreamToChat(model=MODEL, include_usage=True, created=CREATED)
    for event in events:
        stream.feed(event)
    assert stream.usage == start
    # A later message_delta restates some counts as null: those stand as they were.
    stream.feed(
        _message_delta(
            "end_turn", {"input_tokens": None, "cache_read_input_tokens": 200, "output_tokens": 40}
        )
    )
    assert stream.usage == {**start, "output_tokens": 40}
    assert stream.feed(STOP) == [
        {
            "id": CHAT_ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL, "choices": [],
            "usage": _chat_usage(312, 40, cached=200, written=100),
        }
    ]  # fmt: skip


def test_include_usage_adds_a_null_usage_to_each_chunk_and_a_usage_chunk_at_the_end() -> None:
    without = _run(STREAMS["text"])
    with_usage = _run(STREAMS["text"], include_usage=True)
    assert with_usage[:-1] == [{**chunk, "usage": None} for chunk in without]
    assert with_usage[-1] == {
        "id": CHAT_ID, "object": "chat.completion.chunk", "created": CREATED, "model": MODEL, "choices": [],
        "usage": _chat_usage(12, 5),
    }  # fmt: skip
    assert all("usage" not in chunk for chunk in without)


def test_ping_and_block_stops_give_nothing() -> None:
    stream = MessagesStreamToChat(model=MODEL, include_usage=False, created=CREATED)
    assert stream.feed(PING) == []
    assert stream.feed(_start()) == [ROLE]
    for event in (PING, _block(0, TEXT_BLOCK), PING, _block_stop(0), {"type": "a_later_event"}):
        assert stream.feed(event) == []


def test_text_is_never_held_back() -> None:
    stream = MessagesStreamToChat(model=MODEL, include_usage=False, created=CREATED)
    stream.feed(_start())
    stream.feed(_block(0, TEXT_BLOCK))
    for piece in ["Hel", "lo", " ", "wor", "ld"]:
        assert stream.feed(_text_delta(0, piece)) == [_chunk({"content": piece})]
    assert stream.feed(_text_delta(0, "")) == []


def test_nothing_comes_after_message_stop() -> None:
    stream = MessagesStreamToChat(model=MODEL, include_usage=True, created=CREATED)
    for event in STREAMS["text"]:
        stream.feed(event)
    assert stream.finished
    assert stream.feed(_start()) == []
    assert stream.feed(_text_delta(0, "late")) == []


def test_a_stream_that_never_says_why_it_stopped_finishes_with_stop() -> None:
    events = [_start(), _block(0, TEXT_BLOCK), _text_delta(0, "Hi"), _block_stop(0), STOP]
    assert _run(events) == [ROLE, _chunk({"content": "Hi"}), _chunk(finish_reason="stop")]


def test_a_stream_without_message_start_still_opens_with_the_role() -> None:
    chunks = _run([_block(0, TEXT_BLOCK), _text_delta(0, "Hi"), _message_delta("max_tokens"), STOP])
    assert [chunk["choices"][0]["delta"] for chunk in chunks] == [
        {"role": "assistant", "content": ""},
        {"content": "Hi"},
        {},
    ]
    assert chunks[-1]["choices"][0]["finish_reason"] == "length"
    assert len({chunk["id"] for chunk in chunks}) == 1


# The stream and the message Anthropic would have sent whole for it.
SAME_ANSWER = {
    "thinking_then_text": {**THINKING_MESSAGE, "usage": {"input_tokens": 12, "output_tokens": 5}},
    "text_then_tool_calls": TOOL_MESSAGE,
}


def _sdk_client(body: bytes) -> openai.OpenAI:
    """An openai client whose every request is answered with the event stream ``body``, in process."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": "text/event-stream"})

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return openai.OpenAI(
        api_key="sk-test", base_url="http://gateway.test/v1", http_client=http, max_retries=0
    )


@pytest.mark.parametrize("name", sorted(SAME_ANSWER))
def test_the_sdk_assembles_a_stream_into_the_completion_the_whole_message_gives(name: str) -> None:
    chunks = _run(STREAMS[name], include_usage=True)
    body = b"".join(b"data: " + orjson.dumps(chunk) + b"\n\n" for chunk in chunks) + b"data: [DONE]\n\n"
    client = _sdk_client(body)
    with client.chat.completions.stream(model=MODEL, messages=[{"role": "user", "content": "Hi"}]) as stream:
        streamed = stream.get_final_completion()
    whole = _answer(SAME_ANSWER[name])
    choice, expected = streamed.choices[0], whole["choices"][0]
    assert choice.finish_reason == expected["finish_reason"]
    assert choice.message.content == expected["message"]["content"]
    assert getattr(choice.message, "reasoning_content", None) == expected["message"].get("reasoning_content")
    calls = [
        (call.id, call.function.name, orjson.loads(call.function.arguments))
        for call in choice.message.tool_calls or ()
    ]
    assert calls == [
        (call["id"], call["function"]["name"], orjson.loads(call["function"]["arguments"]))
        for call in expected["message"].get("tool_calls", ())
    ]
    assert streamed.usage is not None and streamed.usage.model_dump(exclude_none=True) == whole["usage"]
    assert streamed.id == whole["id"]


# --- the fixtures are what Anthropic sends ------------------------------------------------------------------


@pytest.mark.parametrize("name", sorted(STREAMS))
def test_the_stream_fixtures_are_anthropic_stream_events(name: str) -> None:
    from pydantic import TypeAdapter

    events = TypeAdapter(anthropic.types.RawMessageStreamEvent)
    for event in STREAMS[name]:
        if event["type"] != "ping":  # the SDK handles pings before its types
            events.validate_python(event)


@pytest.mark.parametrize(
    "message", [TEXT_MESSAGE, TOOL_MESSAGE, THINKING_MESSAGE, _message(usage=CACHED_USAGE)]
)
def test_the_message_fixtures_are_anthropic_messages(message: dict) -> None:
    anthropic.types.Message.model_validate(message)


@pytest.mark.parametrize(
    "usage",
    [
        {"input_tokens": 10, "output_tokens": 2, "cache_read_input_tokens": 1.5},
        {"input_tokens": 10, "output_tokens": 2, "cache_creation": {"ephemeral_1h_input_tokens": -3}},
    ],
)
def test_an_optional_bucket_that_is_not_a_count_is_none(usage: dict) -> None:
    assert from_anthropic(usage) == Usage(input=10, output=2)
