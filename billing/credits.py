"""Credit for paid models, held without a database round trip per request.

A gateway process takes a **hold** on part of an account's available credit (``balance - held``): a ``Hold``
row, taken with one conditional UPDATE that can never take more than is available, so the holds of all
processes never add up to more than the balance. Each paid request then takes a **reservation** of its worst
case from its process's hold, in memory (atomic: the event loop runs one reservation at a time). Settlement
(billing/settlement.py) consumes each request's real cost from the hold and the balance together, and gives
back holds that have gone idle. A crashed process's holds expire and ``release_stale_holds`` returns them; a
live process renews its holds well before they expire.

A hold starts at the size of the request that needs one and doubles while an account keeps needing more
within a few seconds, so a quiet account never locks away more than its next request, and a busy one touches
the database rarely. An idle hold goes back after 5 s, so that another process can spend that credit. The one
exception is a small hold: at most 1% of the account's available credit (and at most 1,024 worst cases). No
other process could miss it, so it is taken whole, even for a quiet account, and kept for a minute: an account
with many keys and sparse traffic then pays for one database round trip a minute per process instead of one
per paid request, and a busy one for one every thousand requests.
"""

import asyncio
import math
import time
from dataclasses import dataclass, field
from datetime import timedelta
from decimal import Decimal

from django.db import transaction
from django.db.models import F
from django.utils import timezone

from billing import pricing
from billing.models import Account, Hold

PROMPT_MARGIN = 1.25
DEFAULT_MAX_OUTPUT = 4096  # output cap for the worst case when neither the request nor the model sets one
IDLE_RETURN_SECONDS = 5.0
# A hold of at most this share of the account's available credit is small, and is kept a minute while idle.
SMALL_HOLD_SHARE = Decimal("0.01")
SMALL_HOLD_IDLE_SECONDS = 60.0
GROWTH_WINDOW_SECONDS = 5.0
MAX_HOLD_FACTOR = 64
SMALL_HOLD_WORST_CASES = 1024


class InsufficientCredits(Exception):
    def __init__(self, needed: Decimal, available: Decimal) -> None:
        super().__init__(f"needed {needed}, available {available}")
        self.needed, self.available = needed, available


@dataclass(slots=True)
class ProcessHold:
    """One of this process's holds (a ``Hold`` row), as the process tracks it between writes."""

    account_id: int
    hold_id: int
    amount: Decimal  # what the Hold row holds, net of costs already consumed here
    expires_at: float
    reserved: Decimal = Decimal(0)  # in-flight worst cases
    idle_since: float = field(default_factory=time.monotonic)
    last_topup: float = 0.0
    factor: int = 1
    keep_idle: float = IDLE_RETURN_SECONDS  # seconds it is kept with no request in flight

    @property
    def free(self) -> Decimal:
        return self.amount - self.reserved


@dataclass(frozen=True, slots=True)
class Reservation:
    """One request's worst case, set aside in its process's hold until the request settles."""

    account_id: int
    hold_id: int
    amount: Decimal


def worst_case(*, prompt_tokens: int, max_output: int, model) -> Decimal:
    """The most a request can cost, from the local count of its input and the most output it can produce."""
    # Upstreams count the input with their own tokenizers, which can find more tokens than ours: a quarter
    # more keeps the reservation above the real cost. Should it still fall short, the charge stops at the
    # reservation (proxy/gateway/settlement.py), so the difference is the operator's, never an overdraft.
    prompt = math.ceil(prompt_tokens * PROMPT_MARGIN)
    return pricing.worst_case(prompt_estimate=prompt, max_output=max_output, prices=model.prices)


def hold_take(*, account_id: int, hold_id: int | None, want: Decimal, minimum: Decimal, owner: str,
               expires_at, small: Decimal = Decimal(0)) -> tuple[int | None, Decimal, Decimal]:  # fmt: skip
    """Move up to ``want`` (at least ``minimum``) of available credit into this process's hold; up to
    ``small`` when that is more and is at most SMALL_HOLD_SHARE of the available credit. Sync.

    Returns (hold id, amount taken, available before the take); the hold id is None when even ``minimum`` is
    not available. The UPDATE's condition is what makes overdraft impossible; the locked read before it only
    sizes the hold.
    """
    with transaction.atomic():
        # Lock order everywhere: accounts (by id), then holds, then keys; see billing/settlement.py.
        row = (
            Account.objects.select_for_update(no_key=True)
            .filter(pk=account_id)
            .values("balance", "held")
            .first()
        )
        available = row["balance"] - row["held"] if row else Decimal(0)
        take = min(max(want, min(small, available * SMALL_HOLD_SHARE)), available)
        if take < minimum or take <= 0:
            return None, Decimal(0), max(available, Decimal(0))
        if not Account.objects.filter(pk=account_id, balance__gte=F("held") + take).update(
            held=F("held") + take
        ):
            return None, Decimal(0), Decimal(0)
        updated = 0
        if hold_id is not None:
            updated = Hold.objects.filter(pk=hold_id).update(amount=F("amount") + take, expires_at=expires_at)
        if not updated:
            hold_id = Hold.objects.create(
                account_id=account_id, amount=take, owner=owner, expires_at=expires_at
            ).pk
        return hold_id, take, available


