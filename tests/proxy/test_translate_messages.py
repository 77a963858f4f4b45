"""Golden tests of the Messages API <-> chat completions translation (proxy/gateway/translate/messages.py).

Inputs and the exact expected outputs are written here. Every chat body produced is validated against
OpenAI's ``CreateChatCompletionRequest`` and the gateway's own chat validation, every chunk fed against
``CreateChatCompletionStreamResponse``; every Message and stream event is validated by the anthropic SDK's
models, and the streams are gathered by the SDK's own accumulator and read by its ``messages.stream()``
helper.
"""

import copy

import anthropic
import httpx2
import orjson
import pydantic
import pytest
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent

from proxy.gateway.schemas import validate_chat_request
from proxy.gateway.translate.chat_parts import sse_event as sse
from proxy.gateway.translate.messages import (
    FINISH_TO_STOP,
    ChatStreamToMessages,
    chat_body_from_messages,
    message_from_chat,
    usage_from_chat,
)
from tests.spec import validator_for

MESSAGE_ID = "msg_01XFDUDYJgAACzvnptvVoYEL"
MODEL = "claude-sonnet-4-5"
CREATED = 1741476777

WEATHER = {
    "name": "get_weather",
    "description": "Weather for a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
}
CHAT_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}
FORCED = {"type": "function", "function": {"name": "get_weather"}}
PDF = "JVBERi0xLjQK"
PNG = "iVBORw0KGgo="
EVENT = pydantic.TypeAdapter(RawMessageStreamEvent)


# --- helpers ------------------------------------------------------------------------------------------------


def _chat(body: dict) -> dict:
    """The chat body for ``body``, after checking that the input was not touched and that the output is a
    valid chat request both for OpenAI's spec and for the gateway's chat path."""
    before = copy.deepcopy(body)
    out = chat_body_from_messages(body)
    assert body == before
    assert not {"model", "stream", "stream_options"} & out.keys()
    full = {"model": "upstream-model", **out}
    errors = [
        f"{list(e.absolute_path)}: {e.message}"
        for e in validator_for("CreateChatCompletionRequest").iter_errors(full)
    ]
    assert not errors, errors
    validate_chat_request(copy.deepcopy(full))
    return out


def _request(*messages: dict, **fields: object) -> dict:
    return {"model": MODEL, "max_tokens": 1024, "messages": list(messages), **fields}


def _user(content: object) -> dict:
    return {"role": "user", "content": content}


def _assistant(content: object) -> dict:
    return {"role": "assistant", "content": content}


def _no_extras(value: object) -> None:
    """No field the SDK's models don't know, at any depth: a misspelt key would otherwise pass silently,
    since the SDK keeps unknown fields."""
    if isinstance(value, pydantic.BaseModel):
        assert not value.model_extra, (type(value).__name__, value.model_extra)
        for name in type(value).model_fields:
            _no_extras(getattr(value, name))
    elif isinstance(value, list):
        for item in value:
            _no_extras(item)


def _valid_message(message: dict) -> None:
    _no_extras(Message.model_validate(message))


def _completion(
    message: dict, finish_reason: str | None = "stop", usage: dict | None = None, **choice: object
) -> dict:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "upstream-model",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", **message},
                "finish_reason": finish_reason,
                **choice,
            }
        ],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


def _answer(completion: dict) -> dict:
    message = message_from_chat(completion, message_id=MESSAGE_ID, model=MODEL)
    _valid_message(message)
    return message


def _usage(prompt: int, completion: int, **details: object) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **details,
    }


def _anthropic_usage(input_tokens: int, output_tokens: int, read: int = 0, written: int = 0) -> dict:
    return {
        "input_tokens": input_tokens,
        "cache_creation_input_tokens": written,
        "cache_read_input_tokens": read,
        "output_tokens": output_tokens,
    }


def _message(
    content: list[dict],
    stop_reason: str = "end_turn",
    usage: dict | None = None,
    stop_sequence: str | None = None,
) -> dict:
    return {
        "id": MESSAGE_ID,
        "type": "message",
        "role": "assistant",
        "model": MODEL,
        "content": content,
        "stop_reason": stop_reason,
        "stop_sequence": stop_sequence,
        "usage": usage or _anthropic_usage(0, 0),
    }


# Chunks, each in the full shape OpenAI's spec gives a stream chunk.


def _chunk(choices: list[dict], usage: dict | None = None) -> dict:
    chunk = {
        "id": "chatcmpl-1",
        "object": "chat.completion.chunk",
        "created": CREATED,
        "model": "upstream-model",
        "choices": choices,
    }
    if usage is not None:
        chunk["usage"] = usage
    return chunk


def _delta(finish_reason: str | None = None, **delta: object) -> dict:
    return _chunk([{"index": 0, "delta": delta, "finish_reason": finish_reason}])


def _call(
    index: int | None, call_id: str | None = None, name: str | None = None, arguments: str | None = None
) -> dict:
    call: dict = {} if index is None else {"index": index}
    if call_id is not None:
        call.update(id=call_id, type="function")
    function = {key: value for key, value in (("name", name), ("arguments", arguments)) if value is not None}
    if function:
        call["function"] = function
    return _delta(tool_calls=[call])


def _usage_chunk(usage: dict) -> dict:
    return _chunk([], usage)


# The events, as Anthropic spells them.


def _started(input_tokens: int) -> dict:
    message = {**_message([], usage=_anthropic_usage(input_tokens, 0)), "stop_reason": None}
    return {"type": "message_start", "message": message}


def _opened(index: int, block: dict) -> dict:
    return {"type": "content_block_start", "index": index, "content_block": block}


def _text(index: int, text: str) -> dict:
    return {"type": "content_block_delta", "index": index, "delta": {"type": "text_delta", "text": text}}


def _thinking(index: int, text: str) -> dict:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "thinking_delta", "thinking": text},
    }


def _signed(index: int) -> dict:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "signature_delta", "signature": ""},
    }


def _json(index: int, piece: str) -> dict:
    return {
        "type": "content_block_delta",
        "index": index,
        "delta": {"type": "input_json_delta", "partial_json": piece},
    }


def _closed(index: int) -> dict:
    return {"type": "content_block_stop", "index": index}


def _ended(stop_reason: str, usage: dict) -> dict:
    return {
        "type": "message_delta",
        "delta": {"stop_reason": stop_reason, "stop_sequence": None},
        "usage": usage,
    }


