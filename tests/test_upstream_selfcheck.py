"""Quick checks of the fake upstream itself, so gateway test failures can be trusted to be the gateway's.

Needs no database or gateway: only the server, the ``openai`` SDK and aiohttp are involved.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import struct
import time
from collections.abc import Iterator

import aiohttp
import openai
import pytest
from openai.types.responses import Response

from tests.spec import validator_for
from tests.upstream import (
    SLOW_STREAM_MIN_WORDS,
    FakeUpstream,
    ResponseStore,
    UsageReport,
    embedding_vector,
    parse_behaviour,
)

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


# ------------------------------------------------------------------------------------------ embeddings


@pytest.mark.parametrize(
    ("given", "items", "tokens"),
    [
        ("hello there", ["hello there"], 2),
        (["one two three", "four"], ["one two three", "four"], 4),
        ([101, 102, 103], [[101, 102, 103]], 3),
        ([[1, 2], [3], [4, 5, 6]], [[1, 2], [3], [4, 5, 6]], 6),
    ],
    ids=["string", "strings", "tokens", "token-lists"],
)
def test_embeddings_input_forms(client: openai.OpenAI, up: FakeUpstream, given, items, tokens) -> None:
    reply = client.embeddings.create(model="emb", input=given, encoding_format="float", user="u-1")

    assert reply.object == "list" and reply.model == "emb"
    assert [d.index for d in reply.data] == list(range(len(items)))
    assert all(d.object == "embedding" for d in reply.data)
    assert [d.embedding for d in reply.data] == [embedding_vector(item) for item in items]
    assert all(len(d.embedding) == 8 for d in reply.data)
    assert all(math.isclose(math.fsum(x * x for x in d.embedding), 1.0, rel_tol=1e-6) for d in reply.data)
    assert (reply.usage.prompt_tokens, reply.usage.total_tokens) == (tokens, tokens)
    record = up.requests[0]
    assert record.path == "/v1/embeddings" and record.json["input"] == given and record.json["user"] == "u-1"


def test_embedding_vectors_are_deterministic_and_tell_inputs_apart() -> None:
    assert embedding_vector("hello") == embedding_vector("hello")
    assert embedding_vector("hello") != embedding_vector("hello ")
    # The text "[1]" and the token list [1] are different inputs.
    assert embedding_vector("[1]") != embedding_vector([1]) == embedding_vector((1,))
    assert all(-1.0 <= x <= 1.0 for x in embedding_vector("x", 300))


def _floats(encoded: str) -> list[float]:
    raw = base64.b64decode(encoded)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


def test_embeddings_base64_is_little_endian_float32_of_the_vector(
    client: openai.OpenAI, up: FakeUpstream
) -> None:
    asked = client.embeddings.create(model="emb", input=["alpha", "beta gamma"], encoding_format="base64")

    encoded = [d.embedding for d in asked.data]
    assert all(isinstance(e, str) for e in encoded)  # the SDK hands an explicit base64 answer over as is
    assert [_floats(e) for e in encoded] == [embedding_vector("alpha"), embedding_vector("beta gamma")]

    # Without encoding_format the SDK asks for base64 itself and decodes it.
    default = client.embeddings.create(model="emb", input="alpha")
    assert up.requests[-1].json["encoding_format"] == "base64"
    assert default.data[0].embedding == embedding_vector("alpha")


def test_embeddings_float_only_ignores_base64(client: openai.OpenAI) -> None:
    reply = client.embeddings.create(model="float-only", input=["alpha", "beta"], encoding_format="base64")

    assert [d.embedding for d in reply.data] == [embedding_vector("alpha"), embedding_vector("beta")]
    assert client.embeddings.create(model="float-only", input="alpha").data[0].embedding == embedding_vector(
        "alpha"
    )


def test_embeddings_dimensions(client: openai.OpenAI) -> None:
    for dimensions in (1, 3, 20, 1536):
        reply = client.embeddings.create(
            model="emb", input="some text", dimensions=dimensions, encoding_format="float"
        )
        vector = reply.data[0].embedding
        assert len(vector) == dimensions
        assert vector == embedding_vector("some text", dimensions)
        assert math.isclose(math.fsum(x * x for x in vector), 1.0, rel_tol=1e-6)
    assert embedding_vector("some text", 1) in ([1.0], [-1.0])
    b64 = client.embeddings.create(model="emb", input="some text", dimensions=5, encoding_format="base64")
    assert _floats(b64.data[0].embedding) == embedding_vector("some text", 5)


def test_embeddings_failures(client: openai.OpenAI) -> None:
    with pytest.raises(openai.InternalServerError):
        client.embeddings.create(model="fail-500", input="x")
    with pytest.raises(openai.RateLimitError) as info:
        client.embeddings.create(model="fail-429:4", input="x")
    assert info.value.response.headers["retry-after"] == "4"
    with pytest.raises(json.JSONDecodeError):
        client.embeddings.create(model="garbage", input="x")
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="cut-after", input="x")
    with pytest.raises(openai.APIConnectionError):
        client.embeddings.create(model="early-close", input="x")
    assert client.embeddings.create(model="no-usage", input="x", encoding_format="float").usage is None
    for bad, param in ((["a", 1], "input"), ("", "input"), ([], "input")):
        with pytest.raises(openai.BadRequestError) as bad_request:
            client.embeddings.create(model="emb", input=bad)
        assert bad_request.value.param == param
    with pytest.raises(openai.BadRequestError) as bad_request:
        client.embeddings.create(model="emb", input="x", dimensions=0)
    assert bad_request.value.param == "dimensions"


# ---------------------------------------------------------------------------------- legacy completions


def test_legacy_completion(client: openai.OpenAI, up: FakeUpstream) -> None:
    reply = client.completions.create(model="echo", prompt="hello there")

    assert reply.object == "text_completion" and reply.id.startswith("cmpl-") and reply.model == "echo"
    assert reply.created > 0
    choice = reply.choices[0]
    assert (choice.text, choice.index, choice.finish_reason, choice.logprobs) == (
        "You said: hello there",
        0,
        "stop",
        None,
    )
    assert reply.usage is not None
    assert (reply.usage.prompt_tokens, reply.usage.completion_tokens, reply.usage.total_tokens) == (2, 4, 6)
    record = up.requests[0]
    assert record.path == "/v1/completions" and record.json["prompt"] == "hello there"


@pytest.mark.parametrize(
    ("prompt", "texts", "prompt_tokens"),
    [
        ("a  b", ["You said: a b"], 2),
        (["a b", "c"], ["You said: a b", "You said: c"], 3),
        ([7, 8, 9], ["You said: t7 t8 t9"], 3),
        ([[7], [8, 9]], ["You said: t7", "You said: t8 t9"], 3),
    ],
    ids=["string", "strings", "tokens", "token-lists"],
)
def test_legacy_prompt_forms(client: openai.OpenAI, prompt, texts, prompt_tokens) -> None:
    reply = client.completions.create(model="echo", prompt=prompt)

    assert [c.text for c in reply.choices] == texts
    assert [c.index for c in reply.choices] == list(range(len(texts)))
    assert reply.usage is not None and reply.usage.prompt_tokens == prompt_tokens
    assert reply.usage.completion_tokens == sum(len(t.split()) for t in texts)


def test_legacy_echo_and_suffix(client: openai.OpenAI) -> None:
    echoed = client.completions.create(model="echo", prompt="hi there", echo=True)
    assert echoed.choices[0].text == "hi there You said: hi there"
    assert echoed.usage is not None and (echoed.usage.prompt_tokens, echoed.usage.completion_tokens) == (2, 4)

    suffixed = client.completions.create(model="echo", prompt="hi", suffix="the end")
    assert suffixed.choices[0].text == "You said: hi the end"
    assert suffixed.usage is not None and (
        suffixed.usage.prompt_tokens,
        suffixed.usage.completion_tokens,
    ) == (3, 5)

    tokens = client.completions.create(model="long:2", prompt=[5, 6], echo=True)
    assert tokens.choices[0].text == "t5 t6 w1 w2"


def test_legacy_n_over_a_list_of_prompts_and_best_of(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="echo", prompt=["a", "b c", "d"], n=2)

    assert [c.index for c in reply.choices] == [0, 1, 2, 3, 4, 5]
    texts = ["You said: a", "You said: a", "You said: b c", "You said: b c", "You said: d", "You said: d"]
    assert [c.text for c in reply.choices] == texts
    assert reply.usage is not None and (reply.usage.prompt_tokens, reply.usage.completion_tokens) == (4, 20)

    # best_of candidates are billed but not returned.
    best = client.completions.create(model="echo", prompt=["a", "b c"], n=1, best_of=3)
    assert [c.text for c in best.choices] == ["You said: a", "You said: b c"]
    assert best.usage is not None and best.usage.completion_tokens == (3 + 4) * 3
    assert best.usage.total_tokens == 3 + 21


def test_legacy_stop_and_max_tokens(client: openai.OpenAI) -> None:
    def one(**kwargs) -> tuple[str, str, int]:
        reply = client.completions.create(
            model=kwargs.pop("model", "echo"), prompt="hello big world", **kwargs
        )
        assert reply.usage is not None
        return reply.choices[0].text, reply.choices[0].finish_reason, reply.usage.completion_tokens

    assert one(stop="world") == ("You said: hello big", "stop", 4)
    assert one(stop=["world", "nothing", "ig"]) == ("You said: hello", "stop", 3)  # the earliest match wins
    # The word a match ends in is the first one dropped, even when the match starts earlier.
    assert one(stop="big w") == ("You said: hello big", "stop", 4)
    assert one(stop="You") == ("", "stop", 0)
    assert one(stop="absent") == ("You said: hello big world", "stop", 5)
    assert one(max_tokens=2) == ("You said:", "length", 2)
    assert one(max_tokens=2, stop="world") == ("You said:", "length", 2)
    assert one(max_tokens=5) == ("You said: hello big world", "stop", 5)
    long_text = " ".join(f"w{i}" for i in range(1, 17))
    assert one(model="long:40") == (long_text, "length", 16)  # the legacy default max_tokens is 16
    assert one(model="long:40", max_tokens=30)[2] == 30


def test_legacy_logprobs(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="echo", prompt="hello there", logprobs=3, max_tokens=3)

    choice = reply.choices[0]
    logprobs = choice.logprobs
    assert logprobs is not None
    assert logprobs.tokens == ["You", " said:", " hello"]
    assert "".join(logprobs.tokens) == choice.text
    assert logprobs.token_logprobs == [-0.5, -0.75, -0.75]
    assert logprobs.text_offset == [0, 3, 9]
    assert logprobs.top_logprobs is not None
    assert logprobs.top_logprobs[0] == {"You": -0.5, " alt1": -1.5, " alt2": -2.5}
    assert all(len(top) == 3 for top in logprobs.top_logprobs)
    with pytest.raises(openai.BadRequestError):
        client.completions.create(model="echo", prompt="x", logprobs=6)


def test_legacy_stream_with_usage(client: openai.OpenAI) -> None:
    chunks = list(
        client.completions.create(
            model="echo", prompt="hello there", stream=True, stream_options={"include_usage": True}
        )
    )

    assert [c.choices[0].text for c in chunks[:4]] == ["You", " said:", " hello", " there"]
    assert all(c.object == "text_completion" and len(c.choices) == 1 for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and chunks[0].id.startswith("cmpl-")
    assert all(c.choices[0].finish_reason is None for c in chunks[:4])
    assert chunks[-2].choices[0].finish_reason == "stop" and chunks[-2].choices[0].text == ""
    last = chunks[-1]
    assert last.choices == [] and last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens, last.usage.total_tokens) == (2, 4, 6)
    assert all(c.usage is None for c in chunks[:-1])

    without = list(client.completions.create(model="echo", prompt="hello there", stream=True))
    assert len(without) == 5 and all(c.choices for c in without)


def test_legacy_stream_of_several_choices_with_logprobs(client: openai.OpenAI) -> None:
    stream = client.completions.create(
        model="echo", prompt=["a b", "c"], n=2, max_tokens=3, logprobs=1, echo=True, stream=True
    )
    texts: dict[int, str] = {}
    finish: dict[int, str | None] = {}
    offsets: dict[int, list[int]] = {}
    for chunk in stream:
        (choice,) = chunk.choices
        texts[choice.index] = texts.get(choice.index, "") + choice.text
        if choice.finish_reason:
            finish[choice.index] = choice.finish_reason
        assert choice.logprobs is not None
        offsets.setdefault(choice.index, []).extend(choice.logprobs.text_offset or [])

    assert texts == {0: "a b You said: a", 1: "a b You said: a", 2: "c You said: c", 3: "c You said: c"}
    assert finish == {0: "length", 1: "length", 2: "stop", 3: "stop"}
    assert offsets[0] == [0, 1, 3, 7, 13]


def test_legacy_stream_cut_after_aborts_before_done(up: FakeUpstream) -> None:
    body = {"model": "cut-after:2", "prompt": "hello there", "stream": True}
    events, error = asyncio.run(_raw_stream(up.base_url + "/completions", body))

    assert error is not None
    assert b"[DONE]" not in events
    assert [json.loads(e)["choices"][0]["text"] for e in events] == ["You", " said:"]


def test_legacy_failures(client: openai.OpenAI, up: FakeUpstream) -> None:
    with pytest.raises(openai.InternalServerError):
        client.completions.create(model="fail-500", prompt="x")
    with pytest.raises(openai.NotFoundError):
        client.completions.create(model="fail-404", prompt="x", stream=True)
    with pytest.raises(json.JSONDecodeError):
        client.completions.create(model="garbage", prompt="x")
    with pytest.raises(openai.APIConnectionError):
        client.completions.create(model="early-close", prompt="x")
    with pytest.raises(openai.APIConnectionError):
        client.completions.create(model="cut-after:1", prompt="x")
    assert client.completions.create(model="no-usage", prompt="x").usage is None
    stream = client.completions.create(
        model="no-usage", prompt="x", stream=True, stream_options={"include_usage": True}
    )
    assert all(c.choices for c in stream)
    with pytest.raises(openai.BadRequestError) as info:
        client.completions.create(model="echo", prompt=[1, "x"])
    assert info.value.param == "prompt"

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).completions.create(model="hang", prompt="x")
    assert up.wait_for_disconnect(1.0, model="hang") is not None
    started = time.monotonic()
    reply = client.completions.create(model="slow-first-byte:0.2", prompt="x")
    assert time.monotonic() - started >= 0.2 and reply.choices[0].text == "You said: x"


def test_slow_legacy_stream_paces_its_chunks(client: openai.OpenAI) -> None:
    started = time.monotonic()
    chunks = list(
        client.completions.create(model="slow-stream:0.02", prompt="hi", stream=True, max_tokens=25)
    )

    assert time.monotonic() - started >= 0.02 * (len(chunks) - 1)
    assert "".join(c.choices[0].text for c in chunks).split()[-1] == "word19"  # padded to 20 words


def test_new_endpoints_live_under_prefixes_too(up: FakeUpstream) -> None:
    up.clear()
    p3 = openai.OpenAI(base_url=up.url_for("p3"), api_key="x", max_retries=0)

    p3.embeddings.create(model="emb", input="x")
    p3.completions.create(model="echo", prompt="x")

    assert [r.path for r in up.find(prefix="p3")] == ["/p3/v1/embeddings", "/p3/v1/completions"]
    assert up.count(prefix="") == 0


# ------------------------------------------------------------------------------------------- responses

WEATHER_FUNCTION = {
    "type": "function",
    "name": "get_weather",
    "description": "Weather of a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
}
CLOCK_FUNCTION = {"type": "function", "name": "get_time", "parameters": {"type": "object", "properties": {}}}


def _assert_valid(schema: str, instance: object) -> None:
    errors = [f"{e.json_path}: {e.message[:200]}" for e in validator_for(schema).iter_errors(instance)]
    assert not errors, f"not a valid {schema}: {errors[:5]}"


def _respond(client: openai.OpenAI, **kwargs) -> tuple[Response, dict]:
    """A Response, parsed by the SDK and as raw JSON, checked against the spec's ``Response`` schema."""
    raw = client.responses.with_raw_response.create(**kwargs)
    body = json.loads(raw.text)
    _assert_valid("Response", body)
    return raw.parse(), body


