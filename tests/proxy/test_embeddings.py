"""POST /v1/embeddings through the official openai SDK against a live gateway process.

The fake upstream (tests/upstream.py) answers deterministic vectors (``embedding_vector``) and counts a
string input's words, or a token list's length, as its prompt tokens.
"""

import base64
import struct
from decimal import Decimal

import openai
import pytest

from proxy.catalog.importer import catalog_import
from proxy.gateway import demo, tokens
from tests.conftest import unique, write_catalog
from tests.proxy.test_chat import (
    HIGH_LIMITS,
    assert_gateway_headers,
    assert_openai_error,
    assert_refused,
    client,
    wait_usage,
)
from tests.spec import validator_for
from tests.upstream import embedding_vector

PRICE = Decimal("0.5")  # USD per million input tokens


@pytest.fixture(scope="module")
def models(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    """Embedding models by behaviour: on the fake upstream, on the demo provider, and one chat model."""
    provider, backup = unique("emb"), unique("emb-b")
    spec = {
        "echo": [(provider, "echo")], "failover": [(provider, "fail-500"), (backup, "echo")],
        "no-usage": [(provider, "no-usage")], "float-only": [(provider, "float-only")],
        "garbage": [(provider, "garbage")], "demo": [("demo-" + provider, "demo-embed")],
    }  # fmt: skip
    names = {b: unique(f"embed-{b}") for b in spec}
    entries = [
        {"id": names[b], "mode": "embedding", "owned_by": "test", "input_usd_per_mtok": str(PRICE),
         "routes": [{"provider": p, "upstream_model": up, "priority": i} for i, (p, up) in enumerate(r, 1)]}
        for b, r in spec.items()
    ]  # fmt: skip
    names["chat"] = unique("chat-not-embed")
    entries.append(
        {
            "id": names["chat"],
            "owned_by": "test",
            "routes": [{"provider": provider, "upstream_model": "echo"}],
        }
    )
    providers = [
        {"name": p, "base_url": upstream.url_for(p), "api_key_env": "TEST_UPSTREAM_KEY", "circuit_threshold": 1000}
        for p in (provider, backup)
    ] + [{"name": "demo-" + provider, "kind": "demo"}]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("emb") / "c.toml", providers, entries))
    return names


def decode(b64: str) -> list[float]:
    raw = base64.b64decode(b64)
    return list(struct.unpack(f"<{len(raw) // 4}f", raw))


@pytest.mark.parametrize(
    ("given", "items", "tokens_used"),
    [
        ("one two three", ["one two three"], 3),
        (["alpha", "beta gamma"], ["alpha", "beta gamma"], 3),
        ([11, 22, 33, 44], [[11, 22, 33, 44]], 4),
        ([[1, 2], [3, 4, 5]], [[1, 2], [3, 4, 5]], 5),
    ],
    ids=["string", "strings", "token-ids", "token-lists"],
)
def test_each_input_form_is_embedded_billed_and_recorded(gateway, models, funded, given, items, tokens_used):
    response = client(gateway, funded).embeddings.with_raw_response.create(
        model=models["echo"], input=given, encoding_format="float"
    )
    body = response.http_response.json()
    validator_for("CreateEmbeddingResponse").validate(body)
    assert_gateway_headers(response.headers, rpm=HIGH_LIMITS["rpm_limit"], rpd=HIGH_LIMITS["rpd_limit"])
    assert [d["embedding"] for d in body["data"]] == [embedding_vector(i) for i in items]
    assert [d["index"] for d in body["data"]] == list(range(len(items)))
    assert body["usage"] == {"prompt_tokens": tokens_used, "total_tokens": tokens_used}
    record = wait_usage(response.headers["x-request-id"])
    assert (record.prompt_tokens, record.completion_tokens, record.tokens_estimated) == (
        tokens_used,
        0,
        False,
    )
    assert record.cost == tokens_used * PRICE / 1_000_000
    assert record.status == 200 and not record.streamed and record.endpoint == "embeddings"


def test_base64_decodes_to_the_same_numbers_as_float(gateway, models, funded):
    api = client(gateway, funded)
    floats = api.embeddings.create(model=models["echo"], input="same numbers", encoding_format="float")
    encoded = api.embeddings.create(model=models["echo"], input="same numbers", encoding_format="base64")
    assert isinstance(encoded.data[0].embedding, str)
    assert decode(encoded.data[0].embedding) == floats.data[0].embedding == embedding_vector("same numbers")
    # The SDK's default: it asks for base64 and decodes it itself.
    assert api.embeddings.create(model=models["echo"], input="same numbers").data[
        0
    ].embedding == pytest.approx(floats.data[0].embedding, abs=1e-7)


def test_an_upstream_that_only_answers_floats_is_encoded_by_the_gateway(gateway, models, funded):
    answer = client(gateway, funded).embeddings.create(
        model=models["float-only"], input="encode me", encoding_format="base64"
    )
    assert decode(answer.data[0].embedding) == pytest.approx(embedding_vector("encode me"), abs=1e-7)


