"""POST /v1/chat/completions through the official openai SDK against a live gateway process.

The happy paths: plain and streamed, sync and async clients, the wire format checked against OpenAI's
published schemas, what the upstream receives, tools and JSON mode both ways, and the in-process demo
provider. Failures are in test_chat_failures.py, bad input in test_chat_input.py; the helpers here are
shared with both.

The fake upstream (tests/upstream.py) answers ``"You said: " + <last user text>`` and counts tokens
deterministically: prompt = words of all messages + 3 per message, completion = content words.
"""

import json
import re
import time
import uuid

import openai
import pytest
import requests

from billing.models import UsageRecord
from proxy.catalog.importer import catalog_import
from tests.conftest import unique, write_catalog
from tests.spec import validator_for

UPSTREAM_SECRET = "upstream-secret-123"
HIGH_LIMITS = {"rpm_limit": 1000, "rpd_limit": 100_000}
ERROR_FIELDS = {"message", "type", "param", "code"}
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


# ------------------------------------------------------------------------------------------------ helpers


def client(gateway, raw: str, **kwargs) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0, **kwargs)


def async_client(gateway, raw: str, **kwargs) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0, **kwargs)


def user(text: str) -> list[dict]:
    return [{"role": "user", "content": text}]


def marker() -> str:
    """A word that makes one request easy to find in the upstream's log."""
    return f"m{uuid.uuid4().hex[:12]}"


def prompt_tokens(*texts: str) -> int:
    """The fake upstream's prompt count for one message per text."""
    return sum(3 + len(t.split()) for t in texts)


def wait_usage(request_id: str, timeout: float = 5.0) -> UsageRecord:
    """The request's usage record, polled for: records are written in batches just after a response ends."""
    deadline = time.monotonic() + timeout
    while True:
        record = UsageRecord.objects.filter(pk=request_id).first()
        if record is not None:
            return record
        if time.monotonic() > deadline:
            raise AssertionError(f"no UsageRecord for request {request_id} within {timeout} s")
        time.sleep(0.05)


def sse_data(lines) -> list[str]:
    """The payloads of the ``data:`` lines of a raw SSE stream, in order (comments and blanks dropped)."""
    return [line[5:].strip() for line in lines if line.startswith("data:")]


def validate_stream(payloads: list[str]) -> list[dict]:
    """Every chunk of a finished stream against OpenAI's schema; the last payload must be [DONE]."""
    assert payloads, "the stream had no data events"
    assert payloads[-1] == "[DONE]", f"the stream did not end with [DONE]: {payloads[-3:]}"
    assert "[DONE]" not in payloads[:-1]
    chunks = [json.loads(p) for p in payloads[:-1]]
    validator = validator_for("CreateChatCompletionStreamResponse")
    for chunk in chunks:
        validator.validate(chunk)
    return chunks


def stream_text(chunks: list[dict]) -> str:
    return "".join(c["choices"][0]["delta"].get("content") or "" for c in chunks if c["choices"])


def assert_gateway_headers(headers, *, rpm: int, rpd: int, counted: int = 1) -> None:
    """The headers every /v1 answer carries; ``counted`` requests have been admitted on a fresh key."""
    assert re.fullmatch(r"[0-9a-f-]{36}", headers["x-request-id"]), headers.get("x-request-id")
    assert headers["server-timing"].startswith("gateway;dur=")
    assert headers["x-ratelimit-limit-rpm"] == str(rpm)
    assert headers["x-ratelimit-limit-rpd"] == str(rpd)
    assert headers["x-ratelimit-remaining-rpm"] == str(rpm - counted)
    assert headers["x-ratelimit-remaining-rpd"] == str(rpd - counted)


