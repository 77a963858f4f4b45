"""Quick checks of the fake upstream's Anthropic Messages API, driven by the official ``anthropic`` SDK.

Needs no database or gateway: only the server, the SDK and ``requests`` (for the raw wire).
Every body is validated with the SDK's own pydantic types, strictly, not merely parsed.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Iterator
from typing import Any

import anthropic
import pydantic
import pytest
import requests
from anthropic.types import Message, MessageTokensCount, RawMessageStreamEvent

from tests.upstream import FakeUpstream

# Typed Any: the SDK's TypedDict parameters do not accept plain dict literals held in variables.
HELLO: Any = [{"role": "user", "content": "hello there"}]
WEATHER: Any = {
    "name": "get_weather",
    "description": "Weather of a city.",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK: Any = {"name": "get_time", "input_schema": {"type": "object", "properties": {}}}
HEADERS = {"x-api-key": "sk-test", "anthropic-version": "2023-06-01"}
EVENTS = pydantic.TypeAdapter(RawMessageStreamEvent)


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


def root(up: FakeUpstream, prefix: str = "") -> str:
    """The SDK appends /v1/messages itself."""
    return up.url_for(prefix).removesuffix("/v1")


@pytest.fixture
def client(up: FakeUpstream) -> anthropic.Anthropic:
    up.clear()
    return anthropic.Anthropic(base_url=root(up), api_key="x", max_retries=0, timeout=5)


def create(client: anthropic.Anthropic, **kwargs: Any) -> Message:
    """A Message, validated strictly against the SDK's type from the raw JSON."""
    kwargs.setdefault("model", "echo")
    kwargs.setdefault("max_tokens", 100)
    raw = client.messages.with_raw_response.create(**kwargs)
    Message.model_validate(json.loads(raw.http_response.text), strict=True)
    return raw.parse()


def sse(
    up: FakeUpstream, body: dict[str, Any], path: str = "/v1/messages"
) -> tuple[list[dict], Exception | None]:
    """The events of a stream off the wire, each ``event:`` name checked against its data's ``type``."""
    events: list[dict] = []
    name = None
    try:
        with requests.post(
            root(up) + path, json={**body, "stream": True}, headers=HEADERS, stream=True
        ) as answer:
            assert answer.status_code == 200
            assert answer.headers["Content-Type"].startswith("text/event-stream")
            for raw in answer.iter_lines():
                line = raw.decode()
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    data = json.loads(line[6:])
                    assert data["type"] == name
                    if name != "ping":
                        EVENTS.validate_python(data)
                    events.append(data)
    except requests.RequestException as exc:
        return events, exc
    return events, None


def usage_of(message: Message) -> tuple[int, int, int, int]:
    u = message.usage
    return u.input_tokens, u.cache_creation_input_tokens or 0, u.cache_read_input_tokens or 0, u.output_tokens


# ------------------------------------------------------------------------------------------- basics


def test_create_echoes_and_counts_and_records_the_headers(
    client: anthropic.Anthropic, up: FakeUpstream
) -> None:
    message = create(client, messages=HELLO)

    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "You said: hello there"  # type: ignore[union-attr]
    assert (message.role, message.model, message.stop_reason, message.stop_sequence) == (
        "assistant",
        "echo",
        "end_turn",
        None,
    )
    assert message.id.startswith("msg_") and message._request_id and message._request_id.startswith("req_")
    # 2 words + 3 for the message in; 4 words out.
    assert usage_of(message) == (5, 0, 0, 4)
    assert message.usage.cache_creation is not None and message.usage.service_tier == "standard"
    record = up.requests[-1]
    assert (record.method, record.path, record.prefix, record.query) == ("POST", "/v1/messages", "", {})
    assert record.headers["authorization"] == "Bearer x" and record.headers["anthropic-version"]
    assert record.json["messages"] == HELLO and record.json["max_tokens"] == 100


