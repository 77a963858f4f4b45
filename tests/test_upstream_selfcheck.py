"""Quick checks of the fake upstream itself, so gateway test failures can be trusted to be the gateway's.

Runs without Django (``-p no:django``): only the server, the ``openai`` SDK and aiohttp are involved.
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

from tests.upstream import FakeUpstream, embedding_vector

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
