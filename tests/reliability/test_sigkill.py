"""A gateway process killed with SIGKILL in the middle of paid streams.

This is the loss DESIGN.md accepts: the requests in flight in the killed process (and those inside its last
flush window) may go unrecorded, at the operator's expense. What must still hold: the credit the process had
leased stays held (no other process may spend it) until ``release_stale_holds`` returns it once the lease has
expired; afterwards nothing is overdrawn, nothing is charged twice, and the books reconcile.
"""

import asyncio
import time
from decimal import Decimal

import aiohttp
from django.conf import settings
from django.utils import timezone

from billing import jobs
from billing.models import Hold, UsageRecord
from tests.conftest import database_url
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books, wait_until
from tests.reliability.client import assert_clean, chat_body, new_marker, send
from tests.reliability.conftest import import_paid_model
from tests.reliability.report import write_report

STREAMS = 8
HOLD_TIMEOUT = 5  # seconds; the gateway renews its leases every HOLD_TIMEOUT / 4 while it lives


def wait_records(ids: list[str], timeout: float = 15.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = {str(pk) for pk in UsageRecord.objects.filter(pk__in=ids).values_list("pk", flat=True)}
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


async def test_sigkill_mid_stream_keeps_the_holds_until_they_are_released_then_the_books_balance(
    live_db, upstream, tmp_path, log_dir, funded_key, gateway
):
    fast = import_paid_model(tmp_path / "fast.toml", upstream, ["echo"])
    slow = import_paid_model(tmp_path / "slow.toml", upstream, ["slow-stream:0.2"])  # 20+ words: 4 s or more
    _, raw, account_id = funded_key("10")
    victim = start_gateway(
        database_url(), settings.REDIS_URL, log_dir, HOLD_TIMEOUT_SECONDS=str(HOLD_TIMEOUT)
    )
    try:
        async with aiohttp.ClientSession() as session:
            completed = [
                await send(
                    session,
                    victim.base_url,
                    raw,
                    chat_body(fast, f"before {new_marker()}", stream=i % 2 == 1),
                )
                for i in range(6)
            ]
            assert [o.status for o in completed] == [200] * 6
            assert len(wait_records([o.request_id for o in completed])) == 6

            mid_stream = asyncio.Semaphore(0)

            def doomed() -> dict:
                return chat_body(slow, f"doomed {new_marker()}", stream=True)

            streams = [
                asyncio.ensure_future(
                    send(session, victim.base_url, raw, doomed(), on_first_chunk=mid_stream.release)
                )
                for _ in range(STREAMS)
            ]
            async with asyncio.timeout(20):
                for _ in range(STREAMS):
                    await mid_stream.acquire()  # every stream has delivered content, none has finished
            victim.proc.kill()
            victim.proc.wait(10)
            cut = await asyncio.gather(*streams)
    finally:
        victim.stop()
    for outcome in cut:
        assert outcome.status == 200 and outcome.broken and outcome.broken != "TimeoutError", outcome
        assert not outcome.done  # the client saw the connection drop, promptly: nothing hung

    # The killed process's leases are still held: no other process can spend that credit.
    books = read_books(django_query, account_id)
    assert books.holds and books.held > 0
    assert {owner.rsplit(":", 1)[1] for _, _, owner in books.holds} == {str(victim.proc.pid)}
    assert_books_balance(books, granted=Decimal(10))
    expiry = max(Hold.objects.filter(account_id=account_id).values_list("expires_at", flat=True))
    # Nobody renews a dead process's lease, so it expires within HOLD_TIMEOUT.
    wait_until(lambda: timezone.now() > expiry, HOLD_TIMEOUT * 4, "the dead process's lease never expired")
    held_until_released = read_books(django_query, account_id)
    assert held_until_released.held == books.held, "an expired lease went back before release_stale_holds ran"

    assert jobs.holds_release_stale() >= len(books.holds)
    after = read_books(django_query, account_id)
    assert after.held == 0 and not after.holds
    assert_books_balance(after, granted=Decimal(10))
    sent = {o.request_id for o in completed + cut}
    assert set(after.usage) <= sent
    assert {o.request_id for o in completed} <= set(after.usage)
    unrecorded = [o for o in cut if o.request_id not in after.usage]
    assert not drift_of(jobs.ledger_reconcile(), {account_id})

    # The released credit is spendable again, through another gateway process.
    async with aiohttp.ClientSession() as session:
        again = await send(session, gateway.base_url, raw, chat_body(fast, "after the crash"))
    assert_clean(again)
    assert again.status == 200
    assert wait_records([again.request_id]) == {again.request_id}
    final = read_books(django_query, account_id)
    assert_books_balance(final, granted=Decimal(10))
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
    write_report(
        "sigkill", streams_in_flight_at_kill=STREAMS, completed_before_kill=len(completed),
        completed_recorded=len(completed), in_flight_unrecorded=len(unrecorded), holds_released=len(books.holds),
        held_at_kill=str(books.held.normalize()), overdrawn=0, double_charged=0, reconcile_drift=0,
    )  # fmt: skip