async def _responses_sse(url: str, body: dict) -> tuple[list[dict], BaseException | None]:
    """The events of a streamed Response off the wire (each ``event:`` line checked against its data's
    ``type``), until the stream ends or breaks."""
    events: list[dict] = []
    name: str | None = None
    try:
        async with aiohttp.ClientSession() as session, session.post(url, json=body) as response:
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/event-stream")
            async for raw_line in response.content:
                line = raw_line.decode().rstrip("\n")
                if line.startswith("event: "):
                    name = line[7:]
                elif line.startswith("data: "):
                    assert line != "data: [DONE]"
                    data = json.loads(line[6:])
                    assert data["type"] == name
                    events.append(data)
                    name = None
    except aiohttp.ClientError as exc:
        return events, exc
    return events, None


def _stream_events(up: FakeUpstream, body: dict) -> list[dict]:
    """A whole streamed Response, every event checked against the spec's ``ResponseStreamEvent``."""
    events, error = asyncio.run(_responses_sse(up.base_url + "/responses", {**body, "stream": True}))
    assert error is None
    for event in events:
        _assert_valid("ResponseStreamEvent", event)
    assert [e["sequence_number"] for e in events] == list(range(len(events)))
    return events


def test_responses_string_input(client: openai.OpenAI, up: FakeUpstream) -> None:
    reply, body = _respond(client, model="echo", input="hello  there")

    assert reply.id.startswith("resp_") and reply.object == "response" and reply.model == "echo"
    assert reply.status == "completed" and reply.completed_at is not None and reply.created_at > 0
    assert reply.output_text == "You said: hello there"
    (message,) = reply.output
    assert message.type == "message" and message.role == "assistant" and message.status == "completed"
    assert message.id.startswith("msg_")
    assert [(p.type, p.text) for p in message.content] == [("output_text", "You said: hello there")]
    assert (body["tool_choice"], body["tools"], body["parallel_tool_calls"], body["store"]) == (
        "auto",
        [],
        True,
        True,
    )
    assert body["error"] is None and body["incomplete_details"] is None and body["instructions"] is None
    usage = reply.usage
    assert usage is not None
    # 2 input words + 3 for the message; 4 output words.
    assert (usage.input_tokens, usage.output_tokens, usage.total_tokens) == (5, 4, 9)
    assert usage.input_tokens_details.cached_tokens == 0 and usage.output_tokens_details.reasoning_tokens == 0
    record = up.requests[0]
    assert (
        record.method == "POST" and record.path == "/v1/responses" and record.json["input"] == "hello  there"
    )
    assert reply.id in up.stored_responses


