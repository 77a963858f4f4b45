"""Golden tests of the Responses API <-> chat completions translation (proxy/gateway/translate/responses.py).

Inputs and the exact expected outputs are written here, or, for the streams, in tests/data/translate/ (one
chunk or event per line). Every Response object and stream event produced is validated against OpenAI's
spec, every chat body against ``CreateChatCompletionRequest``, and the streams are also read by the
openai SDK's own ``responses.stream()`` helper.
"""

import copy
import json
from pathlib import Path

import httpx2
import openai
import orjson
import pytest

from proxy.gateway.translate.chat_parts import sse_event
from proxy.gateway.translate.responses import (
    ChatStreamToResponses,
    chat_body_from_response_request,
    response_from_chat,
    unsupported_tools,
)
from tests.spec import validator_for

DATA = Path(__file__).resolve().parent.parent / "data" / "translate"
STREAMS = sorted(path.stem for path in DATA.glob("stream_*.json"))
RESPONSE_ID = "resp_0123abc"
CREATED, COMPLETED = 1741476777, 1741476779
MODEL = "gpt-4o-mini"

WEATHER = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather for a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    "strict": True,
}
CHAT_WEATHER = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather for a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
        "strict": True,
    },
}


# --- helpers ------------------------------------------------------------------------------------------------


def _chat(body: dict, history: list[dict] | None = None) -> dict:
    """The chat body for ``body``, after checking that the input is a valid Responses request and the output a
    valid chat request, and that the input was not touched."""
    _valid_request(body)
    for item in history or ():
        _valid_item(item)
    before = copy.deepcopy((body, history))
    out = chat_body_from_response_request(body, history=history)
    assert (body, history) == before
    assert "model" not in out
    _valid("CreateChatCompletionRequest", {"model": MODEL, **out})
    return out


# The forms an input item takes. The spec's InputItem is a oneOf that a typed input message matches twice (as
# EasyInputMessage and as InputMessage), so an item is checked against each form and must fit one.
ITEM_SCHEMAS = [
    "EasyInputMessage", "InputMessage", "OutputMessage", "FunctionToolCall", "FunctionCallOutputItemParam",
    "ReasoningItem", "ItemReferenceParam", "WebSearchToolCall",
]  # fmt: skip


def _valid_request(body: dict) -> None:
    items = body.get("input")
    if isinstance(items, list):
        _valid("CreateResponse", {**body, "input": "(checked item by item)"})
        for item in items:
            _valid_item(item)
    else:
        _valid("CreateResponse", body)


def _valid_item(item: dict) -> None:
    assert any(validator_for(schema).is_valid(item) for schema in ITEM_SCHEMAS), item


def _valid(schema: str, value: object) -> None:
    errors = [f"{list(e.absolute_path)}: {e.message}" for e in validator_for(schema).iter_errors(value)]
    assert not errors, errors


def _respond(completion: dict, request: dict | None = None, **options: object) -> dict:
    request = request or {"model": MODEL, "input": "Hi"}
    response = response_from_chat(
        completion, response_id=RESPONSE_ID, created_at=CREATED, model=MODEL, request=request,
        completed_at=COMPLETED, **options,
    )  # fmt: skip
    _valid("Response", response)
    assert "output_text" not in response  # the SDK computes it
    return response


def _completion(message: dict, finish_reason: str = "stop", usage: dict | None = None) -> dict:
    completion = {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": CREATED,
        "model": "upstream-model",
        "choices": [
            {"index": 0, "message": {"role": "assistant", **message}, "finish_reason": finish_reason}
        ],
    }
    if usage is not None:
        completion["usage"] = usage
    return completion


def _usage(prompt: int, completion: int, **details: object) -> dict:
    return {
        "prompt_tokens": prompt,
        "completion_tokens": completion,
        "total_tokens": prompt + completion,
        **details,
    }


def _shell(**changes: object) -> dict:
    """The Response OpenAI returns for a request that set nothing, with ``changes``."""
    response = {
        "id": RESPONSE_ID,
        "object": "response",
        "created_at": CREATED,
        "status": "completed",
        "background": False,
        "completed_at": COMPLETED,
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "max_output_tokens": None,
        "max_tool_calls": None,
        "model": MODEL,
        "output": [],
        "parallel_tool_calls": True,
        "previous_response_id": None,
        "prompt_cache_key": None,
        "reasoning": {"effort": None, "summary": None},
        "safety_identifier": None,
        "service_tier": "default",
        "store": True,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}, "verbosity": "medium"},
        "tool_choice": "auto",
        "tools": [],
        "top_logprobs": 0,
        "top_p": 1.0,
        "truncation": "disabled",
        "metadata": {},
    }
    return {**response, **changes}


def _message(text: str, status: str = "completed", item_id: str = "msg_0123abc") -> dict:
    part = {"type": "output_text", "text": text, "annotations": [], "logprobs": []}
    return {"id": item_id, "type": "message", "role": "assistant", "status": status, "content": [part]}


def _response_usage(prompt: int, completion: int, cached: int = 0, reasoning: int = 0) -> dict:
    return {
        "input_tokens": prompt,
        "input_tokens_details": {"cached_tokens": cached, "cache_write_tokens": 0},
        "output_tokens": completion,
        "output_tokens_details": {"reasoning_tokens": reasoning},
        "total_tokens": prompt + completion,
    }


