"""The money path's edge cases, over HTTP through two gateway processes on one database and Redis.

Each was once a defect: a long answer from an upstream that sends no usage went unrecorded and unbilled, with
its credit left held; an over-long prompt answered a retryable 503; conflicting output limits were reserved
from one and forwarded with both; a 404 echoed a model name of any length; and a process could be asked to
hold more finished requests than it can keep. Both gateways are this module's own, so the test can stop them
and read the books after a graceful stop.
"""

import asyncio
import signal
from decimal import Decimal

import aiohttp
import openai
import orjson
import pytest
from django.conf import settings
from django.db import connection
from django.db.models import F

from billing import jobs
from billing.models import Account, UsageRecord
from proxy.gateway import tokens
from tests.conftest import database_url, unique, write_catalog
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books
from tests.reliability.client import chat_body, run_load, send
from tests.reliability.report import write_report
from tests.reliability.test_upstream_faults import wait_record

# A reply of over a million characters and some 200,000 tokens: past what the tokenizer takes in one piece.
LONG_TEXT = " ".join(["helloworld"] * 100_000)
OUTPUT_PRICE = "1"  # USD per million output tokens; input is free


@pytest.fixture(scope="module")
def gateways(live_database, catalog, log_dir):
    pair = [
        start_gateway(database_url(), settings.REDIS_URL, log_dir, TEST_UPSTREAM_KEY="upstream-secret-123")
        for _ in range(2)
    ]
    yield pair
    for gw in pair:
        gw.stop()


def import_models(tmp_path, upstream, **models: dict) -> dict[str, str]:
    """Models on one provider of ``upstream``, by name: {name: {"upstream": behaviour, other fields}}.
    They cost OUTPUT_PRICE per million output tokens and nothing for input unless a spec says otherwise."""
    from proxy.catalog.importer import catalog_import

    provider = unique("mp")
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY",
                  "first_byte_timeout": 20.0, "idle_timeout": 20.0, "circuit_threshold": 100_000}]  # fmt: skip
    ids, entries = {}, []
    for name, spec in models.items():
        fields = {"input_usd_per_mtok": "0", "output_usd_per_mtok": OUTPUT_PRICE, **spec}
        route = {"provider": provider, "upstream_model": fields.pop("upstream")}
        ids[name] = unique(name)
        entries.append({"id": ids[name], "owned_by": "test", **fields, "routes": [route]})
    catalog_import(path=write_catalog(tmp_path / "money.toml", providers, entries))
    return ids


def client(gw, raw: str) -> openai.AsyncOpenAI:
    return openai.AsyncOpenAI(base_url=gw.base_url, api_key=raw, max_retries=0, timeout=60)


async def test_a_long_answer_without_usage_is_recorded_charged_and_releases_its_credit(
    gateways, upstream, tmp_path, funded_key, live_db
):
    models = import_models(tmp_path, upstream, silent={"upstream": "no-usage"})
    _, raw, account_id = funded_key("5")
    body = chat_body(models["silent"], LONG_TEXT, max_tokens=1_000_000)
    async with aiohttp.ClientSession() as session:
        plain = await send(session, gateways[0].base_url, raw, body)
        stream = await send(session, gateways[1].base_url, raw, {**body, "stream": True})
    assert (plain.status, stream.status) == (200, 200)
    assert len(plain.json()["choices"][0]["message"]["content"]) > 1_000_000
    assert stream.done and stream.error_event is None
    records = [wait_record(o.request_id) for o in (plain, stream)]
    for gw in gateways:
        gw.stop()
    books = read_books(django_query, account_id)
    for record in records:
        assert record.status == 200 and record.tokens_estimated and record.note == ""
        assert record.completion_tokens > 200_000
        assert record.cost == Decimal(record.completion_tokens) * Decimal(OUTPUT_PRICE) / 1_000_000
    assert books.held == 0 and not books.holds, books.holds  # the graceful stop returned both slices
    assert books.balance == Decimal(5) - sum(r.cost for r in records)
    assert_books_balance(books, granted=Decimal(5))
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
    write_report(
        "long_answer_without_usage", requests=2, recorded=len(records),
        completion_tokens=[r.completion_tokens for r in records], charged=[str(r.cost) for r in records],
        held_after_stop=str(books.held),
    )  # fmt: skip


@pytest.fixture
def fresh_gateways(gateways, log_dir):
    """The module's gateways, restarted if an earlier test stopped them."""
    for i, gw in enumerate(gateways):
        if gw.proc.poll() is not None:
            gateways[i] = start_gateway(
                database_url(), settings.REDIS_URL, log_dir, TEST_UPSTREAM_KEY="upstream-secret-123"
            )
    return gateways