def test_responses_item_input_and_instructions(client: openai.OpenAI) -> None:
    items = [
        {"role": "developer", "content": "answer in one line"},
        {"role": "user", "content": "first question"},
        {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "an answer"}]},
        {
            "type": "message",
            "role": "user",
            "content": [
                {"type": "input_text", "text": "second"},
                {"type": "input_image", "image_url": "https://example.com/x.png"},
                {"type": "input_text", "text": "question here"},
            ],
        },
    ]
    reply, body = _respond(client, model="echo", input=items, instructions="Be brief.")

    assert reply.output_text == "You said: second question here"
    assert body["instructions"] == "Be brief."
    # instructions 2 words; messages (3+4) + (3+2) + (3+2) + (3+3); output 5 words.
    assert reply.usage is not None
    assert (reply.usage.input_tokens, reply.usage.output_tokens, reply.usage.total_tokens) == (25, 5, 30)

    last_user_first = [*items[:2], {"role": "assistant", "content": "later words"}]
    assert _respond(client, model="echo", input=last_user_first)[0].output_text == "You said: first question"


def test_responses_tool_call_and_loop(client: openai.OpenAI) -> None:
    question = [{"role": "user", "content": "weather in Paris?"}]
    tools = [{"type": "web_search"}, WEATHER_FUNCTION, CLOCK_FUNCTION]
    reply, body = _respond(client, model="gpt-x", input=question, tools=tools)

    (call,) = reply.output
    assert call.type == "function_call" and call.status == "completed"
    assert (call.name, call.arguments) == ("get_weather", "{}")
    assert call.call_id.startswith("call_") and call.id is not None and call.id.startswith("fc_")
    assert reply.output_text == "" and reply.status == "completed"
    assert reply.usage is not None and reply.usage.output_tokens == 2  # a call counts as name + arguments
    assert body["tools"][0] == {"type": "web_search"}
    assert body["tools"][1] == {**WEATHER_FUNCTION, "strict": True}

    # The loop back: the call and its output come in as items, the answer quotes the output.
    loop = [
        *question,
        call.model_dump(exclude_none=True),
        {"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"},
    ]
    answer, _ = _respond(client, model="gpt-x", input=loop, tools=tools)
    assert answer.output_text == "Tool said: sunny, 21 C" and answer.output[0].type == "message"
    # (3+3) for the question, 2 for the call (name + arguments), 3 for the output.
    assert answer.usage is not None and answer.usage.input_tokens == 11 and answer.usage.output_tokens == 5

    named, body = _respond(
        client,
        model="gpt-x",
        input=question,
        tools=tools,
        tool_choice={"type": "function", "name": "get_time"},
    )
    assert named.output[0].type == "function_call" and named.output[0].name == "get_time"
    assert body["tool_choice"] == {"type": "function", "name": "get_time"}
    declined, _ = _respond(client, model="gpt-x", input=question, tools=tools, tool_choice="none")
    assert declined.output_text == "You said: weather in Paris?"
    builtin_only, _ = _respond(client, model="gpt-x", input=question, tools=[{"type": "web_search"}])
    assert builtin_only.output_text == "You said: weather in Paris?"
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(
            model="gpt-x", input=question, tools=tools, tool_choice={"type": "function", "name": "nope"}
        )
    assert info.value.param == "tool_choice"


