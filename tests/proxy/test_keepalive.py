"""A slow first token: the client gets SSE keep-alive comments (an Anthropic client: ``ping`` events) instead
of silence, then the stream."""

import openai
import pytest
import requests
from django.conf import settings

from proxy.catalog.importer import catalog_import
from tests.conftest import database_url, unique, write_catalog
from tests.live import start_gateway
from tests.proxy.test_chat import HIGH_LIMITS


@pytest.fixture(scope="module")
def quick_keepalive_gateway(live_database, catalog, artifacts):
    gw = start_gateway(
        database_url(), settings.REDIS_URL, artifacts, STREAM_KEEPALIVE_SECONDS="0.3",
        TEST_UPSTREAM_KEY="upstream-secret-123",  # an Anthropic-style upstream refuses a call without a key
    )  # fmt: skip
    yield gw
    gw.stop()


def test_a_slow_first_token_gets_keepalive_comments_then_the_stream(
    quick_keepalive_gateway, upstream, make_key, tmp_path
):
    provider, model = unique("ka"), unique("slow-token")
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "first_byte_timeout": 5.0}]
    models = [{"id": model, "owned_by": "test", "routes": [{"provider": provider,
                                                             "upstream_model": "slow-first-token:1.2"}]}]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path / "ka.toml", providers, models))
    _, raw = make_key()
    api = openai.OpenAI(base_url=quick_keepalive_gateway.base_url, api_key=raw, max_retries=0)
    with api.chat.completions.with_streaming_response.create(
        model=model, messages=[{"role": "user", "content": "hello there"}], stream=True
    ) as response:
        lines = [line for line in response.iter_lines() if line]
    keepalives = [line for line in lines if line.startswith(":")]
    assert len(keepalives) >= 2  # one every 0.3 s during the 1.2 s wait
    assert all(line == ": keep-alive" for line in keepalives)
    data = [line for line in lines if line.startswith("data:")]
    assert data[-1] == "data: [DONE]"
    assert lines.index(keepalives[-1]) < lines.index(data[0])  # comments only before the first event
    assert "You said: hello there" in "".join(
        __import__("json").loads(d[5:])["choices"][0]["delta"].get("content") or ""
        for d in data[:-1] if __import__("json").loads(d[5:])["choices"]
    )  # fmt: skip


def test_a_slow_anthropic_route_gets_pings_before_its_own_events(
    quick_keepalive_gateway, anthropic_routes, make_key
):
    _, raw = make_key(**HIGH_LIMITS)
    lines = messages_stream(quick_keepalive_gateway, raw, anthropic_routes["slow-first-token:1.2"])
    assert lines[:2] == ["event: ping", 'data: {"type":"ping"}'] and lines[-2] == "event: message_stop"
    assert not any(line.startswith(":") for line in lines)  # an Anthropic client gets its own keep-alive


def test_a_slow_chat_route_gets_pings_after_message_start(
    quick_keepalive_gateway, upstream, make_key, tmp_path
):
    provider, model = unique("ka-msg"), unique("slow-token-msg")
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "first_byte_timeout": 5.0}]
    models = [{"id": model, "owned_by": "test", "routes": [{"provider": provider,
                                                             "upstream_model": "slow-first-token:1.2"}]}]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path / "ka.toml", providers, models))
    _, raw = make_key(**HIGH_LIMITS)
    lines = messages_stream(quick_keepalive_gateway, raw, model)
    pings = [i for i, line in enumerate(lines) if line == "event: ping"]
    assert lines[0] == "event: message_start" and len(pings) >= 2 and lines[-2] == "event: message_stop"
    assert pings[-1] < lines.index("event: content_block_start")


def messages_stream(gateway, raw: str, model: str) -> list[str]:
    answer = requests.post(
        f"{gateway.url}/v1/messages", stream=True, timeout=30,
        json={"model": model, "max_tokens": 64, "stream": True, "messages": [{"role": "user", "content": "wait"}]},
        headers={"x-api-key": raw, "anthropic-version": "2023-06-01"},
    )  # fmt: skip
    assert answer.status_code == 200, answer.text
    return [line for line in answer.iter_lines(decode_unicode=True) if line]