def test_x_api_key_beta_header_and_query_are_recorded(up: FakeUpstream) -> None:
    up.clear()
    keyed = anthropic.Anthropic(
        base_url=root(up),
        api_key="x",
        max_retries=0,
        default_headers={"Authorization": anthropic.omit, "x-api-key": "sk-ant-key"},  # type: ignore[dict-item]
    )

    keyed.beta.messages.create(
        model="echo",
        max_tokens=10,
        messages=HELLO,
        betas=["context-management-2025-06-27", "interleaved-thinking-2025-05-14"],
        extra_query={"beta": "true"},
        extra_body={"context_management": {"edits": []}, "output_config": {"effort": "high"}},
    )

    record = up.requests[-1]
    assert record.path == "/v1/messages" and record.query == {"beta": "true"}
    assert record.headers["x-api-key"] == "sk-ant-key" and "authorization" not in record.headers
    assert record.headers["anthropic-beta"] == "context-management-2025-06-27,interleaved-thinking-2025-05-14"


def test_missing_key_or_version_is_refused(up: FakeUpstream) -> None:
    body: Any = {"model": "echo", "max_tokens": 5, "messages": HELLO}
    url = root(up) + "/v1/messages"

    no_key = requests.post(url, json=body, headers={"anthropic-version": "2023-06-01"})
    no_version = requests.post(url, json=body, headers={"x-api-key": "k"})
    no_model = requests.post(url, json={**body, "model": None}, headers=HEADERS)

    assert no_key.status_code == 401 and no_key.json()["error"]["type"] == "authentication_error"
    assert no_version.status_code == 400
    assert no_version.json()["error"] == {
        "type": "invalid_request_error",
        "message": "anthropic-version: header is required",
    }
    assert no_version.json()["request_id"] == no_version.headers["request-id"]
    assert no_model.status_code == 400 and no_model.json()["error"]["message"] == "model: Field required"
    with pytest.raises(anthropic.AuthenticationError):
        anthropic.Anthropic(
            base_url=root(up),
            api_key="x",
            max_retries=0,
            default_headers={"Authorization": anthropic.omit},  # type: ignore[dict-item]
        ).messages.create(model="echo", max_tokens=5, messages=HELLO)


# ------------------------------------------------------------------------------------------- stream


def test_stream_helper_final_message_and_usage(client: anthropic.Anthropic) -> None:
    with client.messages.stream(model="echo", max_tokens=100, messages=HELLO) as stream:
        pieces = list(stream.text_stream)
        final = stream.get_final_message()

    assert pieces == ["You", " said:", " hello", " there"]
    assert final.content[0].text == "You said: hello there"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn" and usage_of(final) == (5, 0, 0, 4)


def test_stream_event_sequence_on_the_wire(up: FakeUpstream) -> None:
    events, error = sse(up, {"model": "echo", "max_tokens": 100, "messages": HELLO})

    assert error is None
    assert [e["type"] for e in events] == [
        "message_start",
        "content_block_start",
        "ping",
        *["content_block_delta"] * 4,
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]
    start = events[0]["message"]
    assert start["content"] == [] and start["stop_reason"] is None and start["stop_sequence"] is None
    assert start["usage"]["input_tokens"] == 5 and start["usage"]["output_tokens"] == 1
    assert events[1]["content_block"] == {"type": "text", "text": ""}
    assert [e["delta"] for e in events[3:7]] == [
        {"type": "text_delta", "text": t} for t in ("You", " said:", " hello", " there")
    ]
    assert events[-2]["delta"] == {"stop_reason": "end_turn", "stop_sequence": None}
    assert events[-2]["usage"] == {
        "input_tokens": 5,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "output_tokens": 4,
    }


def test_cut_after_aborts_after_n_deltas(up: FakeUpstream) -> None:
    events, error = sse(up, {"model": "cut-after:2", "max_tokens": 100, "messages": HELLO})

    assert error is not None
    assert [e["type"] for e in events] == ["message_start", "content_block_start", "ping"] + [
        "content_block_delta"
    ] * 2


# ---------------------------------------------------------------------------------------------- tools


def test_tool_use_loop(client: anthropic.Anthropic) -> None:
    messages: list[Any] = [{"role": "user", "content": "weather in Paris?"}]
    asked = create(client, messages=messages, tools=[WEATHER, CLOCK])

    assert asked.stop_reason == "tool_use" and len(asked.content) == 1
    call = asked.content[0]
    assert call.type == "tool_use" and call.id.startswith("toolu_")
    assert (call.name, call.input) == ("get_weather", {})
    # In: the tools 3+1+4 and 3+1, the message 3+3. Out: the call is 2.
    assert usage_of(asked) == (18, 0, 0, 2)

    messages += [
        {"role": "assistant", "content": [block.model_dump(exclude_none=True) for block in asked.content]},
        {
            "role": "user",
            "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny, 21C"}],
        },
    ]
    answered = create(client, messages=messages, tools=[WEATHER, CLOCK])

    assert answered.stop_reason == "end_turn"
    assert answered.content[0].text == "Tool said: sunny, 21C"  # type: ignore[union-attr]
    # 18 as before, + the assistant's 3 + 2 (name, "{}"), + the user's 3 + 2 result words.
    assert usage_of(answered) == (28, 0, 0, 4)


