"""POST /v1/completions (legacy) through the official openai SDK against a live gateway process.

The fake upstream (tests/upstream.py) answers ``"You said: " + <prompt>`` as words, cut at ``max_tokens``
(16 by default, as OpenAI's), and counts prompt words as prompt tokens and generated words, times
``max(n, best_of)``, as completion tokens.
"""

from decimal import Decimal

import openai
import pytest

from proxy.catalog.importer import catalog_import
from proxy.gateway import tokens
from tests.conftest import unique, write_catalog
from tests.proxy.test_chat import (
    HIGH_LIMITS,
    assert_gateway_headers,
    assert_refused,
    client,
    wait_usage,
)
from tests.spec import validator_for

INPUT, OUTPUT = Decimal(1), Decimal(2)  # USD per million tokens


@pytest.fixture(scope="module")
def models(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    provider = unique("cmp")
    spec = {
        "echo": (provider, "echo"),
        "no-usage": (provider, "no-usage"),
        "demo": ("demo-" + provider, "demo"),
    }
    names = {b: unique(f"complete-{b}") for b in spec}
    entries = [
        {"id": names[b], "mode": "completion", "owned_by": "test", "input_usd_per_mtok": str(INPUT),
         "output_usd_per_mtok": str(OUTPUT), "routes": [{"provider": p, "upstream_model": up}]}
        for b, (p, up) in spec.items()
    ]  # fmt: skip
    providers = [
        {"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY"},
        {"name": "demo-" + provider, "kind": "demo"},
    ]
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("cmp") / "c.toml", providers, entries))
    return names


def cost(prompt: int, completion: int) -> Decimal:
    return (prompt * INPUT + completion * OUTPUT) / 1_000_000


def test_a_plain_completion_is_relayed_billed_and_matches_the_schema(gateway, models, funded):
    response = client(gateway, funded).completions.with_raw_response.create(
        model=models["echo"], prompt="one two three", max_tokens=10
    )
    body = response.http_response.json()
    validator_for("CreateCompletionResponse").validate(body)
    assert_gateway_headers(response.headers, rpm=HIGH_LIMITS["rpm_limit"], rpd=HIGH_LIMITS["rpd_limit"])
    assert body["object"] == "text_completion"
    assert body["choices"][0]["text"].split() == ["You", "said:", "one", "two", "three"]
    assert body["usage"]["prompt_tokens"] == 3 and body["usage"]["completion_tokens"] == 5
    record = wait_usage(response.headers["x-request-id"])
    assert (record.prompt_tokens, record.completion_tokens, record.tokens_estimated) == (3, 5, False)
    assert record.cost == cost(3, 5) and record.finish_reason == "stop" and record.endpoint == "completions"


def test_the_default_max_tokens_is_sent_upstream_so_the_reservation_covers_it(
    gateway, models, funded, upstream
):
    words = " ".join(f"w{i}" for i in range(40))
    answer = client(gateway, funded).completions.create(model=models["echo"], prompt=words)
    assert answer.choices[0].finish_reason == "length" and answer.usage.completion_tokens == 16
    [sent] = [
        r
        for r in upstream.find(model="echo")
        if r.path.endswith("/v1/completions") and r.json["prompt"] == words
    ]
    assert sent.json["max_tokens"] == 16


def test_a_list_of_prompts_with_n_bills_every_choice(gateway, models, funded):
    answer = client(gateway, funded).completions.create(
        model=models["echo"], prompt=["a", "b c"], n=2, max_tokens=20
    )
    assert [c.index for c in answer.choices] == [0, 1, 2, 3]
    assert answer.usage.prompt_tokens == 3 and answer.usage.completion_tokens == (3 + 4) * 2
    record = wait_usage(answer._request_id)
    assert record.cost == cost(3, 14)


@pytest.mark.parametrize(
    ("prompt", "prompt_tokens"), [([5, 6, 7], 3), ([[1, 2], [3]], 3)], ids=["token-ids", "token-lists"]
)
def test_token_prompts_are_served(gateway, models, funded, prompt, prompt_tokens):
    answer = client(gateway, funded).completions.create(model=models["echo"], prompt=prompt, max_tokens=30)
    assert answer.usage.prompt_tokens == prompt_tokens and answer.choices