def _run(scenario: dict) -> list[dict]:
    request = scenario["request"]
    stream = ChatStreamToResponses(
        response_id=RESPONSE_ID, created_at=CREATED, model=request["model"], request=request,
        completed_at=COMPLETED,
    )  # fmt: skip
    events = stream.start()
    for chunk in scenario["chunks"]:
        events += stream.feed(chunk)
    finish = scenario["finish"]
    return events + stream.finish(
        finish["usage"], error=finish.get("error"), want_reasoning=finish.get("want_reasoning", False)
    )


def _load(name: str) -> dict:
    return json.loads((DATA / f"{name}.json").read_text())


# The spec's schema for each event type, for errors that name the right schema.
EVENT_SCHEMAS = {
    "response.created": "ResponseCreatedEvent",
    "response.in_progress": "ResponseInProgressEvent",
    "response.completed": "ResponseCompletedEvent",
    "response.incomplete": "ResponseIncompleteEvent",
    "response.failed": "ResponseFailedEvent",
    "error": "ResponseErrorEvent",
    "response.output_item.added": "ResponseOutputItemAddedEvent",
    "response.output_item.done": "ResponseOutputItemDoneEvent",
    "response.content_part.added": "ResponseContentPartAddedEvent",
    "response.content_part.done": "ResponseContentPartDoneEvent",
    "response.output_text.delta": "ResponseTextDeltaEvent",
    "response.output_text.done": "ResponseTextDoneEvent",
    "response.refusal.delta": "ResponseRefusalDeltaEvent",
    "response.refusal.done": "ResponseRefusalDoneEvent",
    "response.function_call_arguments.delta": "ResponseFunctionCallArgumentsDeltaEvent",
    "response.function_call_arguments.done": "ResponseFunctionCallArgumentsDoneEvent",
    "response.reasoning_summary_part.added": "ResponseReasoningSummaryPartAddedEvent",
    "response.reasoning_summary_part.done": "ResponseReasoningSummaryPartDoneEvent",
    "response.reasoning_summary_text.delta": "ResponseReasoningSummaryTextDeltaEvent",
    "response.reasoning_summary_text.done": "ResponseReasoningSummaryTextDoneEvent",
}
TERMINAL = ("response.completed", "response.incomplete", "response.failed")


def _check_stream(events: list[dict]) -> None:
    """Every event valid, numbered 0, 1, 2..., and in the order the SDK's stream helper expects."""
    for event in events:
        _valid(EVENT_SCHEMAS[event["type"]], event)
        _valid("ResponseStreamEvent", event)
    assert [event["sequence_number"] for event in events] == list(range(len(events)))
    assert [event["type"] for event in events[:2]] == ["response.created", "response.in_progress"]
    assert events[-1]["type"] in TERMINAL
    assert not [event for event in events[:-1] if event["type"] in TERMINAL]
    _check_nesting([event for event in events[2:-1] if event["type"] != "error"])
    final = events[-1]["response"]
    done = [event["item"] for event in events if event["type"] == "response.output_item.done"]
    assert sorted(done, key=final["output"].index) == final["output"]


def _check_nesting(events: list[dict]) -> None:
    """Each item is added before its parts and each part before its deltas; one part is open at a time; a
    part's deltas end with their done event, then the part is done, then the item; nothing is left open."""
    stacks: dict[int, list] = {}  # output index -> what is open in that item, outermost first
    closed: set[int] = set()
    finished: set[tuple] = set()  # (output index, part) whose text is done
    for event in events:
        kind, index = event["type"], event["output_index"]
        part = event.get("content_index", event.get("summary_index"))
        stack = stacks.get(index)
        if kind == "response.output_item.added":
            assert stack is None and index not in closed, event
            stacks[index] = ["item"]
        elif kind == "response.output_item.done":
            assert stack == ["item"], event
            del stacks[index]
            closed.add(index)
        elif kind.endswith("part.added"):
            assert stack == ["item"], event
            stack.append(part)
        elif kind.endswith("part.done"):
            assert stack == ["item", part] and (index, part) in finished, event
            stack.pop()
        else:  # a delta or its done: inside its part, or (a call's arguments) inside its item
            assert stack == (["item"] if part is None else ["item", part]), event
            assert (index, part) not in finished, event
            if kind.endswith(".done"):
                finished.add((index, part))
    assert stacks == {}


def _output_indices_rise(events: list[dict]) -> bool:
    added = [event["output_index"] for event in events if event["type"] == "response.output_item.added"]
    return added == list(range(len(added)))


def _sdk_client(body: bytes, content_type: str) -> openai.OpenAI:
    """An openai client whose every request is answered with ``body``, in process."""

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, content=body, headers={"content-type": content_type})

    http = httpx2.Client(transport=httpx2.MockTransport(answer))
    return openai.OpenAI(
        api_key="sk-test", base_url="http://gateway.test/v1", http_client=http, max_retries=0
    )


# --- the request: input forms -------------------------------------------------------------------------------


def test_a_string_input_is_one_user_message() -> None:
    assert _chat({"model": MODEL, "input": "Hello!"}) == {"messages": [{"role": "user", "content": "Hello!"}]}


