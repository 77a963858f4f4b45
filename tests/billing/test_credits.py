"""Money: worst-case holds that never overdraw, exact settlement, and the reconciliation that proves it."""

import asyncio
import time
from collections import Counter
from decimal import Decimal

import aiohttp
import openai
import pytest
from django.db.models import Sum

from billing import jobs
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from billing.pricing import cost
from billing.services import account_for, credits_grant
from proxy.catalog.importer import catalog_import
from tests.conftest import unique, write_catalog


@pytest.fixture
def paid_models(live_db, upstream, tmp_path):
    """Paid models on the fake upstream. Output costs 300 USD per million tokens and input is free, so a
    request with max_tokens=1000 has a worst case of exactly 0.30 USD whatever its prompt."""
    provider = unique("paid")
    behaviours = {"slow": "slow-first-byte:1.0", "fast": "echo", "cut": "cut-after:3", "fail": "fail-500"}
    names = {k: unique(f"paid-{k}") for k in behaviours}
    models = [
        {"id": names[k], "owned_by": "test", "input_usd_per_mtok": "0", "output_usd_per_mtok": "300",
         "routes": [{"provider": provider, "upstream_model": b}]}
        for k, b in behaviours.items()
    ]  # fmt: skip
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "first_byte_timeout": 5.0,
                  "idle_timeout": 5.0, "circuit_threshold": 100000}]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path / "paid.toml", providers, models))
    return names


def funded_key(make_key, make_user, usd: str):
    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(usd), reason="test funds", actor=None)
    return make_key(owner=user, rpm_limit=100000, rpd_limit=100000)


async def fire(url: str, raw: str, model: str, n: int, **extra) -> list[int]:
    body = {
        "model": model,
        "max_tokens": 1000,
        "messages": [{"role": "user", "content": "hello there"}],
        **extra,
    }
    async with aiohttp.ClientSession() as session:

        async def one() -> int:
            async with session.post(f"{url}/chat/completions", json=body,
                                    headers={"Authorization": f"Bearer {raw}"}) as r:  # fmt: skip
                await r.read()
                return r.status

        return await asyncio.gather(*(one() for _ in range(n)))


def settled(user_id: int, expected: int, timeout: float = 10.0) -> list[UsageRecord]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        rows = list(UsageRecord.objects.filter(user_id=user_id))
        if len(rows) >= expected and not Hold.objects.filter(account__user_id=user_id).exists():
            return rows
        time.sleep(0.1)
    raise AssertionError(f"{len(rows)} of {expected} usage records, holds still open after {timeout} s")


def own_drift(run, account: Account) -> list[dict]:
    """The reconciliation's findings for this test's account (the database is shared by the whole session)."""
    return [d for d in run.drift if d["account"] == account.pk]


def account_of(user_id: int) -> Account:
    return Account.objects.get(user_id=user_id)


async def test_fifty_concurrent_requests_on_one_dollar_admit_exactly_three(
    gateway, paid_models, make_key, make_user
):
    key, raw = funded_key(make_key, make_user, "1.00")
    statuses = await fire(gateway.base_url, raw, paid_models["slow"], 50)
    assert Counter(statuses) == {200: 3, 402: 47}
    rows = settled(key.owner_id, 3, timeout=15)
    account = account_of(key.owner_id)
    debits = LedgerEntry.objects.filter(account=account, kind="usage").aggregate(s=Sum("amount"))["s"]
    assert account.balance >= 0
    assert account.balance == Decimal("1.00") + debits
    assert -debits == sum(r.cost for r in rows)
    # hello there -> "You said: hello there": 5 prompt tokens (free) and 4 completion tokens at 300 USD/M.
    assert all(r.cost == cost(prompt_tokens=5, completion_tokens=4, input_price=Decimal(0),
                              output_price=Decimal(300)) for r in rows)  # fmt: skip


async def test_many_fast_rounds_never_show_a_negative_balance(gateway, paid_models, make_key, make_user):
    key, raw = funded_key(make_key, make_user, "0.50")
    seen = Counter()
    for _ in range(8):
        seen.update(await fire(gateway.base_url, raw, paid_models["fast"], 20))
        account = account_of(key.owner_id)
        assert account.balance >= 0 and account.held >= 0
        assert account.balance - account.held >= 0
    assert seen[200] > 0 and set(seen) <= {200, 402}
    rows = settled(key.owner_id, seen[200])
    assert len(rows) == seen[200]


def test_the_sdk_sees_402_with_the_needed_and_available_amounts(gateway, paid_models, make_key, make_user):
    _, raw = funded_key(make_key, make_user, "0.10")
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    with pytest.raises(openai.APIStatusError) as info:
        api.chat.completions.create(model=paid_models["fast"], max_tokens=1000,
                                    messages=[{"role": "user", "content": "hi"}])  # fmt: skip
    assert info.value.status_code == 402
    assert info.value.body["code"] == "insufficient_credits"
    assert info.value.body["type"] == "insufficient_quota"
    assert "0.3 USD" in info.value.body["message"] and "0.1 USD" in info.value.body["message"]
    # A refused request does not count against the limits.
    assert api.models.with_raw_response.list().headers["x-ratelimit-remaining-rpd"] == "100000"


def test_free_models_need_no_credits(gateway, catalog, make_key):
    _, raw = make_key()
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    assert api.chat.completions.create(
        model=catalog["echo"], messages=[{"role": "user", "content": "hi"}]
    ).choices


async def test_a_mixed_run_settles_to_the_last_decimal(gateway, paid_models, make_key, make_user):
    key, raw = funded_key(make_key, make_user, "100")
    sent = 0
    for model, extra in [("fast", {}), ("fast", {"stream": True}), ("cut", {"stream": True}), ("fail", {}),
                         ("fast", {"stream": True, "stream_options": {"include_usage": True}})]:  # fmt: skip
        sent += len(await fire(gateway.base_url, raw, paid_models[model], 5, **extra))
    rows = settled(key.owner_id, sent)
    assert len(rows) == sent
    account = account_of(key.owner_id)
    debits = LedgerEntry.objects.filter(account=account, kind="usage").aggregate(s=Sum("amount"))["s"]
    assert -debits == sum(r.cost for r in rows)
    assert account.balance == Decimal(100) + debits
    assert all(r.cost == 0 for r in rows if r.status >= 500)  # failed and produced nothing: not charged
    assert any(r.error_code == "upstream_cut" and r.cost > 0 for r in rows)  # charged for what it got
    assert own_drift(jobs.ledger_reconcile(), account) == []


async def test_two_processes_spending_one_account_never_fail_or_drift(
    gateway, second_gateway, paid_models, make_key, make_user
):
    """Both processes take slices of one balance and settle into it at once: no deadlock, no error, no drift."""
    key, raw = funded_key(make_key, make_user, "3.00")
    rounds = await asyncio.gather(
        *(fire(url, raw, paid_models["fast"], 25) for url in [gateway.base_url, second_gateway.base_url] * 4)
    )
    statuses = Counter(status for batch in rounds for status in batch)
    assert set(statuses) <= {200, 402} and statuses[200] >= 9  # 3.00 covers ten 0.30 worst cases at once
    rows = settled(key.owner_id, statuses[200], timeout=20)
    assert len(rows) == statuses[200]
    account = account_of(key.owner_id)
    debits = LedgerEntry.objects.filter(account=account, kind="usage").aggregate(s=Sum("amount"))["s"]
    assert account.balance == Decimal("3.00") + debits and account.balance >= 0
    assert "Deadlock" not in gateway.log() + second_gateway.log()
    assert own_drift(jobs.ledger_reconcile(), account) == []
