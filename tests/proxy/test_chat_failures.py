"""POST /v1/chat/completions when things go wrong: failover, upstream errors, timeouts, cut streams, missing
usage and clients that leave, all over real HTTP against a live gateway and the fake upstream.

Before the first byte reaches the client a failing route moves on to the next; after it, the error is
reported in-band. Either way every admitted request leaves exactly one UsageRecord.
"""

import asyncio
import json
import time

import openai
import orjson
import pytest

from billing.models import UsageRecord
from proxy.catalog.models import Model, Provider, Route
from tests.proxy.test_chat import (
    HIGH_LIMITS,
    UPSTREAM_SECRET,
    assert_openai_error,
    client,
    fake_provider,
    sent_upstream,
    serve_model,
    sse_data,
    user,
    wait_usage,
)
from tests.proxy.test_chat import marker as new_marker

STREAM = [False, True]
STREAM_IDS = ["plain", "stream"]


def consume(result, stream: bool):
    return list(result) if stream else result


def assert_no_upstream_detail(text: str, upstream) -> None:
    """What the client sees of an upstream failure names neither the upstream nor its secret."""
    lowered = text.lower()
    for leak in ("fake", "simulated", UPSTREAM_SECRET, upstream.base_url, f":{upstream.port}", "127.0.0.1"):
        assert leak.lower() not in lowered, f"{leak!r} leaked into {text!r}"


# ------------------------------------------------------------------------------------------- failover


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_a_failing_first_route_fails_over_to_the_second(gateway, upstream, make_key, tmp_path, stream):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider = fake_provider(upstream)
    name = provider["name"]
    model = serve_model(api, tmp_path, [provider], [(name, "fail-500"), (name, "echo")])
    response = api.chat.completions.with_raw_response.create(
        model=model, messages=user("second time lucky"), stream=stream
    )
    request_id = response.headers["x-request-id"]
    result = consume(response.parse(), stream)
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in result) == "You said: second time lucky"
    else:
        assert result.choices[0].message.content == "You said: second time lucky"
    assert [r.model for r in upstream.find(prefix=name)] == ["fail-500", "echo"]
    record = wait_usage(request_id)
    assert record.status == 200 and record.error_code == ""
    assert record.provider_id == Provider.objects.get(name=name).pk
    assert record.completion_tokens == 5 and not record.tokens_estimated


def test_failover_works_across_two_providers(gateway, upstream, make_key, tmp_path):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    first, second = fake_provider(upstream), fake_provider(upstream)
    model = serve_model(
        api, tmp_path, [first, second], [(first["name"], "fail-503"), (second["name"], "echo")]
    )
    completion = api.chat.completions.create(model=model, messages=user("across providers"))
    assert completion.choices[0].message.content == "You said: across providers"
    assert [r.model for r in upstream.find(prefix=first["name"])] == ["fail-503"]
    assert [r.model for r in upstream.find(prefix=second["name"])] == ["echo"]
    assert wait_usage(completion._request_id).provider_id == Provider.objects.get(name=second["name"]).pk


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_every_route_failing_is_a_502_without_upstream_detail(gateway, catalog, upstream, make_key, stream):
    _, raw = make_key(**HIGH_LIMITS)
    with pytest.raises(openai.APIStatusError) as info:
        consume(
            client(gateway, raw).chat.completions.create(
                model=catalog["fail-500"], messages=user("doomed"), stream=stream
            ),
            stream,
        )
    assert info.value.status_code == 502
    body = info.value.response.json()
    error = assert_openai_error(body)
    assert (error["type"], error["code"]) == ("upstream_error", "bad_gateway")
    assert_no_upstream_detail(info.value.response.text, upstream)
    record = wait_usage(info.value.response.headers["x-request-id"])
    assert (record.status, record.error_code, record.streamed) == (502, "bad_gateway", stream)
    assert record.provider_id is None and record.completion_tokens == 0 and record.cost == 0