def test_a_stream_is_relayed_word_by_word_with_usage_when_asked(gateway, models, funded):
    stream = client(gateway, funded).completions.create(
        model=models["echo"], prompt="stream me now", max_tokens=10, stream=True,
        stream_options={"include_usage": True},
    )  # fmt: skip
    chunks = list(stream)
    text = "".join(c.choices[0].text for c in chunks if c.choices)
    assert text.split() == ["You", "said:", "stream", "me", "now"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 5
    record = wait_usage(stream.response.headers["x-request-id"])
    assert record.streamed and (record.prompt_tokens, record.completion_tokens) == (3, 5)


def test_a_stream_without_include_usage_gets_no_usage_chunk_but_is_billed(gateway, models, funded):
    stream = client(gateway, funded).completions.create(
        model=models["echo"], prompt="quiet stream", max_tokens=10, stream=True
    )
    chunks = list(stream)
    assert all(c.usage is None for c in chunks) and all(c.choices for c in chunks)
    record = wait_usage(stream.response.headers["x-request-id"])
    assert record.cost == cost(2, 4) and not record.tokens_estimated


def test_missing_usage_is_counted_locally(gateway, models, funded):
    answer = client(gateway, funded).completions.with_raw_response.create(
        model=models["no-usage"], prompt="count me", max_tokens=10
    )
    text = answer.http_response.json()["choices"][0]["text"]
    record = wait_usage(answer.headers["x-request-id"])
    assert record.tokens_estimated
    assert (record.prompt_tokens, record.completion_tokens) == (
        tokens.count_text("count me"),
        tokens.count_text(text),
    )


def test_echo_and_suffix_go_upstream(gateway, models, funded, upstream):
    answer = client(gateway, funded).completions.create(
        model=models["echo"], prompt="echo this", echo=True, suffix="the end", max_tokens=30
    )
    assert answer.choices[0].text.startswith("echo this")
    sent = [
        r for r in upstream.find(model="echo") if r.path.endswith("/v1/completions") and r.json.get("echo")
    ]
    assert sent[-1].json["suffix"] == "the end"


def test_the_demo_provider_completes_in_process(gateway, models, funded):
    answer = client(gateway, funded).completions.create(
        model=models["demo"], prompt="hello there", max_tokens=50
    )
    assert answer.choices[0].text.endswith("You wrote: hello there")
    streamed = client(gateway, funded).completions.create(
        model=models["demo"], prompt="hello there", max_tokens=50, stream=True
    )
    assert "".join(c.choices[0].text for c in streamed if c.choices) == answer.choices[0].text


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({}, "prompt"),
        ({"prompt": []}, "prompt"),
        ({"prompt": ["a", 1]}, "prompt[1]"),
        ({"prompt": [[1], []]}, "prompt[1]"),
        ({"prompt": "x", "max_tokens": -1}, "max_tokens"),
        ({"prompt": "x", "n": 0}, "n"),
        ({"prompt": "x", "n": 3, "best_of": 2}, "best_of"),
        ({"prompt": "x", "best_of": 2, "stream": True}, "best_of"),
        ({"prompt": "x", "logprobs": 6}, "logprobs"),
        ({"prompt": "x", "stream_options": {"include_usage": True}}, "stream_options"),
        ({"prompt": "x", "stop": ["a", "b", "c", "d", "e"]}, "stop"),
        ({"prompt": "x", "temperature": 3}, "temperature"),
    ],
    ids=["missing", "empty", "mixed", "empty-tokens", "max-tokens", "n", "best-of", "best-of-stream", "logprobs",
         "stream-options", "stop", "temperature"],
)  # fmt: skip
def test_bad_input_is_a_400_naming_the_param_and_counts_nothing(
    gateway, models, make_key, upstream, body, param
):
    _, raw = make_key(rpm_limit=50, rpd_limit=500)
    assert_refused(gateway, upstream, raw, "/completions", {"model": models["echo"], **body}, param)


def test_chat_records_name_their_endpoint_too(gateway, catalog, funded):
    answer = client(gateway, funded).chat.completions.create(
        model=catalog["echo"], messages=[{"role": "user", "content": "which endpoint"}]
    )
    assert wait_usage(answer._request_id).endpoint == "chat.completions"


def test_a_chat_model_on_completions_is_a_404(gateway, catalog, funded):
    with pytest.raises(openai.NotFoundError) as caught:
        client(gateway, funded).completions.create(model=catalog["echo"], prompt="x")
    assert "/v1/completions" in caught.value.message and "/v1/chat/completions" in caught.value.message