STOPPED = {"type": "message_stop"}
TEXT_BLOCK = {"type": "text", "text": ""}
THINKING_BLOCK = {"type": "thinking", "thinking": "", "signature": ""}


def _tool_block(call_id: str, name: str) -> dict:
    return {"type": "tool_use", "id": call_id, "name": name, "input": {}}


def _stream(
    chunks: list[dict],
    *,
    input_tokens: int = 20,
    output_tokens: int = 0,
    ordered: bool = True,
    to_spec: bool = True,
) -> list[dict]:
    """The events for ``chunks``, each validated; ``to_spec=False`` for the chunks of an upstream that strays
    from OpenAI's spec, ``ordered=False`` for a stream whose deltas may go back to a closed block."""
    for chunk in chunks if to_spec else ():
        errors = [e.message for e in validator_for("CreateChatCompletionStreamResponse").iter_errors(chunk)]
        assert not errors, errors
    stream = ChatStreamToMessages(message_id=MESSAGE_ID, model=MODEL, input_tokens=input_tokens)
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish(output_tokens=output_tokens)
    for event in events:
        _no_extras(EVENT.validate_python(event))
    if ordered:
        _check_order(events)
    return events


def _check_order(events: list[dict]) -> None:
    """message_start first; blocks numbered 0, 1, 2..., one open at a time, each delta inside its open block
    and of its kind; then message_delta and message_stop, with nothing left open."""
    assert events[0]["type"] == "message_start"
    assert [event["type"] for event in events[-2:]] == ["message_delta", "message_stop"]
    kinds = {
        "text": ("text_delta",),
        "thinking": ("thinking_delta", "signature_delta"),
        "tool_use": ("input_json_delta",),
    }
    opened: list[str] = []
    open_index = None
    for event in events[1:-2]:
        if event["type"] == "content_block_start":
            assert open_index is None and event["index"] == len(opened), event
            opened.append(event["content_block"]["type"])
            open_index = event["index"]
        elif event["type"] == "content_block_delta":
            assert event["index"] == open_index and event["delta"]["type"] in kinds[opened[open_index]], event
        else:
            assert open_index is not None and event == _closed(open_index), event
            open_index = None
    assert open_index is None


def _gathered(events: list[dict]) -> dict:
    """The Message the SDK's accumulator builds from ``events``."""
    snapshot = None
    buffers: dict[int, bytes] = {}
    for event in events:
        snapshot = accumulate_event(
            event=EVENT.validate_python(event), current_snapshot=snapshot, json_bufs=buffers
        )
    assert snapshot is not None
    return snapshot.model_dump(mode="json", exclude_none=True)


def _plain(message: dict) -> dict:
    """``message`` as the SDK dumps it, for comparing with what its accumulator built."""
    return Message.model_validate(message).model_dump(mode="json", exclude_none=True)


