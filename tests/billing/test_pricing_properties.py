"""Property-based tests of the cost functions, over random price sheets and token counts.

Two promises: a reservation is never below what the request then costs, however the provider splits the same
prompt into cached, written and uncached input; and a cost is exact, the very number rational arithmetic
gives, with no rounding anywhere.
"""

from decimal import Decimal
from fractions import Fraction
from types import SimpleNamespace

from hypothesis import given
from hypothesis import strategies as st

from billing import credits, pricing
from billing.usage import MAX, Usage
from proxy.catalog.prices import Prices

# Prices carry at most 6 decimal places (the catalog import enforces it): 0 to 1,000 USD per million tokens.
price = st.integers(min_value=0, max_value=10**9).map(lambda micro: Decimal(micro) / 1_000_000)
maybe_price = st.none() | price
tokens = st.integers(min_value=0, max_value=10_000_000)


@st.composite
def sheets(draw) -> Prices:
    """A sheet whose cache prices may be unset, or set above or below the input price."""
    return Prices.of(
        input=draw(price), output=draw(price), cached_input=draw(maybe_price), cache_write=draw(maybe_price),
        cache_write_1h=draw(maybe_price), request=draw(st.sampled_from([Decimal(0)]) | price),
    )  # fmt: skip


@st.composite
def splits(draw, prompt: int) -> Usage:
    """The prompt cut into four buckets at three random points."""
    cuts = sorted(draw(st.integers(min_value=0, max_value=prompt)) for _ in range(3))
    input, read, write_5m, write_1h = (b - a for a, b in zip([0, *cuts], [*cuts, prompt], strict=True))
    return Usage(input=input, cache_read=read, cache_write_5m=write_5m, cache_write_1h=write_1h)


@st.composite
def requests(draw):
    """A sheet, a prompt and the most output asked for, and what the provider then reports."""
    prompt, max_output = draw(tokens), draw(tokens)
    split = draw(splits(prompt))
    output = draw(st.integers(min_value=0, max_value=max_output))
    reasoning = draw(st.integers(min_value=0, max_value=output))
    reported = Usage(*split.counts()[:4], output=output, reasoning=reasoning)
    return draw(sheets()), prompt, max_output, reported


def exact(usage: Usage, prices: Prices) -> Fraction:
    """The cost in rational arithmetic: every bucket at its price, the fee once."""
    terms = [
        (usage.input, prices.input), (usage.cache_read, prices.cached_input),
        (usage.cache_write_5m, prices.cache_write), (usage.cache_write_1h, prices.cache_write_1h),
        (usage.output, prices.output),
    ]  # fmt: skip
    return sum((count * Fraction(p) for count, p in terms), Fraction(0)) / 1_000_000 + Fraction(
        prices.request
    )


@given(requests())
def test_the_worst_case_is_never_below_the_cost_of_any_split_of_the_prompt(request):
    prices, prompt, max_output, reported = request
    held = pricing.worst_case(prompt_estimate=prompt, max_output=max_output, prices=prices)
    assert held >= pricing.usage_cost(reported, prices)


@given(requests())
def test_the_reservation_from_a_local_count_covers_the_cost_too(request):
    """credits.worst_case adds its margin to the local count; an upstream counting that many covers it."""
    prices, prompt, max_output, reported = request
    held = credits.worst_case(
        prompt_tokens=prompt, max_output=max_output, model=SimpleNamespace(prices=prices)
    )
    assert held >= pricing.usage_cost(reported, prices)
    assert held >= pricing.worst_case(prompt_estimate=prompt, max_output=max_output, prices=prices)


@given(sheets(), tokens, tokens)
def test_the_worst_case_is_the_prompt_at_the_highest_input_price_and_the_fee(prices, prompt, max_output):
    """Tight as well as safe: it is the cost of the split that puts the whole prompt in the dearest bucket."""
    held = pricing.worst_case(prompt_estimate=prompt, max_output=max_output, prices=prices)
    dearest = Fraction(prices.highest_input) * prompt
    assert Fraction(held) == (dearest + Fraction(prices.output) * max_output) / 1_000_000 + Fraction(
        prices.request
    )


@given(requests())
def test_a_cost_is_exact(request):
    prices, _, _, reported = request
    cost = pricing.usage_cost(reported, prices)
    assert Fraction(cost) == exact(reported, prices)
    assert cost.as_tuple().exponent == -12


@given(
    sheets(),
    st.tuples(*[st.integers(min_value=0, max_value=MAX)] * 5),
)
def test_a_cost_is_exact_up_to_the_largest_counts_a_record_holds(prices, counts):
    input, read, write_5m, write_1h, output = counts
    usage = Usage(
        input=input, cache_read=read, cache_write_5m=write_5m, cache_write_1h=write_1h, output=output
    )
    assert Fraction(pricing.usage_cost(usage, prices)) == exact(usage, prices)


@given(sheets(), tokens, tokens)
def test_reasoning_is_not_billed_again(prices, output, share):
    reasoning = min(share, output)
    with_reasoning = Usage(output=output, reasoning=reasoning)
    assert pricing.usage_cost(with_reasoning, prices) == pricing.usage_cost(Usage(output=output), prices)
