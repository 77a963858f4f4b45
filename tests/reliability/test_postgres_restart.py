"""PostgreSQL restarts in the middle of a paid run, on a private cluster the test owns.

Requests in flight either succeed or fail cleanly (a 5xx in OpenAI's shape; a stream ends with [DONE]), none
hangs; the gateway reconnects by itself; the settlement flushes that failed during the restart are retried and
every answered request ends up recorded and charged exactly once; reconciliation finds no drift.
"""

import asyncio
import time
from decimal import Decimal

import aiohttp
import pytest

from tests.conftest import unique, write_catalog
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, read_books
from tests.reliability.client import (
    assert_clean,
    assert_openai_error,
    chat_body,
    new_marker,
    run_load,
    send,
    stop_gracefully,
)
from tests.reliability.conftest import paid_model_spec
from tests.reliability.report import write_report
from tests.reliability.services import PrivatePostgres, migrate, privctl


@pytest.fixture(scope="module")
def private_pg():
    server = PrivatePostgres()
    try:
        server.init()
        migrate(server.url, "")
        yield server
    finally:
        server.destroy()


@pytest.fixture
def pg_world(private_pg, private_redis, upstream, tmp_path):
    """On the private cluster: a plain and a streaming paid model, and a helper that mints funded keys."""
    providers, [fast] = paid_model_spec(upstream, ["echo"])
    _, [slow] = paid_model_spec(upstream, ["slow-stream:0.05"], prefixes=[providers[0]["name"]])
    path = write_catalog(tmp_path / "pg.toml", providers, [fast, slow])
    ctl = lambda command, **args: privctl(private_pg.url, private_redis.url, command, **args)  # noqa: E731
    ctl("catalog", path=str(path))
    return {"fast": fast["id"], "slow": slow["id"], "ctl": ctl}


OUTAGE_SECONDS = 2.5


def usage_ids(pg: PrivatePostgres) -> set[str]:
    return {row[0] for row in pg.query("SELECT request_id::text FROM billing_usagerecord")}


def wait_recorded(pg: PrivatePostgres, ids: set[str], timeout: float = 30.0) -> set[str]:
    deadline = time.monotonic() + timeout
    while True:
        missing = ids - usage_ids(pg)
        if not missing or time.monotonic() > deadline:
            return missing
        time.sleep(0.2)


async def test_a_postgres_restart_mid_run_loses_nothing_admitted(
    private_pg, private_redis, pg_world, log_dir, upstream
):
    hot = pg_world["ctl"]("funded_key", usd="100", email=f"{unique('pg')}@example.com")
    cold = pg_world["ctl"]("funded_key", usd="5", email=f"{unique('pg')}@example.com")
    gw = start_gateway(private_pg.url, private_redis.url, log_dir)
    try:
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()

            def body(i: int) -> dict:
                model = pg_world["slow" if i % 3 == 0 else "fast"]
                return chat_body(model, f"load {i} {new_marker()}", stream=i % 3 != 1)

            load = asyncio.ensure_future(
                run_load(10, body, lambda b: send(session, gw.base_url, hot["raw"], b), stop)
            )
            await asyncio.sleep(1.5)
            await asyncio.to_thread(private_pg.stop, "fast")
            # A key nobody has used yet needs the database: its request must fail cleanly, not hang.
            during = [
                await send(session, gw.base_url, cold["raw"], chat_body(pg_world["fast"], "cold key"))
                for _ in range(3)
            ]
            # Down for longer than a settlement flush takes on this private cluster (about a second under
            # load), so that at least one flush is tried, and fails, while it is down.
            await asyncio.sleep(OUTAGE_SECONDS)
            await asyncio.to_thread(private_pg.start)
            await asyncio.sleep(2.0)
            stop.set()
            outcomes = await load
            # Service resumes by itself: the cold key, refused during the outage, is served now.
            deadline = time.monotonic() + 30
            while True:
                resumed = await send(
                    session, gw.base_url, cold["raw"], chat_body(pg_world["fast"], "cold again")
                )
                if resumed.status == 200 or time.monotonic() > deadline:
                    break
                await asyncio.sleep(0.2)
            assert resumed.status == 200, f"not serving 30 s after PostgreSQL came back: {resumed}"

        for outcome in outcomes + during + [resumed]:
            assert_clean(outcome)
            assert outcome.status in (200, 500, 503), outcome
        for outcome in during:
            assert outcome.status >= 500
            assert assert_openai_error(outcome)["type"] == "server_error"
        admitted = {o.request_id for o in outcomes if o.admitted}
        assert len(admitted) > 50 and any(not o.admitted for o in outcomes + during)
        missing = wait_recorded(private_pg, admitted | {resumed.request_id})
        assert not missing, f"{len(missing)} answered requests never recorded: {sorted(missing)[:5]}"
        flushes_failed = gw.log().count("failed; will retry")
        assert flushes_failed and "settlement flush" in gw.log(), "the restart never hit a settlement flush"
    finally:
        stop_gracefully(gw)

    recorded = usage_ids(private_pg)
    answered = {o.request_id for o in outcomes + during + [resumed] if o.request_id}
    assert recorded <= answered, "a usage record for a request no client sent"
    for who in (hot, cold):
        books = read_books(private_pg.query, who["account_id"])
        assert_books_balance(books, granted=Decimal(100 if who is hot else 5))
        assert books.held == 0 and not books.holds
    hot_books = read_books(private_pg.query, hot["account_id"])
    for outcome in outcomes:
        if outcome.admitted:
            assert hot_books.usage[outcome.request_id][0] > 0  # charged, exactly once (books check above)
    report = pg_world["ctl"]("reconcile")
    assert report["ok"], report["drift"]
    assert report["accounts_checked"] >= 2
    write_report(
        "postgres_restart", sent=len(outcomes) + len(during) + 1, admitted=len(admitted) + 1,
        refused_5xx=sum(1 for o in outcomes + during if not o.admitted), hung=0,
        streams_admitted=sum(1 for o in outcomes if o.admitted and o.stream),
        failed_flushes_retried=flushes_failed, unrecorded=0, reconcile_ok=report["ok"],
    )  # fmt: skip


