"""Spend limits, and the reservation a paid request takes before it is relayed.

A paid request sets its worst case aside twice: against the account's credit (a reservation from this
process's hold, billing/credits.py) and, when the key has a spend limit, against that limit (a claim, counted
by one Redis script so the limit is exact across processes). Either refusal is a 402. When the request is
over, its real cost replaces both (gateway/settlement.py).
"""

import asyncio
import logging
from dataclasses import dataclass
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

from billing.credits import InsufficientCredits, Reservation
from proxy.gateway import errors
from proxy.gateway.auth import KeyInfo
from proxy.gateway.runtime import Runtime

log = logging.getLogger("proxy")

NANO = Decimal(1_000_000_000)


@dataclass(frozen=True, slots=True)
class SpendClaim:
    """A request's worst case, counted against its key's spend limit for one period."""

    key_id: int
    period: int  # the period's start, in epoch seconds: names its counter
    units: int  # nano-USD


def nano_usd(amount: Decimal, *, up: bool = True) -> int:
    """Whole nano-USD for the spend counters, rounded towards refusing: costs up, limits down."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


async def reserve(rt: Runtime, *, key: KeyInfo, need: Decimal) -> tuple[Reservation, SpendClaim | None]:
    """Set ``need`` aside from the account's credit and the key's spend limit, or refuse with 402."""
    claim = await _claim(rt, key, need) if key.spend_limit is not None else None
    try:
        reservation = await rt.credits.reserve(account_id=key.account_id, amount=need)
    except InsufficientCredits as exc:
        adjust(rt, claim, Decimal(0))
        raise errors.insufficient_credits(
            f"Insufficient credits: this request needs up to {exc.needed.normalize()} USD and "
            f"{exc.available.normalize()} USD is available. Add credits on the billing page."
        ) from None
    except BaseException:
        adjust(rt, claim, Decimal(0))
        raise
    return reservation, claim


async def _claim(rt: Runtime, key: KeyInfo, need: Decimal) -> SpendClaim:
    assert key.spend_limit is not None
    claim = SpendClaim(key.id, key.spend_period, nano_usd(need))
    ok, used = await rt.limiter.spend_reserve(
        key_id=key.id, period=key.spend_period, base=nano_usd(key.spend_used), need=claim.units,
        limit=nano_usd(key.spend_limit, up=False),
    )  # fmt: skip
    if not ok:
        spent = Decimal(used) / NANO
        raise errors.insufficient_credits(
            f"This key's spend limit of {key.spend_limit.normalize()} USD is reached: {spent.normalize()} USD "
            f"spent or in flight, and this request may cost up to {need.normalize()} USD."
        )
    return claim


def adjust(rt: Runtime, claim: SpendClaim | None, cost: Decimal) -> None:
    """Replace a claim's worst case by the request's real cost (off the response path)."""
    if claim is None:
        return
    delta = nano_usd(cost) - claim.units
    if delta:
        task = asyncio.create_task(
            rt.limiter.spend_adjust(key_id=claim.key_id, period=claim.period, delta=delta)
        )
        task.add_done_callback(_log_failure)


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a spend counter was not adjusted: %s", task.exception())