def test_responses_previous_response_id(client: openai.OpenAI) -> None:
    first, _ = _respond(client, model="echo", input="first question", instructions="one two three")
    assert first.usage is not None and first.usage.input_tokens == 3 + 5

    second, body = _respond(client, model="echo", input="second one", previous_response_id=first.id)
    assert second.output_text == "You said: second one"
    assert body["previous_response_id"] == first.id
    # Instructions are not carried over; the first input (3+2) and output (3+4), then the new input (3+2).
    assert second.usage is not None and second.usage.input_tokens == 17

    # A turn without a user message of its own echoes the conversation's last user text.
    third, _ = _respond(
        client,
        model="echo",
        input=[{"role": "developer", "content": "go on"}],
        previous_response_id=second.id,
    )
    assert third.output_text == "You said: second one"
    assert third.usage is not None and third.usage.input_tokens == 17 + (3 + 4) + (3 + 2)

    # A tool loop across responses: the call is remembered, the output alone comes back.
    call_reply, _ = _respond(client, model="gpt-x", input="weather?", tools=[WEATHER_FUNCTION])
    call = call_reply.output[0]
    assert call.type == "function_call"
    output = {"type": "function_call_output", "call_id": call.call_id, "output": "rain"}
    answer, _ = _respond(
        client, model="gpt-x", input=[output], tools=[WEATHER_FUNCTION], previous_response_id=call_reply.id
    )
    assert answer.output_text == "Tool said: rain"
    assert answer.usage is not None and answer.usage.input_tokens == (3 + 1) + 2 + 1