def test_tool_choice(client: anthropic.Anthropic) -> None:
    named = create(
        client, messages=HELLO, tools=[WEATHER, CLOCK], tool_choice={"type": "tool", "name": "get_time"}
    )
    none = create(client, messages=HELLO, tools=[WEATHER], tool_choice={"type": "none"})

    assert named.content[0].type == "tool_use" and named.content[0].name == "get_time"
    assert none.content[0].text == "You said: hello there"  # type: ignore[union-attr]
    with pytest.raises(anthropic.BadRequestError, match="not found in tools"):
        create(client, messages=HELLO, tools=[WEATHER], tool_choice={"type": "tool", "name": "nope"})


def test_tool_use_stream(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    events, _ = sse(up, {"model": "echo", "max_tokens": 100, "messages": HELLO, "tools": [WEATHER]})
    with client.messages.stream(model="echo", max_tokens=100, messages=HELLO, tools=[WEATHER]) as stream:
        final = stream.get_final_message()

    opening = events[1]["content_block"]
    assert opening["type"] == "tool_use" and opening["name"] == "get_weather" and opening["input"] == {}
    deltas = [e["delta"] for e in events if e["type"] == "content_block_delta"]
    assert deltas == [{"type": "input_json_delta", "partial_json": p} for p in ("{", "}")]
    assert events[-2]["delta"]["stop_reason"] == "tool_use"
    assert final.content[0].type == "tool_use" and final.content[0].input == {}


def test_tool_results_must_pair_with_tool_uses(client: anthropic.Anthropic) -> None:
    stray = [{"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_x", "content": "1"}]}]
    unanswered = [
        {"role": "user", "content": "hi"},
        {
            "role": "assistant",
            "content": [{"type": "tool_use", "id": "toolu_y", "name": "get_time", "input": {}}],
        },
        {"role": "user", "content": "and?"},
    ]

    with pytest.raises(anthropic.BadRequestError, match="unexpected `tool_use_id`"):
        create(client, messages=stray, tools=[CLOCK])
    with pytest.raises(
        anthropic.BadRequestError, match="without `tool_result` blocks immediately after: toolu_y"
    ):
        create(client, messages=unanswered, tools=[CLOCK])


# ------------------------------------------------------------------------------------ stop and limits


def test_stop_sequence(client: anthropic.Anthropic) -> None:
    messages = [{"role": "user", "content": "hello there friend"}]
    message = create(client, messages=messages, stop_sequences=["zzz", "there"])

    assert message.content[0].text == "You said: hello"  # type: ignore[union-attr]
    assert (message.stop_reason, message.stop_sequence) == ("stop_sequence", "there")
    assert message.usage.output_tokens == 3