def _sdk_client(body: bytes, content_type: str) -> anthropic.Anthropic:
    """An anthropic client whose every request is answered with ``body``, in process."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return anthropic.Anthropic(
        api_key="sk-ant-test", base_url="http://gateway.test", http_client=http, max_retries=0
    )


# --- the request: system prompts ----------------------------------------------------------------------------


def test_a_string_system_and_a_string_message() -> None:
    body = _request(_user("Hello!"), system="Be terse.")
    assert _chat(body) == {
        "messages": [{"role": "system", "content": "Be terse."}, {"role": "user", "content": "Hello!"}],
        "max_tokens": 1024,
    }


def test_system_blocks_join_into_one_message_and_cache_control_goes() -> None:
    body = _request(
        _user("Hi"),
        system=[
            {"type": "text", "text": "You are Claude Code, Anthropic's official CLI for Claude."},
            {"type": "text", "text": "Use the tools.", "cache_control": {"type": "ephemeral"}},
        ],
    )
    assert _chat(body)["messages"] == [
        {
            "role": "system",
            "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\nUse the tools.",
        },
        {"role": "user", "content": "Hi"},
    ]


def test_system_messages_inside_messages_merge_when_leading_and_stay_in_place_later() -> None:
    body = _request(
        {"role": "system", "content": "Project rules."},
        {"role": "system", "content": [{"type": "text", "text": "Use tabs."}]},
        _user("Hi"),
        _assistant("Hello."),
        {"role": "system", "content": "The user changed mode."},
        _user("Go on."),
        system=[{"type": "text", "text": "Be terse.", "cache_control": {"type": "ephemeral", "ttl": "1h"}}],
    )
    assert _chat(body)["messages"] == [
        {"role": "system", "content": "Be terse.\n\nProject rules.\n\nUse tabs."},
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "system", "content": "The user changed mode."},
        {"role": "user", "content": "Go on."},
    ]
    # With no top-level system the leading system messages still make the system prompt.
    assert _chat(_request({"role": "system", "content": "Rules."}, _user("Hi")))["messages"] == [
        {"role": "system", "content": "Rules."},
        {"role": "user", "content": "Hi"},
    ]


# --- the request: content -----------------------------------------------------------------------------------


def test_text_blocks_and_images_from_both_sources() -> None:
    body = _request(
        _user([{"type": "text", "text": "Only text.", "cache_control": {"type": "ephemeral"}}]),
        _user(
            [
                {"type": "text", "text": "What are these?"},
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "image", "source": {"type": "url", "url": "https://example.com/cat.jpg"}},
                {"type": "image", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}},
            ]
        ),
        _user(
            [
                {"type": "text", "text": "<system-reminder>Be careful.</system-reminder>"},
                {"type": "text", "text": "Fix it."},
            ]
        ),
    )
    assert _chat(body)["messages"] == [
        {"role": "user", "content": "Only text."},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "What are these?"},
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/cat.jpg"}},
            ],
        },
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "<system-reminder>Be careful.</system-reminder>"},
                {"type": "text", "text": "Fix it."},
            ],
        },
    ]


def test_documents_inline_pdfs_as_files_plain_text_as_text_and_urls_left_out() -> None:
    body = _request(
        _user(
            [
                {
                    "type": "document",
                    "title": "Report",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                },
                {
                    "type": "document",
                    "source": {"type": "base64", "media_type": "application/pdf", "data": PDF},
                    "citations": {"enabled": True},
                },
                {
                    "type": "document",
                    "title": "notes.txt",
                    "source": {"type": "text", "media_type": "text/plain", "data": "Line one."},
                },
                {
                    "type": "document",
                    "source": {
                        "type": "content",
                        "content": [
                            {"type": "text", "text": "Part A."},
                            {"type": "image", "source": {"type": "url", "url": "https://example.com/a.png"}},
                        ],
                    },
                },
                {"type": "document", "source": {"type": "content", "content": "Part B."}},
                {"type": "document", "source": {"type": "url", "url": "https://example.com/paper.pdf"}},
                {"type": "document", "source": {"type": "file", "file_id": "file_011CNha8iCJcU1wXNR6q4V8w"}},
                {
                    "type": "search_result",
                    "source": "https://example.com/wiki",
                    "title": "Wiki",
                    "content": [{"type": "text", "text": "A fact."}],
                },
                {"type": "text", "text": "Summarise."},
            ]
        )
    )
    assert _chat(body)["messages"] == [
        {
            "role": "user",
            "content": [
                {
                    "type": "file",
                    "file": {"filename": "Report.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
                },
                {
                    "type": "file",
                    "file": {"filename": "document.pdf", "file_data": f"data:application/pdf;base64,{PDF}"},
                },
                {"type": "text", "text": "Line one."},
                {"type": "text", "text": "Part A."},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png"}},
                {"type": "text", "text": "Part B."},
                {"type": "text", "text": "A fact."},
                {"type": "text", "text": "Summarise."},
            ],
        }
    ]


def test_tool_use_and_tool_result_round_trip_with_the_same_ids() -> None:
    body = _request(
        _user("Weather in Paris and Rome?"),
        _assistant(
            [
                {"type": "text", "text": "Checking both."},
                {"type": "tool_use", "id": "toolu_01A", "name": "get_weather", "input": {"city": "Paris"}},
                {
                    "type": "tool_use",
                    "id": "toolu_01B",
                    "name": "get_weather",
                    "input": {"city": "Rome"},
                    "cache_control": {"type": "ephemeral"},
                },
            ]
        ),
        _user(
            [
                {"type": "text", "text": "Also, use Celsius."},
                {"type": "tool_result", "tool_use_id": "toolu_01A", "content": "18C"},
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01B",
                    "content": [
                        {"type": "text", "text": "21C"},
                        {"type": "text", "text": "sunny"},
                        {
                            "type": "image",
                            "source": {"type": "base64", "media_type": "image/png", "data": PNG},
                        },
                    ],
                },
            ]
        ),
        _assistant([{"type": "tool_use", "id": "toolu_01C", "name": "get_weather", "input": {}}]),
        _user(
            [
                {
                    "type": "tool_result",
                    "tool_use_id": "toolu_01C",
                    "content": "City is required.",
                    "is_error": True,
                }
            ]
        ),
        _assistant(
            [{"type": "tool_use", "id": "toolu_01D", "name": "get_weather", "input": {"city": "Oslo"}}]
        ),
        _user([{"type": "tool_result", "tool_use_id": "toolu_01D", "is_error": True}]),
        tools=[WEATHER],
    )
    assert _chat(body)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking both.",
            "tool_calls": [
                {
                    "id": "toolu_01A",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "toolu_01B",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01A", "content": "18C"},
        {"role": "tool", "tool_call_id": "toolu_01B", "content": "21C\nsunny"},
        {
            "role": "user",
            "content": [
                {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                {"type": "text", "text": "Also, use Celsius."},
            ],
        },
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01C",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": "{}"},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01C", "content": "Error: City is required."},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "toolu_01D",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "toolu_01D", "content": "Error"},
    ]


def test_an_answer_sent_back_keeps_its_tool_ids_both_ways() -> None:
    """A chat call id becomes the tool_use id, and the next request sends it back as the same call id."""
    completion = _completion(
        {
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Xy1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Oslo"}'},
                }
            ],
        },
        "tool_calls",
    )
    answer = _answer(completion)
    body = _request(
        _user("Oslo?"),
        _assistant(answer["content"]),
        _user([{"type": "tool_result", "tool_use_id": answer["content"][0]["id"], "content": "3C"}]),
        tools=[WEATHER],
    )
    assert _chat(body)["messages"][1:] == [
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_Xy1",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        {"role": "tool", "tool_call_id": "call_Xy1", "content": "3C"},
    ]


def test_thinking_blocks_are_dropped_and_a_turn_of_only_thinking_goes() -> None:
    body = _request(
        _user("Think, then answer."),
        _assistant(
            [
                {"type": "thinking", "thinking": "Let me see.", "signature": "EqQBCkgIARABGAIiQL"},
                {"type": "redacted_thinking", "data": "EmwKAhgBEgy3va3pzix"},
                {"type": "text", "text": "Forty-two."},
            ]
        ),
        _user("And again?"),
        _assistant([{"type": "thinking", "thinking": "Hmm.", "signature": "EqQB"}]),
        _user("Well?"),
    )
    assert _chat(body)["messages"] == [
        {"role": "user", "content": "Think, then answer."},
        {"role": "assistant", "content": "Forty-two."},
        {"role": "user", "content": "And again?"},
        {"role": "user", "content": "Well?"},
    ]


def test_an_assistants_text_blocks_join_as_they_are() -> None:
    # Citations cut an answer into blocks mid-sentence.
    body = _request(
        _user("Who?"),
        _assistant(
            [{"type": "text", "text": "According to the report, "}, {"type": "text", "text": "Ada did."}]
        ),
    )
    assert _chat(body)["messages"][1] == {"role": "assistant", "content": "According to the report, Ada did."}


def test_server_tools_and_their_blocks_are_dropped() -> None:
    body = _request(
        _user("Search and edit."),
        _assistant(
            [
                {
                    "type": "server_tool_use",
                    "id": "srvtoolu_01",
                    "name": "web_search",
                    "input": {"query": "news"},
                },
                {"type": "web_search_tool_result", "tool_use_id": "srvtoolu_01", "content": []},
                {"type": "text", "text": "Found nothing."},
            ]
        ),
        _user("Fine."),
        tools=[
            {"type": "web_search_20250305", "name": "web_search", "max_uses": 5},
            {"type": "bash_20250124", "name": "bash"},
            {"type": "text_editor_20250728", "name": "str_replace_based_edit_tool"},
            {
                "type": "computer_20250124",
                "name": "computer",
                "display_width_px": 1024,
                "display_height_px": 768,
            },
            {"type": "code_execution_20250825", "name": "code_execution"},
            {**WEATHER, "type": "custom", "cache_control": {"type": "ephemeral"}, "strict": True},
        ],
        tool_choice={"type": "tool", "name": "web_search"},
    )
    out = _chat(body)
    assert out["tools"] == [CHAT_WEATHER]
    assert "tool_choice" not in out  # it named a tool that isn't on this route
    assert out["messages"][1] == {"role": "assistant", "content": "Found nothing."}


def test_with_only_server_tools_no_tools_and_no_tool_choice_go() -> None:
    body = _request(
        _user("Hi"),
        tools=[{"type": "web_search_20250305", "name": "web_search"}],
        tool_choice={"type": "any", "disable_parallel_tool_use": True},
    )
    assert _chat(body) == {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1024}


@pytest.mark.parametrize(
    ("tool_choice", "chat"),
    [
        (None, {}),
        ({"type": "auto"}, {"tool_choice": "auto"}),
        ({"type": "any"}, {"tool_choice": "required"}),
        ({"type": "tool", "name": "get_weather"}, {"tool_choice": FORCED}),
        ({"type": "none"}, {"tool_choice": "none"}),
        ({"type": "auto", "disable_parallel_tool_use": True}, {"tool_choice": "auto", "parallel_tool_calls": False}),
        ({"type": "any", "disable_parallel_tool_use": True}, {"tool_choice": "required", "parallel_tool_calls": False}),
        ({"type": "tool", "name": "get_weather", "disable_parallel_tool_use": True},
         {"tool_choice": FORCED, "parallel_tool_calls": False}),
        ({"type": "auto", "disable_parallel_tool_use": False}, {"tool_choice": "auto"}),
        ({"type": "tool", "name": "not_a_tool"}, {}),
    ],
    ids=["absent", "auto", "any", "tool", "none", "auto-serial", "any-serial", "tool-serial", "auto-parallel",
         "unknown-tool"],
)  # fmt: skip
def test_tool_choice_forms(tool_choice: dict | None, chat: dict) -> None:
    body = _request(_user("Hi"), tools=[WEATHER, {"name": "ping", "input_schema": {"type": "object"}}])
    if tool_choice is not None:
        body["tool_choice"] = tool_choice
    out = _chat(body)
    assert out["tools"] == [
        CHAT_WEATHER,
        {"type": "function", "function": {"name": "ping", "parameters": {"type": "object"}}},
    ]
    assert {key: out[key] for key in ("tool_choice", "parallel_tool_calls") if key in out} == chat


# --- the request: settings ----------------------------------------------------------------------------------


def test_settings_pass_under_chat_names_and_top_k_goes() -> None:
    body = _request(
        _user("Hi"),
        max_tokens=256,
        stop_sequences=["\n\nHuman:", "END"],
        temperature=0.3,
        top_p=0.9,
        top_k=40,
        metadata={"user_id": "user_2f1a"},
    )
    assert _chat(body) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "max_tokens": 256,
        "stop": ["\n\nHuman:", "END"],
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "user_2f1a",
    }


def test_stop_sequences_are_cut_to_chats_four_and_an_empty_list_goes() -> None:
    assert _chat(_request(_user("Hi"), stop_sequences=["a", "b", "c", "d", "e"]))["stop"] == [
        "a",
        "b",
        "c",
        "d",
    ]
    assert "stop" not in _chat(_request(_user("Hi"), stop_sequences=[]))
    assert "user" not in _chat(_request(_user("Hi"), metadata={"user_id": None}))


@pytest.mark.parametrize(
    ("thinking", "output_config", "effort"),
    [
        (None, None, None),
        ({"type": "disabled"}, None, None),
        ({"type": "disabled"}, {"effort": "high"}, None),
        (None, {"effort": "high"}, None),
        ({"type": "enabled", "budget_tokens": 1024}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4000}, None, "low"),
        ({"type": "enabled", "budget_tokens": 4096}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 10000}, None, "medium"),
        ({"type": "enabled", "budget_tokens": 16384}, None, "high"),
        ({"type": "enabled", "budget_tokens": 31999}, None, "high"),
        ({"type": "enabled", "budget_tokens": 31999}, {"effort": "low"}, "low"),
        ({"type": "adaptive"}, None, None),
        ({"type": "adaptive", "display": "summarized"}, {"effort": "medium"}, "medium"),
        ({"type": "adaptive"}, {"effort": "xhigh"}, "high"),
        ({"type": "adaptive"}, {"effort": "max"}, "high"),
    ],
    ids=[
        "absent", "disabled", "disabled-with-effort", "effort-alone", "budget-1024", "budget-4000", "budget-4096",
        "budget-10000", "budget-16384", "budget-31999", "budget-and-effort", "adaptive", "adaptive-medium",
        "adaptive-xhigh", "adaptive-max",
    ],
)  # fmt: skip
def test_thinking_becomes_a_reasoning_effort_only_when_on(
    thinking: dict | None, output_config: dict | None, effort: str | None
) -> None:
    body = _request(_user("Hi"), max_tokens=40000)
    if thinking is not None:
        body["thinking"] = thinking
    if output_config is not None:
        body["output_config"] = output_config
    assert _chat(body).get("reasoning_effort") == effort


def test_a_json_schema_output_format_becomes_a_response_format() -> None:
    schema = {
        "type": "object",
        "properties": {"name": {"type": "string"}},
        "required": ["name"],
        "additionalProperties": False,
    }
    expected = {"type": "json_schema", "json_schema": {"name": "output", "schema": schema}}
    body = _request(_user("Who?"), output_config={"format": {"type": "json_schema", "schema": schema}})
    assert _chat(body)["response_format"] == expected
    # The beta's name for it, still accepted by Anthropic for a while.
    assert (
        _chat(_request(_user("Who?"), output_format={"type": "json_schema", "schema": schema}))[
            "response_format"
        ]
        == expected
    )
    assert "response_format" not in _chat(_request(_user("Who?"), output_config={"effort": "low"}))


def test_anthropics_service_fields_are_dropped() -> None:
    body = _request(
        _user("Hi"),
        service_tier="standard_only",
        container="container_011CPR5CNjB747bTd36fQLFk",
        mcp_servers=[{"type": "url", "url": "https://example.com/sse", "name": "docs"}],
        context_management={"edits": [{"type": "clear_tool_uses_20250919"}]},
        inference_geo="us",
        a_field_from_next_year={"x": 1},
    )
    assert _chat(body) == {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 1024}


BASH_SCHEMA = {
    "type": "object",
    "properties": {"command": {"type": "string"}, "description": {"type": "string"}},
    "required": ["command"],
    "additionalProperties": False,
    "$schema": "http://json-schema.org/draft-07/schema#",
}


def test_a_claude_code_request() -> None:
    """What Claude Code sends for a turn of its agent loop, trimmed: cache breakpoints everywhere, thinking
    with a budget, a tool result next to a reminder, the context-editing field."""
    body = {
        "model": "claude-sonnet-4-5-20250929",
        "max_tokens": 32000,
        "stream": True,
        "system": [
            {
                "type": "text",
                "text": "You are Claude Code, Anthropic's official CLI for Claude.",
                "cache_control": {"type": "ephemeral"},
            },
            {
                "type": "text",
                "text": "You are an interactive CLI tool.",
                "cache_control": {"type": "ephemeral"},
            },
        ],
        "messages": [
            _user(
                [
                    {"type": "text", "text": "<system-reminder>Today is Monday.</system-reminder>"},
                    {"type": "text", "text": "Run the tests.", "cache_control": {"type": "ephemeral"}},
                ]
            ),
            _assistant(
                [
                    {
                        "type": "thinking",
                        "thinking": "I should run pytest.",
                        "signature": "EqQBCkgIARABGAIiQL",
                    },
                    {"type": "text", "text": "Running them."},
                    {
                        "type": "tool_use",
                        "id": "toolu_01Bash",
                        "name": "Bash",
                        "input": {"command": "pytest -q", "description": "Run tests"},
                    },
                ]
            ),
            _user(
                [
                    {
                        "type": "tool_result",
                        "tool_use_id": "toolu_01Bash",
                        "content": [{"type": "text", "text": "1 failed, 9 passed"}],
                        "cache_control": {"type": "ephemeral"},
                    },
                    {"type": "text", "text": "<system-reminder>The todo list is empty.</system-reminder>"},
                ]
            ),
        ],
        "tools": [
            {
                "name": "Bash",
                "description": "Executes a bash command.",
                "input_schema": BASH_SCHEMA,
            },
        ],
        "metadata": {"user_id": "user_8a2f_account__session_4c1d"},
        "thinking": {"type": "enabled", "budget_tokens": 31999},
        "temperature": 1,
        "context_management": {"edits": [{"type": "clear_thinking_20251015", "keep": "all"}]},
    }
    assert _chat(body) == {
        "messages": [
            {
                "role": "system",
                "content": "You are Claude Code, Anthropic's official CLI for Claude.\n\nYou are an interactive CLI tool.",
            },
            {
                "role": "user",
                "content": [
                    {"type": "text", "text": "<system-reminder>Today is Monday.</system-reminder>"},
                    {"type": "text", "text": "Run the tests."},
                ],
            },
            {
                "role": "assistant",
                "content": "Running them.",
                "tool_calls": [
                    {
                        "id": "toolu_01Bash",
                        "type": "function",
                        "function": {
                            "name": "Bash",
                            "arguments": '{"command":"pytest -q","description":"Run tests"}',
                        },
                    },
                ],
            },
            {"role": "tool", "tool_call_id": "toolu_01Bash", "content": "1 failed, 9 passed"},
            {"role": "user", "content": "<system-reminder>The todo list is empty.</system-reminder>"},
        ],
        "max_tokens": 32000,
        "temperature": 1,
        "user": "user_8a2f_account__session_4c1d",
        "reasoning_effort": "high",
        "tools": [
            {
                "type": "function",
                "function": {
                    "name": "Bash",
                    "description": "Executes a bash command.",
                    "parameters": BASH_SCHEMA,
                },
            }
        ],
    }


# --- the answer ---------------------------------------------------------------------------------------------


def test_a_text_answer() -> None:
    completion = _completion({"content": "Hello there!"}, usage=_usage(11, 4))
    assert _answer(completion) == _message(
        [{"type": "text", "text": "Hello there!"}], usage=_anthropic_usage(11, 4)
    )


def test_tool_calls_become_tool_use_blocks_after_the_text() -> None:
    completion = _completion(
        {
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'},
                },
                {"id": "call_b", "type": "function", "function": {"name": "ping", "arguments": ""}},
            ],
        },
        "tool_calls",
        _usage(30, 12),
    )
    assert _answer(completion) == _message(
        [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
            {"type": "tool_use", "id": "call_b", "name": "ping", "input": {}},
        ],
        "tool_use",
        _anthropic_usage(30, 12),
    )


def test_empty_text_is_left_out_and_missing_ids_are_derived_from_the_message_id() -> None:
    completion = _completion(
        {
            "content": "",
            "tool_calls": [
                {"type": "function", "function": {"name": "a", "arguments": "{}"}},
                {"id": "", "type": "function", "function": {"name": "b", "arguments": "{}"}},
            ],
        },
        "tool_calls",
    )
    assert _answer(completion)["content"] == [
        {"type": "tool_use", "id": "toolu_01XFDUDYJgAACzvnptvVoYEL_0", "name": "a", "input": {}},
        {"type": "tool_use", "id": "toolu_01XFDUDYJgAACzvnptvVoYEL_1", "name": "b", "input": {}},
    ]
    assert _answer(_completion({"content": None}))["content"] == []


@pytest.mark.parametrize(
    ("arguments", "tool_input"),
    [
        ('{"city": "Paris"}', {"city": "Paris"}),
        ('{"city": "Par', {}),
        ("[1, 2]", {}),
        ('"Paris"', {}),
        ("", {}),
        (None, {}),
        ({"city": "Paris"}, {"city": "Paris"}),
    ],
    ids=["object", "cut-short", "array", "string", "empty", "missing", "already-parsed"],
)
def test_arguments_that_are_not_a_json_object_give_an_empty_input(
    arguments: object, tool_input: dict
) -> None:
    function: dict = {"name": "get_weather"}
    if arguments is not None:
        function["arguments"] = arguments
    completion = _completion(
        {"content": None, "tool_calls": [{"id": "call_a", "type": "function", "function": function}]},
        "tool_calls",
    )
    assert _answer(completion)["content"] == [
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": tool_input}
    ]


@pytest.mark.parametrize("field", ["reasoning_content", "reasoning"])
def test_reasoning_is_a_thinking_block_first(field: str) -> None:
    completion = _completion({"content": "42.", field: "Six times seven."}, usage=_usage(8, 30))
    assert _answer(completion) == _message(
        [
            {"type": "thinking", "thinking": "Six times seven.", "signature": ""},
            {"type": "text", "text": "42."},
        ],
        usage=_anthropic_usage(8, 30),
    )


def test_a_refusal_is_its_text() -> None:
    completion = _completion({"content": None, "refusal": "I can't help with that."})
    assert _answer(completion)["content"] == [{"type": "text", "text": "I can't help with that."}]


def test_the_finish_reasons_table() -> None:
    assert FINISH_TO_STOP == {
        "stop": "end_turn",
        "length": "max_tokens",
        "tool_calls": "tool_use",
        "function_call": "tool_use",
        "content_filter": "refusal",
    }


CALL = {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}


@pytest.mark.parametrize(
    ("finish_reason", "tool_calls", "choice", "stop_reason", "stop_sequence"),
    [
        ("stop", None, {}, "end_turn", None),
        ("length", None, {}, "max_tokens", None),
        ("tool_calls", [CALL], {}, "tool_use", None),
        ("function_call", [CALL], {}, "tool_use", None),
        ("tool_calls", None, {}, "end_turn", None),
        ("content_filter", None, {}, "refusal", None),
        (None, None, {}, "end_turn", None),
        ("insufficient_system_resource", None, {}, "end_turn", None),
        ("stop", [CALL], {}, "tool_use", None),
        ("length", [CALL], {}, "max_tokens", None),
        ("stop", None, {"stop_reason": "END"}, "stop_sequence", "END"),
        ("stop", None, {"matched_stop": "END"}, "stop_sequence", "END"),
        ("stop", None, {"stop_reason": 151645}, "end_turn", None),
        ("stop", None, {"stop_reason": None}, "end_turn", None),
    ],
    ids=[
        "stop", "length", "tool_calls", "function_call", "tool_calls-without-calls", "content_filter", "none",
        "upstreams-own", "stop-with-calls", "length-with-calls", "vllm-stop-string", "sglang-stop-string",
        "stop-token", "stop-reason-null",
    ],
)  # fmt: skip
def test_finish_reasons(
    finish_reason: str | None,
    tool_calls: list | None,
    choice: dict,
    stop_reason: str,
    stop_sequence: str | None,
) -> None:
    message: dict = {"content": "Done."}
    if tool_calls:
        message["tool_calls"] = tool_calls
    answer = _answer(_completion(message, finish_reason, **choice))
    assert (answer["stop_reason"], answer["stop_sequence"]) == (stop_reason, stop_sequence)


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (_usage(100, 20), _anthropic_usage(100, 20)),
        (_usage(100, 20, prompt_tokens_details={"cached_tokens": 64}), _anthropic_usage(36, 20, read=64)),
        (_usage(100, 20, prompt_tokens_details={"cached_tokens": 0, "audio_tokens": 0}), _anthropic_usage(100, 20)),
        (_usage(100, 20, prompt_cache_hit_tokens=80, prompt_cache_miss_tokens=20), _anthropic_usage(20, 20, read=80)),
        (_usage(100, 20, prompt_tokens_details={"cached_tokens": 50, "cache_write_tokens": 30}),
         _anthropic_usage(20, 20, read=50, written=30)),
        (_usage(100, 20, completion_tokens_details={"reasoning_tokens": 15}), _anthropic_usage(100, 20)),
        ({"prompt_tokens": 10}, _anthropic_usage(10, 0)),
        ({"prompt_tokens": -1, "completion_tokens": True}, _anthropic_usage(0, 0)),
        ({"prompt_tokens": 10, "completion_tokens": 2, "prompt_tokens_details": {"cached_tokens": 99}},
         _anthropic_usage(0, 2, read=99)),
        ({}, _anthropic_usage(0, 0)),
        (None, _anthropic_usage(0, 0)),
    ],
    ids=["plain", "openai-cached", "zero-cached", "deepseek", "cache-writes", "reasoning", "no-completion",
         "nonsense", "cached-over-prompt", "empty", "none"],
)  # fmt: skip
def test_usage_from_chat(usage: dict | None, expected: dict) -> None:
    assert usage_from_chat(usage) == expected


def test_the_answer_carries_its_usage_with_cache_reads() -> None:
    usage = _usage(2000, 50, prompt_tokens_details={"cached_tokens": 1920})
    assert _answer(_completion({"content": "Hi"}, usage=usage))["usage"] == _anthropic_usage(
        80, 50, read=1920
    )


def test_the_sdk_reads_the_answer() -> None:
    completion = _completion(
        {
            "content": "Let me check.",
            "reasoning_content": "Need the weather.",
            "tool_calls": [
                {
                    "id": "call_a",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                }
            ],
        },
        "tool_calls",
        _usage(40, 9),
    )
    client = _sdk_client(orjson.dumps(_answer(completion)), "application/json")
    message = client.messages.create(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Oslo?"}]
    )
    assert (message.id, message.stop_reason, message.usage.input_tokens) == (MESSAGE_ID, "tool_use", 40)
    assert [block.type for block in message.content] == ["thinking", "text", "tool_use"]
    assert message.content[2].input == {"city": "Oslo"}  # type: ignore[union-attr]


# --- the stream: golden sequences --------------------------------------------------------------------------


def test_stream_text_only() -> None:
    chunks = [
        _delta(role="assistant", content=""),
        _delta(content="Hello"),
        _delta(content=" there!"),
        _delta("stop"),
        _usage_chunk(_usage(12, 3)),
    ]
    events = _stream(chunks, input_tokens=11)
    assert events == [
        _started(11),
        _opened(0, TEXT_BLOCK),
        _text(0, "Hello"),
        _text(0, " there!"),
        _closed(0),
        _ended("end_turn", _anthropic_usage(12, 3)),
        STOPPED,
    ]
    assert _gathered(events) == _plain(
        _message([{"type": "text", "text": "Hello there!"}], usage=_anthropic_usage(12, 3))
    )


def test_stream_text_then_a_tool_call() -> None:
    chunks = [
        _delta(role="assistant", content="Let me check."),
        _call(0, "call_a", "get_weather", ""),
        _call(0, arguments='{"city"'),
        _call(0, arguments=': "Paris"}'),
        _delta("tool_calls"),
        _usage_chunk(_usage(50, 20)),
    ]
    events = _stream(chunks, input_tokens=48)
    assert events == [
        _started(48),
        _opened(0, TEXT_BLOCK),
        _text(0, "Let me check."),
        _closed(0),
        _opened(1, _tool_block("call_a", "get_weather")),
        _json(1, '{"city"'),
        _json(1, ': "Paris"}'),
        _closed(1),
        _ended("tool_use", _anthropic_usage(50, 20)),
        STOPPED,
    ]
    assert _gathered(events)["content"] == [
        {"type": "text", "text": "Let me check."},
        {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
    ]


def test_stream_two_tool_calls() -> None:
    chunks = [
        _delta(role="assistant", content=None),
        _call(0, "call_a", "get_weather", '{"city": '),
        _call(0, arguments='"Paris"}'),
        _call(1, "call_b", "get_weather", '{"city": "Rome"}'),
        _delta("tool_calls"),
        _usage_chunk(_usage(60, 30)),
    ]
    events = _stream(chunks)
    assert events == [
        _started(20),
        _opened(0, _tool_block("call_a", "get_weather")),
        _json(0, '{"city": '),
        _json(0, '"Paris"}'),
        _closed(0),
        _opened(1, _tool_block("call_b", "get_weather")),
        _json(1, '{"city": "Rome"}'),
        _closed(1),
        _ended("tool_use", _anthropic_usage(60, 30)),
        STOPPED,
    ]
    assert [block["input"] for block in _gathered(events)["content"]] == [{"city": "Paris"}, {"city": "Rome"}]


def test_stream_reasoning_then_text() -> None:
    chunks = [
        _delta(role="assistant", content="", reasoning_content="Six "),
        _delta(reasoning_content="times seven."),
        _delta(content="42."),
        _delta("stop"),
        _usage_chunk(_usage(8, 30, completion_tokens_details={"reasoning_tokens": 25})),
    ]
    events = _stream(chunks, input_tokens=8)
    assert events == [
        _started(8),
        _opened(0, THINKING_BLOCK),
        _thinking(0, "Six "),
        _thinking(0, "times seven."),
        _signed(0),
        _closed(0),
        _opened(1, TEXT_BLOCK),
        _text(1, "42."),
        _closed(1),
        _ended("end_turn", _anthropic_usage(8, 30)),
        STOPPED,
    ]
    assert _gathered(events)["content"] == [
        {"type": "thinking", "thinking": "Six times seven.", "signature": ""},
        {"type": "text", "text": "42."},
    ]


def test_stream_usage_chunk_with_cache_reads_replaces_the_estimate() -> None:
    chunks = [
        _delta(content="Hi"),
        _delta("stop"),
        _usage_chunk(_usage(2000, 5, prompt_tokens_details={"cached_tokens": 1920})),
    ]
    events = _stream(chunks, input_tokens=1990)
    assert events[0] == _started(1990)
    assert events[-2] == _ended("end_turn", _anthropic_usage(80, 5, read=1920))
    assert _gathered(events)["usage"] == _anthropic_usage(80, 5, read=1920)


def test_stream_usage_on_the_last_choice_chunk_counts_too() -> None:
    last = {**_delta("stop"), "usage": _usage(7, 2)}
    events = _stream([_delta(content="Hi"), last])
    assert events[-2] == _ended("end_turn", _anthropic_usage(7, 2))


def test_stream_with_no_usage_at_all_keeps_the_estimate() -> None:
    events = _stream([_delta(content="Hi"), _delta("length")], input_tokens=15)
    assert events == [
        _started(15),
        _opened(0, TEXT_BLOCK),
        _text(0, "Hi"),
        _closed(0),
        _ended("max_tokens", {"output_tokens": 0}),
        STOPPED,
    ]
    assert _gathered(events)["usage"] == _anthropic_usage(15, 0)
    # The caller's own count of the output stands in for the missing one.
    assert _stream([_delta(content="Hi"), _delta("stop")], output_tokens=1)[-2] == _ended(
        "end_turn", {"output_tokens": 1}
    )


# --- the stream: the rest -----------------------------------------------------------------------------------


GOLDEN_CHUNKS = {
    "text": [_delta(content="Hello"), _delta(content=" there!"), _delta("stop"), _usage_chunk(_usage(12, 3))],
    "tool-calls": [
        _delta(content="Checking."),
        _call(0, "call_a", "get_weather", '{"city": '),
        _call(0, arguments='"Paris"}'),
        _call(1, "call_b", "ping", ""),
        _delta("tool_calls"),
        _usage_chunk(_usage(60, 30, prompt_tokens_details={"cached_tokens": 40})),
    ],
    "reasoning": [_delta(reasoning_content="Hm."), _delta(content="Yes."), _delta("stop")],
    "stop-string": [
        _chunk([{"index": 0, "delta": {"content": "1, 2"}, "finish_reason": "stop", "stop_reason": ", 3"}])
    ],
}


def _joined(chunks: list[dict]) -> dict:
    """The chat completion a stream's chunks add up to."""
    message: dict = {"role": "assistant", "content": None}
    calls: dict[int, dict] = {}
    choice_fields: dict = {}
    usage = None
    for chunk in chunks:
        usage = chunk.get("usage") or usage
        for choice in chunk["choices"]:
            delta = choice["delta"]
            for key in ("content", "reasoning_content"):
                if delta.get(key):
                    message[key] = (message.get(key) or "") + delta[key]
            for call in delta.get("tool_calls") or ():
                joined = calls.setdefault(
                    call["index"],
                    {"id": call.get("id"), "type": "function", "function": {"name": "", "arguments": ""}},
                )
                joined["function"]["name"] += call.get("function", {}).get("name") or ""
                joined["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            choice_fields.update(
                {k: v for k, v in choice.items() if k not in ("index", "delta") and v is not None}
            )
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {"choices": [{"index": 0, "message": message, **choice_fields}], "usage": usage}


