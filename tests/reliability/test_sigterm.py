"""SIGTERM while a gateway process is under paid load, plain and streamed.

A graceful stop lets the requests in flight finish (uvicorn stops accepting, waits for them, then runs the
application's shutdown, which flushes the settlement queue and returns the leased credit). So the moment the
process has exited, every request that was answered 2xx has its usage record and its ledger debit, no stream
was cut short, and no credit is left held.
"""

import asyncio
import signal
import time
from decimal import Decimal

import aiohttp
from django.conf import settings

from billing import jobs
from tests.conftest import database_url
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books, wait_until
from tests.reliability.client import assert_clean, chat_body, new_marker, run_load, send
from tests.reliability.conftest import import_paid_model
from tests.reliability.report import write_report

WORKERS = 12
PINNED = 4  # plain requests and streams each, in flight when SIGTERM arrives


async def test_sigterm_under_load_records_every_answered_request_before_the_process_exits(
    live_db, upstream, tmp_path, log_dir, funded_key
):
    fast = import_paid_model(tmp_path / "fast.toml", upstream, ["echo"])
    slow = import_paid_model(tmp_path / "slow.toml", upstream, ["slow-stream:0.1"])  # 20+ words: 2 s or more
    late = import_paid_model(tmp_path / "late.toml", upstream, ["slow-first-byte:1.5"])
    _, raw, account_id = funded_key("50")
    gw = start_gateway(database_url(), settings.REDIS_URL, log_dir)
    try:
        async with aiohttp.ClientSession() as session:
            stop = asyncio.Event()

            def body(i: int) -> dict:  # slow streams, late plain answers, and fast ones of both kinds
                model = {0: slow, 1: late}.get(i % 4, fast)
                return chat_body(model, f"load {i} {new_marker()}", stream=i % 2 == 0)

            async def send_one(b: dict):
                outcome = await send(session, gw.base_url, raw, b)
                if outcome.status is None:
                    await asyncio.sleep(0.05)  # refused: the server is going away; don't spin
                return outcome

            load = asyncio.ensure_future(run_load(WORKERS, body, send_one, stop))
            await asyncio.sleep(2.0)
            # Pinned in flight when the signal comes: plain answers the upstream is still preparing, and
            # streams that have delivered content but not finished.
            streaming = asyncio.Semaphore(0)
            markers = [new_marker() for _ in range(PINNED)]
            plain = [chat_body(late, f"pinned {m}") for m in markers]
            streams = [chat_body(slow, f"pinned {new_marker()}", stream=True) for _ in range(PINNED)]
            pinned = [asyncio.ensure_future(send(session, gw.base_url, raw, b)) for b in plain] + [
                asyncio.ensure_future(send(session, gw.base_url, raw, b, on_first_chunk=streaming.release))
                for b in streams
            ]
            async with asyncio.timeout(20):
                for _ in range(PINNED):
                    await streaming.acquire()

            def plain_reached_upstream() -> bool:
                return all(any(m in str(r.json) for r in upstream.requests) for m in markers)

            await asyncio.to_thread(
                wait_until, plain_reached_upstream, 20, "the pinned requests never reached the upstream"
            )
            signalled_at = time.monotonic()
            gw.proc.send_signal(signal.SIGTERM)
            code = await asyncio.to_thread(gw.proc.wait, 60)
            stop.set()
            outcomes = await load
            pinned = list(await asyncio.gather(*pinned))
    finally:
        gw.stop(signal.SIGKILL)

    # Checked at once: the records had to be written before the process exited.
    books = read_books(django_query, account_id)
    log = gw.log()
    assert code in (0, -signal.SIGTERM), log[-3000:]
    assert "Application shutdown complete" in log and "requests unrecorded" not in log, log[-3000:]
    answered = [o for o in outcomes if o.status is not None]
    admitted = [o for o in answered if o.admitted]
    for outcome in answered:
        assert_clean(outcome)  # finished, or failed in OpenAI's shape; a stream always ends with [DONE]
    for outcome in outcomes:
        if outcome.status is None:  # never answered: refused once the server stopped accepting
            assert outcome.broken and outcome.broken != "TimeoutError", outcome
    for outcome in pinned:  # in flight at the signal, each one finished
        assert outcome.status == 200 and outcome.started + outcome.elapsed > signalled_at, outcome
        assert_clean(outcome)
        assert not outcome.error_event
    outcomes += pinned
    answered += pinned
    admitted += pinned
    in_flight = [o for o in admitted if o.started < signalled_at < o.started + o.elapsed]
    missing = [o.request_id for o in admitted if o.request_id not in books.usage]
    assert not missing, f"{len(missing)} answered requests unrecorded after a graceful stop: {missing[:5]}"
    assert set(books.usage) <= {o.request_id for o in answered}
    for outcome in admitted:
        assert books.debits[outcome.request_id] == books.usage[outcome.request_id][0] > 0
    assert_books_balance(books, granted=Decimal(50))
    assert books.held == 0 and not books.holds, "a graceful stop must return the leased credit"
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
    write_report(
        "sigterm", sent=len(outcomes), answered_2xx=len(admitted), in_flight_at_sigterm=len(in_flight),
        streams_in_flight=sum(1 for o in in_flight if o.stream), refused_after_sigterm=len(outcomes) - len(answered),
        unrecorded=0, cut_streams=0, held_after_exit=str(books.held.normalize()),
    )  # fmt: skip
