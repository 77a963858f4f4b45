"""POST /v1/responses, bridged to a chat route, and the stored responses, through the official openai SDK.

The session catalog's ``echo`` model is a chat model on the fake upstream (tests/upstream.py), which answers
``"You said: " + <last user text>``: so what the gateway sent upstream shows in every answer.
"""

import json
import time

import openai
import pytest
import requests

from proxy.conversations.models import StoredResponse
from proxy.conversations.stored import copy_name, member
from tests.proxy.test_chat import HIGH_LIMITS, assert_refused, client, wait_usage
from tests.spec import validator_for


def last_text(recorded) -> object:
    """The last message's content of a chat request the upstream received."""
    messages = (recorded.json or {}).get("messages") or [{}]
    content = messages[-1].get("content")
    if isinstance(content, list):  # text parts
        return " ".join(part.get("text", "") for part in content if isinstance(part, dict))
    return content


def wait_stored(response_id: str, timeout: float = 5.0) -> StoredResponse:
    """The response's row, polled for: with Redis, responses are written to the database in batches just after
    their answer ends (proxy/conversations/stored.py)."""
    deadline = time.monotonic() + timeout
    while True:
        row = StoredResponse.objects.filter(pk=response_id).first()
        if row is not None:
            return row
        if time.monotonic() > deadline:
            raise AssertionError(f"no StoredResponse {response_id} within {timeout} s")
        time.sleep(0.05)