def test_max_tokens_truncates(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    message = create(client, model="long:10", messages=HELLO, max_tokens=3)
    events, _ = sse(up, {"model": "long:10", "max_tokens": 3, "messages": HELLO})

    assert message.content[0].text == "w1 w2 w3"  # type: ignore[union-attr]
    assert message.stop_reason == "max_tokens" and message.usage.output_tokens == 3
    assert len([e for e in events if e["type"] == "content_block_delta"]) == 3
    assert events[-2]["delta"]["stop_reason"] == "max_tokens" and events[-2]["usage"]["output_tokens"] == 3


def test_thinking_comes_first_and_counts_as_output(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    thinking = {"type": "enabled", "budget_tokens": 1024}
    message = create(client, messages=HELLO, max_tokens=2048, thinking=thinking)
    events, _ = sse(
        up, {"model": "echo", "max_tokens": 2048, "messages": HELLO, "thinking": {"type": "adaptive"}}
    )

    assert [block.type for block in message.content] == ["thinking", "text"]
    block = message.content[0]
    assert block.type == "thinking" and block.thinking == "Thinking about how to answer." and block.signature
    assert message.usage.output_tokens == 5 + 4
    assert events[1]["content_block"] == {"type": "thinking", "thinking": "", "signature": ""}
    kinds = [e["delta"]["type"] for e in events if e["type"] == "content_block_delta" and e["index"] == 0]
    assert kinds == ["thinking_delta"] * 5 + ["signature_delta"]
    with pytest.raises(anthropic.BadRequestError, match="greater than or equal to 1024"):
        create(client, messages=HELLO, max_tokens=2048, thinking={"type": "enabled", "budget_tokens": 100})
    with pytest.raises(
        anthropic.BadRequestError, match=re.escape("must be greater than `thinking.budget_tokens`")
    ):
        create(client, messages=HELLO, max_tokens=1024, thinking=thinking)


# -------------------------------------------------------------------------------------- count_tokens


def test_count_tokens_matches_a_message_input(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    system = [{"type": "text", "text": "You are terse.", "cache_control": {"type": "ephemeral"}}]
    prompt: dict[str, Any] = {"system": system, "tools": [WEATHER], "messages": HELLO}

    counted = client.messages.count_tokens(model="echo", **prompt)
    message = create(client, **prompt)

    MessageTokensCount.model_validate(counted.model_dump(), strict=True)
    # The tool 3+1+4, the system 3 words, the message 3+2.
    assert counted.input_tokens == 16
    assert usage_of(message)[:3] == (5, 11, 0)  # written: up to the marked system block
    assert up.requests[-2].path == "/v1/messages/count_tokens"
    with pytest.raises(anthropic.BadRequestError, match="messages: at least one message"):
        client.messages.count_tokens(model="echo", messages=[])


# ------------------------------------------------------------------------------------- prompt caching


def test_cache_writes_then_reads_by_ttl(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    system = [
        {"type": "text", "text": "one two three four", "cache_control": {"type": "ephemeral", "ttl": "1h"}},
    ]
    first_turn = {
        "role": "user",
        "content": [{"type": "text", "text": "a b", "cache_control": {"type": "ephemeral"}}],
    }

    first = create(client, system=system, messages=[first_turn])
    second = create(client, system=system, messages=[first_turn])

    # system 4 (1h), then the message's 3 + 2 (5m); nothing after the last breakpoint.
    assert usage_of(first) == (0, 9, 0, 4)
    assert first.usage.cache_creation is not None
    assert first.usage.cache_creation.ephemeral_1h_input_tokens == 4
    assert first.usage.cache_creation.ephemeral_5m_input_tokens == 5
    assert usage_of(second) == (0, 0, 9, 4)

    # The conversation goes on and the marker moves to its new end: what was written is read back.
    plain_turn = {"role": "user", "content": [{"type": "text", "text": "a b"}]}
    said = {"role": "assistant", "content": "You said: a b"}
    last = {
        "role": "user",
        "content": [{"type": "text", "text": "c", "cache_control": {"type": "ephemeral"}}],
    }
    third = create(
        client, system=system, messages=[plain_turn, said, last, {"role": "assistant", "content": ""}]
    )
    # read 9; written: the assistant 3 + 4 and the user 3 + 1; in: the empty final assistant's 3.
    assert usage_of(third) == (3, 11, 9, 3)

    up.clear()
    assert len(up.prompt_cache) == 0
    assert usage_of(create(client, system=system, messages=[first_turn]))[:3] == (0, 9, 0)


def test_cache_is_per_provider_prefix_and_top_level_marker(up: FakeUpstream) -> None:
    up.clear()
    body: dict[str, Any] = {
        "model": "echo",
        "max_tokens": 10,
        "messages": HELLO,
        "cache_control": {"type": "ephemeral"},
    }
    main = anthropic.Anthropic(base_url=root(up), api_key="x", max_retries=0)
    other = anthropic.Anthropic(base_url=root(up, "p7"), api_key="x", max_retries=0)

    assert usage_of(main.messages.create(**body))[:3] == (0, 5, 0)
    assert usage_of(other.messages.create(**body))[:3] == (0, 5, 0)
    assert usage_of(other.messages.create(**body))[:3] == (0, 0, 5)
    assert [r.prefix for r in up.requests] == ["", "p7", "p7"]
    assert up.requests[-1].path == "/p7/v1/messages"


def test_too_many_breakpoints(client: anthropic.Anthropic) -> None:
    marked = {"type": "text", "text": "x", "cache_control": {"type": "ephemeral"}}
    with pytest.raises(anthropic.BadRequestError, match="A maximum of 4 blocks with cache_control"):
        create(client, messages=[{"role": "user", "content": [marked] * 5}])


# -------------------------------------------------------------------------------------- failures


def test_typed_errors(client: anthropic.Anthropic) -> None:
    with pytest.raises(anthropic.RateLimitError) as limited:
        create(client, model="fail-429:3", messages=HELLO)
    with pytest.raises(anthropic.AuthenticationError):
        create(client, model="fail-401", messages=HELLO)
    with pytest.raises(anthropic.OverloadedError) as overloaded:
        create(client, model="fail-529", messages=HELLO)
    with pytest.raises(anthropic.InternalServerError) as broken:
        create(client, model="fail-500", messages=HELLO)
    with pytest.raises(anthropic.BadRequestError) as bad:
        create(client, messages=HELLO, max_tokens=anthropic.omit)

    assert limited.value.response.headers["retry-after"] == "3"
    assert limited.value.body["error"]["type"] == "rate_limit_error"  # type: ignore[index]
    assert overloaded.value.body["error"]["type"] == "overloaded_error"  # type: ignore[index]
    assert broken.value.body["error"]["type"] == "api_error"  # type: ignore[index]
    assert bad.value.body == {
        "type": "error",
        "error": {"type": "invalid_request_error", "message": "max_tokens: Field required"},
        "request_id": bad.value.request_id,
    }


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"max_tokens": 0}, "max_tokens: Input should be greater than or equal to 1"),
        (
            {"messages": [{"role": "system", "content": "x"}]},
            "messages.0.role: Input should be 'user' or 'assistant'",
        ),
        ({"messages": [{"role": "user"}]}, "messages.0.content: Field required"),
        (
            {"messages": [{"role": "user", "content": ""}]},
            "messages.0: all messages must have non-empty content",
        ),
        (
            {"messages": [{"role": "user", "content": [{"text": "x"}]}]},
            "messages.0.content.0.type: Field required",
        ),
        ({"temperature": 1.5}, "temperature: Input should be between 0 and 1"),
        ({"system": 3}, "system: Input should be a valid string or a list of text blocks"),
        ({"tools": [{"name": "t"}]}, "tools.0.custom.input_schema: Field required"),
    ],
)
def test_invalid_requests(up: FakeUpstream, change: dict, message: str) -> None:
    body = {"model": "echo", "max_tokens": 5, "messages": HELLO, **change}
    answer = requests.post(root(up) + "/v1/messages", json=body, headers=HEADERS)

    assert answer.status_code == 400
    assert answer.json()["error"]["type"] == "invalid_request_error"
    assert answer.json()["error"]["message"].startswith(message)