def test_message_items_in_every_role_and_content_form() -> None:
    body = {
        "model": MODEL,
        "input": [
            {"role": "system", "content": "You are terse."},
            {
                "type": "message",
                "role": "developer",
                "content": [{"type": "input_text", "text": "Use metric."}],
            },
            {"role": "user", "content": "What is this?"},
            {
                "type": "message",
                "role": "user",
                "content": [
                    {"type": "input_text", "text": "And these:"},
                    {"type": "input_image", "image_url": "https://example.com/a.png", "detail": "low"},
                    {"type": "input_image", "image_url": "https://example.com/b.png", "detail": "original"},
                    {"type": "input_image", "file_id": "file-img", "detail": "auto"},
                    {"type": "input_file", "file_id": "file-doc"},
                    {
                        "type": "input_file",
                        "filename": "a.pdf",
                        "file_data": "data:application/pdf;base64,QQ==",
                    },
                    {"type": "input_file", "file_url": "https://example.com/c.pdf"},
                ],
            },
            {"role": "assistant", "content": "A cat."},
            {
                "type": "message",
                "id": "msg_old",
                "role": "assistant",
                "status": "completed",
                "content": [
                    {"type": "output_text", "text": "Two ", "annotations": [], "logprobs": []},
                    {"type": "output_text", "text": "cats.", "annotations": [], "logprobs": []},
                ],
            },
            {
                "type": "message",
                "id": "msg_refused",
                "role": "assistant",
                "status": "completed",
                "content": [{"type": "refusal", "refusal": "I can't help with that."}],
            },
        ],
    }
    assert _chat(body)["messages"] == [
        {"role": "system", "content": "You are terse."},
        {"role": "system", "content": [{"type": "text", "text": "Use metric."}]},
        {"role": "user", "content": "What is this?"},
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "And these:"},
                {"type": "image_url", "image_url": {"url": "https://example.com/a.png", "detail": "low"}},
                {"type": "image_url", "image_url": {"url": "https://example.com/b.png"}},
                {"type": "file", "file": {"file_id": "file-doc"}},
                {
                    "type": "file",
                    "file": {"file_data": "data:application/pdf;base64,QQ==", "filename": "a.pdf"},
                },
            ],
        },
        {"role": "assistant", "content": "A cat."},
        {"role": "assistant", "content": "Two cats."},
        {"role": "assistant", "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
    ]


def test_instructions_lead_as_a_system_message() -> None:
    body = {"model": MODEL, "instructions": "Answer in French.", "input": "Hello!"}
    assert _chat(body)["messages"] == [
        {"role": "system", "content": "Answer in French."},
        {"role": "user", "content": "Hello!"},
    ]
    assert _chat({**body, "instructions": None})["messages"] == [{"role": "user", "content": "Hello!"}]


def test_history_goes_between_the_instructions_and_the_new_input() -> None:
    history = [
        {"type": "message", "role": "user", "content": [{"type": "input_text", "text": "My name is Ada."}]},
        _message("Nice to meet you, Ada.", item_id="msg_earlier"),
    ]
    body = {
        "model": MODEL,
        "instructions": "Be kind.",
        "input": "What is my name?",
        "previous_response_id": "resp_1",
    }
    assert _chat(body, history)["messages"] == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": [{"type": "text", "text": "My name is Ada."}]},
        {"role": "assistant", "content": "Nice to meet you, Ada."},
        {"role": "user", "content": "What is my name?"},
    ]


def test_function_calls_and_their_outputs_become_tool_calls_and_tool_messages() -> None:
    body = {
        "model": MODEL,
        "tools": [WEATHER],
        "input": [
            {"role": "user", "content": "Weather in Paris and Rome?"},
            {"type": "reasoning", "id": "rs_1", "summary": [{"type": "summary_text", "text": "Two calls."}]},
            {"type": "message", "role": "assistant", "id": "msg_1", "status": "completed",
             "content": [{"type": "output_text", "text": "Checking.", "annotations": [], "logprobs": []}]},
            {"type": "function_call", "id": "fc_1", "call_id": "call_p", "name": "get_weather",
             "arguments": '{"city":"Paris"}', "status": "completed"},
            {"type": "function_call", "id": "fc_2", "call_id": "call_r", "name": "get_weather",
             "arguments": '{"city":"Rome"}'},
            {"type": "function_call_output", "call_id": "call_p", "output": "18C"},
            {"type": "function_call_output", "call_id": "call_r",
             "output": [{"type": "input_text", "text": "21"}, {"type": "input_text", "text": "C"},
                        {"type": "input_image", "image_url": "https://example.com/sun.png", "detail": "auto"}]},
            {"type": "function_call", "call_id": "call_again", "name": "get_weather", "arguments": '{"city":"Oslo"}'},
        ],
    }  # fmt: skip
    assert _chat(body)["messages"] == [
        {"role": "user", "content": "Weather in Paris and Rome?"},
        {
            "role": "assistant",
            "content": "Checking.",
            "tool_calls": [
                {
                    "id": "call_p",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
                },
                {
                    "id": "call_r",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
                },
            ],
        },
        {"role": "tool", "tool_call_id": "call_p", "content": "18C"},
        {"role": "tool", "tool_call_id": "call_r", "content": "21C"},
        {
            "role": "assistant",
            "content": None,
            "tool_calls": [
                {
                    "id": "call_again",
                    "type": "function",
                    "function": {"name": "get_weather", "arguments": '{"city":"Oslo"}'},
                },
            ],
        },
    ]


