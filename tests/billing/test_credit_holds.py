"""A process's credit holds (billing/credits.py) stay tracked through heartbeats and top-ups, so a graceful
stop returns every one of them and no request reserves from a hold that is being handed back."""

import asyncio
import time
import uuid
from datetime import timedelta
from decimal import Decimal

from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing import jobs
from billing.credits import Credits, hold_take
from billing.models import Account, Hold, LedgerEntry
from billing.services import account_for, credits_grant
from billing.settlement import Finished, holds_renew, write_batch
from proxy.catalog.models import Model
from proxy.gateway.db import run_db


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

    asked = credits.active_holds()  # the heartbeat starts with the holds it knows of...
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
    credits.settle(first, Decimal(0))  # the hold is idle now, with 0.5 USD free in it

    gate.clear()
    bigger = asyncio.create_task(credits.reserve(account_id=account, amount=Decimal("2")))
    await asyncio.sleep(0.05)  # the top-up is waiting on the database
    assert credits.collect_idle(everything=True) == []  # a graceful stop's sweep leaves this hold alone
    gate.set()
    reservation = await bigger

    assert reservation.hold_id == first.hold_id  # it grew the hold the sweep left alone
    hold = Hold.objects.get(pk=reservation.hold_id)
    assert hold.amount >= Decimal("2")  # the reservation is backed by the hold, in the database
    credits.settle(reservation, Decimal("0.25"))
    returned = credits.collect_idle(everything=True)
    assert returned == [reservation.hold_id]
    await give_back(returned)
    assert Account.objects.get(pk=account).held == 0


def finished(key, model_id: int, account_id: int, hold_id: int, cost: str) -> Finished:
    return Finished(
        request_id=uuid.uuid4(), user_id=key.owner_id, account_id=account_id, hold_id=hold_id, key_id=key.pk,
        model_id=model_id, provider_id=None, prompt_tokens=10, completion_tokens=20, tokens_estimated=False,
        cost=Decimal(cost), status=200, error_code="", latency_ms=5, ttft_ms=None, streamed=False,
        finish_reason="stop", client_disconnected=False, created_at=timezone.now(),
    )  # fmt: skip


def statements(fn, *args, **kwargs) -> int:
    with CaptureQueriesContext(connection) as queries:
        fn(*args, **kwargs)
    return len(queries)


def test_a_batch_costs_the_same_statements_for_one_request_or_many_and_settles_exactly(
    make_user, make_key, catalog
):
    model_id = Model.objects.get(name=catalog["echo"]).pk
    credits = Credits(run_db, "test-batch", 120)

    def holds(n: int) -> list[tuple]:
        """n funded accounts, each with a key and a 1 USD hold of its 10 USD."""
        out = []
        for _ in range(n):
            account_id = funded_account(make_user)
            key, _ = make_key(owner=Account.objects.get(pk=account_id).user)
            hold_id, _, _ = hold_take(account_id=account_id, hold_id=None, want=Decimal(1), minimum=Decimal(1),
                                    owner=credits.owner, expires_at=timezone.now() + timedelta(minutes=2))  # fmt: skip
            out.append((key, account_id, hold_id))
        return out

    def batch_and_releases(world: list[tuple]) -> tuple[list[Finished], list[int]]:
        # Two requests per hold; every other hold is also handed back in the same batch.
        batch = [finished(k, model_id, a, h, cost) for k, a, h in world for cost in ("0.1", "0.025")]
        return batch, [h for n, (_, _, h) in enumerate(world) if n % 2 == 0]

    one, many = holds(2), holds(12)
    small, large = batch_and_releases(one), batch_and_releases(many)
    counts = [
        statements(write_batch, b, r, retry=False, touch_keys={f.key_id for f in b})
        for b, r in (small, large)
    ]
    assert counts[0] == counts[1]  # 4 requests or 24: the same statements

    for n, (key, account_id, hold_id) in enumerate(one + many):
        account = Account.objects.get(pk=account_id)
        assert account.balance == Decimal("9.875")  # 10 - 0.1 - 0.025
        kept = Hold.objects.filter(pk=hold_id).first()
        if n % 2 == 0:  # handed back: nothing is held any more
            assert kept is None and account.held == 0
        else:  # the hold shrank by its costs, and held with it
            assert kept.amount == Decimal("0.875") == account.held
        key.refresh_from_db()
        assert key.spend_used == Decimal("0.125")
        assert LedgerEntry.objects.filter(account_id=account_id, kind="usage").count() == 2
    run = jobs.ledger_reconcile()
    assert not [d for d in run.drift if d["account"] in {a for _, a, _ in one + many}]


async def test_a_sliver_of_a_roomy_account_is_kept_for_sparse_requests_and_a_tight_one_goes_back(make_user):
    roomy, tight = funded_account(make_user, "1000"), funded_account(make_user, "1")
    takes: list[str] = []

    async def counting_db(fn, *args, **kwargs):
        takes.append(fn.__name__)
        return await run_db(fn, *args, **kwargs)

    credits = Credits(counting_db, "test-small hold", 120)
    worst = Decimal("0.30")
    for account in (roomy, tight):
        first = await credits.reserve(account_id=account, amount=worst)
        credits.settle(first, Decimal("0.01"))
    # 1,024 worst cases (307.20 USD) is more than 1% of 1000 USD: the roomy account's hold is 10 USD.
    roomy_slice = credits.holds[roomy]
    assert roomy_slice.amount == Decimal("10") - Decimal("0.01")
    assert credits.holds[tight].amount == worst - Decimal("0.01")  # a tight account lends only what it must

    tight_hold = credits.holds[tight].hold_id
    later = time.monotonic() + 30  # half a minute without a request
    assert credits.collect_idle(now=later) == [tight_hold]
    assert roomy in credits.holds and tight not in credits.holds

    again = await credits.reserve(account_id=roomy, amount=worst)  # no database round trip
    assert again.hold_id == roomy_slice.hold_id and takes == ["hold_take", "hold_take"]
    credits.settle(again, Decimal("0.01"))
    assert credits.collect_idle(now=time.monotonic() + 61) == [roomy_slice.hold_id]
    held = Hold.objects.get(pk=roomy_slice.hold_id).amount
    assert held == Account.objects.get(pk=roomy).held == Decimal("10")  # costs settle in the flush, not here
    await give_back([tight_hold, roomy_slice.hold_id])
    assert not Hold.objects.filter(account_id__in=[roomy, tight]).exists()