def test_misbehaviours(client: anthropic.Anthropic, up: FakeUpstream) -> None:
    with pytest.raises(anthropic.APIConnectionError):
        create(client, model="early-close", messages=HELLO)
    with pytest.raises(anthropic.APIConnectionError):
        create(client, model="cut-after:1", messages=HELLO)
    with pytest.raises(json.JSONDecodeError):
        create(client, model="garbage", messages=HELLO)
    assert usage_of(create(client, model="no-usage", messages=HELLO)) == (0, 0, 0, 0)

    with pytest.raises(anthropic.APITimeoutError):
        client.with_options(timeout=0.2).messages.create(model="hang", max_tokens=5, messages=HELLO)
    assert up.wait_for_disconnect(1.0, model="hang") is not None
    with client.messages.stream(model="slow-stream:0.05", max_tokens=100, messages=HELLO) as stream:
        events = iter(stream)
        for _ in range(4):
            next(events)
        stream.close()
    record = up.wait_for_disconnect(1.0, model="slow-stream:0.05")
    assert record is not None and record.stream and 4 <= record.chunks_sent < 20
    started = time.monotonic()
    slow = create(client, model="slow-first-byte:0.2", messages=HELLO)
    assert time.monotonic() - started >= 0.2
    assert slow.content[0].text == "You said: hello there"  # type: ignore[union-attr]