def assert_refused(gateway, upstream, raw_key: str, path: str, body: dict, param: str) -> dict:
    """POST ``body`` as it is (the SDK's types would refuse most bad bodies before they left): a 400 in
    OpenAI's shape naming ``param``, and nothing sent upstream. Returns the error."""
    seen = upstream.count()
    answer = requests.post(
        f"{gateway.base_url}{path}", json=body, headers={"Authorization": f"Bearer {raw_key}"}
    )
    assert answer.status_code == 400, answer.text
    error = assert_openai_error(answer.json())
    assert (error["type"], error["param"]) == ("invalid_request_error", param)
    assert upstream.count() == seen
    return error


def assert_openai_error(body: object) -> dict:
    """``{"error": {message, type, param, code}}``; returns the inner object."""
    assert isinstance(body, dict) and set(body) == {"error"}, body
    error = body["error"]
    assert set(error) == ERROR_FIELDS, error
    assert isinstance(error["message"], str) and error["message"]
    assert isinstance(error["type"], str) and error["type"]
    return error


def sent_upstream(upstream, word: str) -> list:
    """The upstream requests whose body mentions ``word`` (see ``marker``)."""
    return [r for r in upstream.requests if isinstance(r.json, dict) and word in json.dumps(r.json)]


def fake_provider(upstream, **extra) -> dict:
    """A provider on the fake upstream under its own path prefix, so its requests can be told apart."""
    name = unique("p")
    return {
        "name": name, "base_url": upstream.url_for(name), "api_key_env": "TEST_UPSTREAM_KEY",
        "first_byte_timeout": 3.0, "idle_timeout": 3.0, "circuit_threshold": 1000, **extra,
    }  # fmt: skip


def import_model(tmp_path, providers: list[dict], routes: list[tuple[str, str]]) -> str:
    """A new free model whose routes, tried in the given order, are (provider name, upstream model)."""
    model = unique("m")
    spec = {
        "id": model,
        "owned_by": "test",
        "routes": [
            {"provider": p, "upstream_model": m, "priority": i} for i, (p, m) in enumerate(routes, start=1)
        ],
    }
    catalog_import(path=write_catalog(tmp_path / f"{model}.toml", providers, [spec]))
    return model


def serve_model(api: openai.OpenAI, tmp_path, providers: list[dict], routes: list[tuple[str, str]]) -> str:
    """``import_model``, then a models lookup: the gateway reloads its snapshot whenever a key is checked."""
    model = import_model(tmp_path, providers, routes)
    api.models.retrieve(model)
    return model


# ------------------------------------------------------------------------------------------ plain, sync


