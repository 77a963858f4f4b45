"""Upstream chaos with a fixed seed: about 2,000 paid requests, plain and streamed, over a model with three
failover routes whose upstreams are slow, cut streams, answer 500 or 429, send garbage, close early, omit usage,
or simply work (the menu is tests/reliability/chaos.py's ``CHAOS_MENU``).

The model prices cache reads apart, and a route that works reads two of each prompt's tokens from its cache.
One run feeds every test here. Afterwards each request the client sent has exactly one usage record (matched by
``x-request-id``) with the status the client saw, the sum of the usage costs equals the sum of the ledger debits
to the last decimal, and reconciliation is clean.
"""

import asyncio
import collections
from decimal import Decimal

import aiohttp
import pytest_asyncio
from django.conf import settings

from billing import jobs
from billing.services import account_for, credits_grant, customer_create
from portal.accounts.services import key_create
from proxy.catalog.importer import catalog_import
from tests.conftest import database_url, unique, write_catalog
from tests.live import start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books
from tests.reliability.chaos import CHAOS_MENU, chaos_pick
from tests.reliability.client import assert_clean, chat_body, send, stop_gracefully
from tests.reliability.report import write_report

SEED = "isp-chaos-7"
REQUESTS = 2000
CONCURRENCY = 32
ROUTES = 3
FUNDS = Decimal(100)
INPUT_PRICE, OUTPUT_PRICE = Decimal(2), Decimal(6)  # USD per million tokens
CACHED_PRICE, CACHED = Decimal("0.5"), 2  # a working route reads two prompt tokens from its cache
SERVED = {"ok", "slow", "no-usage"}  # faults after which the route answers in full
FIRST_BYTE = (
    2.0  # the chaos providers' first-byte limit: "slow" (0.3 s) is well under it, "too-slow" (4 s) over
)
# Each route draws its faults from its own seed, so a run replays exactly whatever the providers are named.
ROUTE_SEEDS = [f"{SEED}/route{k}" for k in range(1, ROUTES + 1)]


def request_text(i: int) -> str:
    # Deterministic, so the same seed draws the same faults for the same request on every run.
    return f"chaos {SEED} request {i}"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def chaos_run(live_database, django_db_blocker, chaos_upstream, tmp_path_factory, artifacts):
    """Send the whole run once; every test below checks one property of it."""
    with django_db_blocker.unblock():
        prefixes = [unique("chaos") for _ in range(ROUTES)]
        providers = [
            {"name": p, "base_url": chaos_upstream.url_for(p), "connect_timeout": 0.5,
             "first_byte_timeout": FIRST_BYTE, "idle_timeout": 5.0, "circuit_threshold": 1_000_000}
            for p in prefixes
        ]  # fmt: skip
        model = {
            "id": unique("chaos-paid"), "owned_by": "test", "input_usd_per_mtok": str(INPUT_PRICE),
            "output_usd_per_mtok": str(OUTPUT_PRICE), "cached_input_usd_per_mtok": str(CACHED_PRICE),
            "routes": [{"provider": p, "upstream_model": f"chaos:{seed}", "priority": i}
                   for i, (p, seed) in enumerate(zip(prefixes, ROUTE_SEEDS, strict=True), 1)],
        }  # fmt: skip
        path = tmp_path_factory.mktemp("chaos") / "chaos.toml"
        catalog_import(path=write_catalog(path, providers, [model]))
        user = customer_create(email=f"{unique('chaos')}@example.com")
        account = account_for(user=user)
        credits_grant(account=account, amount=FUNDS, reason="chaos run", actor=None)
        _, raw = key_create(owner=user, name="chaos", rpm_limit=1_000_000, rpd_limit=1_000_000)

    log_dir = artifacts / "reliability" / "logs"
    log_dir.mkdir(parents=True, exist_ok=True)
    gw = start_gateway(database_url(), settings.REDIS_URL, log_dir)
    chaos_upstream.faults.clear()
    try:
        gate = asyncio.Semaphore(CONCURRENCY)
        async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=CONCURRENCY)) as session:

            async def one(i: int):
                extra = {"stream_options": {"include_usage": True}} if i % 4 == 3 else {}
                body = chat_body(model["id"], request_text(i), stream=i % 2 == 1, **extra)
                async with gate:
                    return i, await send(session, gw.base_url, raw, body)

            outcomes = dict(await asyncio.gather(*(one(i) for i in range(REQUESTS))))
    finally:
        stop_gracefully(gw)
    with django_db_blocker.unblock():
        books = read_books(django_query, account.pk)  # the graceful stop flushed everything: no waiting
        drift = drift_of(jobs.ledger_reconcile(), {account.pk})
    return {
        "outcomes": outcomes, "books": books, "drift": drift, "routes": ROUTE_SEEDS,
        "faults": collections.Counter(chaos_upstream.faults), "log": gw.log(),
    }  # fmt: skip


def expected(i: int, routes: list[str], stream: bool) -> tuple[int, str]:
    """What DESIGN.md's relay rules call for: (status, how it ends) for request ``i``.

    Before the first byte a failed route moves on to the next; a stream cut after its first chunk is already
    committed (200, then one in-band error event); when every route fails, the last failure decides."""
    last = None
    for route in routes:
        fault, _ = chaos_pick(route, request_text(i))
        if fault in SERVED:
            return 200, "served"
        if fault == "cut" and stream:
            return 200, "cut"
        last = fault
    return {"too-slow": 504, "429": 503}.get(last, 502), "refused"


