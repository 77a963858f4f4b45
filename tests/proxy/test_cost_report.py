"""The cost in the answer: ``"usage": {"include": true}`` (as OpenRouter's clients send it) adds ``cost`` and
``cost_details`` to the answer's usage, and to a stream's usage chunk; without it the answer is unchanged."""

from decimal import Decimal

import anthropic
import pytest

from billing.models import UsageRecord
from tests.conftest import unique, write_catalog
from tests.proxy.test_chat import client, marker, wait_usage

INPUT, OUTPUT = Decimal("2.5"), Decimal("10")
FEE = Decimal("0.001")


@pytest.fixture(scope="module")
def priced(live_database, upstream, tmp_path_factory) -> str:
    from proxy.catalog.importer import catalog_import

    provider, model = unique("cost"), unique("cost-model")
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("cost") / "c.toml", [
        {"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY"}], [
        {"id": model, "owned_by": "t", "input_usd_per_mtok": str(INPUT), "output_usd_per_mtok": str(OUTPUT),
         "request_usd": str(FEE), "routes": [{"provider": provider, "upstream_model": "echo"}]}]))  # fmt: skip
    return model


def expected(record: UsageRecord) -> Decimal:
    return (record.prompt_tokens * INPUT + record.completion_tokens * OUTPUT) / 1_000_000 + FEE


def test_a_plain_answer_carries_its_cost_when_asked(gateway, priced, funded, upstream):
    word = marker()
    raw = client(gateway, funded).chat.completions.with_raw_response.create(
        model=priced, messages=[{"role": "user", "content": word}], extra_body={"usage": {"include": True}}
    )
    usage = raw.parse().usage.model_dump()
    record = wait_usage(raw.headers["x-request-id"])
    assert record.cost == expected(record) and usage["cost"] == float(record.cost)
    assert usage["cost_details"]["request"] == float(FEE)
    assert usage["cost_details"]["output"] == float(record.completion_tokens * OUTPUT / 1_000_000)
    sent = [r for r in upstream.find(model="echo") if word in str(r.json)][-1].json
    assert "usage" not in sent  # the option is the gateway's, not the upstream's


def test_without_the_option_the_usage_is_openais(gateway, priced, funded):
    completion = client(gateway, funded).chat.completions.create(
        model=priced, messages=[{"role": "user", "content": "no cost please"}]
    )
    assert "cost" not in completion.usage.model_dump()


def test_a_streams_usage_chunk_carries_its_cost(gateway, priced, funded):
    with client(gateway, funded).chat.completions.with_streaming_response.create(
        model=priced, messages=[{"role": "user", "content": "stream the cost"}], stream=True,
        stream_options={"include_usage": True}, extra_body={"usage": {"include": True}},
    ) as response:  # fmt: skip
        chunks = list(response.parse())
        request_id = response.headers["x-request-id"]
    record = wait_usage(request_id)
    assert chunks[-1].usage.model_dump()["cost"] == float(record.cost) == float(expected(record))


def test_a_claude_client_gets_its_cost_too(gateway, priced, funded):
    message = anthropic.Anthropic(base_url=gateway.url, api_key=funded, max_retries=0).messages.create(
        model=priced, max_tokens=16, messages=[{"role": "user", "content": "what did it cost"}],
        extra_body={"usage": {"include": True}},
    )  # fmt: skip
    assert message.usage.model_dump()["cost"] > float(FEE)


def test_the_other_streams_end_with_their_cost(gateway, priced, funded):
    api = client(gateway, funded)
    with api.responses.stream(
        model=priced, input="responses cost", extra_body={"usage": {"include": True}}
    ) as s:
        list(s)
        final = s.get_final_response()
    assert final.usage.model_dump()["cost"] > float(FEE)
    claude = anthropic.Anthropic(base_url=gateway.url, api_key=funded, max_retries=0)
    with claude.messages.stream(
        model=priced, max_tokens=16, messages=[{"role": "user", "content": "messages cost"}],
        extra_body={"usage": {"include": True}},
    ) as stream:  # fmt: skip
        deltas = [event for event in stream if event.type == "message_delta"]
    assert deltas[-1].usage.model_dump()["cost"] > float(FEE)