def test_a_two_route_model_with_both_routes_failing_tries_both_then_answers_502(
    gateway, upstream, make_key, tmp_path
):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider = fake_provider(upstream)
    name = provider["name"]
    model = serve_model(api, tmp_path, [provider], [(name, "fail-500"), (name, "fail-503")])
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model=model, messages=user("all down"))
    assert info.value.status_code == 502
    assert_no_upstream_detail(info.value.response.text, upstream)
    assert [r.model for r in upstream.find(prefix=name)] == ["fail-500", "fail-503"]


def test_a_hanging_upstream_is_a_504(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    with pytest.raises(openai.APIStatusError) as info:
        client(gateway, raw, timeout=30.0).chat.completions.create(
            model=catalog["hang"], messages=user("anyone there?")
        )
    assert info.value.status_code == 504
    error = assert_openai_error(info.value.response.json())
    assert (error["type"], error["code"]) == ("timeout", "upstream_timeout")
    record = wait_usage(info.value.response.headers["x-request-id"])
    assert (record.status, record.error_code) == (504, "upstream_timeout")


# ----------------------------------------------------------------------------------- garbage, closes


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize("behaviour", ["garbage", "early-close"])
def test_an_unreadable_upstream_is_a_502_on_a_single_route(
    gateway, catalog, upstream, make_key, behaviour, stream
):
    _, raw = make_key(**HIGH_LIMITS)
    with pytest.raises(openai.APIStatusError) as info:
        consume(
            client(gateway, raw).chat.completions.create(
                model=catalog[behaviour], messages=user("make sense"), stream=stream
            ),
            stream,
        )
    assert info.value.status_code == 502
    error = assert_openai_error(info.value.response.json())
    assert error["code"] == "bad_gateway"
    assert_no_upstream_detail(info.value.response.text, upstream)
    assert "<html>" not in info.value.response.text


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
@pytest.mark.parametrize("behaviour", ["garbage", "early-close"])
def test_an_unreadable_upstream_fails_over_to_a_healthy_route(
    gateway, upstream, make_key, tmp_path, behaviour, stream
):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider = fake_provider(upstream)
    name = provider["name"]
    model = serve_model(api, tmp_path, [provider], [(name, behaviour), (name, "echo")])
    result = consume(
        api.chat.completions.create(model=model, messages=user("try again"), stream=stream), stream
    )
    if stream:
        assert "".join(c.choices[0].delta.content or "" for c in result) == "You said: try again"
    else:
        assert result.choices[0].message.content == "You said: try again"
    assert [r.model for r in upstream.find(prefix=name)] == [behaviour, "echo"]


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_a_request_the_upstream_refuses_is_the_clients_400_without_failover(
    gateway, upstream, make_key, tmp_path, stream
):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider = fake_provider(upstream)
    name = provider["name"]
    model = serve_model(api, tmp_path, [provider], [(name, "fail-400"), (name, "echo")])
    with pytest.raises(openai.BadRequestError) as info:
        consume(api.chat.completions.create(model=model, messages=user("too long"), stream=stream), stream)
    assert info.value.status_code == 400
    error = assert_openai_error(info.value.response.json())
    assert error["type"] == "invalid_request_error"
    assert UPSTREAM_SECRET not in info.value.response.text
    assert [r.model for r in upstream.find(prefix=name)] == ["fail-400"]
    record = wait_usage(info.value.response.headers["x-request-id"])
    assert record.status == 400 and record.completion_tokens == 0 and record.cost == 0


# --------------------------------------------------------------------------------------- cut streams


def test_a_stream_cut_midway_yields_the_first_chunks_then_an_error(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    stream = client(gateway, raw).chat.completions.create(
        model=catalog["cut-after:3"], messages=user("a b c d e f"), stream=True
    )
    received = []
    with pytest.raises(openai.APIError) as info:
        for chunk in stream:
            received.append(chunk)
    assert not isinstance(info.value, openai.APIStatusError)  # the status was already 200
    assert info.value.body["code"] == "bad_gateway"
    assert "".join(c.choices[0].delta.content or "" for c in received) == "You said: a"


def test_a_cut_streams_raw_wire_ends_with_one_error_event_and_done(gateway, catalog, upstream, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    with client(gateway, raw).chat.completions.with_streaming_response.create(
        model=catalog["cut-after:3"], messages=user("one two three four five"), stream=True
    ) as response:
        assert response.status_code == 200
        request_id = response.headers["x-request-id"]
        payloads = sse_data(response.iter_lines())
    assert payloads[-1] == "[DONE]"
    events = [json.loads(p) for p in payloads[:-1]]
    errors = [e for e in events if "error" in e]
    assert errors == [events[-1]], "exactly one error event, right before [DONE]"
    error = assert_openai_error(events[-1])
    assert (error["type"], error["code"]) == ("upstream_error", "bad_gateway")
    assert_no_upstream_detail(error["message"], upstream)
    content = "".join(e["choices"][0]["delta"].get("content") or "" for e in events[:-1])
    assert content == "You said: one"
    record = wait_usage(request_id)
    assert (record.status, record.error_code, record.streamed) == (200, "upstream_cut", True)
    assert record.completion_tokens > 0 and record.tokens_estimated
    assert record.prompt_tokens > 0 and record.ttft_ms is not None


# -------------------------------------------------------------------------------------- missing usage


@pytest.mark.parametrize("stream", STREAM, ids=STREAM_IDS)
def test_an_upstream_without_usage_is_counted_locally(gateway, catalog, make_key, stream):
    _, raw = make_key(**HIGH_LIMITS)
    response = client(gateway, raw).chat.completions.with_raw_response.create(
        model=catalog["no-usage"], messages=user("count these words for me"), stream=stream
    )
    request_id = response.headers["x-request-id"]
    result = consume(response.parse(), stream)
    if stream:
        text = "".join(c.choices[0].delta.content or "" for c in result)
        assert all(c.choices for c in result)
    else:
        text = result.choices[0].message.content
    assert text == "You said: count these words for me"
    record = wait_usage(request_id)
    assert record.status == 200 and record.tokens_estimated
    # Locally counted with a real tokenizer: about one token per short word.
    assert 5 <= record.prompt_tokens <= 30, record.prompt_tokens
    assert 4 <= record.completion_tokens <= 20, record.completion_tokens


# -------------------------------------------------------------------------------------- disconnects


async def _read_until_events(reader: asyncio.StreamReader, events: int) -> tuple[dict[str, str], bytes]:
    head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 10)
    status_line, *lines = head.decode("latin-1").split("\r\n")
    assert status_line.split()[1] == "200", head
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines if line)}
    body = b""
    while body.count(b"data:") < events:
        chunk = await asyncio.wait_for(reader.read(4096), 10)
        assert chunk, f"the stream ended early: {body!r}"
        body += chunk
    return headers, body