def test_responses_previous_response_not_found(client: openai.OpenAI, up: FakeUpstream) -> None:
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="echo", input="x", previous_response_id="resp_unknown")
    assert info.value.param == "previous_response_id"
    assert info.value.code == "previous_response_not_found"
    assert info.value.body is not None and "resp_unknown" in info.value.body["message"]
    _assert_valid("ErrorResponse", info.value.response.json())

    unstored, body = _respond(client, model="echo", input="secret", store=False)
    assert body["store"] is False and unstored.id not in up.stored_responses
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="echo", input="x", previous_response_id=unstored.id)
    assert info.value.code == "previous_response_not_found"
    # A streamed answer is kept as well.
    streamed = _stream_events(up, {"model": "echo", "input": "streamed"})
    assert streamed[-1]["response"]["id"] in up.stored_responses


def test_response_store_forgets_the_oldest() -> None:
    store = ResponseStore(limit=2)
    for name in ("a", "b", "c"):
        store.keep(name, [{"role": "user", "content": name}])
    assert "a" not in store and len(store) == 2
    assert store.get("c") == [{"role": "user", "content": "c"}]


def test_responses_max_output_tokens_is_incomplete(client: openai.OpenAI, up: FakeUpstream) -> None:
    reply, body = _respond(client, model="long:10", input="hello", max_output_tokens=3)

    assert reply.status == "incomplete" and reply.completed_at is None
    assert reply.incomplete_details is not None and reply.incomplete_details.reason == "max_output_tokens"
    assert reply.output_text == "w1 w2 w3" and reply.output[0].status == "incomplete"
    assert body["max_output_tokens"] == 3
    assert reply.usage is not None and reply.usage.output_tokens == 3
    enough, _ = _respond(client, model="long:3", input="hello", max_output_tokens=3)
    assert enough.status == "completed" and enough.incomplete_details is None

    events = _stream_events(up, {"model": "echo", "input": "a b c d", "max_output_tokens": 2})
    assert [e["delta"] for e in events if e["type"] == "response.output_text.delta"] == ["You", " said:"]
    last = events[-1]
    assert last["type"] == "response.incomplete" and last["response"]["status"] == "incomplete"
    assert last["response"]["incomplete_details"] == {"reason": "max_output_tokens"}
    assert "response.completed" not in {e["type"] for e in events}
    with pytest.raises(openai.BadRequestError) as info:
        client.responses.create(model="echo", input="x", max_output_tokens=-1)
    assert info.value.param == "max_output_tokens"