@pytest.mark.parametrize("name", sorted(GOLDEN_CHUNKS))
def test_a_stream_gathers_into_the_message_a_plain_completion_gives(name: str) -> None:
    chunks = GOLDEN_CHUNKS[name]
    completion = _joined(chunks)
    plain = _answer(completion)
    events = _stream(chunks, input_tokens=completion["usage"]["prompt_tokens"] if completion["usage"] else 0)
    gathered = _gathered(events)
    if completion["usage"] is None:  # no real counts: only the estimate, and no output count, are known
        plain["usage"] = gathered["usage"]
    assert gathered == _plain(plain)


@pytest.mark.parametrize("name", sorted(GOLDEN_CHUNKS))
def test_the_sdk_stream_helper_reads_a_stream(name: str) -> None:
    events = _stream(GOLDEN_CHUNKS[name])
    client = _sdk_client(b"".join(sse(event) for event in events), "text/event-stream")
    with client.messages.stream(
        model=MODEL, max_tokens=100, messages=[{"role": "user", "content": "Hi"}]
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "".join(block["text"] for block in _gathered(events)["content"] if block["type"] == "text")
    assert final.model_dump(mode="json", exclude_none=True) == _gathered(events)


def test_start_is_message_start_with_the_callers_estimate() -> None:
    stream = ChatStreamToMessages(message_id=MESSAGE_ID, model=MODEL, input_tokens=321)
    assert stream.start() == [_started(321)]
    _no_extras(EVENT.validate_python(stream.start()[0]))


def test_text_is_never_held_back() -> None:
    stream = ChatStreamToMessages(message_id=MESSAGE_ID, model=MODEL, input_tokens=5)
    stream.start()
    assert stream.feed(_delta(content="Hel")) == [_opened(0, TEXT_BLOCK), _text(0, "Hel")]
    for piece in ["lo", " ", "world"]:
        assert stream.feed(_delta(content=piece)) == [_text(0, piece)]
    assert stream.feed(_delta(content="")) == []
    assert stream.feed(_delta(role="assistant")) == []
    assert stream.feed(_usage_chunk(_usage(5, 4))) == []
    assert (
        stream.feed(_chunk([{"index": 1, "delta": {"content": "another choice"}, "finish_reason": None}]))
        == []
    )


def test_a_call_whose_name_comes_late_opens_when_it_comes() -> None:
    events = _stream(
        [
            _call(0, "call_a", arguments=""),
            _call(0, arguments='{"x":'),
            _call(0, name="a", arguments=" 1}"),
            _call(0, name="a"),  # some upstreams repeat the name
            _delta("tool_calls"),
        ]
    )
    assert events[1:-2] == [
        _opened(0, _tool_block("call_a", "a")),
        _json(0, '{"x":'),
        _json(0, " 1}"),
        _closed(0),
    ]


def test_a_call_that_never_gets_a_name_is_left_out() -> None:
    events = _stream([_delta(content="Hm."), _call(0, "call_a", arguments="{}"), _delta("tool_calls")])
    assert [event["type"] for event in events] == [
        "message_start", "content_block_start", "content_block_delta", "content_block_stop", "message_delta", "message_stop",
    ]  # fmt: skip
    # With no tool_use block the client has nothing to run, so the turn ends.
    assert events[-2]["delta"]["stop_reason"] == "end_turn"


def test_call_deltas_without_an_index_follow_their_id_or_the_latest_call() -> None:
    events = _stream(
        [
            _call(None, "call_a", "a", "{}"),
            _call(None, "call_b", "b", '{"y"'),
            _call(None, arguments=": 2}"),
            _delta("tool_calls"),
        ],
        to_spec=False,
    )
    assert events[1:-2] == [
        _opened(0, _tool_block("call_a", "a")),
        _json(0, "{}"),
        _closed(0),
        _opened(1, _tool_block("call_b", "b")),
        _json(1, '{"y"'),
        _json(1, ": 2}"),
        _closed(1),
    ]


def test_a_new_id_at_the_same_index_is_a_new_call() -> None:
    events = _stream([_call(0, "call_a", "a", "{}"), _call(0, "call_b", "b", "{}"), _delta("tool_calls")])
    assert [block["id"] for block in _gathered(events)["content"]] == ["call_a", "call_b"]


def test_calls_without_ids_get_ids_from_the_message_id() -> None:
    events = _stream(
        [_call(0, name="a", arguments="{}"), _call(1, name="b", arguments="{}"), _delta("tool_calls")]
    )
    assert [block["id"] for block in _gathered(events)["content"]] == [
        "toolu_01XFDUDYJgAACzvnptvVoYEL_0",
        "toolu_01XFDUDYJgAACzvnptvVoYEL_1",
    ]


def test_an_interleaved_piece_of_an_earlier_call_goes_to_its_own_block() -> None:
    events = _stream(
        [
            _call(0, "call_a", "a", '{"x"'),
            _call(1, "call_b", "b", '{"y"'),
            _call(0, arguments=": 1}"),
            _call(1, arguments=": 2}"),
            _delta("tool_calls"),
        ],
        ordered=False,
    )
    assert events[1:-2] == [
        _opened(0, _tool_block("call_a", "a")),
        _json(0, '{"x"'),
        _closed(0),
        _opened(1, _tool_block("call_b", "b")),
        _json(1, '{"y"'),
        _json(0, ": 1}"),
        _json(1, ": 2}"),
        _closed(1),
    ]
    assert [block["input"] for block in _gathered(events)["content"]] == [{"x": 1}, {"y": 2}]


def test_text_after_a_call_opens_a_new_block() -> None:
    events = _stream(
        [
            _delta(content="First."),
            _call(0, "call_a", "a", "{}"),
            _delta(content="Then."),
            _delta("tool_calls"),
        ]
    )
    assert [
        (event["index"], event["content_block"]["type"])
        for event in events
        if event["type"] == "content_block_start"
    ] == [
        (0, "text"),
        (1, "tool_use"),
        (2, "text"),
    ]


def test_an_empty_stream_is_a_message_with_no_blocks() -> None:
    events = _stream([_delta(role="assistant", content=""), _delta("stop")], input_tokens=3)
    assert events == [_started(3), _ended("end_turn", {"output_tokens": 0}), STOPPED]


def test_sse_names_the_event_and_sends_compact_json() -> None:
    event = _text(0, "Hé")
    raw = sse(event)
    data = b'{"type":"content_block_delta","index":0,"delta":{"type":"text_delta","text":"H\xc3\xa9"}}'
    assert raw == b"event: content_block_delta\ndata: " + data + b"\n\n"
    assert orjson.loads(raw.split(b"data: ", 1)[1]) == event
    assert sse(STOPPED) == b'event: message_stop\ndata: {"type":"message_stop"}\n\n'