async def test_a_client_disconnect_stops_the_upstream_and_is_recorded(
    gateway, catalog, upstream, make_key, monkeypatch
):
    _, raw = make_key(**HIGH_LIMITS)
    word = new_marker()
    payload = orjson.dumps({"model": catalog["slow-stream"], "messages": user(word), "stream": True})
    request = (
        f"POST /v1/chat/completions HTTP/1.1\r\nHost: 127.0.0.1:{gateway.port}\r\n"
        f"Authorization: Bearer {raw}\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(payload)}\r\n\r\n"
    ).encode() + payload
    since = time.monotonic()
    reader, writer = await asyncio.open_connection("127.0.0.1", gateway.port)
    try:
        writer.write(request)
        await writer.drain()
        headers, body = await _read_until_events(reader, 3)
    finally:
        writer.close()
        await writer.wait_closed()
    assert headers["content-type"].startswith("text/event-stream")
    assert b'"error"' not in body

    gone = upstream.wait_for_disconnect(1.0, model="slow-stream", since=since)
    assert gone is not None, "the gateway kept its upstream connection open after the client left"
    assert gone.stream and gone.chunks_sent < 20
    assert len(sent_upstream(upstream, word)) == 1

    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")  # the ORM, briefly, from this test's loop
    record = wait_usage(headers["x-request-id"])
    assert record.client_disconnected
    assert (record.status, record.streamed) == (200, True)
    assert record.completion_tokens >= 1
    assert record.error_code == ""