def test_responses_reasoning(client: openai.OpenAI) -> None:
    reply, body = _respond(
        client, model="echo", input="hello there", reasoning={"effort": "low", "summary": "auto"}
    )

    reasoning, message = reply.output
    assert reasoning.type == "reasoning" and reasoning.id.startswith("rs_")
    assert [s.text for s in reasoning.summary] == ["Thinking about how to answer."]
    assert reasoning.encrypted_content is None
    assert message.type == "message" and reply.output_text == "You said: hello there"
    assert body["reasoning"] == {"effort": "low", "summary": "auto"}
    usage = reply.usage
    assert usage is not None
    # 5 summary words are reasoning tokens, and count in the output tokens too.
    assert (usage.input_tokens, usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (
        5,
        9,
        5,
    )
    assert usage.total_tokens == 14

    sealed, _ = _respond(client, model="echo", input="hi", include=["reasoning.encrypted_content"])
    assert sealed.output[0].type == "reasoning" and isinstance(sealed.output[0].encrypted_content, str)
    # The reasoning item of a previous response is part of the conversation but costs no input tokens.
    follow, _ = _respond(client, model="echo", input="more", previous_response_id=sealed.id)
    assert follow.usage is not None and follow.usage.input_tokens == (3 + 1) + (3 + 3) + (3 + 1)
    plain, body = _respond(client, model="echo", input="hi", reasoning={"effort": "none"})
    assert [o.type for o in plain.output] == ["message"]
    assert _respond(client, model="echo", input="hi")[1]["reasoning"] == {"effort": None, "summary": None}


def test_responses_json_object_format(client: openai.OpenAI) -> None:
    reply, body = _respond(client, model="echo", input="hi there", text={"format": {"type": "json_object"}})

    assert json.loads(reply.output_text) == {"echo": "hi there"}
    assert body["text"]["format"] == {"type": "json_object"}


def test_responses_stream_helper(client: openai.OpenAI) -> None:
    with client.responses.stream(model="echo", input="hello there") as stream:
        events = list(stream)
        final = stream.get_final_response()

    kinds = [e.type for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
        *["response.output_text.delta"] * 4,
        "response.output_text.done",
        "response.content_part.done",
        "response.output_item.done",
        "response.completed",
    ]
    assert [e.sequence_number for e in events] == list(range(len(events)))
    assert [e.delta for e in events if e.type == "response.output_text.delta"] == [
        "You",
        " said:",
        " hello",
        " there",
    ]
    assert events[0].response.status == "in_progress" and events[0].response.usage is None
    assert final.output_text == "You said: hello there" and final.status == "completed"
    assert final.id == events[0].response.id
    assert final.usage is not None and (final.usage.input_tokens, final.usage.output_tokens) == (5, 4)


def test_responses_stream_of_reasoning_and_tool_call(client: openai.OpenAI, up: FakeUpstream) -> None:
    body = {
        "model": "gpt-x",
        "input": "weather?",
        "tools": [WEATHER_FUNCTION],
        "reasoning": {"effort": "high"},
    }
    events = _stream_events(up, body)

    kinds = [e["type"] for e in events]
    assert kinds == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.reasoning_summary_part.added",
        *["response.reasoning_summary_text.delta"] * 5,
        "response.reasoning_summary_text.done",
        "response.reasoning_summary_part.done",
        "response.output_item.done",
        "response.output_item.added",
        "response.function_call_arguments.delta",
        "response.function_call_arguments.done",
        "response.output_item.done",
        "response.completed",
    ]
    summary = "".join(e["delta"] for e in events if e["type"] == "response.reasoning_summary_text.delta")
    assert summary == "Thinking about how to answer."
    opened = events[12]["item"]
    assert (
        opened["type"] == "function_call" and opened["arguments"] == "" and opened["status"] == "in_progress"
    )
    assert events[14]["name"] == "get_weather" and events[14]["arguments"] == "{}"
    done = events[-1]["response"]
    _assert_valid("Response", done)
    assert [item["type"] for item in done["output"]] == ["reasoning", "function_call"]
    assert (
        done["usage"]["output_tokens"] == 7
        and done["usage"]["output_tokens_details"]["reasoning_tokens"] == 5
    )

    # The SDK's helper accepts the same stream, in order.
    with client.responses.stream(**body) as stream:
        final = stream.get_final_response()
    assert [o.type for o in final.output] == ["reasoning", "function_call"]
    assert final.output[1].type == "function_call" and final.output[1].arguments == "{}"


