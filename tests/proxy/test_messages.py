"""POST /v1/messages (Anthropic's Messages API) through the official ``anthropic`` SDK, on both route styles.

The session catalog's ``echo`` model is a chat route on the fake upstream (tests/upstream.py): a Messages
request is translated to chat completions and back. The ``anthropic_routes`` fixture (tests/proxy/conftest.py)
adds models on a provider of ``kind = "anthropic"``, the fake upstream's own /v1/messages: the body passes
through.
"""

import json

import anthropic
import openai
import pytest
import requests
import urllib3

from tests.conftest import unique, write_catalog
from tests.proxy.test_chat import HIGH_LIMITS, client, marker, wait_usage


def claude(gateway, raw: str, **kwargs) -> anthropic.Anthropic:
    """An Anthropic client as users set one up: the gateway's root as the base URL (the SDK adds /v1)."""
    return anthropic.Anthropic(base_url=gateway.url, api_key=raw, max_retries=0, **kwargs)


@pytest.fixture
def key(make_key):
    return make_key(**HIGH_LIMITS)[1]


def sent_to_messages(upstream, prefix: str) -> list:
    return [r for r in upstream.find(prefix=prefix) if r.path.endswith("/v1/messages")]


def text_of(message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


# --- a chat route, translated ----------------------------------------------------------------------------------


def test_a_message_on_a_chat_route_is_translated_and_recorded(gateway, catalog, key):
    word = marker()
    raw = claude(gateway, key).messages.with_raw_response.create(
        model=catalog["echo"], max_tokens=64, messages=[{"role": "user", "content": f"Hello {word}"}]
    )
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant" and message.model == catalog["echo"]
    assert text_of(message) == f"You said: Hello {word}" and message.stop_reason == "end_turn"
    assert message.usage.input_tokens > 0 and message.usage.output_tokens == 4
    assert raw.headers["request-id"] == raw.headers["x-request-id"]
    assert "x-ratelimit-remaining-rpm" in raw.headers
    record = wait_usage(raw.headers["x-request-id"])
    assert record.endpoint == "messages" and record.completion_tokens == 4 and not record.streamed


def test_the_sdk_stream_helper_reads_a_translated_stream(gateway, catalog, key):
    with claude(gateway, key).messages.stream(
        model=catalog["echo"], max_tokens=64, messages=[{"role": "user", "content": "stream it now"}]
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
    assert text_of(final) == "You said: stream it now" and final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5 and final.usage.input_tokens > 0
    assert events[0] == "message_start" and events[-1] == "message_stop"
    assert "content_block_delta" in events and "message_delta" in events


def test_system_prompts_and_claude_codes_extra_fields_reach_a_chat_route(gateway, catalog, key, upstream):
    word = marker()
    answer = requests.post(
        f"{gateway.url}/v1/messages",
        json={
            "model": catalog["echo"], "max_tokens": 256, "system": [{"type": "text", "text": "Be brief.",
                                                                  "cache_control": {"type": "ephemeral"}}],
            "messages": [{"role": "system", "content": "Also be kind."},
                         {"role": "user", "content": [{"type": "text", "text": word}]}],
            "thinking": {"type": "adaptive"}, "context_management": {"edits": []},
            "output_config": {"effort": "medium"}, "metadata": {"user_id": "someone"},
        },
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "claude-code-20250219"},
        timeout=30,
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    assert answer.json()["content"][0]["text"] == f"You said: {word}"
    sent = [r for r in upstream.find(model="echo") if word in json.dumps(r.json)][-1].json
    systems = [m["content"] for m in sent["messages"] if m["role"] == "system"]
    assert "Be brief." in json.dumps(systems) and "Also be kind." in json.dumps(systems)
    assert "context_management" not in sent and "output_config" not in sent


def test_a_tool_use_loop_on_a_chat_route(gateway, catalog, key):
    api = claude(gateway, key)
    tools = [
        {
            "name": "get_time",
            "description": "The time now",
            "input_schema": {"type": "object", "properties": {}},
        }
    ]
    asked = [{"role": "user", "content": "What time is it?"}]
    first = api.messages.create(model=catalog["echo"], max_tokens=64, tools=tools, messages=asked)
    assert first.stop_reason == "tool_use"
    use = next(block for block in first.content if block.type == "tool_use")
    assert use.name == "get_time" and use.input == {}
    second = api.messages.create(
        model=catalog["echo"], max_tokens=64, tools=tools,
        messages=[*asked, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "noon"}]}],
    )  # fmt: skip
    assert second.stop_reason == "end_turn" and text_of(second)