def test_a_plain_completion_through_the_sdk(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    completion = client(gateway, raw).chat.completions.create(
        model=catalog["echo"], messages=user("Hello   there")
    )
    assert completion.object == "chat.completion"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content == "You said: Hello there"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (prompt_tokens("a b"), 4)
    assert completion.usage.total_tokens == completion.usage.prompt_tokens + 4
    record = wait_usage(completion._request_id)
    assert (record.prompt_tokens, record.completion_tokens, record.tokens_estimated) == (5, 4, False)


def test_the_plain_answer_matches_openais_schema_and_carries_the_gateway_headers(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=900, rpd_limit=9000)
    response = client(gateway, raw).chat.completions.with_raw_response.create(
        model=catalog["echo"], messages=user("schema please"), max_tokens=50
    )
    assert response.http_response.status_code == 200
    assert response.headers["content-type"].startswith("application/json")
    assert_gateway_headers(response.headers, rpm=900, rpd=9000)
    body = response.http_response.json()
    validator_for("CreateChatCompletionResponse").validate(body)
    assert body["choices"][0]["message"]["content"] == "You said: schema please"
    assert response.parse().id == body["id"]


def test_max_tokens_truncates_and_finishes_with_length(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    completion = client(gateway, raw).chat.completions.create(
        model=catalog["echo"], messages=user("one two three four five"), max_completion_tokens=3
    )
    assert completion.choices[0].message.content == "You said: one"
    assert completion.choices[0].finish_reason == "length"
    assert completion.usage.completion_tokens == 3
    assert wait_usage(completion._request_id).finish_reason == "length"


# ----------------------------------------------------------------------------------------- stream, sync


def test_a_stream_through_the_sdk(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    stream = client(gateway, raw).chat.completions.create(
        model=catalog["echo"], messages=user("stream me please"), stream=True
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.choices for c in chunks), "the usage chunk the gateway asked for itself reached the client"
    assert all(c.usage is None for c in chunks)
    assert "".join(c.choices[0].delta.content or "" for c in chunks) == "You said: stream me please"
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks][-1] == "stop"
    assert all(c.choices[0].finish_reason is None for c in chunks[:-1])


def test_a_stream_with_include_usage_ends_with_one_usage_chunk(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    chunks = list(
        client(gateway, raw).chat.completions.create(
            model=catalog["echo"],
            messages=user("count my words"),
            stream=True,
            stream_options={"include_usage": True},
        )
    )
    last = chunks[-1]
    assert last.choices == []
    assert last.usage is not None
    assert (last.usage.prompt_tokens, last.usage.completion_tokens) == (prompt_tokens("count my words"), 5)
    assert last.usage.total_tokens == last.usage.prompt_tokens + last.usage.completion_tokens
    assert all(c.choices for c in chunks[:-1])
    assert "".join(c.choices[0].delta.content or "" for c in chunks[:-1]) == "You said: count my words"


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage-asked", "usage-asked"])
def test_the_raw_stream_matches_openais_schema_chunk_by_chunk(gateway, catalog, make_key, include_usage):
    _, raw = make_key(rpm_limit=500, rpd_limit=5000)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    with client(gateway, raw).chat.completions.with_streaming_response.create(
        model=catalog["echo"], messages=user("raw lines"), stream=True, **extra
    ) as response:
        assert response.status_code == 200
        headers = response.headers
        payloads = sse_data(response.iter_lines())
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-accel-buffering"] == "no"
    assert_gateway_headers(headers, rpm=500, rpd=5000)
    chunks = validate_stream(payloads)
    empty = [c for c in chunks if not c["choices"]]
    if include_usage:
        assert empty == [chunks[-1]]
        assert chunks[-1]["usage"] == {"prompt_tokens": 5, "completion_tokens": 4, "total_tokens": 9}
    else:
        assert empty == []
        assert all(c.get("usage") is None for c in chunks)
    assert stream_text(chunks) == "You said: raw lines"
    assert len({c["id"] for c in chunks}) == 1
    record = wait_usage(headers["x-request-id"])
    assert (record.prompt_tokens, record.completion_tokens, record.tokens_estimated) == (5, 4, False)
    assert record.streamed and record.finish_reason == "stop"


# ---------------------------------------------------------------------------------------------- async


async def test_a_plain_completion_with_the_async_client(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    async with async_client(gateway, raw) as api:
        completion = await api.chat.completions.create(model=catalog["echo"], messages=user("async hello"))
        response = await api.chat.completions.with_raw_response.create(
            model=catalog["echo"], messages=user("async raw")
        )
    assert completion.choices[0].message.content == "You said: async hello"
    assert completion.choices[0].finish_reason == "stop"
    assert (completion.usage.prompt_tokens, completion.usage.completion_tokens) == (5, 4)
    validator_for("CreateChatCompletionResponse").validate(response.http_response.json())
    assert response.headers["server-timing"].startswith("gateway;dur=")
    assert response.headers["x-ratelimit-remaining-rpm"] == "998"


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage-asked", "usage-asked"])
async def test_a_stream_with_the_async_client(gateway, catalog, make_key, include_usage):
    _, raw = make_key(**HIGH_LIMITS)
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    async with async_client(gateway, raw) as api:
        stream = await api.chat.completions.create(
            model=catalog["echo"], messages=user("async stream"), stream=True, **extra
        )
        chunks = [chunk async for chunk in stream]
        async with api.chat.completions.with_streaming_response.create(
            model=catalog["echo"], messages=user("async raw stream"), stream=True, **extra
        ) as response:
            headers = response.headers
            payloads = [line[5:].strip() async for line in response.iter_lines() if line.startswith("data:")]
    content = [c for c in chunks if c.choices]
    assert "".join(c.choices[0].delta.content or "" for c in content) == "You said: async stream"
    assert content[-1].choices[0].finish_reason == "stop"
    if include_usage:
        assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens == 4
        assert len(content) == len(chunks) - 1
    else:
        assert content == chunks
    assert headers["content-type"].startswith("text/event-stream")
    assert headers["x-accel-buffering"] == "no"
    assert_gateway_headers(headers, rpm=1000, rpd=100_000, counted=2)
    raw_chunks = validate_stream(payloads)
    assert stream_text(raw_chunks) == "You said: async raw stream"
    assert any(not c["choices"] for c in raw_chunks) is include_usage


# ------------------------------------------------------------------------------- what the upstream sees


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_the_upstream_gets_the_provider_secret_the_route_model_and_unknown_fields(
    gateway, catalog, upstream, make_key, stream
):
    _, raw = make_key(**HIGH_LIMITS)
    word = marker()
    extra_body = {"top_k": 40, "x_vendor": {"nested": [1, "two", None], "flag": True}}
    api = client(gateway, raw)
    result = api.chat.completions.create(
        model=catalog["echo"], messages=user(f"hello {word}"), stream=stream, extra_body=extra_body
    )
    if stream:
        list(result)
    [seen] = sent_upstream(upstream, word)
    assert seen.path.endswith("/v1/chat/completions")
    assert seen.headers["authorization"] == f"Bearer {UPSTREAM_SECRET}"
    assert raw not in json.dumps(seen.headers) and raw not in json.dumps(seen.json)
    assert seen.json["model"] == "echo"
    assert seen.json["top_k"] == 40
    assert seen.json["x_vendor"] == extra_body["x_vendor"]
    assert seen.json["messages"] == user(f"hello {word}")
    if stream:
        assert seen.json["stream"] is True
        assert seen.json["stream_options"]["include_usage"] is True
    else:
        assert "stream_options" not in seen.json


def test_the_clients_own_stream_options_reach_the_upstream_alongside_include_usage(
    gateway, catalog, upstream, make_key
):
    _, raw = make_key(**HIGH_LIMITS)
    word = marker()
    chunks = list(
        client(gateway, raw).chat.completions.create(
            model=catalog["echo"],
            messages=user(word),
            stream=True,
            stream_options={"include_obfuscation": False},
        )
    )
    assert all(c.choices for c in chunks)
    [seen] = sent_upstream(upstream, word)
    assert seen.json["stream_options"] == {"include_obfuscation": False, "include_usage": True}


# ------------------------------------------------------------------------------- tools and JSON mode


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_tool_calls_pass_through_both_ways(gateway, catalog, upstream, make_key, stream):
    _, raw = make_key(**HIGH_LIMITS)
    word = marker()
    api = client(gateway, raw)
    kwargs = {"model": catalog["echo"], "messages": user(f"weather in Paris {word}"), "tools": [WEATHER_TOOL]}
    if stream:
        chunks = list(
            api.chat.completions.create(**kwargs, stream=True, stream_options={"include_usage": True})
        )
        calls = [call for c in chunks if c.choices for call in c.choices[0].delta.tool_calls or ()]
        assert calls[0].function.name == "get_weather"
        assert calls[0].id and calls[0].type == "function"
        assert "".join(call.function.arguments or "" for call in calls) == "{}"
        assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "tool_calls"
        usage = chunks[-1].usage
    else:
        completion = api.chat.completions.create(**kwargs)
        message = completion.choices[0].message
        assert message.content is None
        assert message.tool_calls[0].function.name == "get_weather"
        assert message.tool_calls[0].function.arguments == "{}"
        assert completion.choices[0].finish_reason == "tool_calls"
        usage = completion.usage
    assert usage.completion_tokens == 2
    [seen] = sent_upstream(upstream, word)
    assert seen.json["tools"] == [WEATHER_TOOL]


def test_a_named_tool_choice_reaches_the_upstream(gateway, catalog, upstream, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    word = marker()
    other = {"type": "function", "function": {"name": "get_time", "parameters": {"type": "object"}}}
    completion = client(gateway, raw).chat.completions.create(
        model=catalog["echo"],
        messages=user(word),
        tools=[WEATHER_TOOL, other],
        tool_choice={"type": "function", "function": {"name": "get_time"}},
    )
    assert completion.choices[0].message.tool_calls[0].function.name == "get_time"
    [seen] = sent_upstream(upstream, word)
    assert seen.json["tool_choice"] == {"type": "function", "function": {"name": "get_time"}}


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_json_mode_passes_through_both_ways(gateway, catalog, upstream, make_key, stream):
    _, raw = make_key(**HIGH_LIMITS)
    word = marker()
    api = client(gateway, raw)
    kwargs = {
        "model": catalog["echo"],
        "messages": user(f"give json {word}"),
        "response_format": {"type": "json_object"},
    }
    if stream:
        chunks = list(api.chat.completions.create(**kwargs, stream=True))
        content = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        content = api.chat.completions.create(**kwargs).choices[0].message.content
    assert json.loads(content) == {"echo": f"give json {word}"}
    [seen] = sent_upstream(upstream, word)
    assert seen.json["response_format"] == {"type": "json_object"}


# ------------------------------------------------------------------------------------ the demo provider


@pytest.fixture
def demo_model(gateway, make_key, tmp_path):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider = {"name": unique("demo"), "kind": "demo"}
    return api, serve_model(api, tmp_path, [provider], [(provider["name"], "demo-1")])


def test_the_demo_provider_answers_a_plain_request(demo_model):
    api, model = demo_model
    response = api.chat.completions.with_raw_response.create(model=model, messages=user("ping the demo"))
    validator_for("CreateChatCompletionResponse").validate(response.http_response.json())
    completion = response.parse()
    assert "You said: ping the demo" in completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    usage = completion.usage
    assert usage.prompt_tokens > 0 and usage.completion_tokens > 0
    assert usage.total_tokens == usage.prompt_tokens + usage.completion_tokens
    record = wait_usage(response.headers["x-request-id"])
    assert (record.prompt_tokens, record.completion_tokens) == (usage.prompt_tokens, usage.completion_tokens)
    assert record.status == 200 and record.provider_id is not None


@pytest.mark.parametrize("include_usage", [False, True], ids=["no-usage-asked", "usage-asked"])
def test_the_demo_provider_streams(demo_model, include_usage):
    api, model = demo_model
    extra = {"stream_options": {"include_usage": True}} if include_usage else {}
    with api.chat.completions.with_streaming_response.create(
        model=model, messages=user("stream the demo"), stream=True, **extra
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = validate_stream(sse_data(response.iter_lines()))
    assert "You said: stream the demo" in stream_text(chunks)
    assert [c["choices"][0]["finish_reason"] for c in chunks if c["choices"]][-1] == "stop"
    record = wait_usage(request_id)
    assert record.prompt_tokens > 0 and record.completion_tokens > 0 and not record.tokens_estimated
    if include_usage:
        usage = chunks[-1]["usage"]
        assert chunks[-1]["choices"] == []
        assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
        assert (record.prompt_tokens, record.completion_tokens) == (
            usage["prompt_tokens"],
            usage["completion_tokens"],
        )
    else:
        assert all(c["choices"] for c in chunks)


# ------------------------------------------------------------------------------------ catalog freshness


def test_a_model_imported_while_the_gateway_runs_is_served_on_the_next_request(
    gateway, upstream, make_key, tmp_path
):
    """No warm-up call: an operator who imports a model expects the very next request to it to work."""
    _, raw = make_key(**HIGH_LIMITS)
    provider = fake_provider(upstream)
    model = import_model(tmp_path, [provider], [(provider["name"], "echo")])
    completion = client(gateway, raw).chat.completions.create(model=model, messages=user("fresh model"))
    assert completion.choices[0].message.content == "You said: fresh model"
