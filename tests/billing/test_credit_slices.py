"""A process's credit slices (billing/credits.py) stay tracked through heartbeats and top-ups, so a graceful
stop returns every one of them and no request reserves from a slice that is being handed back."""

import asyncio
from datetime import timedelta
from decimal import Decimal

from django.utils import timezone

from billing.credits import Credits
from billing.models import Account, Hold
from billing.services import account_for, credits_grant
from billing.settlement import holds_renew, write_batch
from proxy.db import run_db


def funded_account(make_user, usd: str = "10") -> int:
    account = account_for(user=make_user())
    credits_grant(account=account, amount=Decimal(usd), reason="test funds", actor=None)
    return account.pk


async def give_back(hold_ids: list[int]) -> None:
    await run_db(write_batch, [], hold_ids, retry=False, touch_keys=set())


async def test_a_slice_taken_during_a_heartbeat_is_kept_and_returned_at_stop(make_user):
    first, second = funded_account(make_user), funded_account(make_user)
    credits = Credits(run_db, "test-heartbeat", 120)
    one = await credits.reserve(account_id=first, amount=Decimal("0.5"))

    asked = credits.active_holds()  # the heartbeat starts with the slices it knows of...
    two = await credits.reserve(account_id=second, amount=Decimal("0.5"))  # ...a new one is taken meanwhile
    expires = timezone.now() + timedelta(seconds=120)
    credits.renewed(asked, await run_db(holds_renew, asked, expires), expires.timestamp())

    assert sorted(credits.active_holds()) == sorted([one.hold_id, two.hold_id])
    credits.settle(one, Decimal("0.1"))
    credits.settle(two, Decimal(0))
    returned = credits.collect_idle(everything=True)
    assert sorted(returned) == sorted([one.hold_id, two.hold_id])
    await give_back(returned)
    assert not Hold.objects.filter(account_id__in=[first, second]).exists()
    assert list(Account.objects.filter(pk__in=[first, second]).values_list("held", flat=True)) == [0, 0]


async def test_a_slice_being_topped_up_is_not_handed_back(make_user):
    account = funded_account(make_user)
    gate = asyncio.Event()

    async def slow_db(fn, *args, **kwargs):
        await gate.wait()  # the database is slow to answer this top-up
        return await run_db(fn, *args, **kwargs)

    credits = Credits(slow_db, "test-top-up", 120)
    gate.set()
    first = await credits.reserve(account_id=account, amount=Decimal("0.5"))
    credits.settle(first, Decimal(0))  # the slice is idle now, with 0.5 USD free in it

    gate.clear()
    bigger = asyncio.create_task(credits.reserve(account_id=account, amount=Decimal("2")))
    await asyncio.sleep(0.05)  # the top-up is waiting on the database
    assert credits.collect_idle(everything=True) == []  # a graceful stop's sweep leaves this slice alone
    gate.set()
    reservation = await bigger

    assert reservation.hold_id == first.hold_id  # it grew the slice the sweep left alone
    hold = Hold.objects.get(pk=reservation.hold_id)
    assert hold.amount >= Decimal("2")  # the reservation is backed by the hold, in the database
    credits.settle(reservation, Decimal("0.25"))
    returned = credits.collect_idle(everything=True)
    assert returned == [reservation.hold_id]
    await give_back(returned)
    assert Account.objects.get(pk=account).held == 0
