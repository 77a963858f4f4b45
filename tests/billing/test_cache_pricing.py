"""Cache, reasoning and per-request prices, over HTTP with the official SDKs against a live gateway process.

The fake upstream (tests/upstream.py) reports what its model name asks for: ``cached:N`` (OpenAI's
``cached_tokens``), ``deepseek-cache:N`` (DeepSeek's hit and miss tokens), ``reasoning:N`` (hidden reasoning
counted in the output), and on its Anthropic-style ``/v1/messages`` cache writes and reads played by
``cache_control`` markers. Its token counts are deterministic, so each record's cost is written out here by
hand from the counts and the model's price sheet, never by asking billing/pricing.py.
"""

import asyncio
import uuid
from collections import Counter
from decimal import Decimal

import anthropic
import openai
import pytest

from billing.models import UsageRecord
from tests.conftest import unique, write_catalog
from tests.proxy.test_chat import HIGH_LIMITS, wait_usage
from tests.reliability.books import assert_books_balance, django_query, read_books, wait_until

MILLION = Decimal(1_000_000)
HELLO = [{"role": "user", "content": "hello there friend"}]  # 3 + 3 = 6 prompt tokens upstream
ANSWER = "You said: hello there friend"  # 5 completion tokens

# Price sheets, USD per million tokens (the fee: USD per request).
GPT = {"input_usd_per_mtok": "2.5", "cached_input_usd_per_mtok": "0.25", "output_usd_per_mtok": "10"}
DEEPSEEK = {"input_usd_per_mtok": "0.27", "cached_input_usd_per_mtok": "0.07", "output_usd_per_mtok": "1.1"}
CLAUDE = {
    "input_usd_per_mtok": "3", "cached_input_usd_per_mtok": "0.3", "cache_write_usd_per_mtok": "3.75",
    "cache_write_1h_usd_per_mtok": "6", "output_usd_per_mtok": "15",
}  # fmt: skip
FEE = {"input_usd_per_mtok": "0.4", "output_usd_per_mtok": "1.6", "request_usd": "0.002"}  # cache unpriced
DEAR = {**CLAUDE, "output_usd_per_mtok": "100"}


def usd(spec: dict, key: str) -> Decimal:
    return Decimal(spec[key])


@pytest.fixture(scope="module")
def models(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    """Cache-priced models on an OpenAI-style provider (serving ``/responses`` itself), one without it (its
    Responses are bridged to chat) and an Anthropic-style one. Public model id by name."""
    from proxy.catalog.importer import catalog_import

    openai_style, bridged, claude = unique("cp-oa"), unique("cp-br"), unique("cp-cl")
    timeouts = {"first_byte_timeout": 10.0, "idle_timeout": 10.0, "circuit_threshold": 100_000}
    providers = [
        {"name": openai_style, "base_url": upstream.url_for(openai_style), "api_key_env": "TEST_UPSTREAM_KEY",
         "responses": True, **timeouts},
        {"name": bridged, "base_url": upstream.url_for(bridged), "api_key_env": "TEST_UPSTREAM_KEY", **timeouts},
        {"name": claude, "kind": "anthropic", "base_url": upstream.url_for(claude),
         "api_key_env": "TEST_UPSTREAM_KEY", **timeouts},
    ]  # fmt: skip
    specs = {
        "gpt": (openai_style, "cached:4+reasoning:3", GPT),
        "gpt-bridged": (bridged, "cached:4+reasoning:3", GPT),
        "deepseek": (openai_style, "deepseek-cache:4", DEEPSEEK),
        "fee": (openai_style, "cached:2", FEE),
        "claude": (claude, "echo", CLAUDE),
        "dear": (openai_style, "long:900+cached:5", DEAR),
    }
    ids = {name: unique(f"cp-{name}") for name in specs}
    entries = [
        {"id": ids[name], "owned_by": "test", **prices, "routes": [{"provider": p, "upstream_model": up}]}
        for name, (p, up, prices) in specs.items()
    ]
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("cache") / "c.toml", providers, entries))
    return ids


@pytest.fixture
def funded_account(make_user, make_key):
    """A key with high limits on an account granted ``usd``. Returns (raw key, account id)."""
    from billing.services import account_for, credits_grant

    def make(usd: str = "10") -> tuple[str, int]:
        user = make_user()
        account = account_for(user=user)
        credits_grant(account=account, amount=Decimal(usd), reason="test funds", actor=None)
        return make_key(owner=user, **HIGH_LIMITS)[1], account.pk

    return make


@pytest.fixture
def key(funded_account) -> str:
    return funded_account()[0]


def gpt(gateway, raw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0, timeout=30)


def claude(gateway, raw: str) -> anthropic.Anthropic:
    return anthropic.Anthropic(
        base_url=gateway.base_url.removesuffix("/v1"), api_key=raw, max_retries=0, timeout=30
    )


def buckets(record: UsageRecord) -> tuple[int, ...]:
    """(all input, cache reads, 5-minute writes, 1-hour writes, all output, reasoning)."""
    return (
        record.prompt_tokens, record.cache_read_tokens, record.cache_write_tokens,
        record.cache_write_1h_tokens, record.completion_tokens, record.reasoning_tokens,
    )  # fmt: skip


