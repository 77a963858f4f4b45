"""Quick checks of the fake upstream itself, so gateway test failures can be trusted to be the gateway's.

Runs without Django (``-p no:django``): only the server, the ``openai`` SDK and aiohttp are involved.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterator

import aiohttp
import openai
import pytest

from tests.upstream import FakeUpstream

USER_HELLO = [{"role": "user", "content": "hello there"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {}}},
}


@pytest.fixture(scope="module")
def up() -> Iterator[FakeUpstream]:
    with FakeUpstream() as server:
        yield server


@pytest.fixture
def client(up: FakeUpstream) -> openai.OpenAI:
    up.clear()
    return openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0, timeout=5)


def test_plain_completion(client: openai.OpenAI, up: FakeUpstream) -> None:
    reply = client.chat.completions.create(model="echo", messages=USER_HELLO)

    choice = reply.choices[0]
    assert choice.message.content == "You said: hello there"
    assert choice.finish_reason == "stop"
    assert reply.object == "chat.completion"
    # 2 prompt words + 3 for the message; 4 content words.
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (5, 4, 9)
    assert up.count(prefix="", model="echo") == 1
    record = up.requests[0]
    assert record.method == "POST" and record.path == "/v1/chat/completions"
    assert record.headers["authorization"] == "Bearer x"
    assert record.json["messages"] == USER_HELLO


def test_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="echo", messages=USER_HELLO, stream=True, stream_options={"include_usage": True}
        )
    )

    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: hello there"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert len({c.id for c in chunks}) == 1 and len({c.created for c in chunks}) == 1
    assert chunks[-2].choices[0].finish_reason == "stop"
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None and last.usage.completion_tokens == 4 and last.usage.total_tokens == 9
    assert all(c.usage is None for c in chunks[:-1])


def test_max_tokens_truncates(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="long:10", messages=USER_HELLO, max_tokens=3)

    assert reply.choices[0].message.content == "w1 w2 w3"
    assert reply.choices[0].finish_reason == "length"
    assert reply.usage is not None and reply.usage.completion_tokens == 3


def test_fail_statuses(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.chat.completions.create(model="fail-500", messages=USER_HELLO)
    with pytest.raises(openai.RateLimitError) as info:
        client.chat.completions.create(model="fail-429:2", messages=USER_HELLO)
    assert info.value.response.headers["retry-after"] == "2"
    assert info.value.code == "rate_limit_exceeded"


def test_tool_call(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="gpt-x", messages=USER_HELLO, tools=[WEATHER_TOOL])
    choice = reply.choices[0]
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    call = choice.message.tool_calls[0]
    assert call.id.startswith("call_")
    assert (call.function.name, call.function.arguments) == ("get_weather", "{}")

    deltas = [
        c.choices[0]
        for c in client.chat.completions.create(
            model="gpt-x", messages=USER_HELLO, tools=[WEATHER_TOOL], stream=True
        )
    ]
    opening = deltas[0].delta.tool_calls[0]
    assert (opening.index, opening.type) == (0, "function") and opening.id.startswith("call_")
    assert (opening.function.name, opening.function.arguments) == ("get_weather", "")
    assert deltas[1].delta.tool_calls[0].function.arguments == "{}"
    assert deltas[-1].finish_reason == "tool_calls"

    none_reply = client.chat.completions.create(
        model="gpt-x", messages=USER_HELLO, tools=[WEATHER_TOOL], tool_choice="none"
    )
    assert none_reply.choices[0].message.content == "You said: hello there"


def test_disconnect_is_noticed(client: openai.OpenAI, up: FakeUpstream) -> None:
    stream = client.chat.completions.create(model="slow-stream:0.05", messages=USER_HELLO, stream=True)
    chunks = iter(stream)
    for _ in range(3):
        next(chunks)
    stream.response.close()
    closed_at = time.monotonic()

    record = up.wait_for_disconnect(1.0)
    assert record is not None
    assert record.model == "slow-stream:0.05" and record.stream
    assert 3 <= record.chunks_sent < 20
    assert record.noticed_at - closed_at < 0.2


def test_prefixes_tell_providers_apart(up: FakeUpstream) -> None:
    up.clear()
    p2 = openai.OpenAI(base_url=up.url_for("p2"), api_key="x", max_retries=0)
    assert up.url_for("/p2/") == up.url_for("p2") == up.base_url.replace("/v1", "/p2/v1")

    models = p2.models.list()
    p2.chat.completions.create(model="echo", messages=USER_HELLO)

    assert "echo" in {m.id for m in models.data}
    assert up.count(prefix="p2") == 2 and up.count(prefix="") == 0
    assert up.count(prefix="p2", model="echo") == 1


async def _raw_stream(url: str, body: dict) -> tuple[list[bytes], BaseException | None]:
    """Read SSE events off the wire until the stream ends or breaks."""
    events: list[bytes] = []
    try:
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for line in response.content:
                if line.startswith(b"data: "):
                    events.append(line[6:].strip())
    except aiohttp.ClientError as exc:
        return events, exc
    return events, None


def test_cut_after_aborts_before_done(up: FakeUpstream) -> None:
    body = {"model": "cut-after:3", "messages": USER_HELLO, "stream": True}
    events, error = asyncio.run(_raw_stream(up.base_url + "/chat/completions", body))

    assert error is not None
    assert b"[DONE]" not in events
    assert len(events) == 4  # the role chunk and 3 content chunks
    contents = [json.loads(e)["choices"][0]["delta"]["content"] for e in events[1:]]
    assert contents == ["You", " said:", " hello"]


def test_misbehaviours(client: openai.OpenAI, up: FakeUpstream) -> None:
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="early-close", messages=USER_HELLO)
    with pytest.raises(openai.APIConnectionError):
        client.chat.completions.create(model="cut-after:1", messages=USER_HELLO)
    with pytest.raises(json.JSONDecodeError):
        client.chat.completions.create(model="garbage", messages=USER_HELLO)
    assert client.chat.completions.create(model="no-usage", messages=USER_HELLO).usage is None
    stream = client.chat.completions.create(
        model="no-usage", messages=USER_HELLO, stream=True, stream_options={"include_usage": True}
    )
    assert all(c.choices for c in stream)

    impatient = client.with_options(timeout=0.2)
    with pytest.raises(openai.APITimeoutError):
        impatient.chat.completions.create(model="hang", messages=USER_HELLO)
    assert up.wait_for_disconnect(1.0, model="hang") is not None
    started = time.monotonic()
    reply = client.chat.completions.create(model="slow-first-byte:0.2", messages=USER_HELLO)
    assert time.monotonic() - started >= 0.2
    assert reply.choices[0].message.content == "You said: hello there"