class Credits:
    """This process's holds, by account."""

    def __init__(self, run_db, owner: str, hold_timeout: float) -> None:
        self._run_db = run_db
        self.owner = owner
        self.hold_timeout = hold_timeout
        self.holds: dict[int, ProcessHold] = {}  # the hold each account's new requests reserve from
        self.retiring: dict[int, ProcessHold] = {}  # by hold id: no new reservations, returned once settled
        self._locks: dict[int, asyncio.Lock] = {}

    async def reserve(self, *, account_id: int, amount: Decimal) -> Reservation:
        hold = self._usable(account_id)
        if hold is None or hold.free < amount:
            async with self._locks.setdefault(account_id, asyncio.Lock()):
                hold = await self._top_up(account_id, amount)
        hold.reserved += amount
        hold.idle_since = time.monotonic()
        return Reservation(account_id, hold.hold_id, amount)

    def settle(self, reservation: Reservation, cost: Decimal) -> None:
        """The request is over: free its worst case, and consume its real cost from the hold."""
        hold = self.holds.get(reservation.account_id)
        if hold is None or hold.hold_id != reservation.hold_id:
            hold = self.retiring.get(reservation.hold_id)
        if hold is not None:
            hold.reserved -= reservation.amount
            hold.amount -= cost
            hold.idle_since = time.monotonic()

    def _usable(self, account_id: int) -> ProcessHold | None:
        hold = self.holds.get(account_id)
        # Stop using a hold well before it could expire: release_stale_holds may then hand it back.
        if hold is not None and hold.expires_at - time.time() < self.hold_timeout / 2:
            self._drop(hold)
            return None
        return hold

    async def _top_up(self, account_id: int, amount: Decimal) -> ProcessHold:
        hold = self._usable(account_id)
        if hold is not None and hold.free >= amount:
            return hold  # another request topped it up while this one waited
        now = time.monotonic()
        factor = 1 if hold is None or now - hold.last_topup > GROWTH_WINDOW_SECONDS else hold.factor
        missing = amount - (hold.free if hold else Decimal(0))
        expires = timezone.now() + timedelta(seconds=self.hold_timeout)
        hold_id, taken, available = await self._run_db(
            hold_take, account_id=account_id, hold_id=hold.hold_id if hold else None,
            want=missing + amount * (factor - 1), minimum=missing, owner=self.owner, expires_at=expires,
            small=amount * SMALL_HOLD_WORST_CASES,
        )  # fmt: skip
        if hold_id is None:
            raise InsufficientCredits(amount, available + (hold.free if hold else Decimal(0)))
        if hold is None or hold.hold_id != hold_id:
            hold = ProcessHold(account_id, hold_id, Decimal(0), expires.timestamp())
            self.holds[account_id] = hold
        hold.amount += taken
        hold.expires_at = expires.timestamp()
        hold.last_topup, hold.factor = now, min(factor * 2, MAX_HOLD_FACTOR)
        small = hold.amount <= available * SMALL_HOLD_SHARE
        hold.keep_idle = SMALL_HOLD_IDLE_SECONDS if small else IDLE_RETURN_SECONDS
        return hold

    def _drop(self, hold: ProcessHold) -> None:
        """Take no new reservations from this hold; it is returned once its requests have settled."""
        if self.holds.get(hold.account_id) is hold:
            del self.holds[hold.account_id]
            self.retiring[hold.hold_id] = hold

    def collect_idle(self, *, everything: bool = False, now: float | None = None) -> list[int]:
        """Hold ids to return now: idle holds (or all, at shutdown) with no request in flight.

        Returning a hold with requests in flight could let another process take credit those requests
        may still spend, so such a hold waits. So does one whose account is being topped up: the top-up may
        be adding to this very hold, and a request is about to reserve from it."""
        now = time.monotonic() if now is None else now
        for hold in list(self.holds.values()):
            idle = everything or now - hold.idle_since > hold.keep_idle
            if hold.reserved == 0 and idle and not self._topping_up(hold.account_id):
                self._drop(hold)
        done = [
            hold_id
            for hold_id, hold in self.retiring.items()
            if hold.reserved <= 0 and not self._topping_up(hold.account_id)
        ]
        for hold_id in done:
            del self.retiring[hold_id]
        return done

    def _topping_up(self, account_id: int) -> bool:
        lock = self._locks.get(account_id)
        return lock is not None and lock.locked()

    def active_holds(self) -> list[int]:
        return [hold.hold_id for hold in self.holds.values()] + list(self.retiring)

    def renewed(self, asked: list[int], alive: set[int], expires_at: float) -> None:
        """After a heartbeat for the ``asked`` holds: extend those that still exist, forget those released as
        stale. A hold taken while the heartbeat ran was not asked about; it is neither, and stays."""
        gone = set(asked) - alive
        for hold in list(self.holds.values()):
            if hold.hold_id in alive:
                hold.expires_at = expires_at
            elif hold.hold_id in gone and self.holds.get(hold.account_id) is hold:
                del self.holds[hold.account_id]