@pytest.fixture
def api(gateway, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    return client(gateway, raw)


def test_a_string_input_is_answered_as_a_response_and_recorded(api, catalog):
    raw = api.responses.with_raw_response.create(model=catalog["echo"], input="Hello there")
    response = raw.parse()
    validator_for("Response").validate(raw.http_response.json())
    assert response.object == "response" and response.status == "completed"
    assert response.output_text == "You said: Hello there"
    assert response.usage.input_tokens > 0 and response.usage.output_tokens == 4
    record = wait_usage(raw.headers["x-request-id"])
    assert record.endpoint == "responses" and record.completion_tokens == 4 and not record.streamed


def test_instructions_and_items_are_bridged(api, catalog, upstream):
    response = api.responses.create(
        model=catalog["echo"], instructions="Answer briefly.",
        input=[{"role": "user", "content": [{"type": "input_text", "text": "items in"}]}],
    )  # fmt: skip
    assert response.output_text == "You said: items in"
    sent = [r for r in upstream.find(model="echo") if last_text(r) == "items in"]
    assert sent and sent[-1].json["messages"][0] == {"role": "system", "content": "Answer briefly."}


def test_the_sdk_stream_helper_gets_every_event_in_order(api, catalog, gateway, make_key):
    with api.responses.stream(model=catalog["echo"], input="stream this please") as stream:
        events = list(stream)
        final = stream.get_final_response()
    assert final.output_text == "You said: stream this please"
    types = [e.type for e in events]
    assert types[:2] == ["response.created", "response.in_progress"] and types[-1] == "response.completed"
    assert "response.output_text.delta" in types and [e.sequence_number for e in events] == list(
        range(len(events))
    )
    assert final.usage is not None and final.usage.output_tokens == 5


def test_every_streamed_event_matches_openais_schema_and_names_its_type(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    answer = requests.post(
        f"{gateway.base_url}/responses", json={"model": catalog["echo"], "input": "raw events", "stream": True},
        headers={"Authorization": f"Bearer {raw}"}, stream=True, timeout=30,
    )  # fmt: skip
    lines = [line for line in answer.iter_lines(decode_unicode=True) if line]
    names = [line.removeprefix("event: ") for line in lines if line.startswith("event: ")]
    events = [json.loads(line.removeprefix("data: ")) for line in lines if line.startswith("data: ")]
    assert answer.headers["content-type"].startswith("text/event-stream") and "[DONE]" not in lines
    assert names == [e["type"] for e in events] and events[-1]["type"] == "response.completed"
    for event in events:
        validator_for("ResponseStreamEvent").validate(event)


def test_a_stored_response_is_retrieved_listed_and_deleted(api, catalog):
    made = api.responses.create(model=catalog["echo"], input="keep me")
    again = api.responses.retrieve(made.id)
    assert again.id == made.id and again.output_text == "You said: keep me"
    items = api.responses.input_items.list(made.id)
    assert [i.type for i in items.data] == ["message"] and items.data[0].content[0].text == "keep me"
    assert api.responses.delete(made.id) is None
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        api.responses.delete(made.id)


def test_a_follow_up_sent_the_instant_a_stream_ends_continues_the_conversation(api, catalog, upstream):
    with api.responses.stream(model=catalog["echo"], input="first turn") as stream:
        first = stream.get_final_response()
    second = api.responses.create(model=catalog["echo"], input="second turn", previous_response_id=first.id)
    assert second.output_text == "You said: second turn"
    [sent] = [r for r in upstream.find(model="echo") if last_text(r) == "second turn"]
    assert [m["role"] for m in sent.json["messages"]] == ["user", "assistant", "user"]
    assert sent.json["messages"][1]["content"] == "You said: first turn"


def test_a_function_tool_loop(api, catalog):
    tools = [{"type": "function", "name": "get_weather", "description": "Weather in a city.", "strict": False,
              "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}]  # fmt: skip
    called = api.responses.create(model=catalog["echo"], input="weather in Paris?", tools=tools)
    [call] = [item for item in called.output if item.type == "function_call"]
    assert call.name == "get_weather"
    answered = api.responses.create(
        model=catalog["echo"], previous_response_id=called.id,
        input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny"}],
    )  # fmt: skip
    assert answered.status == "completed" and answered.output_text


def test_another_accounts_response_reads_as_one_that_never_existed(api, catalog, gateway, make_key):
    made = api.responses.create(model=catalog["echo"], input="mine alone")
    _, other_raw = make_key(**HIGH_LIMITS)
    other = client(gateway, other_raw)
    with pytest.raises(openai.NotFoundError) as theirs:
        other.responses.retrieve(made.id)
    with pytest.raises(openai.NotFoundError) as nobodys:
        other.responses.retrieve("resp_" + "0" * 32)
    assert theirs.value.body["message"].replace(made.id, "X") == nobodys.value.body["message"].replace(
        "resp_" + "0" * 32, "X"
    )
    with pytest.raises(openai.NotFoundError):
        other.responses.delete(made.id)
    with pytest.raises(openai.BadRequestError) as continued:
        other.responses.create(model=catalog["echo"], input="steal it", previous_response_id=made.id)
    assert continued.value.body["param"] == "previous_response_id"
    assert api.responses.retrieve(made.id).id == made.id  # still there for its owner
    assert wait_stored(made.id)  # and written: the other account's delete left it alone


def test_store_false_is_not_kept(api, catalog):
    made = api.responses.create(model=catalog["echo"], input="forget me", store=False)
    assert made.output_text == "You said: forget me"
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(made.id)
    with pytest.raises(openai.BadRequestError):
        api.responses.create(model=catalog["echo"], input="again", previous_response_id=made.id)


BAD_BODIES = [
    ("missing", {}, "input"),
    ("number", {"input": 5}, "input"),
    ("item", {"input": [5]}, "input[0]"),
    ("role", {"input": [{"role": "robot", "content": "x"}]}, "input[0].role"),
    (
        "part-text",
        {"input": [{"role": "user", "content": [{"type": "input_text"}]}]},
        "input[0].content[0].text",
    ),
    ("part-type", {"input": [{"role": "user", "content": [{"type": "video"}]}]}, "input[0].content[0].type"),
    ("call-output", {"input": [{"type": "function_call_output", "output": "x"}]}, "input[0].call_id"),
    ("tool", {"input": "x", "tools": [{}]}, "tools[0].type"),
    ("tool-name", {"input": "x", "tools": [{"type": "function"}]}, "tools[0].name"),
    (
        "tool-schema",
        {"input": "x", "tools": [{"type": "function", "name": "f", "parameters": 5}]},
        "tools[0].parameters",
    ),
    ("tool-choice", {"input": "x", "tool_choice": {"type": "function"}}, "tool_choice.name"),
    ("format", {"input": "x", "text": {"format": {"type": "yaml"}}}, "text.format.type"),
    (
        "format-schema",
        {"input": "x", "text": {"format": {"type": "json_schema", "name": "s"}}},
        "text.format.schema",
    ),
    ("effort", {"input": "x", "reasoning": {"effort": "max"}}, "reasoning.effort"),
    ("include", {"input": "x", "include": "reasoning"}, "include"),
    ("max-output", {"input": "x", "max_output_tokens": 0}, "max_output_tokens"),
    ("temperature", {"input": "x", "temperature": 3}, "temperature"),
]


@pytest.mark.parametrize(("body", "param"), [b[1:] for b in BAD_BODIES], ids=[b[0] for b in BAD_BODIES])
def test_bad_input_is_a_400_naming_the_param(gateway, catalog, make_key, upstream, body, param):
    _, raw = make_key(rpm_limit=50, rpd_limit=500)
    assert_refused(gateway, upstream, raw, "/responses", {"model": catalog["echo"], **body}, param)


def test_stored_responses_expire_after_the_retention_period(api, catalog, settings):
    from datetime import timedelta

    import redis
    from django.utils import timezone

    from proxy.conversations.tasks import expire_responses

    old, fresh = (api.responses.create(model=catalog["echo"], input=f"keep {n}") for n in ("old", "fresh"))
    row = wait_stored(old.id)
    StoredResponse.objects.filter(pk=old.id).update(created_at=timezone.now() - timedelta(days=31))
    # A month-old response has no Redis copy any more: it lived an hour.
    redis.Redis.from_url(settings.REDIS_URL).delete(copy_name(member(row.account_id, row.id)))
    settings.RESPONSES_RETENTION_DAYS = 30
    assert expire_responses() >= 1
    assert not StoredResponse.objects.filter(pk=old.id).exists()
    assert api.responses.retrieve(fresh.id).id == fresh.id
    with pytest.raises(openai.NotFoundError):
        api.responses.retrieve(old.id)
    assert (
        expire_responses() == 0 or not StoredResponse.objects.filter(pk=old.id).exists()
    )  # twice is harmless


async def test_the_openai_agents_sdk_runs_an_agent_with_a_function_tool(gateway, catalog, make_key):
    """A real agent client: the Agents SDK speaks the Responses API by default, calls the tool the model
    asks for, sends its output back, and finishes with the model's words."""
    from agents import Agent, OpenAIResponsesModel, Runner, function_tool, set_tracing_disabled

    set_tracing_disabled(True)  # its traces would go to OpenAI's servers
    _, raw = make_key(**HIGH_LIMITS)
    calls: list[str] = []

    @function_tool
    def get_weather(city: str = "here") -> str:
        """The weather in a city."""
        calls.append(city)  # the fake model calls tools with no arguments
        return "sunny"

    sdk = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    agent = Agent(
        name="forecaster", instructions="Answer with the weather.", tools=[get_weather],
        model=OpenAIResponsesModel(model=catalog["echo"], openai_client=sdk),
    )  # fmt: skip
    result = await Runner.run(agent, "What is the weather in Paris?", max_turns=4)
    assert calls == ["here"]  # the fake model asks for the tool once, then answers
    kinds = [type(item).__name__ for item in result.new_items]
    assert kinds == ["ToolCallItem", "ToolCallOutputItem", "MessageOutputItem"]
    assert result.final_output == "You said: What is the weather in Paris?"


def test_a_stream_cut_mid_way_ends_with_response_failed_and_is_recorded(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    answer = requests.post(
        f"{gateway.base_url}/responses", json={"model": catalog["cut-after:3"], "input": "cut me off", "stream": True},
        headers={"Authorization": f"Bearer {raw}"}, stream=True, timeout=30,
    )  # fmt: skip
    events = [
        json.loads(line[6:]) for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")
    ]
    assert answer.status_code == 200 and [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["error"]["code"] == events[-2]["code"] == "server_error"
    assert [e["type"] for e in events].count("response.output_text.delta") == 3
    record = wait_usage(answer.headers["x-request-id"])
    assert (
        record.endpoint == "responses"
        and record.error_code == "upstream_cut"
        and record.completion_tokens > 0
    )
    with pytest.raises(openai.NotFoundError):  # a failed response is not kept
        client(gateway, raw).responses.retrieve(events[-1]["response"]["id"])


# --- passthrough: a provider that serves /responses itself ------------------------------------------------------


@pytest.fixture(scope="module")
def passthrough(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    """A model on a provider with ``responses = true`` (the fake upstream's own /v1/responses), and one on
    a chat-only provider, by behaviour."""
    from proxy.catalog.importer import catalog_import
    from tests.conftest import unique, write_catalog

    own, chat_only = unique("resp-own"), unique("resp-chat")
    providers = [
        {
            "name": own,
            "base_url": upstream.url_for(own),
            "api_key_env": "TEST_UPSTREAM_KEY",
            "responses": True,
        },
        {"name": chat_only, "base_url": upstream.url_for(chat_only), "api_key_env": "TEST_UPSTREAM_KEY"},
    ]
    names = {b: unique(f"rp-{b.replace(':', '-')}") for b in ("echo", "cut-after:2", "bridged")}
    models = [
        {"id": names["echo"], "owned_by": "test", "routes": [{"provider": own, "upstream_model": "echo"}]},
        {"id": names["cut-after:2"], "owned_by": "test", "routes": [{"provider": own, "upstream_model": "cut-after:2"}]},
        {"id": names["bridged"], "owned_by": "test", "routes": [{"provider": chat_only, "upstream_model": "echo"}]},
    ]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("resp") / "c.toml", providers, models))
    return {**names, "own": own}


def sent_to_responses(upstream, prefix: str) -> list:
    return [r for r in upstream.find(prefix=prefix) if r.path.endswith("/v1/responses")]


def test_a_passthrough_route_answers_with_the_upstreams_own_response(api, passthrough, upstream):
    raw = api.responses.with_raw_response.create(model=passthrough["echo"], input="pass me through")
    response = raw.parse()
    validator_for("Response").validate(raw.http_response.json())
    assert response.output_text == "You said: pass me through"
    assert sent_to_responses(upstream, passthrough["own"])[-1].json["model"] == "echo"
    record = wait_usage(raw.headers["x-request-id"])
    assert record.endpoint == "responses" and not record.tokens_estimated
    assert (record.prompt_tokens, record.completion_tokens) == (
        response.usage.input_tokens,
        response.usage.output_tokens,
    )
    assert api.responses.retrieve(response.id).output_text == "You said: pass me through"


def test_a_passthrough_stream_keeps_its_events_and_is_stored(api, passthrough):
    with api.responses.stream(model=passthrough["echo"], input="stream through") as stream:
        final = stream.get_final_response()
    assert final.output_text == "You said: stream through"
    assert api.responses.retrieve(final.id).id == final.id


def test_a_follow_up_on_the_same_provider_names_the_previous_response(api, passthrough, upstream):
    first = api.responses.create(model=passthrough["echo"], input="remember this")
    second = api.responses.create(model=passthrough["echo"], input="and this", previous_response_id=first.id)
    assert second.output_text == "You said: and this"
    sent = sent_to_responses(upstream, passthrough["own"])[-1].json
    assert sent["previous_response_id"] == first.id and sent["input"] == "and this"


def test_a_conversation_moves_between_bridged_and_passthrough_routes(api, passthrough, upstream):
    bridged = api.responses.create(model=passthrough["bridged"], input="begun on chat")
    moved = api.responses.create(
        model=passthrough["echo"], input="continued", previous_response_id=bridged.id
    )
    assert moved.output_text == "You said: continued"
    sent = sent_to_responses(upstream, passthrough["own"])[-1].json
    assert "previous_response_id" not in sent  # that provider never saw the first turn: it is replayed
    texts = [
        part.get("text")
        for item in sent["input"]
        for part in item.get("content") or []
        if isinstance(part, dict)
    ]
    assert texts == ["begun on chat", "You said: begun on chat", "continued"]


def test_a_passthrough_stream_cut_short_ends_with_response_failed(gateway, passthrough, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    answer = requests.post(
        f"{gateway.base_url}/responses",
        json={"model": passthrough["cut-after:2"], "input": "cut me off now", "stream": True},
        headers={"Authorization": f"Bearer {raw}"}, stream=True, timeout=30,
    )  # fmt: skip
    events = [
        json.loads(line[6:]) for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")
    ]
    assert [e["type"] for e in events[-2:]] == ["error", "response.failed"]
    assert events[-1]["response"]["status"] == "failed"
    for event in events:
        validator_for("ResponseStreamEvent").validate(event)
    numbers = [e["sequence_number"] for e in events]
    assert numbers == list(range(numbers[0], numbers[0] + len(numbers)))
    record = wait_usage(answer.headers["x-request-id"])
    assert record.error_code == "upstream_cut" and record.completion_tokens > 0


def test_a_codex_style_request_is_served_on_a_bridged_route(gateway, catalog, make_key):
    """What Codex sends by default: store false, encrypted reasoning asked for, a reasoning summary, its
    function tools in a namespace, and the built-in web search, which a chat route can't run and leaves out."""
    _, raw = make_key(**HIGH_LIMITS)
    body = {
        "model": catalog["echo"], "instructions": "You are a coding agent.", "stream": True, "store": False,
        "include": ["reasoning.encrypted_content"], "reasoning": {"effort": "medium", "summary": "auto"},
        "tool_choice": "auto", "parallel_tool_calls": False, "prompt_cache_key": "session-1",
        "tools": [{"type": "web_search"}, {"type": "namespace", "name": "shell", "tools": []}],
        "input": [{"type": "message", "role": "user", "content": [{"type": "input_text", "text": "list files"}]}],
    }  # fmt: skip
    answer = requests.post(f"{gateway.base_url}/responses", json=body, headers={"Authorization": f"Bearer {raw}"},
                           stream=True, timeout=30)  # fmt: skip
    events = [
        json.loads(line[6:]) for line in answer.iter_lines(decode_unicode=True) if line.startswith("data: ")
    ]
    assert answer.status_code == 200 and events[-1]["type"] == "response.completed"
    output = events[-1]["response"]["output"]
    assert [item["type"] for item in output] == ["message", "reasoning"]  # asked for, so given (empty)
    assert output[0]["content"][0]["text"] == "You said: list files"


def test_the_dashboard_shows_a_request_and_the_response_it_stored(gateway, catalog, make_user, make_key):
    from django.test import Client

    owner = make_user()
    _, raw = make_key(owner=owner, **HIGH_LIMITS)
    made = client(gateway, raw).responses.with_raw_response.create(
        model=catalog["echo"], input="show me later"
    )
    request_id = made.headers["x-request-id"]
    wait_usage(request_id)
    wait_stored(made.parse().id)  # the dashboard reads the database, written just after the answer
    browser = Client()
    browser.force_login(owner)
    assert f'href="/usage/{request_id}"' in browser.get("/usage").content.decode()  # the table links to it
    page = browser.get(f"/usage/{request_id}").content.decode()
    assert made.parse().id in page and "show me later" in page and "You said: show me later" in page
    assert 'data-testid="stored-response"' in page and "kept until" in page
    stranger = Client()
    stranger.force_login(make_user())
    assert stranger.get(f"/usage/{request_id}").status_code == 404