def test_reasoning_and_built_in_tool_items_are_dropped() -> None:
    body = {
        "model": MODEL,
        "input": [
            {"type": "reasoning", "id": "rs_1", "summary": [], "encrypted_content": "gAAAA"},
            {"type": "web_search_call", "id": "ws_1", "status": "completed",
             "action": {"type": "search", "query": "news"}},
            {"type": "item_reference", "id": "msg_stored"},
            {"role": "user", "content": "Go on."},
        ],
    }  # fmt: skip
    assert _chat(body)["messages"] == [{"role": "user", "content": "Go on."}]


# --- the request: tools and settings ------------------------------------------------------------------------


def test_function_tools_are_kept_and_the_others_left_out() -> None:
    body = {
        "model": MODEL,
        "input": "Hi",
        "tools": [
            {"type": "web_search"},
            WEATHER,
            {"type": "file_search", "vector_store_ids": ["vs_1"]},
            {"type": "function", "name": "ping", "parameters": None, "strict": None},
            {"type": "mcp", "server_label": "docs", "server_url": "https://example.com/mcp"},
            {"type": "custom", "name": "grammar_tool"},
        ],
        "tool_choice": "required",
        "parallel_tool_calls": False,
    }
    out = _chat(body)
    assert out["tools"] == [CHAT_WEATHER, {"type": "function", "function": {"name": "ping"}}]
    assert (out["tool_choice"], out["parallel_tool_calls"]) == ("required", False)
    assert unsupported_tools(body) == ["web_search", "file_search", "mcp:docs", "custom:grammar_tool"]
    assert unsupported_tools({"model": MODEL, "input": "Hi"}) == []


def test_with_no_function_tool_left_tool_choice_and_parallel_calls_go_too() -> None:
    body = {
        "model": MODEL,
        "input": "Hi",
        "tools": [{"type": "web_search"}],
        "tool_choice": "auto",
        "parallel_tool_calls": True,
    }
    assert _chat(body) == {"messages": [{"role": "user", "content": "Hi"}]}
    assert unsupported_tools(body) == ["web_search"]


@pytest.mark.parametrize(
    ("tool_choice", "chat"),
    [
        ("auto", "auto"),
        ("none", "none"),
        ("required", "required"),
        ({"type": "function", "name": "get_weather"}, {"type": "function", "function": {"name": "get_weather"}}),
        (
            {"type": "allowed_tools", "mode": "required",
             "tools": [{"type": "function", "name": "get_weather"}, {"type": "web_search"}]},
            {"type": "allowed_tools",
             "allowed_tools": {"mode": "required", "tools": [{"type": "function", "function": {"name": "get_weather"}}]}},
        ),
        ({"type": "allowed_tools", "mode": "auto", "tools": [{"type": "web_search"}]}, None),
        ({"type": "web_search_preview"}, None),
        ({"type": "mcp", "server_label": "docs"}, None),
        ({"type": "custom", "name": "grammar_tool"}, None),
    ],
    ids=["auto", "none", "required", "function", "allowed-functions", "allowed-built-ins", "built-in", "mcp", "custom"],
)  # fmt: skip
def test_tool_choice_forms(tool_choice: object, chat: object) -> None:
    out = _chat({"model": MODEL, "input": "Hi", "tools": [WEATHER], "tool_choice": tool_choice})
    assert out.get("tool_choice") == chat
    assert ("tool_choice" in out) == (chat is not None)


@pytest.mark.parametrize(
    ("text", "chat"),
    [
        ({"format": {"type": "text"}}, {}),
        ({"format": {"type": "json_object"}}, {"response_format": {"type": "json_object"}}),
        (
            {"format": {"type": "json_schema", "name": "city", "description": "A city.", "strict": True,
                        "schema": {"type": "object", "properties": {"name": {"type": "string"}}}}},
            {"response_format": {"type": "json_schema", "json_schema": {
                "name": "city", "description": "A city.",
                "schema": {"type": "object", "properties": {"name": {"type": "string"}}}, "strict": True}}},
        ),
        (
            {"format": {"type": "json_schema", "name": "any", "schema": {"type": "object"}}},
            {"response_format": {"type": "json_schema", "json_schema": {"name": "any", "schema": {"type": "object"}}}},
        ),
        ({"verbosity": "low"}, {"verbosity": "low"}),
        ({"format": {"type": "json_object"}, "verbosity": "high"},
         {"response_format": {"type": "json_object"}, "verbosity": "high"}),
    ],
    ids=["text", "json-object", "json-schema", "json-schema-minimal", "verbosity", "both"],
)  # fmt: skip
def test_text_format_forms(text: dict, chat: dict) -> None:
    assert _chat({"model": MODEL, "input": "Hi", "text": text}) == {
        "messages": [{"role": "user", "content": "Hi"}],
        **chat,
    }


def test_sampling_settings_pass_and_the_output_limit_is_renamed() -> None:
    body = {
        "model": MODEL,
        "input": "Hi",
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "user-42",
        "max_output_tokens": 256,
        "reasoning": {"effort": "low", "summary": "detailed"},
    }
    assert _chat(body) == {
        "messages": [{"role": "user", "content": "Hi"}],
        "temperature": 0.3,
        "top_p": 0.9,
        "user": "user-42",
        "max_completion_tokens": 256,
        "reasoning_effort": "low",
    }