def test_responses_stream_cut_after(up: FakeUpstream) -> None:
    body = {"model": "cut-after:2", "input": "hello there", "stream": True}
    events, error = asyncio.run(_responses_sse(up.base_url + "/responses", body))

    assert error is not None
    assert [e["type"] for e in events[:4]] == [
        "response.created",
        "response.in_progress",
        "response.output_item.added",
        "response.content_part.added",
    ]
    assert [e["delta"] for e in events[4:]] == ["You", " said:"]
    with pytest.raises(openai.APIConnectionError):
        openai.OpenAI(base_url=up.base_url, api_key="x", max_retries=0).responses.create(
            model="cut-after:1", input="x"
        )


def test_responses_slow_streams(client: openai.OpenAI, up: FakeUpstream) -> None:
    started = time.monotonic()
    with client.responses.stream(model="slow-stream:0.01", input="hi") as stream:
        events = list(stream)
    assert time.monotonic() - started >= 0.01 * (len(events) - 1)
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text.split()[-1] == "word19"  # padded to 20 words

    started = time.monotonic()
    with client.responses.stream(model="slow-first-token:0.2", input="hi") as stream:
        first = next(iter(stream))
        assert time.monotonic() - started >= 0.2 and first.type == "response.created"
        stream.until_done()

    with client.responses.stream(model="slow-stream:0.05", input="hi") as stream:
        for _ in range(3):
            next(stream)
    record = up.wait_for_disconnect(1.0, model="slow-stream:0.05")
    assert record is not None and record.stream and 3 <= record.chunks_sent < 30


def test_responses_failures(client: openai.OpenAI, up: FakeUpstream) -> None:
    with pytest.raises(openai.InternalServerError):
        client.responses.create(model="fail-500", input="x")
    with pytest.raises(openai.RateLimitError) as info:
        client.responses.create(model="fail-429:3", input="x", stream=True)
    assert info.value.response.headers["retry-after"] == "3" and info.value.code == "rate_limit_exceeded"
    with pytest.raises(json.JSONDecodeError):
        client.responses.create(model="garbage", input="x")
    with pytest.raises(openai.APIConnectionError):
        client.responses.create(model="early-close", input="x")

    assert _respond(client, model="no-usage", input="x")[0].usage is None
    events = _stream_events(up, {"model": "no-usage", "input": "x"})
    assert events[-1]["type"] == "response.completed" and events[-1]["response"].get("usage") is None

    with pytest.raises(openai.APITimeoutError):
        client.with_options(timeout=0.2).responses.create(model="hang", input="x")
    assert up.wait_for_disconnect(1.0, model="hang") is not None
    started = time.monotonic()
    reply = client.responses.create(model="slow-first-byte:0.2", input="x")
    assert time.monotonic() - started >= 0.2 and reply.output_text == "You said: x"


def test_responses_bad_requests(client: openai.OpenAI) -> None:
    cases = [
        ({"input": 42}, "input"),
        ({"input": ["not an item"]}, "input[0]"),
        (
            {"input": "x", "tools": [{"type": "function", "function": {"name": "chat_style"}}]},
            "tools[0].name",
        ),
        ({"input": "x", "instructions": ["a"]}, "instructions"),
    ]
    for extra, param in cases:
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="echo", **extra)
        assert info.value.param == param


def test_responses_live_under_prefixes(up: FakeUpstream) -> None:
    up.clear()
    p4 = openai.OpenAI(base_url=up.url_for("p4"), api_key="x", max_retries=0)

    first = p4.responses.create(model="echo", input="x")
    # Ids are the server's, whatever the prefix.
    p4.responses.create(model="echo", input="y", previous_response_id=first.id)

    assert [r.path for r in up.find(prefix="p4")] == ["/p4/v1/responses"] * 2
    assert up.count(prefix="") == 0


# ---------------------------------------------------------------------------------- usage behaviours


