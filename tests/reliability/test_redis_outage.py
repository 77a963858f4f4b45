"""Redis stops in the middle of a run, then comes back (empty: it persists nothing).

While it is down the gateway can't count requests against the limits, so it admits none: every inference
request gets a 503 in OpenAI's shape with Retry-After, reaches no upstream, and is charged nothing. Once Redis
is back the same process serves again within 5 seconds, with no restart.
"""

import asyncio
import time
from decimal import Decimal

import aiohttp

from billing import jobs
from billing.models import LedgerEntry, UsageRecord
from tests.conftest import database_url
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books
from tests.reliability.client import (
    assert_clean,
    assert_openai_error,
    chat_body,
    new_marker,
    send,
    stop_gracefully,
)
from tests.reliability.conftest import import_paid_model
from tests.reliability.report import write_report

RETURN_DEADLINE = 5.0  # the bound: serving again within 5 s of Redis's return


def records_for(ids: list[str], timeout: float = 15.0) -> dict[str, UsageRecord]:
    deadline = time.monotonic() + timeout
    while True:
        found = {str(r.pk): r for r in UsageRecord.objects.filter(pk__in=ids)}
        if len(found) == len(ids) or time.monotonic() > deadline:
            return found
        time.sleep(0.1)


def sent_upstream(upstream, marker: str) -> int:
    return sum(1 for r in upstream.requests if marker in str(r.json))


def assert_refused_for_redis(outcome) -> None:
    assert outcome.status == 503, outcome
    error = assert_openai_error(outcome)
    assert (error["type"], error["code"]) == ("server_error", "service_unavailable")
    assert int(outcome.headers["retry-after"]) >= 1
    assert outcome.request_id


async def test_redis_down_answers_503_charges_nothing_and_serves_again_within_5s_of_its_return(
    live_db, upstream, tmp_path, log_dir, funded_key, private_redis
):
    model = import_paid_model(tmp_path / "redis.toml", upstream, ["echo"])
    _, raw, account_id = funded_key("10")
    gw = start_gateway(database_url(), private_redis.url, log_dir)
    try:
        async with aiohttp.ClientSession() as session:

            async def ask(stream: bool, label: str = "r"):
                return await send(
                    session, gw.base_url, raw, chat_body(model, f"{label} {new_marker()}", stream=stream)
                )

            warm = [await ask(i % 2 == 1, "warm") for i in range(4)]
            assert [o.status for o in warm] == [200] * 4, warm
            for outcome in warm:
                assert_clean(outcome)

            private_redis.kill()
            assert private_redis.is_down()
            refused = list(await asyncio.gather(*(ask(i % 2 == 1, "down") for i in range(12))))
            refused += [await ask(i % 2 == 1, "down") for i in range(4)]  # and one at a time
            for outcome in refused:
                assert_refused_for_redis(outcome)
                assert sent_upstream(upstream, outcome.marker) == 0, "a refused request reached the upstream"

            private_redis.start()
            back_at = time.monotonic()
            polls = []
            while True:
                outcome = await ask(len(polls) % 2 == 1, "return")
                polls.append(outcome)
                if outcome.status == 200:
                    served_again_after = time.monotonic() - back_at
                    break
                assert_refused_for_redis(outcome)  # until it serves, refusals stay clean
                assert time.monotonic() - back_at < RETURN_DEADLINE, (
                    f"still refusing {RETURN_DEADLINE} s after Redis came back"
                )
                await asyncio.sleep(0.05)
            assert served_again_after < RETURN_DEADLINE, f"served again only {served_again_after:.1f} s after"
            after = list(await asyncio.gather(*(ask(i % 2 == 1, "after") for i in range(8))))
            assert [o.status for o in after] == [200] * 8, after
            for outcome in after:
                assert_clean(outcome)
    finally:
        stop_gracefully(gw)

    served = [o for o in warm + polls + after if o.status == 200]
    refused += [o for o in polls if o.status != 200]
    records = records_for([o.request_id for o in served])
    assert len(records) == len(served), "an answered request has no usage record"
    assert all(r.cost > 0 and r.status == 200 for r in records.values())
    refused_ids = [o.request_id for o in refused]
    assert not UsageRecord.objects.filter(pk__in=refused_ids).exists(), "a refused request was recorded"
    assert not LedgerEntry.objects.filter(request_id__in=refused_ids).exists(), (
        "a refused request was charged"
    )
    books = read_books(django_query, account_id)
    assert_books_balance(books, granted=Decimal(10))
    assert set(books.usage) == {o.request_id for o in served}
    assert books.held == 0 and not books.holds  # the gateway returned its slice when it stopped
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
    write_report(
        "redis_outage", refused_while_down=len(refused), upstream_calls_while_down=0, served=len(served),
        recorded=len(records), refused_recorded_or_charged=0, refused_after_return=len(polls) - 1,
        served_again_after_s=round(served_again_after, 2),
    )  # fmt: skip


async def test_a_key_first_seen_while_redis_is_down_also_gets_503(
    live_db, upstream, tmp_path, log_dir, funded_key, private_redis
):
    """A cache miss reads the key's change counters from Redis too; that read failing is the same outage."""
    model = import_paid_model(tmp_path / "cold.toml", upstream, ["echo"])
    _, warm_raw, _ = funded_key("1")
    _, cold_raw, _ = funded_key("1")
    gw = start_gateway(database_url(), private_redis.url, log_dir)
    try:
        async with aiohttp.ClientSession() as session:
            assert (await send(session, gw.base_url, warm_raw, chat_body(model, "warm up"))).status == 200
            private_redis.kill()
            outcome = await send(session, gw.base_url, cold_raw, chat_body(model, f"cold {new_marker()}"))
    finally:
        stop_gracefully(gw)
    assert sent_upstream(upstream, outcome.marker) == 0
    assert not UsageRecord.objects.filter(pk=outcome.request_id).exists()
    assert_refused_for_redis(outcome)
