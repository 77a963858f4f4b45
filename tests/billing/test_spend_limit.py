"""A key's own spend limit, end to end: 402 once a request could take the key past it, while the account's
other keys go on working."""

import time
from decimal import Decimal

import openai
import pytest

from billing.models import UsageRecord
from billing.pricing import cost
from billing.services import account_for, credits_grant
from portal.accounts.models import ApiKey
from proxy.catalog.importer import catalog_import
from tests.conftest import unique, write_catalog

OUTPUT_PRICE = Decimal(300)  # USD per million output tokens; input is free
WORST = cost(prompt_tokens=0, completion_tokens=1000, input_price=Decimal(0), output_price=OUTPUT_PRICE)
# "hello there" -> "You said: hello there": 4 completion tokens (see test_credits.py).
EACH = cost(prompt_tokens=5, completion_tokens=4, input_price=Decimal(0), output_price=OUTPUT_PRICE)


@pytest.fixture(scope="module")
def paid_model(live_database, upstream, tmp_path_factory) -> str:
    provider, name = unique("spend"), unique("spend-echo")
    models = [{"id": name, "owned_by": "test", "input_usd_per_mtok": "0", "output_usd_per_mtok": str(OUTPUT_PRICE),
               "routes": [{"provider": provider, "upstream_model": "echo"}]}]  # fmt: skip
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "circuit_threshold": 100000}]
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("spend") / "c.toml", providers, models))
    return name


def ask(gw, raw: str, model: str, max_tokens: int = 1000):
    api = openai.OpenAI(base_url=gw.base_url, api_key=raw, max_retries=0)
    return api.chat.completions.create(
        model=model, max_tokens=max_tokens, messages=[{"role": "user", "content": "hello there"}]
    )


def settled(key: ApiKey, expected: int, timeout: float = 10.0) -> None:
    """Wait until the gateway has recorded ``expected`` requests of this key (settlement is batched)."""
    deadline = time.monotonic() + timeout
    while UsageRecord.objects.filter(key=key).count() < expected:
        assert time.monotonic() < deadline, f"fewer than {expected} requests recorded after {timeout} s"
        time.sleep(0.05)


def funded_user(make_user, usd: str = "10"):
    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(usd), reason="test funds", actor=None)
    return user


def test_a_key_gets_402_once_a_request_could_pass_its_spend_limit(gateway, paid_model, make_user, make_key):
    user = funded_user(make_user)
    # Room for the worst case of one request plus what one and a half requests really cost.
    limited, raw = make_key(owner=user, spend_limit=WORST + EACH * 3 / 2, rpm_limit=1000, rpd_limit=1000)
    assert ask(gateway, raw, paid_model).choices
    settled(limited, 1)
    assert ask(gateway, raw, paid_model).choices  # spent EACH; EACH + WORST is still within the limit
    settled(limited, 2)
    with pytest.raises(openai.APIStatusError) as info:
        ask(gateway, raw, paid_model)  # 2 * EACH + WORST would pass it
    assert info.value.status_code == 402
    assert info.value.body["code"] == "insufficient_credits"
    assert "spend limit of 0.3018 USD is reached" in info.value.body["message"]
    _, unlimited = make_key(owner=user, rpm_limit=1000, rpd_limit=1000)
    assert ask(gateway, unlimited, paid_model).choices
    limited.refresh_from_db()
    assert limited.spend_used == 2 * EACH
    assert UsageRecord.objects.filter(key=limited).count() == 2  # the refused request was not recorded


def test_spend_recorded_before_the_key_was_loaded_counts(gateway, paid_model, make_user, make_key):
    user = funded_user(make_user)
    key, raw = make_key(owner=user, spend_limit=Decimal(1))
    ApiKey.objects.filter(pk=key.pk).update(spend_used=Decimal("0.8"))
    with pytest.raises(openai.APIStatusError) as info:
        ask(gateway, raw, paid_model)  # up to 0.30 more: over 1 USD
    assert info.value.status_code == 402
    assert ask(gateway, raw, paid_model, max_tokens=100).choices  # up to 0.03 more: within it
    settled(key, 1)
    key.refresh_from_db()
    assert key.spend_used == Decimal("0.8") + EACH


async def test_a_key_change_while_requests_run_does_not_forget_their_spend(
    gateway, upstream, make_user, make_key, tmp_path
):
    """Three slow requests hold 0.90 of a 1.00 limit; a change reloads the key; a fourth must still be refused."""
    import asyncio

    import aiohttp
    from django.db import transaction

    from portal.accounts import notify

    provider, slow = unique("spend-slow"), unique("spend-slow")
    models = [{"id": slow, "owned_by": "test", "input_usd_per_mtok": "0", "output_usd_per_mtok": str(OUTPUT_PRICE),
               "routes": [{"provider": provider, "upstream_model": "slow-first-byte:1.5"}]}]  # fmt: skip
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "first_byte_timeout": 10.0}]
    catalog_import(path=write_catalog(tmp_path / "slow.toml", providers, models))
    key, raw = make_key(owner=funded_user(make_user), spend_limit=Decimal(1), rpm_limit=1000, rpd_limit=1000)
    body = {"model": slow, "max_tokens": 1000, "messages": [{"role": "user", "content": "hello there"}]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {raw}"}) as session:

        async def one() -> int:
            async with session.post(f"{gateway.base_url}/chat/completions", json=body) as response:
                await response.read()
                return response.status

        running = [asyncio.ensure_future(one()) for _ in range(3)]
        await asyncio.sleep(0.5)  # all three are waiting on the upstream now
        with transaction.atomic():
            notify.key_changed(key.pk)  # what any edit of the key does: every gateway reloads it
        late = await one()
        assert sorted(await asyncio.gather(*running)) == [200, 200, 200]
    assert late == 402


async def test_a_spend_limit_holds_across_two_gateway_processes(
    gateway, second_gateway, upstream, make_user, make_key, tmp_path
):
    """Twelve slow requests at once, split over two processes, on a 1.00 USD limit with 0.30 worst cases:
    exactly three get through, whichever process they reach."""
    import asyncio
    from collections import Counter

    import aiohttp

    provider, slow = unique("spend2"), unique("spend2-slow")
    models = [{"id": slow, "owned_by": "test", "input_usd_per_mtok": "0", "output_usd_per_mtok": str(OUTPUT_PRICE),
               "routes": [{"provider": provider, "upstream_model": "slow-first-byte:1.0"}]}]  # fmt: skip
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "first_byte_timeout": 10.0}]
    catalog_import(path=write_catalog(tmp_path / "slow2.toml", providers, models))
    _, raw = make_key(
        owner=funded_user(make_user, "50"), spend_limit=Decimal(1), rpm_limit=1000, rpd_limit=1000
    )
    body = {"model": slow, "max_tokens": 1000, "messages": [{"role": "user", "content": "hello there"}]}
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {raw}"}) as session:

        async def one(url: str) -> int:
            async with session.post(f"{url}/chat/completions", json=body) as response:
                await response.read()
                return response.status

        statuses = await asyncio.gather(*(one(gw.base_url) for gw in [gateway, second_gateway] * 6))
    assert Counter(statuses) == {200: 3, 402: 9}