# --------------------------------------------------------------------------- one record per request


def test_exactly_one_usage_record_per_admitted_request(gateway, catalog, make_key):
    key, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    provider_id = Route.objects.get(model__name=catalog["echo"]).provider_id
    model_ids = {b: Model.objects.get(name=name).pk for b, name in catalog.items()}

    # Refused before admission: no record, no count.
    with pytest.raises(openai.NotFoundError):
        api.chat.completions.create(model="no-such-model", messages=user("x"))
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=catalog["echo"], messages=[])

    expected: dict[str, dict] = {}  # request id -> the record's fields

    def ok(model: str, stream: bool, **extra) -> None:
        response = api.chat.completions.with_raw_response.create(
            model=catalog[model], messages=user("mixed bag"), stream=stream, **extra
        )
        consume(response.parse(), stream)
        expected[response.headers["x-request-id"]] = {
            "model_id": model_ids[model], "streamed": stream, "status": 200, "error_code": "",
            "finish_reason": "stop", "provider_id": provider_id,
        }  # fmt: skip

    def failing(model: str, stream: bool, status: int, code: str) -> None:
        with pytest.raises(openai.APIStatusError) as info:
            consume(
                api.chat.completions.create(model=catalog[model], messages=user("mixed bag"), stream=stream),
                stream,
            )
        assert info.value.status_code == status
        rid = info.value.response.headers["x-request-id"]
        expected[rid] = {
            "model_id": model_ids[model], "streamed": stream, "status": status, "error_code": code,
            "finish_reason": "", "provider_id": None,
        }  # fmt: skip

    ok("echo", False)
    ok("echo", True)
    ok("echo", True, stream_options={"include_usage": True})
    ok("no-usage", False)
    failing("fail-500", False, 502, "bad_gateway")
    failing("fail-500", True, 502, "bad_gateway")
    failing("garbage", False, 502, "bad_gateway")
    with pytest.raises(openai.APIError):
        consume(
            api.chat.completions.create(model=catalog["cut-after:3"], messages=user("m"), stream=True), True
        )

    for rid in expected:
        wait_usage(rid)
    deadline = time.monotonic() + 5
    while UsageRecord.objects.filter(key=key).count() < 8 and time.monotonic() < deadline:
        time.sleep(0.05)
    records = {str(r.pk): r for r in UsageRecord.objects.filter(key=key)}
    assert len(records) == 8, f"{len(records)} records for 8 admitted requests"
    [cut] = [r for rid, r in records.items() if rid not in expected]
    assert (cut.status, cut.error_code, cut.streamed, cut.provider_id) == (
        200,
        "upstream_cut",
        True,
        provider_id,
    )
    for rid, fields in expected.items():
        record = records[rid]
        assert {name: getattr(record, name) for name in fields} == fields, rid
        assert record.latency_ms >= 0
        assert record.user_id == key.owner_id
        if fields["status"] == 200:
            assert record.ttft_ms is not None and 0 <= record.ttft_ms <= record.latency_ms
            assert record.prompt_tokens > 0 and record.completion_tokens > 0
        else:
            assert record.ttft_ms is None
            assert (record.prompt_tokens, record.completion_tokens, record.cost) == (0, 0, 0)