def test_usage_behaviours_parse_alone_combined_and_leave_other_names_whole() -> None:
    plain = parse_behaviour("cached:4")
    assert (plain.name, plain.param, plain.usage) == ("echo", None, UsageReport(cached=4))
    both = parse_behaviour("reasoning:3+long:5+deepseek-cache:2")
    assert (both.name, both.param) == ("long", "5")
    assert both.usage == UsageReport(deepseek_hit=2, reasoning=3)
    assert parse_behaviour("gpt+x").name == "gpt+x" and parse_behaviour("gpt+x").usage == UsageReport()
    assert parse_behaviour("cached:lots").name == "cached"  # not a count: not a usage behaviour


def test_cached_and_reasoning_in_a_plain_chat_answer(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="cached:3+reasoning:7", messages=USER_HELLO)
    reply, body = raw.parse(), json.loads(raw.text)

    assert reply.choices[0].message.content == "You said: hello there"  # reasoning is hidden
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    # 5 prompt tokens of which 3 cached; 4 content words + 7 reasoning tokens.
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (5, 3)
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (11, 7)
    assert usage.total_tokens == 16
    _assert_valid("CompletionUsage", body["usage"])


def test_cached_tokens_never_exceed_the_prompt(client: openai.OpenAI) -> None:
    reply = client.chat.completions.create(model="cached:1000", messages=USER_HELLO)
    assert reply.usage is not None and reply.usage.prompt_tokens_details is not None
    assert reply.usage.prompt_tokens_details.cached_tokens == reply.usage.prompt_tokens == 5
    assert reply.usage.completion_tokens_details is None


def test_deepseek_cache_hits_and_misses_add_up_to_the_prompt(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="deepseek-cache:2", messages=USER_HELLO)
    usage = json.loads(raw.text)["usage"]
    assert usage == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9,
                     "prompt_cache_hit_tokens": 2, "prompt_cache_miss_tokens": 3}  # fmt: skip
    over = client.chat.completions.with_raw_response.create(model="deepseek-cache:9", messages=USER_HELLO)
    assert json.loads(over.text)["usage"]["prompt_cache_miss_tokens"] == 0


def test_the_usage_chunk_of_a_stream_carries_the_usage_behaviours(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="long:6+cached:4+reasoning:2",
            messages=USER_HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "w1 w2 w3 w4 w5 w6"
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (5, 4)
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (8, 2)
    assert all(c.usage is None for c in chunks[:-1])


def test_usage_behaviours_combine_with_stream_behaviours(client: openai.OpenAI) -> None:
    chunks = list(
        client.chat.completions.create(
            model="slow-stream:0.001+deepseek-cache:5",
            messages=USER_HELLO,
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    usage = chunks[-1].usage
    assert usage is not None and usage.completion_tokens == 2 + SLOW_STREAM_MIN_WORDS
    assert usage.model_extra == {"prompt_cache_hit_tokens": 5, "prompt_cache_miss_tokens": 0}


def test_legacy_completions_report_the_usage_behaviours(client: openai.OpenAI) -> None:
    reply = client.completions.create(model="cached:1+reasoning:4", prompt="hello there")
    usage = reply.usage
    assert usage is not None and usage.prompt_tokens_details and usage.completion_tokens_details
    assert (usage.prompt_tokens, usage.prompt_tokens_details.cached_tokens) == (2, 1)
    assert (usage.completion_tokens, usage.completion_tokens_details.reasoning_tokens) == (4 + 4, 4)


def test_responses_report_cached_and_reasoning_tokens(client: openai.OpenAI) -> None:
    reply, _ = _respond(client, model="cached:3+reasoning:6", input="hello there")
    usage = reply.usage
    assert usage is not None and reply.output_text == "You said: hello there"
    assert (usage.input_tokens, usage.input_tokens_details.cached_tokens) == (5, 3)
    assert (usage.output_tokens, usage.output_tokens_details.reasoning_tokens) == (4 + 6, 6)
    assert usage.total_tokens == 15
    # A reasoning summary's words and the hidden reasoning add up.
    summed, _ = _respond(client, model="reasoning:6", input="hello there", reasoning={"effort": "low"})
    assert summed.usage is not None and summed.usage.output_tokens_details.reasoning_tokens == 5 + 6
    assert summed.usage.output_tokens == 4 + 5 + 6


def test_a_streamed_response_reports_them_in_its_final_response(up: FakeUpstream) -> None:
    events = _stream_events(up, {"model": "cached:99+reasoning:1", "input": "hello there"})
    final = events[-1]
    assert final["type"] == "response.completed"
    usage = final["response"]["usage"]
    assert usage["input_tokens_details"]["cached_tokens"] == usage["input_tokens"] == 5
    assert usage["output_tokens_details"]["reasoning_tokens"] == 1 and usage["output_tokens"] == 5


def test_without_usage_behaviours_the_usage_keeps_its_plain_shape(client: openai.OpenAI) -> None:
    raw = client.chat.completions.with_raw_response.create(model="echo", messages=USER_HELLO)
    assert set(json.loads(raw.text)["usage"]) == {"prompt_tokens", "completion_tokens", "total_tokens"}
    silent = client.chat.completions.create(model="no-usage+cached:3", messages=USER_HELLO)
    assert silent.usage is None