# 6 prompt tokens of which 4 cached; 5 content words and 3 reasoning tokens of output.
GPT_CHAT_COST = (2 * usd(GPT, "input_usd_per_mtok") + 4 * usd(GPT, "cached_input_usd_per_mtok")
                 + 8 * usd(GPT, "output_usd_per_mtok")) / MILLION  # fmt: skip


def test_openai_cached_and_reasoning_tokens_are_priced_apart(gateway, models, key):
    raw = gpt(gateway, key).chat.completions.with_raw_response.create(model=models["gpt"], messages=HELLO)
    reply = raw.parse()
    assert reply.choices[0].message.content == ANSWER
    record = wait_usage(raw.headers["x-request-id"])
    assert Decimal("0.000086") == GPT_CHAT_COST
    assert record.cost == GPT_CHAT_COST and not record.tokens_estimated
    assert buckets(record) == (6, 4, 0, 0, 8, 3)
    assert record.usage_raw["prompt_tokens_details"]["cached_tokens"] == 4  # kept for audits


def test_a_streamed_answer_is_priced_from_its_usage_chunk(gateway, models, key):
    with gpt(gateway, key).chat.completions.with_streaming_response.create(
        model=models["gpt"], messages=HELLO, stream=True, stream_options={"include_usage": True}
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == ANSWER
    usage = chunks[-1].usage
    assert usage is not None and usage.prompt_tokens_details is not None
    assert usage.prompt_tokens_details.cached_tokens == 4
    record = wait_usage(request_id)
    assert record.streamed and record.cost == GPT_CHAT_COST and buckets(record) == (6, 4, 0, 0, 8, 3)


def test_a_stream_without_include_usage_is_still_priced_from_the_upstreams_usage(gateway, models, key):
    with gpt(gateway, key).chat.completions.with_streaming_response.create(
        model=models["gpt"], messages=HELLO, stream=True
    ) as response:
        request_id = response.headers["x-request-id"]
        chunks = list(response.parse())
    assert all(c.usage is None for c in chunks)
    record = wait_usage(request_id)
    assert record.cost == GPT_CHAT_COST and buckets(record) == (6, 4, 0, 0, 8, 3)


@pytest.mark.parametrize("model", ["gpt", "gpt-bridged"], ids=["passed-through", "bridged-to-chat"])
@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_responses_cached_and_reasoning_tokens_are_priced_apart(gateway, models, key, model, stream):
    api = gpt(gateway, key)
    if stream:
        with api.responses.with_streaming_response.create(
            model=models[model], input="hello there", stream=True
        ) as response:
            request_id = response.headers["x-request-id"]
            events = list(response.parse())
        assert events[-1].type == "response.completed"
        final = events[-1].response
    else:
        raw = api.responses.with_raw_response.create(model=models[model], input="hello there")
        final, request_id = raw.parse(), raw.headers["x-request-id"]
    assert final.output_text == "You said: hello there"
    # 5 input tokens of which 4 cached; 4 words and 3 reasoning tokens of output.
    expected = (1 * usd(GPT, "input_usd_per_mtok") + 4 * usd(GPT, "cached_input_usd_per_mtok")
                + 7 * usd(GPT, "output_usd_per_mtok")) / MILLION  # fmt: skip
    record = wait_usage(request_id)
    assert expected == Decimal("0.0000735")
    assert record.cost == expected and buckets(record) == (5, 4, 0, 0, 7, 3)


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_deepseek_hits_and_misses_are_priced_apart(gateway, models, key, stream):
    api = gpt(gateway, key)
    if stream:
        with api.chat.completions.with_streaming_response.create(
            model=models["deepseek"], messages=HELLO, stream=True, stream_options={"include_usage": True}
        ) as response:
            request_id = response.headers["x-request-id"]
            list(response.parse())
    else:
        raw = api.chat.completions.with_raw_response.create(model=models["deepseek"], messages=HELLO)
        request_id = raw.headers["x-request-id"]
    # 4 of the 6 prompt tokens hit, 2 missed; 5 of output.
    expected = (2 * usd(DEEPSEEK, "input_usd_per_mtok") + 4 * usd(DEEPSEEK, "cached_input_usd_per_mtok")
                + 5 * usd(DEEPSEEK, "output_usd_per_mtok")) / MILLION  # fmt: skip
    record = wait_usage(request_id)
    assert expected == Decimal("0.00000632")
    assert record.cost == expected and buckets(record) == (6, 4, 0, 0, 5, 0)
    assert record.usage_raw["prompt_cache_hit_tokens"] == 4


def test_a_fee_per_request_is_charged_once_on_top_of_the_tokens(gateway, models, key):
    raw = gpt(gateway, key).chat.completions.with_raw_response.create(model=models["fee"], messages=HELLO)
    # The sheet leaves the cache unpriced: the 2 cached tokens cost the input price.
    expected = (6 * usd(FEE, "input_usd_per_mtok") + 5 * usd(FEE, "output_usd_per_mtok")) / MILLION + usd(
        FEE, "request_usd"
    )
    record = wait_usage(raw.headers["x-request-id"])
    assert expected == Decimal("0.0020104")
    assert record.cost == expected and buckets(record) == (6, 2, 0, 0, 5, 0)


def rules(ttl: str) -> list[dict]:
    """A system prompt of 5 words (its own, so the cache starts cold) marked for caching."""
    return [{"type": "text", "text": f"Rules {uuid.uuid4().hex} one two three",
             "cache_control": {"type": "ephemeral", "ttl": ttl}}]  # fmt: skip


def claude_cost(*, read: int = 0, write_5m: int = 0, write_1h: int = 0) -> Decimal:
    """The messages below: 5 uncached input tokens (3 + "hello there") and 4 of output, plus the cache."""
    return (
        5 * usd(CLAUDE, "input_usd_per_mtok") + read * usd(CLAUDE, "cached_input_usd_per_mtok")
        + write_5m * usd(CLAUDE, "cache_write_usd_per_mtok")
        + write_1h * usd(CLAUDE, "cache_write_1h_usd_per_mtok") + 4 * usd(CLAUDE, "output_usd_per_mtok")
    ) / MILLION  # fmt: skip


def test_anthropic_cache_writes_then_reads_are_priced_apart(gateway, models, key):
    api, system = claude(gateway, key), rules("5m")
    records = []
    for _ in range(2):
        raw = api.messages.with_raw_response.create(
            model=models["claude"], max_tokens=64, system=system,
            messages=[{"role": "user", "content": "hello there"}],
        )  # fmt: skip
        assert raw.parse().usage.input_tokens == 5
        records.append(wait_usage(raw.headers["x-request-id"]))
    written, read = records
    assert claude_cost(write_5m=5) == Decimal("0.00009375") and claude_cost(read=5) == Decimal("0.0000765")
    assert written.cost == claude_cost(write_5m=5) and buckets(written) == (10, 0, 5, 0, 4, 0)
    assert read.cost == claude_cost(read=5) and buckets(read) == (10, 5, 0, 0, 4, 0)


def test_an_anthropic_one_hour_write_costs_the_one_hour_price(gateway, models, key):
    raw = claude(gateway, key).messages.with_raw_response.create(
        model=models["claude"], max_tokens=64, system=rules("1h"),
        messages=[{"role": "user", "content": "hello there"}],
    )  # fmt: skip
    usage = raw.parse().usage
    assert usage.cache_creation is not None and usage.cache_creation.ephemeral_1h_input_tokens == 5
    record = wait_usage(raw.headers["x-request-id"])
    assert claude_cost(write_1h=5) == Decimal("0.000105")
    assert record.cost == claude_cost(write_1h=5) and buckets(record) == (10, 0, 0, 5, 4, 0)


def test_an_anthropic_stream_is_priced_from_its_cache_buckets(gateway, models, key):
    api, system = claude(gateway, key), rules("5m")
    costs = []
    for _ in range(2):
        with api.messages.stream(
            model=models["claude"], max_tokens=64, system=system,
            messages=[{"role": "user", "content": "hello there"}],
        ) as stream:  # fmt: skip
            final = stream.get_final_message()
            request_id = stream.response.headers["x-request-id"]
        assert final.usage.output_tokens == 4
        record = wait_usage(request_id)
        costs.append((record.cost, buckets(record)))
    assert costs == [
        (claude_cost(write_5m=5), (10, 0, 5, 0, 4, 0)),
        (claude_cost(read=5), (10, 5, 0, 0, 4, 0)),
    ]


async def test_concurrent_requests_on_a_cache_priced_model_never_overdraw(
    gateway, models, funded_account, live_db
):
    """Each answer is 900 output tokens at 100 USD per million: 0.09 USD, so 0.5 USD pays for five at most."""
    raw, account_id = funded_account("0.5")
    api = openai.AsyncOpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0, timeout=30)

    async def one():
        try:
            answer = await api.chat.completions.with_raw_response.create(
                model=models["dear"], messages=HELLO, max_tokens=1000
            )
        except openai.APIStatusError as exc:
            return exc.status_code, None
        return answer.status_code, answer.headers["x-request-id"]

    outcomes = await asyncio.gather(*(one() for _ in range(20)))
    statuses = Counter(status for status, _ in outcomes)
    assert set(statuses) <= {200, 402} and 1 <= statuses[200] <= 5, statuses
    # 1 uncached and 5 cached prompt tokens, 900 of output.
    each = (1 * usd(DEAR, "input_usd_per_mtok") + 5 * usd(DEAR, "cached_input_usd_per_mtok")
            + 900 * usd(DEAR, "output_usd_per_mtok")) / MILLION  # fmt: skip
    for _, request_id in outcomes:
        if request_id is not None:
            record = wait_usage(request_id)
            assert record.cost == each and buckets(record) == (6, 5, 0, 0, 900, 0)

    def books():
        return read_books(django_query, account_id)

    wait_until(lambda: books().usage_cost == sum(books().debits.values()), 10, "debits never caught up")
    final = books()
    assert final.usage_cost == each * statuses[200]
    assert_books_balance(final, granted=Decimal("0.5"))