def test_the_run_met_every_fault_on_the_menu(chaos_run):
    faults = chaos_run["faults"]
    assert set(faults) == {name for name, _, _ in CHAOS_MENU}, faults
    assert all(n >= 20 for n in faults.values()), faults
    statuses = collections.Counter(o.status for o in chaos_run["outcomes"].values())
    assert statuses[200] > REQUESTS // 2 and statuses[502] and statuses[503] and statuses[504], statuses


def test_every_request_ended_cleanly(chaos_run):
    for outcome in chaos_run["outcomes"].values():
        assert_clean(outcome)  # an answer, an OpenAI-shaped error, or a stream that ends with [DONE]


def test_every_request_has_exactly_one_usage_record_with_the_status_the_client_saw(chaos_run):
    usage = chaos_run["books"].usage
    outcomes = chaos_run["outcomes"].values()
    ids = [o.request_id for o in outcomes]
    assert len(ids) == REQUESTS and len(set(ids)) == REQUESTS
    assert set(usage) == set(ids)  # one each (the request id is the record's key), and nothing else
    for outcome in outcomes:
        _, status, code = usage[outcome.request_id]
        assert status == outcome.status, (outcome, status, code)
        if outcome.stream and outcome.error_event:
            assert code in ("upstream_cut", "upstream_timeout"), code


def test_usage_costs_equal_ledger_debits_to_the_last_decimal_and_reconcile_is_clean(chaos_run):
    books = chaos_run["books"]
    assert_books_balance(books, granted=FUNDS)
    assert books.usage_cost == sum(books.debits.values()) > 0
    assert books.held == 0 and not books.holds
    assert not chaos_run["drift"]


def test_what_was_served_was_charged_at_the_upstreams_usage_and_failures_cost_nothing(chaos_run):
    usage, outcomes = chaos_run["books"].usage, chaos_run["outcomes"]
    words = len(request_text(0).split())
    exact = (
        (3 + words - CACHED) * INPUT_PRICE + CACHED * CACHED_PRICE + (2 + words) * OUTPUT_PRICE
    ) / 1_000_000
    for i, outcome in outcomes.items():
        cost, status, code = usage[outcome.request_id]
        if status >= 500 or status == 499:
            assert cost == 0, (outcome, cost)
        elif status == 200 and code == "" and _served_with_usage(i, chaos_run["routes"]):
            assert cost == exact, (outcome, cost)
        else:
            assert (
                cost > 0
            )  # a cut stream or a reply without usage: charged for what arrived, counted locally


def _served_with_usage(i: int, routes: list[str]) -> bool:
    for route in routes:
        fault, _ = chaos_pick(route, request_text(i))
        if fault in SERVED:
            return fault != "no-usage"
        if fault == "cut":
            return False
    return False


def _plain_cut_before_served(i: int, routes: list[str], stream: bool) -> bool:
    """A plain request on which some route cut its answer halfway before a later route could serve it."""
    if stream:
        return False
    for route in routes:
        fault, _ = chaos_pick(route, request_text(i))
        if fault in SERVED:
            return False
        if fault == "cut":
            return True
    return False


def _off_the_rules(chaos_run, *, plain_cuts: bool) -> list:
    wrong = []
    for i, outcome in chaos_run["outcomes"].items():
        if _plain_cut_before_served(i, chaos_run["routes"], outcome.stream) != plain_cuts:
            continue
        status, how = expected(i, chaos_run["routes"], outcome.stream)
        seen = (
            "cut" if outcome.stream and outcome.error_event else ("served" if outcome.admitted else "refused")
        )
        if (outcome.status, seen) != (status, how):
            wrong.append((i, "stream" if outcome.stream else "plain", (status, how), (outcome.status, seen)))
    return wrong


def test_each_answer_is_the_one_the_failover_rules_call_for(chaos_run):
    outcomes = chaos_run["outcomes"].values()
    wrong = _off_the_rules(chaos_run, plain_cuts=False)
    plain_cuts = sum(
        1
        for i, o in chaos_run["outcomes"].items()
        if _plain_cut_before_served(i, chaos_run["routes"], o.stream)
    )
    write_report(
        "upstream_chaos", seed=SEED, requests=REQUESTS, concurrency=CONCURRENCY, routes=ROUTES,
        faults_played=dict(chaos_run["faults"]),
        statuses={str(k): v for k, v in collections.Counter(o.status for o in outcomes).items()},
        cut_streams=sum(1 for o in outcomes if o.stream and o.error_event),
        usage_records=len(chaos_run["books"].usage), usage_cost=str(chaos_run["books"].usage_cost),
        ledger_debits=str(sum(chaos_run["books"].debits.values())), drift=len(chaos_run["drift"]),
        answers_checked_against_the_rules=REQUESTS - plain_cuts, answers_off_the_rules=len(wrong),
        plain_answers_cut_halfway_then_500=sum(1 for o in outcomes if o.status == 500),
    )  # fmt: skip
    assert not wrong, f"{len(wrong)} answers differ from the rules, e.g. {wrong[:5]}"


def test_a_plain_answer_cut_halfway_fails_over_like_any_other_garbled_answer(chaos_run):
    assert any(
        _plain_cut_before_served(i, chaos_run["routes"], o.stream) for i, o in chaos_run["outcomes"].items()
    )
    wrong = _off_the_rules(chaos_run, plain_cuts=True)
    assert not wrong, f"{len(wrong)} answers differ from the rules, e.g. {wrong[:5]}"