async def test_an_over_long_prompt_is_a_400_in_openai_shape_and_counts_nothing(
    fresh_gateways, upstream, tmp_path, funded_key, make_key
):
    models = import_models(
        tmp_path, upstream, paid={"upstream": "echo", "input_usd_per_mtok": "1", "context_length": 128_000},
        free={"upstream": "echo", "output_usd_per_mtok": "0", "context_length": 128_000},
    )  # fmt: skip
    _, raw, _ = funded_key("5")
    prompt = "x " * 1_000_000  # 2 MB, a million tokens
    seen = upstream.count()
    for gw, model in zip(fresh_gateways, (models["paid"], models["free"]), strict=True):
        async with aiohttp.ClientSession() as session:
            answer = await send(session, gw.base_url, raw, chat_body(model, prompt))
        assert answer.status == 400, answer.body[:300]
        error = answer.json()["error"]
        assert (error["code"], error["param"], error["type"]) == (
            "context_length_exceeded", "messages", "invalid_request_error",
        )  # fmt: skip
        counted = tokens.count_messages([{"role": "user", "content": prompt}])
        assert "is 128000 tokens" in error["message"] and f"in {counted} tokens" in error["message"]
        assert "retry-after" not in answer.headers
        assert not UsageRecord.objects.filter(pk=answer.request_id).exists()
    assert upstream.count() == seen  # nothing reached the upstream
    async with client(fresh_gateways[0], raw) as sdk:
        probe = await sdk.chat.completions.with_raw_response.create(
            model=models["paid"], messages=[{"role": "user", "content": "still all mine"}]
        )
    # The two refusals took no slot: the key's first admitted request leaves a day's limit minus one.
    assert int(probe.headers["x-ratelimit-remaining-rpd"]) == 100_000 - 1


async def test_a_prompt_longer_than_one_tokenizer_call_is_counted_reserved_and_served(
    fresh_gateways, upstream, tmp_path, funded_key
):
    """3.9 MB of emoji on a paid model with no context length: counted piece by piece, not a 503."""
    models = import_models(tmp_path, upstream, paid={"upstream": "echo", "input_usd_per_mtok": "1"})
    _, raw, _ = funded_key("5")
    body = chat_body(models["paid"], "\U0001f600" * 975_000, max_tokens=2)
    # Sent as raw UTF-8: escaped as JSON surrogate pairs, the body would pass the size limit.
    async with aiohttp.ClientSession() as session, session.post(
        f"{fresh_gateways[1].base_url}/chat/completions", data=orjson.dumps(body),
        headers={"Authorization": f"Bearer {raw}", "Content-Type": "application/json"},
    ) as answer:  # fmt: skip
        status, request_id = answer.status, answer.headers["x-request-id"]
        assert len(await answer.read()) > 0
    assert status == 200
    record = wait_record(request_id)
    assert record.cost == Decimal(record.prompt_tokens + record.completion_tokens) / 1_000_000 > 0


async def test_conflicting_output_limits_go_upstream_as_the_one_that_was_reserved(
    fresh_gateways, upstream, tmp_path, funded_key
):
    models = import_models(tmp_path, upstream, paid={"upstream": "long:50"})
    _, raw, _ = funded_key("5")
    async with client(fresh_gateways[0], raw) as sdk:
        answer = await sdk.chat.completions.with_raw_response.create(
            model=models["paid"], messages=[{"role": "user", "content": "two limits"}],
            max_completion_tokens=1, max_tokens=100_000,
        )  # fmt: skip
    record = wait_record(answer.headers["x-request-id"])
    [sent] = [r for r in upstream.find(model="long:50") if r.json["messages"][0]["content"] == "two limits"]
    assert (sent.json["max_tokens"], sent.json["max_completion_tokens"]) == (1, 1)
    assert record.completion_tokens == 1 and record.note == ""
    assert record.cost == Decimal(OUTPUT_PRICE) / 1_000_000  # what it got, and within what was reserved


async def test_a_charge_capped_at_the_reservation_is_noted_and_logged(
    fresh_gateways, chaos_upstream, tmp_path, funded_key
):
    models = import_models(tmp_path, chaos_upstream, paid={"upstream": "overbill:1000000"})
    _, raw, _ = funded_key("5")
    async with client(fresh_gateways[1], raw) as sdk:
        answer = await sdk.chat.completions.with_raw_response.create(
            model=models["paid"], messages=[{"role": "user", "content": "bill me"}], max_tokens=1000
        )
    record = wait_record(answer.headers["x-request-id"])
    assert record.note == "cost_capped"
    assert record.cost == Decimal(1000) * Decimal(OUTPUT_PRICE) / 1_000_000  # the reservation, not 1 USD
    assert f"request {record.request_id} on model" in fresh_gateways[1].log()