def test_fields_chat_has_no_equivalent_for_are_not_forwarded() -> None:
    body = {
        "model": MODEL,
        "input": "Hi",
        "stream": True,
        "store": False,
        "previous_response_id": "resp_earlier",
        "include": ["reasoning.encrypted_content"],
        "truncation": "auto",
        "reasoning": {"summary": "auto"},
        "background": False,
        "prompt_cache_key": "tenant-1",
        "safety_identifier": "hashed-user",
        "service_tier": "flex",
        "max_tool_calls": 3,
        "top_logprobs": 2,
        "temperature": None,
        # OpenAI's chat endpoint refuses metadata unless it stores the completion; the Response echoes it.
        "metadata": {"ticket": "T-1"},
    }
    assert _chat(body) == {"messages": [{"role": "user", "content": "Hi"}]}


# --- the Response object ------------------------------------------------------------------------------------


def test_a_text_completion_is_a_completed_response() -> None:
    completion = _completion({"content": "Hello there!", "refusal": None}, usage=_usage(11, 4))
    assert _respond(completion) == _shell(output=[_message("Hello there!")], usage=_response_usage(11, 4))


def test_the_request_settings_are_echoed() -> None:
    tools = [
        WEATHER,
        {"type": "function", "name": "ping", "parameters": None, "strict": None},
        {"type": "web_search"},
    ]
    request = {
        "model": MODEL,
        "input": "Hi",
        "instructions": "Be brief.",
        "tools": tools,
        "tool_choice": {"type": "function", "name": "get_weather"},
        "parallel_tool_calls": False,
        "temperature": 0.5,
        "top_p": 0.8,
        "max_output_tokens": 100,
        "max_tool_calls": 4,
        "metadata": {"ticket": "T-1"},
        "text": {"format": {"type": "json_object"}},
        "reasoning": {"effort": "medium", "summary": "concise"},
        "store": False,
        "previous_response_id": "resp_earlier",
        "truncation": "auto",
        "user": "user-42",
        "safety_identifier": "hashed-user",
        "prompt_cache_key": "tenant-1",
        "service_tier": "flex",
        "top_logprobs": 3,
        "background": False,
    }
    _valid_request(request)
    assert _respond(_completion({"content": "{}"}), request) == _shell(
        instructions="Be brief.",
        tools=tools,
        tool_choice={"type": "function", "name": "get_weather"},
        parallel_tool_calls=False,
        temperature=0.5,
        top_p=0.8,
        max_output_tokens=100,
        max_tool_calls=4,
        metadata={"ticket": "T-1"},
        text={"format": {"type": "json_object"}, "verbosity": "medium"},
        reasoning={"effort": "medium", "summary": "concise"},
        store=False,
        previous_response_id="resp_earlier",
        truncation="auto",
        user="user-42",
        safety_identifier="hashed-user",
        prompt_cache_key="tenant-1",
        service_tier="flex",
        top_logprobs=3,
        output=[_message("{}")],
    )


def test_a_function_tool_given_without_strict_or_parameters_is_echoed_with_nulls() -> None:
    # The spec's Tool demands both, in requests too, but OpenAI accepts a function tool without them; the
    # Response must still carry them, and null says that none was given.
    request = {
        "model": MODEL,
        "input": "Hi",
        "tools": [{"type": "function", "name": "ping", "description": "Ping."}],
    }
    assert _respond(_completion({"content": "ok"}), request)["tools"] == [
        {"type": "function", "name": "ping", "description": "Ping.", "parameters": None, "strict": None}
    ]
    assert chat_body_from_response_request(request)["tools"] == [
        {"type": "function", "function": {"name": "ping", "description": "Ping."}}
    ]


def test_tool_calls_are_function_call_items() -> None:
    calls = [
        {
            "id": "call_p",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Paris"}'},
        },
        {
            "id": "call_r",
            "type": "function",
            "function": {"name": "get_weather", "arguments": '{"city":"Rome"}'},
        },
    ]
    completion = _completion({"content": None, "tool_calls": calls}, "tool_calls", _usage(30, 20))
    assert _respond(completion)["output"] == [
        {"id": "fc_0123abc", "type": "function_call", "status": "completed", "call_id": "call_p",
         "name": "get_weather", "arguments": '{"city":"Paris"}'},
        {"id": "fc_0123abc_1", "type": "function_call", "status": "completed", "call_id": "call_r",
         "name": "get_weather", "arguments": '{"city":"Rome"}'},
    ]  # fmt: skip


