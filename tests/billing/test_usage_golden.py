"""Golden tests of the usage readers: tests/data/usage_payloads.json holds usage payloads written from each
provider's documentation (and the edge cases upstreams have sent), each with the canonical usage it must read
as and its exact cost under a named price sheet. Pure: no database, no gateway."""

import json
from decimal import Decimal
from pathlib import Path

import pytest

from billing.pricing import usage_cost
from billing.usage import Usage, from_anthropic, from_openai, from_responses
from proxy.catalog.prices import Prices

FIXTURES = json.loads((Path(__file__).parent.parent / "data" / "usage_payloads.json").read_text())
READERS = {"openai": from_openai, "responses": from_responses, "anthropic": from_anthropic}
CASES = FIXTURES["cases"]


def sheet(name: str) -> Prices:
    return Prices.of(**{field: Decimal(price) for field, price in FIXTURES["sheets"][name].items()})


@pytest.mark.parametrize("case", CASES, ids=[case["name"] for case in CASES])
def test_each_documented_payload_reads_as_its_canonical_usage_and_costs_exactly_its_price(case):
    usage = READERS[case["reader"]](case["payload"])
    if case["usage"] is None:
        assert usage is None and case["cost"] is None
        return
    assert usage == Usage(**case["usage"])
    cost = usage_cost(usage, sheet(case["sheet"]))
    assert (
        cost == Decimal(case["cost"]) and cost.as_tuple().exponent == -12
    )  # exact, at the money columns' scale


@pytest.mark.parametrize("case", [c for c in CASES if c["usage"]], ids=lambda c: c["name"])
def test_no_bucket_is_negative_and_reasoning_stays_inside_the_output(case):
    usage = READERS[case["reader"]](case["payload"])
    assert usage is not None and min(usage.counts()) >= 0
    assert usage.reasoning <= usage.output and usage.clamped() == usage


def test_every_reader_and_provider_style_has_fixtures():
    sources = " ".join(case["source"] for case in CASES)
    assert {case["reader"] for case in CASES} == set(READERS)
    for provider in ("openai.com", "deepseek.com", "ai.google.dev", "claude.com", "x.ai"):
        assert provider in sources, provider
    assert all(case["sheet"] in FIXTURES["sheets"] for case in CASES)


@pytest.mark.parametrize("reader", READERS.values(), ids=READERS)
def test_the_input_is_never_billed_twice(reader):
    """The prompt a record keeps is the sum of the buckets, so the cached part is not charged again."""
    for case in CASES:
        if case["reader"] != reader.__name__.removeprefix("from_") or case["usage"] is None:
            continue
        usage = reader(case["payload"])
        assert usage is not None
        payload = case["payload"]
        whole = payload.get("prompt_tokens", payload.get("input_tokens"))
        if reader is not from_anthropic:
            assert usage.prompt == whole, case["name"]
