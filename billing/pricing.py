"""Pure cost functions. Prices are USD per million tokens; money is Decimal, never float.

Rounding rule: a cost is rounded half-up to 12 decimal places (the precision of every money column). Prices
carry at most 6 decimal places (the catalog import enforces it) and token counts are whole, so
``tokens * price / 1_000_000`` has at most 12 decimal places and the rounding never actually changes a cost:
every charge is exact.
"""

from decimal import ROUND_HALF_UP, Decimal

MILLION = Decimal(1_000_000)
QUANTUM = Decimal("0.000000000001")  # 12 places


def to_money(value: Decimal) -> Decimal:
    return value.quantize(QUANTUM, rounding=ROUND_HALF_UP)


def cost(
    *, prompt_tokens: int, completion_tokens: int, input_price: Decimal, output_price: Decimal
) -> Decimal:
    return to_money((prompt_tokens * input_price + completion_tokens * output_price) / MILLION)


def worst_case(
    *, prompt_estimate: int, max_output: int, input_price: Decimal, output_price: Decimal
) -> Decimal:
    """The most a request can cost: its prompt estimate plus every output token it may produce."""
    return cost(
        prompt_tokens=prompt_estimate,
        completion_tokens=max_output,
        input_price=input_price,
        output_price=output_price,
    )