async def test_an_unknown_model_name_is_clipped_in_the_404(fresh_gateways, make_key):
    _, raw = make_key()
    for gw in fresh_gateways:
        async with client(gw, raw) as sdk:
            with pytest.raises(openai.NotFoundError) as caught:
                await sdk.chat.completions.create(
                    model="\U0001f600" * 1000, messages=[{"role": "user", "content": "hi"}]
                )
        error = caught.value.body
        assert error["code"] == "model_not_found" and len(error["message"]) < 120, error


async def test_a_process_that_cannot_record_more_admits_no_more_and_loses_nothing(
    live_db, catalog, log_dir, make_key
):
    """With its queue of unwritten requests full, a process answers 503 (retryable, counting nothing)
    instead of serving requests it could not record; a graceful stop then writes every one it served."""
    _, raw = make_key(rpm_limit=1000, rpd_limit=1000)
    gw = start_gateway(
        database_url(), settings.REDIS_URL, log_dir, TEST_UPSTREAM_KEY="upstream-secret-123",
        SETTLE_FLUSH_SECONDS="3600", SETTLE_MAX_PENDING="3",
    )  # fmt: skip
    try:
        async with aiohttp.ClientSession() as session:
            answers = [
                await send(session, gw.base_url, raw, chat_body(catalog["echo"], f"n{i}")) for i in range(5)
            ]
    finally:
        gw.stop(signal.SIGTERM)
    assert [a.status for a in answers] == [200, 200, 200, 503, 503]
    assert all(a.headers.get("retry-after") == "2" for a in answers[3:])
    served = [a.request_id for a in answers[:3]]
    assert UsageRecord.objects.filter(pk__in=served).count() == 3
    assert not UsageRecord.objects.filter(pk__in=[a.request_id for a in answers[3:]]).exists()
    assert int(answers[2].headers["x-ratelimit-remaining-rpd"]) == 1000 - 3


async def test_reconciliation_under_paid_traffic_through_two_gateways_reports_no_drift(
    fresh_gateways, upstream, tmp_path, funded_key
):
    """Reconcile runs again and again while both gateways settle paid requests for the same accounts: every
    run reads one snapshot, so none reports drift, and a balance edited behind the ledger's back still shows."""
    models = import_models(tmp_path, upstream, paid={"upstream": "echo", "input_usd_per_mtok": "1"})
    funded = [funded_key("5") for _ in range(4)]
    accounts = {account_id for _, _, account_id in funded}
    liar = funded_key("5")[2]
    Account.objects.filter(pk=liar).update(balance=F("balance") + 1)  # a real drift, seeded
    runs: list = []
    stop = asyncio.Event()

    def reconcile_until_stopped() -> None:
        try:
            while not stop.is_set():
                runs.append(jobs.ledger_reconcile())
        finally:
            connection.close()

    async with aiohttp.ClientSession() as session:

        async def send_one(body: dict):
            i = int(body["messages"][0]["content"].split()[-1])
            gw, (_, raw, _) = fresh_gateways[i % 2], funded[i % len(funded)]
            return await send(session, gw.base_url, raw, body)

        def body(i: int) -> dict:
            return chat_body(models["paid"], f"books {i}", stream=i % 3 == 0)

        checker = asyncio.ensure_future(asyncio.to_thread(reconcile_until_stopped))
        load = asyncio.ensure_future(run_load(8, body, send_one, stop))
        await asyncio.sleep(6)
        stop.set()
        outcomes = await load
        await checker
    assert len(runs) >= 5 and len(outcomes) >= 100
    assert all(o.status == 200 for o in outcomes), {o.status for o in outcomes}
    assert [drift_of(run, accounts) for run in runs] == [[] for _ in runs]
    seeded = [drift_of(run, {liar}) for run in runs]
    assert all(d == [{"account": liar, "what": "balance", "cached": "6.000000000000", "truth": "5.000000000000"}]
               for d in seeded), seeded[:3]  # fmt: skip
    write_report(
        "reconcile_under_traffic", requests=len(outcomes), reconcile_runs=len(runs),
        false_drift=sum(len(drift_of(run, accounts)) for run in runs),
        seeded_drift_found=sum(1 for d in seeded if d),
    )  # fmt: skip