def test_count_tokens_is_counted_locally_on_a_chat_route_and_counts_against_no_limit(
    gateway, catalog, make_key
):
    _, raw = make_key(rpm_limit=1, rpd_limit=1)
    api = claude(gateway, raw)
    for _ in range(3):
        counted = api.messages.count_tokens(
            model=catalog["echo"], messages=[{"role": "user", "content": "count me"}]
        )
        assert counted.input_tokens > 0
    message = api.messages.create(
        model=catalog["echo"], max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    )
    assert text_of(message) == "You said: hi"


# --- errors, in Anthropic's shape ------------------------------------------------------------------------------


def assert_anthropic_error(answer: requests.Response, status: int, kind: str) -> dict:
    assert answer.status_code == status, answer.text
    body = answer.json()
    assert body["type"] == "error" and body["error"]["type"] == kind and body["error"]["message"]
    assert answer.headers["request-id"] and body["request_id"] == answer.headers["request-id"]
    return body


def test_a_bad_key_is_an_authentication_error(gateway, catalog):
    with pytest.raises(anthropic.AuthenticationError) as caught:
        claude(gateway, "sk-not-a-real-key").messages.create(
            model=catalog["echo"], max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.body["type"] == "authentication_error" or caught.value.body["error"]["type"] == (
        "authentication_error"
    )


@pytest.mark.parametrize(
    "body, field",
    [
        ({"messages": [{"role": "user", "content": "hi"}]}, "max_tokens"),
        ({"max_tokens": 8, "messages": []}, "messages"),
        ({"max_tokens": 8, "messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": [{"text": "x"}]}]}, "messages.0.content.0.type"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "temperature": 3}, "temperature"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}], "tool_choice": {"type": "maybe"}},
         "tool_choice.type"),
        ({"max_tokens": 8, "messages": [{"role": "user", "content": "hi"}],
          "thinking": {"type": "enabled", "budget_tokens": 10}}, "thinking.budget_tokens"),
    ],
)  # fmt: skip
def test_a_bad_request_is_an_invalid_request_error_naming_the_field(
    gateway, catalog, key, upstream, body, field
):
    seen = upstream.count()
    answer = requests.post(
        f"{gateway.url}/v1/messages", json={"model": catalog["echo"], **body},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"}, timeout=30,
    )  # fmt: skip
    error = assert_anthropic_error(answer, 400, "invalid_request_error")
    assert error["error"]["message"].startswith(field) and upstream.count() == seen


def test_the_sdks_typed_errors(gateway, catalog, make_key, make_user):
    api = claude(gateway, make_key(rpm_limit=1, rpd_limit=100)[1])
    hello = [{"role": "user", "content": "hi"}]
    api.messages.create(model=catalog["echo"], max_tokens=8, messages=hello)
    with pytest.raises(anthropic.RateLimitError) as limited:
        api.messages.create(model=catalog["echo"], max_tokens=8, messages=hello)
    assert (
        limited.value.response.headers["retry-after"]
        and limited.value.body["error"]["type"] == "rate_limit_error"
    )
    narrow = claude(gateway, make_key(allowed_models=["some-other-model"], **HIGH_LIMITS)[1])
    with pytest.raises(anthropic.PermissionDeniedError):
        narrow.messages.create(model=catalog["echo"], max_tokens=8, messages=hello)
    with pytest.raises(anthropic.NotFoundError) as missing:
        claude(gateway, make_key(**HIGH_LIMITS)[1]).messages.create(
            model="no-such-model", max_tokens=8, messages=hello
        )
    assert missing.value.body["error"]["type"] == "not_found_error"