async def test_a_key_first_seen_while_the_database_is_down_gets_503(
    private_pg, private_redis, pg_world, log_dir
):
    cold = pg_world["ctl"]("funded_key", usd="5", email=f"{unique('pg')}@example.com")
    gw = start_gateway(private_pg.url, private_redis.url, log_dir)
    try:
        private_pg.stop("fast")
        try:
            async with aiohttp.ClientSession() as session:
                outcome = await send(session, gw.base_url, cold["raw"], chat_body(pg_world["fast"], "cold"))
        finally:
            private_pg.start()
    finally:
        stop_gracefully(gw)
    assert_clean(outcome)
    assert outcome.status == 503, outcome
    assert assert_openai_error(outcome)["code"] == "service_unavailable"
    assert int(outcome.headers["retry-after"]) >= 1


async def test_a_request_refused_because_the_database_is_down_does_not_count_against_the_limits(
    private_pg, private_redis, pg_world, log_dir
):
    """Only admitted requests count (DESIGN.md, Limits). The second request's credit hold needs the database
    (the first one used up the lease), so it is refused, with a 503, while the database is down.

    The balance is small (5 cents; a worst case here is 1.92 cents), so each lease is one request's worst case:
    a roomy account's lease would be a larger sliver that serves the second request without the database."""
    key = pg_world["ctl"]("funded_key", usd="0.05", email=f"{unique('pg')}@example.com")
    gw = start_gateway(private_pg.url, private_redis.url, log_dir)
    try:
        async with aiohttp.ClientSession() as session:
            first = await send(session, gw.base_url, key["raw"], chat_body(pg_world["fast"], "one"))
            assert first.status == 200
            private_pg.stop("fast")
            try:
                refused = await send(session, gw.base_url, key["raw"], chat_body(pg_world["fast"], "two"))
            finally:
                private_pg.start()
            async with session.get(
                f"{gw.base_url}/models", headers={"Authorization": f"Bearer {key['raw']}"}
            ) as listing:
                remaining = int(listing.headers["x-ratelimit-remaining-rpd"])
    finally:
        stop_gracefully(gw)
    assert_clean(refused)
    assert refused.status == 503 and assert_openai_error(refused)["code"] == "service_unavailable", refused
    assert int(refused.headers["retry-after"]) >= 1
    assert refused.request_id not in usage_ids(private_pg)  # not admitted, not recorded...
    assert int(first.headers["x-ratelimit-remaining-rpd"]) == remaining  # ...and not counted
