"""Pure cost functions. Prices are USD per million tokens (a per-request fee is USD); money is Decimal, never
float.

A request's cost follows the provider's bill: each kind of token of its canonical usage (billing/usage.py)
at its own price from the model's sheet (proxy/catalog/prices.py), plus the fee per request:

    cost = (input * input_price + cache_read * cached_input_price + cache_write_5m * cache_write_price
            + cache_write_1h * cache_write_1h_price + output * output_price) / 1,000,000 + request_fee

Reasoning tokens are a part of the output and billed as output; they are not added again.

Rounding rule: a cost is rounded half-up to 12 decimal places (the precision of every money column). Prices
and fees carry at most 6 decimal places (the catalog import enforces it) and token counts are whole, so each
term has at most 12 decimal places and the rounding never actually changes a cost: every charge is exact.
"""

from decimal import ROUND_HALF_UP, Decimal

from billing.usage import Usage
from proxy.catalog.prices import Prices

MILLION = Decimal(1_000_000)
QUANTUM = Decimal("0.000000000001")  # 12 places


def to_money(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def usage_cost(usage: Usage, prices: Prices) -> Decimal:
    """What the request's usage costs under the sheet, its fee included."""
    tokens = (
        usage.input * prices.input + usage.cache_read * prices.cached_input
        + usage.cache_write_5m * prices.cache_write + usage.cache_write_1h * prices.cache_write_1h
        + usage.output * prices.output
    )  # fmt: skip
    return to_money(tokens / MILLION + prices.request)


def cost(
    *, prompt_tokens: int, completion_tokens: int, input_price: Decimal, output_price: Decimal
) -> Decimal:
    """The cost of uncached input and output at two prices, with no fee."""
    return usage_cost(
        Usage(input=prompt_tokens, output=completion_tokens),
        Prices.of(input=input_price, output=output_price),
    )


def worst_case(*, prompt_estimate: int, max_output: int, prices: Prices) -> Decimal:
    """The most a request can cost: its prompt estimate at the highest input-side price (the provider decides
    which input is cached or written), every output token it may produce, and the fee."""
    input_price = prices.highest_input
    return usage_cost(
        Usage(input=prompt_estimate, output=max_output),
        Prices.of(input=input_price, output=prices.output, request=prices.request),
    )