def test_a_paid_model_without_credit_is_a_billing_error(
    gateway, key, live_database, tmp_path_factory, upstream
):
    from proxy.catalog.importer import catalog_import

    provider, model = unique("claude-paid"), unique("claude-paid")
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("paid") / "c.toml", [
        {"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY"}], [
        {"id": model, "owned_by": "t", "input_usd_per_mtok": "3", "output_usd_per_mtok": "15",
         "routes": [{"provider": provider, "upstream_model": "echo"}]}]))  # fmt: skip
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(gateway, key).messages.create(
            model=model, max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 402 and caught.value.body["error"]["type"] == "billing_error"


def test_the_key_may_come_as_a_bearer_token(gateway, catalog, key):
    api = anthropic.Anthropic(base_url=gateway.url, auth_token=key, api_key=None, max_retries=0)
    message = api.messages.create(
        model=catalog["echo"], max_tokens=8, messages=[{"role": "user", "content": "hi"}]
    )
    assert text_of(message) == "You said: hi"


def test_the_models_list_in_anthropics_shape(gateway, catalog, key):
    page = claude(gateway, key).models.list()
    ids = [model.id for model in page.data]
    assert catalog["echo"] in ids and all(model.type == "model" for model in page.data)
    one = claude(gateway, key).models.retrieve(catalog["echo"])
    assert one.id == catalog["echo"] and one.display_name and one.created_at
    openai_shape = requests.get(
        f"{gateway.base_url}/models", headers={"Authorization": f"Bearer {key}"}
    ).json()
    assert openai_shape["object"] == "list"


def test_an_openai_client_is_unchanged(gateway, catalog, key):
    completion = client(gateway, key).chat.completions.create(
        model=catalog["echo"], messages=[{"role": "user", "content": "still chat"}]
    )
    assert completion.choices[0].message.content == "You said: still chat"


# --- an Anthropic-style route: passed through ------------------------------------------------------------------


def test_a_message_on_an_anthropic_route_passes_through_with_the_clients_headers(
    gateway, anthropic_routes, key, upstream
):
    word = marker()
    body = {
        "model": anthropic_routes["echo"], "max_tokens": 64, "top_k": 5, "context_management": {"edits": []},
        "system": [{"type": "text", "text": "Cached rules.", "cache_control": {"type": "ephemeral"}}],
        "messages": [{"role": "user", "content": f"native {word}"}],
    }  # fmt: skip
    answer = requests.post(
        f"{gateway.url}/v1/messages?beta=true", json=body, timeout=30,
        headers={"x-api-key": key, "anthropic-version": "2023-06-01", "anthropic-beta": "prompt-caching-2024-07-31"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    message = anthropic.types.Message.model_validate(answer.json())
    assert text_of(message) == f"You said: native {word}"
    sent = [r for r in sent_to_messages(upstream, anthropic_routes["native"]) if word in json.dumps(r.json)][
        -1
    ]
    assert sent.json == {**body, "model": "echo"}  # only the model name changed
    assert sent.headers["x-api-key"] == "upstream-secret-123" and "authorization" not in sent.headers
    assert sent.headers["anthropic-version"] == "2023-06-01"
    assert sent.headers["anthropic-beta"] == "prompt-caching-2024-07-31" and sent.query == {"beta": "true"}


def test_cache_reads_and_writes_are_recorded(gateway, anthropic_routes, key):
    rules = f"Rules {marker()} one two three"
    system = [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral", "ttl": "1h"}}]
    api = claude(gateway, key)
    records = []
    for _ in range(2):
        raw = api.messages.with_raw_response.create(
            model=anthropic_routes["echo"], max_tokens=32, system=system,
            messages=[{"role": "user", "content": "hello there"}],
        )  # fmt: skip
        usage = raw.parse().usage
        records.append((usage, wait_usage(raw.headers["x-request-id"])))
    (first, written), (second, read) = records
    assert first.cache_creation_input_tokens == 5 and first.cache_read_input_tokens == 0
    assert (written.cache_write_1h_tokens, written.cache_write_tokens, written.cache_read_tokens) == (5, 0, 0)
    assert second.cache_read_input_tokens == 5 and (read.cache_read_tokens, read.cache_write_1h_tokens) == (
        5,
        0,
    )
    # The record's input is all of it: Anthropic's input_tokens leave the cached buckets out.
    assert read.prompt_tokens == second.input_tokens + 5 and read.completion_tokens == second.output_tokens


def test_a_passed_through_stream_keeps_anthropics_events_and_its_final_usage(gateway, anthropic_routes, key):
    api = claude(gateway, key)
    with api.messages.stream(
        model=anthropic_routes["echo"],
        max_tokens=64,
        messages=[{"role": "user", "content": "stream natively"}],
    ) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        request_id = stream.response.headers["x-request-id"]
    assert text_of(final) == "You said: stream natively" and final.usage.output_tokens == 4
    assert events[0] == "message_start" and events[-1] == "message_stop"
    record = wait_usage(request_id)
    assert record.streamed and record.completion_tokens == 4 and record.endpoint == "messages"
    assert record.prompt_tokens == final.usage.input_tokens


def test_a_tool_use_loop_on_an_anthropic_route(gateway, anthropic_routes, key):
    api = claude(gateway, key)
    tools = [
        {"name": "get_time", "description": "The time", "input_schema": {"type": "object", "properties": {}}}
    ]
    asked = [{"role": "user", "content": "What time is it?"}]
    first = api.messages.create(model=anthropic_routes["echo"], max_tokens=64, tools=tools, messages=asked)
    use = next(block for block in first.content if block.type == "tool_use")
    assert first.stop_reason == "tool_use" and use.name == "get_time"
    second = api.messages.create(
        model=anthropic_routes["echo"], max_tokens=64, tools=tools,
        messages=[*asked, {"role": "assistant", "content": first.content},
                  {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "noon"}]}],
    )  # fmt: skip
    assert text_of(second) == "Tool said: noon" and second.stop_reason == "end_turn"


def test_count_tokens_is_asked_of_an_anthropic_route(gateway, anthropic_routes, key, upstream):
    counted = claude(gateway, key).messages.count_tokens(
        model=anthropic_routes["echo"], messages=[{"role": "user", "content": "hello there"}]
    )
    assert counted.input_tokens == 5
    asked = [r for r in upstream.find(prefix=anthropic_routes["native"]) if r.path.endswith("/count_tokens")]
    assert asked and asked[-1].json["model"] == "echo"


def test_an_upstream_refusal_reaches_the_claude_client_unchanged(gateway, anthropic_routes, key):
    answer = requests.post(
        f"{gateway.url}/v1/messages", timeout=30,
        json={"model": anthropic_routes["echo"], "max_tokens": 64, "messages": [
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "toolu_nowhere", "content": "x"}]}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )  # fmt: skip
    error = assert_anthropic_error(answer, 400, "invalid_request_error")
    assert "tool" in error["error"]["message"]


def test_a_stream_cut_upstream_ends_with_an_error_event(gateway, anthropic_routes, key):
    answer = requests.post(
        f"{gateway.url}/v1/messages", stream=True, timeout=30,
        json={"model": anthropic_routes["cut-after:2"], "max_tokens": 64, "stream": True,
              "messages": [{"role": "user", "content": "one two three four five"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )  # fmt: skip
    lines = [line for line in answer.iter_lines(decode_unicode=True) if line]
    assert lines[-2] == "event: error"
    error = json.loads(lines[-1].removeprefix("data: "))
    assert error["type"] == "error" and error["error"]["type"] == "api_error"
    with (
        pytest.raises(anthropic.APIStatusError),
        claude(gateway, key).messages.stream(
            model=anthropic_routes["cut-after:2"],
            max_tokens=64,
            messages=[{"role": "user", "content": "a b c d"}],
        ) as stream,
    ):
        list(stream)


def test_failover_runs_across_styles(gateway, anthropic_routes, key):
    message = claude(gateway, key).messages.create(
        model=anthropic_routes["mixed"], max_tokens=32, messages=[{"role": "user", "content": "anyone there"}]
    )
    assert text_of(message) == "You said: anyone there"


# --- the other ingress APIs on an Anthropic route --------------------------------------------------------------


def test_an_openai_client_on_an_anthropic_route(gateway, anthropic_routes, key, upstream):
    api = client(gateway, key)
    completion = api.chat.completions.create(
        model=anthropic_routes["echo"],
        messages=[{"role": "system", "content": "Be nice."}, {"role": "user", "content": "chat to claude"}],
    )
    assert completion.choices[0].message.content == "You said: chat to claude"
    assert completion.choices[0].finish_reason == "stop" and completion.usage.completion_tokens == 5
    sent = [
        r
        for r in sent_to_messages(upstream, anthropic_routes["native"])
        if "chat to claude" in json.dumps(r.json)
    ]
    assert (
        sent[-1].json["system"] == [{"type": "text", "text": "Be nice."}] and sent[-1].json["max_tokens"] > 0
    )
    chunks = list(api.chat.completions.create(
        model=anthropic_routes["echo"], messages=[{"role": "user", "content": "stream to claude"}], stream=True,
        stream_options={"include_usage": True},
    ))  # fmt: skip
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "You said: stream to claude" and chunks[-1].usage.completion_tokens == 5


def test_an_openai_tool_call_on_an_anthropic_route(gateway, anthropic_routes, key):
    api = client(gateway, key)
    tools = [
        {
            "type": "function",
            "function": {"name": "get_time", "parameters": {"type": "object", "properties": {}}},
        }
    ]
    asked = [{"role": "user", "content": "time please"}]
    first = api.chat.completions.create(model=anthropic_routes["echo"], messages=asked, tools=tools)
    call = first.choices[0].message.tool_calls[0]
    assert first.choices[0].finish_reason == "tool_calls" and call.function.name == "get_time"
    second = api.chat.completions.create(
        model=anthropic_routes["echo"], tools=tools,
        messages=[*asked, first.choices[0].message.model_dump(exclude_none=True),
                  {"role": "tool", "tool_call_id": call.id, "content": "noon"}],
    )  # fmt: skip
    assert second.choices[0].message.content == "Tool said: noon"
    streamed = list(
        api.chat.completions.create(model=anthropic_routes["echo"], messages=asked, tools=tools, stream=True)
    )
    names = [
        tc.function.name
        for c in streamed
        if c.choices
        for tc in c.choices[0].delta.tool_calls or ()
        if tc.function.name
    ]
    assert names == ["get_time"] and streamed[-1].choices[0].finish_reason == "tool_calls"


def test_the_responses_api_on_an_anthropic_route(gateway, anthropic_routes, key):
    api = client(gateway, key)
    response = api.responses.create(model=anthropic_routes["echo"], input="respond via claude")
    assert response.output_text == "You said: respond via claude" and response.usage.output_tokens == 5
    with api.responses.stream(
        model=anthropic_routes["echo"], input="stream via claude", store=False
    ) as stream:
        list(stream)
        final = stream.get_final_response()
    assert final.output_text == "You said: stream via claude" and final.status == "completed"


def test_a_chat_client_asks_an_anthropic_route_for_prompt_caching(gateway, anthropic_routes, key, upstream):
    rules = f"House rules {marker()} alpha beta"
    system = {
        "role": "system",
        "content": [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}],
    }
    api = client(gateway, key)
    usages = []
    for _ in range(2):
        raw = api.chat.completions.with_raw_response.create(
            model=anthropic_routes["echo"], messages=[system, {"role": "user", "content": "hello there"}]
        )
        usages.append((raw.parse().usage, wait_usage(raw.headers["x-request-id"])))
    sent = [r for r in sent_to_messages(upstream, anthropic_routes["native"]) if rules in json.dumps(r.json)][
        -1
    ]
    assert sent.json["system"] == [{"type": "text", "text": rules, "cache_control": {"type": "ephemeral"}}]
    (first, written), (second, read) = usages
    assert written.cache_write_tokens == 5 and read.cache_read_tokens == 5
    assert second.prompt_tokens_details.cached_tokens == 5 and second.prompt_tokens == first.prompt_tokens


# --- the edges: cut streams, provider refusals, the order of checks, every URL in its dialect -----------------


def test_a_stream_cut_before_its_final_usage_is_billed_for_what_it_sent(gateway, anthropic_routes, key):
    """message_start's output count is a placeholder: the record counts what reached the client instead,
    and keeps the upstream's input."""
    answer = requests.post(
        f"{gateway.url}/v1/messages", stream=True, timeout=30,
        json={"model": anthropic_routes["cut-after:2"], "max_tokens": 64, "stream": True,
              "messages": [{"role": "user", "content": "alpha beta gamma delta epsilon"}]},
        headers={"x-api-key": key, "anthropic-version": "2023-06-01"},
    )  # fmt: skip
    lines = [line for line in answer.iter_lines(decode_unicode=True) if line]
    start = json.loads(next(line for line in lines if '"message_start"' in line).removeprefix("data: "))
    record = wait_usage(answer.headers["x-request-id"])
    assert record.tokens_estimated and record.completion_tokens >= 2  # "You said:" at least
    assert record.prompt_tokens == start["message"]["usage"]["input_tokens"]


def test_a_provider_out_of_credit_fails_over_and_is_never_the_clients_402(gateway, anthropic_routes, key):
    message = claude(gateway, key).messages.create(
        model=anthropic_routes["unpaid"], max_tokens=32, messages=[{"role": "user", "content": "still here"}]
    )
    assert text_of(message) == "You said: still here"


def test_an_overloaded_provider_is_an_overloaded_error(gateway, anthropic_routes, key):
    with pytest.raises(anthropic.APIStatusError) as caught:
        claude(gateway, key).messages.create(
            model=anthropic_routes["fail-529"], max_tokens=8, messages=[{"role": "user", "content": "hi"}]
        )
    assert caught.value.status_code == 529 and caught.value.body["error"]["type"] == "overloaded_error"


def test_a_missing_key_is_refused_before_the_body_is_read(gateway):
    for path in ("/v1/messages", "/v1/messages/count_tokens"):
        answer = requests.post(
            f"{gateway.url}{path}", data=b"{not json", headers={"anthropic-version": "2023-06-01"}
        )
        assert_anthropic_error(answer, 401, "authentication_error")


def test_several_choices_are_refused_on_an_anthropic_route(gateway, anthropic_routes, key):
    with pytest.raises(openai.BadRequestError) as caught:
        client(gateway, key).chat.completions.create(
            model=anthropic_routes["echo"], n=2, messages=[{"role": "user", "content": "twice"}]
        )
    assert caught.value.body["param"] == "n"


def test_an_unknown_messages_url_answers_in_anthropics_shape(gateway, key):
    answer = requests.post(f"{gateway.url}/v1/messages/batches", json={}, headers={"x-api-key": key})
    assert_anthropic_error(answer, 404, "not_found_error")


def test_every_beta_header_line_is_forwarded(gateway, anthropic_routes, key, upstream):
    word = marker()
    headers = urllib3.HTTPHeaderDict({"x-api-key": key, "anthropic-version": "2023-06-01"})
    for beta in ("one-2025", "two-2025"):  # two lines of one header, as some HTTP clients send them
        headers.add("anthropic-beta", beta)
    body = {
        "model": anthropic_routes["echo"],
        "max_tokens": 16,
        "messages": [{"role": "user", "content": word}],
    }
    answer = urllib3.request("POST", f"{gateway.url}/v1/messages", json=body, headers=headers, timeout=30)
    assert answer.status == 200, answer.data
    sent = [r for r in sent_to_messages(upstream, anthropic_routes["native"]) if word in json.dumps(r.json)]
    assert sent[-1].headers["anthropic-beta"] == "one-2025, two-2025"
