"""Credit holds for paid models, without a database round trip per request: leased credit.

A gateway process takes a slice of an account's available credit (``balance - held``) into a ``Hold`` row with
one conditional UPDATE that can never take more than is available, so the sum of all slices never exceeds the
balance. Requests then reserve their worst-case cost from the slice in memory (atomic: the event loop runs one
reservation at a time). The settlement flush (billing/settlement.py) consumes each request's real cost from the
slice and the balance together, and returns slices that have gone idle. A crashed process's slices expire and
``release_stale_holds`` returns them; a live process renews its slices well before they expire.

Slices start at the size of the request that needs one and double while an account keeps needing more within
a few seconds, so a quiet account never locks away more than its next request, and a busy one touches the
database rarely. An idle slice goes back after 5 s, so that another process can spend that credit. The one
exception is a slice that is a sliver of what the account has: at most 1% of its available credit (and at most
1,024 worst cases). No other process could miss it, so it is taken whole, even for a quiet account, and kept for
a minute: an account with many keys and sparse traffic then pays for one database round trip a minute per
process instead of one per paid request, and a busy one for one every thousand requests.
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

PROMPT_MARGIN = 1.25
DEFAULT_MAX_OUTPUT = 4096  # output cap for the worst case when neither the request nor the model sets one
IDLE_RETURN_SECONDS = 5.0
SLIVER_SHARE = Decimal("0.01")  # a slice this small a share of the account's available credit is a sliver...
SLIVER_IDLE_SECONDS = 60.0  # ...and is kept this long while idle
GROWTH_WINDOW_SECONDS = 5.0
MAX_SLICE_FACTOR = 64
SLIVER_WORST_CASES = 1024


class InsufficientCredits(Exception):
    def __init__(self, needed: Decimal, available: Decimal) -> None:
        super().__init__(f"needed {needed}, available {available}")
        self.needed, self.available = needed, available


@dataclass(slots=True)
class Lease:
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
    account_id: int
    hold_id: int
    amount: Decimal


def worst_case(*, prompt_tokens: int, max_output: int, model) -> Decimal:
    """The most a request can cost, from the local count of its input and the most output it can produce."""
    # Upstreams count the input with their own tokenizers, which can find more tokens than ours: a quarter
    # more keeps the reservation above the real cost. Should it still fall short, the charge stops at the
    # reservation (proxy/gateway/settlement.py), so the difference is the operator's, never an overdraft.
    prompt = math.ceil(prompt_tokens * PROMPT_MARGIN)
    return pricing.worst_case(
        prompt_estimate=prompt, max_output=max_output, input_price=model.input_price,
        output_price=model.output_price,
    )  # fmt: skip


def lease_take(*, account_id: int, hold_id: int | None, want: Decimal, minimum: Decimal, owner: str,
               expires_at, sliver: Decimal = Decimal(0)) -> tuple[int | None, Decimal, Decimal]:  # fmt: skip
    """Move up to ``want`` (at least ``minimum``) of available credit into this process's hold; up to
    ``sliver`` when that is more and is at most SLIVER_SHARE of the available credit. Sync.

    Returns (hold id, amount taken, available before the take); the hold id is None when even ``minimum`` is
    not available. The UPDATE's condition is what makes overdraft impossible; the locked read before it only
    sizes the slice.
    """
    from billing.models import Account, Hold

    with transaction.atomic():
        # Lock order everywhere: accounts (by id), then holds, then keys; see billing/settlement.py.
        row = (
            Account.objects.select_for_update(no_key=True)
            .filter(pk=account_id)
            .values("balance", "held")
            .first()
        )
        available = row["balance"] - row["held"] if row else Decimal(0)
        take = min(max(want, min(sliver, available * SLIVER_SHARE)), available)
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
    """This process's leases, by account."""

    def __init__(self, run_db, owner: str, hold_timeout: float) -> None:
        self._run_db = run_db
        self.owner = owner
        self.hold_timeout = hold_timeout
        self.leases: dict[int, Lease] = {}  # the slice each account's new requests reserve from
        self.retiring: dict[int, Lease] = {}  # by hold id: no new reservations, returned once settled
        self._locks: dict[int, asyncio.Lock] = {}

    async def reserve(self, *, account_id: int, amount: Decimal) -> Reservation:
        lease = self._usable(account_id)
        if lease is None or lease.free < amount:
            async with self._locks.setdefault(account_id, asyncio.Lock()):
                lease = await self._top_up(account_id, amount)
        lease.reserved += amount
        lease.idle_since = time.monotonic()
        return Reservation(account_id, lease.hold_id, amount)

    def settle(self, reservation: Reservation, cost: Decimal) -> None:
        """The request is over: free its worst case, and consume its real cost from the slice."""
        lease = self.leases.get(reservation.account_id)
        if lease is None or lease.hold_id != reservation.hold_id:
            lease = self.retiring.get(reservation.hold_id)
        if lease is not None:
            lease.reserved -= reservation.amount
            lease.amount -= cost
            lease.idle_since = time.monotonic()

    def _usable(self, account_id: int) -> Lease | None:
        lease = self.leases.get(account_id)
        # Stop using a slice well before it could expire: release_stale_holds may then hand it back.
        if lease is not None and lease.expires_at - time.time() < self.hold_timeout / 2:
            self._drop(lease)
            return None
        return lease

    async def _top_up(self, account_id: int, amount: Decimal) -> Lease:
        lease = self._usable(account_id)
        if lease is not None and lease.free >= amount:
            return lease  # another request topped it up while this one waited
        now = time.monotonic()
        factor = 1 if lease is None or now - lease.last_topup > GROWTH_WINDOW_SECONDS else lease.factor
        missing = amount - (lease.free if lease else Decimal(0))
        expires = timezone.now() + timedelta(seconds=self.hold_timeout)
        hold_id, taken, available = await self._run_db(
            lease_take, account_id=account_id, hold_id=lease.hold_id if lease else None,
            want=missing + amount * (factor - 1), minimum=missing, owner=self.owner, expires_at=expires,
            sliver=amount * SLIVER_WORST_CASES,
        )  # fmt: skip
        if hold_id is None:
            raise InsufficientCredits(amount, available + (lease.free if lease else Decimal(0)))
        if lease is None or lease.hold_id != hold_id:
            lease = Lease(account_id, hold_id, Decimal(0), expires.timestamp())
            self.leases[account_id] = lease
        lease.amount += taken
        lease.expires_at = expires.timestamp()
        lease.last_topup, lease.factor = now, min(factor * 2, MAX_SLICE_FACTOR)
        sliver = lease.amount <= available * SLIVER_SHARE
        lease.keep_idle = SLIVER_IDLE_SECONDS if sliver else IDLE_RETURN_SECONDS
        return lease

    def _drop(self, lease: Lease) -> None:
        """Take no new reservations from this slice; it is returned once its requests have settled."""
        if self.leases.get(lease.account_id) is lease:
            del self.leases[lease.account_id]
            self.retiring[lease.hold_id] = lease

    def collect_idle(self, *, everything: bool = False, now: float | None = None) -> list[int]:
        """Hold ids to return now: idle slices (or all, at shutdown) with no request in flight.

        Returning a slice with requests in flight could let another process take credit those requests
        may still spend, so such a slice waits. So does one whose account is being topped up: the top-up may
        be adding to this very hold, and a request is about to reserve from it."""
        now = time.monotonic() if now is None else now
        for lease in list(self.leases.values()):
            idle = everything or now - lease.idle_since > lease.keep_idle
            if lease.reserved == 0 and idle and not self._topping_up(lease.account_id):
                self._drop(lease)
        done = [
            hold_id
            for hold_id, lease in self.retiring.items()
            if lease.reserved <= 0 and not self._topping_up(lease.account_id)
        ]
        for hold_id in done:
            del self.retiring[hold_id]
        return done

    def _topping_up(self, account_id: int) -> bool:
        lock = self._locks.get(account_id)
        return lock is not None and lock.locked()

    def active_holds(self) -> list[int]:
        return [lease.hold_id for lease in self.leases.values()] + list(self.retiring)

    def renewed(self, asked: list[int], alive: set[int], expires_at: float) -> None:
        """After a heartbeat for the ``asked`` holds: extend those that still exist, forget those released as
        stale. A slice taken while the heartbeat ran was not asked about; it is neither, and stays."""
        gone = set(asked) - alive
        for lease in list(self.leases.values()):
            if lease.hold_id in alive:
                lease.expires_at = expires_at
            elif lease.hold_id in gone and self.leases.get(lease.account_id) is lease:
                del self.leases[lease.account_id]