def test_dimensions_and_user_go_upstream(gateway, models, funded, upstream):
    answer = client(gateway, funded).embeddings.create(
        model=models["echo"], input="short", dimensions=4, user="u-42", encoding_format="float"
    )
    assert answer.data[0].embedding == embedding_vector("short", 4)
    sent = [
        r
        for r in upstream.find(model="echo")
        if r.path.endswith("/embeddings") and r.json.get("user") == "u-42"
    ]
    assert sent and sent[-1].json["dimensions"] == 4 and sent[-1].json["input"] == "short"


def test_a_failing_route_fails_over_and_counts_once(gateway, models, funded):
    response = client(gateway, funded).embeddings.with_raw_response.create(
        model=models["failover"], input="twice tried", encoding_format="float"
    )
    assert response.http_response.json()["data"][0]["embedding"] == embedding_vector("twice tried")
    # One admission for two routes.
    assert_gateway_headers(response.headers, rpm=HIGH_LIMITS["rpm_limit"], rpd=HIGH_LIMITS["rpd_limit"])
    record = wait_usage(response.headers["x-request-id"])
    assert record.status == 200 and record.cost == 2 * PRICE / 1_000_000


def test_missing_usage_is_counted_locally_and_flagged(gateway, models, funded):
    response = client(gateway, funded).embeddings.with_raw_response.create(
        model=models["no-usage"], input=["count these words", "and these"], encoding_format="float"
    )
    assert response.http_response.status_code == 200
    record = wait_usage(response.headers["x-request-id"])
    expected = tokens.count_text("count these words") + tokens.count_text("and these")
    assert (record.prompt_tokens, record.tokens_estimated) == (expected, True)
    assert record.cost == expected * PRICE / 1_000_000


def test_garbage_from_the_upstream_is_a_502(gateway, models, funded):
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, funded).embeddings.create(model=models["garbage"], input="x", encoding_format="float")
    assert caught.value.status_code == 502
    assert_openai_error(caught.value.response.json())


def test_the_demo_provider_embeds_in_process(gateway, models, funded):
    answer = client(gateway, funded).embeddings.create(
        model=models["demo"], input=["hello", "world"], encoding_format="float"
    )
    assert [d.embedding for d in answer.data] == [
        demo.embedding_vector("hello"),
        demo.embedding_vector("world"),
    ]
    assert answer.usage.prompt_tokens == tokens.count_text("hello") + tokens.count_text("world")


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "input"),
        ({"input": ""}, "input"),
        ({"input": []}, "input"),
        ({"input": ["a", ""]}, "input[1]"),
        ({"input": [[1, 2], []]}, "input[1]"),
        ({"input": ["a", [1]]}, "input[1]"),
        ({"input": [1, -2]}, "input[1]"),
        ({"input": ["x"] * 2049}, "input"),
        ({"input": 5}, "input"),
        ({"input": "x", "encoding_format": "hex"}, "encoding_format"),
        ({"input": "x", "dimensions": 0}, "dimensions"),
        ({"input": "x", "user": 7}, "user"),
    ],
    ids=[
        "missing",
        "empty-string",
        "empty-list",
        "empty-item",
        "empty-token-list",
        "mixed",
        "negative-token",
        "too-many",
        "a-number",
        "encoding",
        "dimensions",
        "user",
    ],
)
def test_bad_input_is_a_400_naming_the_param_and_counts_nothing(
    gateway, models, make_key, upstream, body, param
):
    _, raw = make_key(rpm_limit=50, rpd_limit=500)
    assert_refused(gateway, upstream, raw, "/embeddings", {"model": models["echo"], **body}, param)


def test_a_model_of_another_mode_is_a_404_naming_both_ends(gateway, models, funded):
    api = client(gateway, funded)
    with pytest.raises(openai.NotFoundError) as caught:
        api.embeddings.create(model=models["chat"], input="x")
    assert models["chat"] in caught.value.message and "/v1/embeddings" in caught.value.message
    assert "/v1/chat/completions" in caught.value.message and caught.value.body["param"] == "model"
    with pytest.raises(openai.NotFoundError) as caught:
        api.chat.completions.create(model=models["echo"], messages=[{"role": "user", "content": "hi"}])
    assert "/v1/chat/completions" in caught.value.message and "/v1/embeddings" in caught.value.message


def test_a_paid_embedding_reserves_its_local_count_and_402s_without_credit(gateway, models, make_key):
    _, raw = make_key(**HIGH_LIMITS)  # an account with no credit
    with pytest.raises(openai.APIStatusError) as caught:
        client(gateway, raw).embeddings.create(model=models["echo"], input="no money")
    assert caught.value.status_code == 402 and caught.value.body["code"] == "insufficient_credits"