def test_text_before_tool_calls_is_a_message_then_the_calls() -> None:
    calls = [{"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]
    completion = _completion({"content": "Let me check.", "tool_calls": calls}, "tool_calls")
    assert _respond(completion)["output"] == [
        _message("Let me check."),
        {"id": "fc_0123abc", "type": "function_call", "status": "completed", "call_id": "call_p",
         "name": "get_weather", "arguments": "{}"},
    ]  # fmt: skip


@pytest.mark.parametrize("key", ["reasoning_content", "reasoning"])
def test_reasoning_text_is_a_reasoning_item_with_a_summary(key: str) -> None:
    usage = _usage(10, 50, completion_tokens_details={"reasoning_tokens": 40})
    response = _respond(_completion({"content": "4", key: "2+2 is 4."}, usage=usage))
    assert response["output"] == [
        {"id": "rs_0123abc", "type": "reasoning", "status": "completed",
         "summary": [{"type": "summary_text", "text": "2+2 is 4."}]},
        _message("4"),
    ]  # fmt: skip
    assert response["usage"] == _response_usage(10, 50, reasoning=40)


def test_length_is_incomplete_for_max_output_tokens() -> None:
    completion = _completion({"content": "Once upon a"}, "length", _usage(9, 16))
    request = {"model": MODEL, "input": "A story.", "max_output_tokens": 16}
    assert _respond(completion, request) == _shell(
        status="incomplete",
        completed_at=None,
        incomplete_details={"reason": "max_output_tokens"},
        max_output_tokens=16,
        output=[_message("Once upon a", status="incomplete")],
        usage=_response_usage(9, 16),
    )


def test_a_length_cut_inside_a_tool_call_leaves_the_call_incomplete() -> None:
    calls = [{"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": '{"ci'}}]
    response = _respond(_completion({"content": "Checking.", "tool_calls": calls}, "length"))
    assert [(item["type"], item["status"]) for item in response["output"]] == [
        ("message", "completed"),
        ("function_call", "incomplete"),
    ]
    assert response["status"] == "incomplete"


def test_content_filter_is_incomplete_for_content_filter() -> None:
    response = _respond(_completion({"content": "Well"}, "content_filter"))
    assert (response["status"], response["incomplete_details"]) == (
        "incomplete",
        {"reason": "content_filter"},
    )


def test_a_refusal_is_a_refusal_part() -> None:
    response = _respond(_completion({"content": None, "refusal": "I can't help with that."}))
    assert response["output"] == [
        {"id": "msg_0123abc", "type": "message", "role": "assistant", "status": "completed",
         "content": [{"type": "refusal", "refusal": "I can't help with that."}]},
    ]  # fmt: skip


def test_content_given_as_text_parts_is_joined() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there."}]
    assert _respond(_completion({"content": parts}))["output"] == [_message("Hello there.")]


def test_an_empty_answer_is_still_one_message() -> None:
    assert _respond(_completion({"content": None}))["output"] == [_message("")]
    assert _respond(_completion({"content": ""}))["output"] == [_message("")]


def test_want_reasoning_adds_an_empty_reasoning_item_when_none_came() -> None:
    response = _respond(_completion({"content": "Hi!"}), want_reasoning=True)
    assert response["output"] == [
        _message("Hi!"),
        {"id": "rs_0123abc", "type": "reasoning", "status": "completed", "summary": []},
    ]
    response = _respond(_completion({"content": "Hi!", "reasoning_content": "Greet."}), want_reasoning=True)
    assert [item["type"] for item in response["output"]] == ["reasoning", "message"]


@pytest.mark.parametrize(
    ("usage", "expected"),
    [
        (_usage(100, 20), _response_usage(100, 20)),
        (
            _usage(100, 20, prompt_tokens_details={"cached_tokens": 64, "audio_tokens": 0},
                   completion_tokens_details={"reasoning_tokens": 12, "audio_tokens": 0}),
            _response_usage(100, 20, cached=64, reasoning=12),
        ),
        (
            _usage(100, 20, prompt_tokens_details={"cached_tokens": 10, "cache_write_tokens": 90}),
            {**_response_usage(100, 20, cached=10), "input_tokens_details": {"cached_tokens": 10, "cache_write_tokens": 90}},
        ),
        (_usage(100, 20, prompt_cache_hit_tokens=32, prompt_cache_miss_tokens=68), _response_usage(100, 20, cached=32)),
        (_usage(100, 20, prompt_tokens_details=None, completion_tokens_details=None), _response_usage(100, 20)),
        ({"prompt_tokens": 7, "completion_tokens": 3}, _response_usage(7, 3)),
    ],
    ids=["plain", "details", "cache-writes", "deepseek-cache-hits", "null-details", "no-total"],
)  # fmt: skip
def test_usage_is_mapped_with_its_details(usage: dict, expected: dict) -> None:
    assert _respond(_completion({"content": "ok"}, usage=usage))["usage"] == expected


def test_without_usage_the_response_has_none() -> None:
    assert "usage" not in _respond(_completion({"content": "ok"}))


def test_ids_follow_the_response_id() -> None:
    completion = _completion({"content": "Hi", "reasoning_content": "Hm."})
    response = response_from_chat(completion, response_id="resp_XYZ", created_at=CREATED, model=MODEL,
                                  request={"model": MODEL, "input": "Hi"})  # fmt: skip
    assert [item["id"] for item in response["output"]] == ["rs_XYZ", "msg_XYZ"]
    assert response == response_from_chat(completion, response_id="resp_XYZ", created_at=CREATED, model=MODEL,
                                           request={"model": MODEL, "input": "Hi"})  # fmt: skip
    assert response["completed_at"] is None  # not given, so not invented


def test_output_items_go_back_as_the_next_turns_history() -> None:
    """A turn's output, fed back as history for previous_response_id, is the chat turn that produced it."""
    message = {
        "content": "Let me check.",
        "tool_calls": [
            {"id": "call_p", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}
        ],
    }
    first = _respond(_completion({**message, "reasoning_content": "Need the weather."}, "tool_calls"))
    history = [{"role": "user", "content": "Weather?"}, *first["output"]]
    body = {"model": MODEL, "input": [{"type": "function_call_output", "call_id": "call_p", "output": "18C"}]}
    assert _chat(body, history)["messages"] == [
        {"role": "user", "content": "Weather?"},
        {"role": "assistant", **message},
        {"role": "tool", "tool_call_id": "call_p", "content": "18C"},
    ]


def test_the_sdk_reads_the_response() -> None:
    completion = _completion({"content": "Hello there!"}, usage=_usage(11, 4))
    client = _sdk_client(orjson.dumps(_respond(completion)), "application/json")
    response = client.responses.create(model=MODEL, input="Hi")
    assert (response.id, response.status, response.output_text) == (RESPONSE_ID, "completed", "Hello there!")
    assert response.usage is not None and response.usage.total_tokens == 15


# --- the stream ---------------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", STREAMS)
def test_a_stream_translates_to_its_golden_events(name: str) -> None:
    scenario = _load(name)
    _valid_request(scenario["request"])
    for chunk in scenario["chunks"]:
        _valid("CreateChatCompletionStreamResponse", chunk)
    events = _run(scenario)
    assert events == scenario["events"]
    _check_stream(events)
    assert _output_indices_rise(events)


def test_the_golden_streams_cover_every_case() -> None:
    assert STREAMS == [
        "stream_failed",
        "stream_length",
        "stream_reasoning_text",
        "stream_text",
        "stream_tool_calls",
        "stream_want_reasoning",
    ]


@pytest.mark.parametrize(
    "name", ["stream_text", "stream_tool_calls", "stream_reasoning_text", "stream_want_reasoning"]
)
def test_the_sdk_stream_helper_reads_a_golden_stream(name: str) -> None:
    scenario = _load(name)
    client = _sdk_client(b"".join(sse_event(event) for event in scenario["events"]), "text/event-stream")
    with client.responses.stream(model=scenario["request"]["model"], input="Hi") as stream:
        seen = [event.type for event in stream]
        final = stream.get_final_response()
    assert seen == [event["type"] for event in scenario["events"]]
    expected = scenario["events"][-1]["response"]
    assert final.model_dump(mode="json", exclude_none=True)["output"] == [
        {key: value for key, value in item.items() if value is not None} for item in expected["output"]
    ]
    text = "".join(
        part["text"] for item in expected["output"] if item["type"] == "message" for part in item["content"]
    )
    assert final.output_text == text


@pytest.mark.parametrize("name", ["stream_length", "stream_failed"])
def test_the_sdk_stream_helper_reads_a_stream_that_did_not_complete(name: str) -> None:
    scenario = _load(name)
    client = _sdk_client(b"".join(sse_event(event) for event in scenario["events"]), "text/event-stream")
    with client.responses.stream(model=MODEL, input="Hi") as stream:
        last = [event for event in stream][-1]
    assert last.type == scenario["events"][-1]["type"]
    assert last.response.status == scenario["events"][-1]["response"]["status"]


@pytest.mark.parametrize(
    "name", ["stream_text", "stream_tool_calls", "stream_reasoning_text", "stream_length"]
)
def test_a_stream_ends_with_the_response_a_plain_completion_gives(name: str) -> None:
    """The chunks joined into one completion translate to the response the stream ended with."""
    scenario = _load(name)
    completion = {**_join(scenario["chunks"]), "usage": scenario["finish"]["usage"]}
    plain = response_from_chat(
        completion, response_id=RESPONSE_ID, created_at=CREATED, model=scenario["request"]["model"],
        request=scenario["request"], completed_at=COMPLETED,
    )  # fmt: skip
    assert plain == scenario["events"][-1]["response"]


def _join(chunks: list[dict]) -> dict:
    """The chat completion a stream's chunks add up to."""
    message: dict = {"role": "assistant", "content": None}
    calls: dict[int, dict] = {}
    finish_reason = None
    for chunk in chunks:
        for choice in chunk["choices"]:
            delta = choice["delta"]
            for key in ("content", "reasoning_content"):
                if delta.get(key):
                    message[key] = (message.get(key) or "") + delta[key]
            for call in delta.get("tool_calls") or ():
                joined = calls.setdefault(call["index"], {"id": call.get("id"), "type": "function",
                                                          "function": {"name": "", "arguments": ""}})  # fmt: skip
                joined["function"]["name"] += call.get("function", {}).get("name") or ""
                joined["function"]["arguments"] += call.get("function", {}).get("arguments") or ""
            finish_reason = choice["finish_reason"] or finish_reason
    if calls:
        message["tool_calls"] = [calls[index] for index in sorted(calls)]
    return {"choices": [{"index": 0, "message": message, "finish_reason": finish_reason}]}


def test_start_is_created_then_in_progress_with_no_output() -> None:
    stream = ChatStreamToResponses(response_id=RESPONSE_ID, created_at=CREATED, model=MODEL,
                                   request={"model": MODEL, "input": "Hi"})  # fmt: skip
    in_progress = _shell(status="in_progress", completed_at=None)
    assert stream.start() == [
        {"type": "response.created", "response": in_progress, "sequence_number": 0},
        {"type": "response.in_progress", "response": in_progress, "sequence_number": 1},
    ]


def test_text_is_never_held_back() -> None:
    stream = ChatStreamToResponses(response_id=RESPONSE_ID, created_at=CREATED, model=MODEL,
                                   request={"model": MODEL, "input": "Hi"})  # fmt: skip
    stream.start()
    for piece in ["Hel", "lo", " ", "world"]:
        events = stream.feed({"choices": [{"index": 0, "delta": {"content": piece}, "finish_reason": None}]})
        assert events[-1]["type"] == "response.output_text.delta"
        assert events[-1]["delta"] == piece
    assert stream.feed({"choices": [{"index": 0, "delta": {"content": ""}, "finish_reason": None}]}) == []
    assert stream.feed({"choices": [], "usage": _usage(1, 4)}) == []


def _stream(chunks: list[dict], *, usage: dict | None = None, **finish: object) -> list[dict]:
    stream = ChatStreamToResponses(response_id=RESPONSE_ID, created_at=CREATED, model=MODEL,
                                   request={"model": MODEL, "input": "Hi"}, completed_at=COMPLETED)  # fmt: skip
    events = stream.start()
    for chunk in chunks:
        events += stream.feed(chunk)
    events += stream.finish(usage, **finish)
    _check_stream(events)
    return events


def _delta(finish_reason: str | None = None, **delta: object) -> dict:
    return {"choices": [{"index": 0, "delta": delta, "finish_reason": finish_reason}]}


def test_a_usage_chunk_stands_in_when_finish_gets_no_usage() -> None:
    events = _stream([_delta(content="Hi"), _delta("stop"), {"choices": [], "usage": _usage(3, 1)}])
    assert events[-1]["response"]["usage"] == _response_usage(3, 1)
    events = _stream([_delta(content="Hi"), {"choices": [], "usage": _usage(3, 1)}], usage=_usage(5, 2))
    assert events[-1]["response"]["usage"] == _response_usage(5, 2)


def test_an_error_code_outside_the_spec_is_reported_as_server_error() -> None:
    events = _stream([], error={"code": "upstream_timeout", "message": "The upstream provider timed out."})
    assert events[-1]["type"] == "response.failed"
    assert events[-1]["response"]["error"] == {
        "code": "server_error",
        "message": "The upstream provider timed out.",
    }
    assert events[-1]["response"]["output"] == []  # nothing is made up for a failed answer


def test_an_empty_stream_with_want_reasoning_gives_a_reasoning_item_and_an_empty_message() -> None:
    events = _stream(
        [_delta(role="assistant", content=""), _delta("stop")], usage=_usage(3, 0), want_reasoning=True
    )
    assert [event["type"] for event in events] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.output_item.done",
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert events[-1]["response"]["output"] == [
        {"id": "rs_0123abc", "type": "reasoning", "status": "completed", "summary": []},
        _message("", item_id="msg_0123abc"),
    ]


def test_interleaved_parallel_call_deltas_go_to_their_own_calls() -> None:
    def call(index: int, **fields: object) -> dict:
        return _delta(tool_calls=[{"index": index, **fields}])

    events = _stream(
        [
            call(0, id="call_a", type="function", function={"name": "a", "arguments": '{"x"'}),
            call(1, id="call_b", type="function", function={"name": "b", "arguments": '{"y"'}),
            call(0, function={"arguments": ": 1}"}),
            call(1, function={"arguments": ": 2}"}),
            _delta("tool_calls"),
        ]
    )
    assert [
        (item["call_id"], item["name"], item["arguments"]) for item in events[-1]["response"]["output"]
    ] == [
        ("call_a", "a", '{"x": 1}'),
        ("call_b", "b", '{"y": 2}'),
    ]


def test_call_deltas_without_an_index_follow_their_id() -> None:
    def call(**fields: object) -> dict:
        return _delta(tool_calls=[fields])

    events = _stream(
        [
            call(id="call_a", function={"name": "a", "arguments": "{}"}),
            call(id="call_b", function={"name": "b", "arguments": '{"y"'}),
            call(id="call_b", function={"name": "b", "arguments": ": 2}"}),
            call(function={"arguments": ""}),
            _delta("tool_calls"),
        ]
    )
    assert [
        (item["call_id"], item["name"], item["arguments"]) for item in events[-1]["response"]["output"]
    ] == [
        ("call_a", "a", "{}"),
        ("call_b", "b", '{"y": 2}'),
    ]


def test_text_after_a_call_opens_a_new_message() -> None:
    events = _stream(
        [
            _delta(content="First."),
            _delta(tool_calls=[{"index": 0, "id": "call_a", "function": {"name": "a", "arguments": "{}"}}]),
            _delta(content="Then."),
            _delta("tool_calls"),
        ]
    )
    output = events[-1]["response"]["output"]
    assert [(item["type"], item["id"]) for item in output] == [
        ("message", "msg_0123abc"),
        ("function_call", "fc_0123abc"),
        ("message", "msg_0123abc_1"),
    ]


def test_a_refusal_after_text_is_a_second_content_part() -> None:
    events = _stream([_delta(content="Sure, but"), _delta(refusal="I can't."), _delta("stop")])
    assert [event["type"] for event in events[2:-1]] == [
        "response.output_item.added",
        "response.content_part.added",
        "response.output_text.delta",
        "response.output_text.done",
        "response.content_part.done",
        "response.content_part.added",
        "response.refusal.delta",
        "response.refusal.done",
        "response.content_part.done",
        "response.output_item.done",
    ]
    assert events[-1]["response"]["output"][0]["content"] == [
        {"type": "output_text", "text": "Sure, but", "annotations": [], "logprobs": []},
        {"type": "refusal", "refusal": "I can't."},
    ]


def test_sse_event_names_the_event_and_has_no_done_marker() -> None:
    event = {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0,
             "delta": "Hé", "logprobs": [], "sequence_number": 4}  # fmt: skip
    raw = sse_event(event)
    assert raw == b"event: response.output_text.delta\ndata: " + orjson.dumps(event) + b"\n\n"
    assert orjson.loads(raw.split(b"data: ", 1)[1]) == event
    assert b"[DONE]" not in b"".join(sse_event(e) for e in _load("stream_text")["events"])
