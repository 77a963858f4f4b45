"""The dashboard in a real headless Chromium against a live gateway process: a new customer's whole journey.

Sign up, land on the empty dashboard, mint a key, call the API with it through the openai SDK, see the request
on the usage page and the dashboard chart, redeem a code, revoke the key and watch the SDK get refused.
Screenshots of every page at desktop and phone widths go to test-artifacts/screenshots/.
"""

import csv
import io
import time
import uuid
from datetime import timedelta
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect, sync_playwright

from tests.conftest import unique, write_catalog

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
    "--disable-sync", "--no-first-run",
]  # fmt: skip
WIDTHS = [(1280, 800), (390, 844)]
PASSWORD = "correct-horse-battery-staple-9"
SAMPLE_MODELS = [  # realistic names and prices, served by the fake upstream, so pages look like production
    {"id": "deepseek-chat", "owned_by": "deepseek", "input_usd_per_mtok": "0.27", "output_usd_per_mtok": "1.10",
     "cached_input_usd_per_mtok": "0.07", "context_length": 65536, "description": "General chat model"},
    {"id": "gpt-4o-mini", "owned_by": "openai", "input_usd_per_mtok": "0.15", "output_usd_per_mtok": "0.60",
     "cached_input_usd_per_mtok": "0.075", "context_length": 128000, "description": "Small, fast and cheap"},
    {"id": "llama-3.1-8b-instruct", "owned_by": "meta", "input_usd_per_mtok": "0", "output_usd_per_mtok": "0",
     "context_length": 131072, "description": "Open-weights model, free to call"},
    {"id": "claude-sonnet-4", "owned_by": "anthropic", "input_usd_per_mtok": "3", "output_usd_per_mtok": "15",
     "cached_input_usd_per_mtok": "0.30", "cache_write_usd_per_mtok": "3.75", "cache_write_1h_usd_per_mtok": "6",
     "context_length": 200000, "description": "Reasoning and long context, with prompt caching"},
    {"id": "sonar", "owned_by": "perplexity", "input_usd_per_mtok": "1", "output_usd_per_mtok": "1",
     "request_usd": "0.005", "context_length": 127072, "description": "Answers grounded in a web search"},
]  # fmt: skip


@pytest.fixture(scope="module")
def sample_catalog(live_database, upstream, tmp_path_factory):
    from proxy.catalog.importer import catalog_import

    provider = unique("sample")
    models = [{**m, "routes": [{"provider": provider, "upstream_model": "echo"}]} for m in SAMPLE_MODELS]
    providers = [
        {"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY"}
    ]
    path = tmp_path_factory.mktemp("sample") / "catalog.toml"
    catalog_import(path=write_catalog(path, providers, models))
    return [m["id"] for m in SAMPLE_MODELS]


@pytest.fixture
def browser_page(artifacts):
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        context = browser.new_context(viewport={"width": 1280, "height": 800})
        page = context.new_page()
        page.set_default_timeout(15_000)
        try:
            yield page
        finally:
            context.close()
            browser.close()


def shoot(page: Page, artifacts: Path, name: str) -> None:
    """Full-page screenshots at a desktop and a phone width. The page is not reloaded between them."""
    folder = artifacts / "screenshots"
    folder.mkdir(exist_ok=True)
    for width, height in WIDTHS:
        page.set_viewport_size({"width": width, "height": height})
        page.screenshot(path=folder / f"{name}-{width}.png", full_page=True)
        overflow = page.evaluate(
            "document.documentElement.scrollWidth - document.documentElement.clientWidth"
        )
        assert overflow <= 0, f"{name} scrolls sideways at {width} px"
    page.set_viewport_size({"width": WIDTHS[0][0], "height": WIDTHS[0][1]})


def sdk(gateway, raw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.url + "/v1", api_key=raw, max_retries=0, timeout=15)


def wait_for_usage(key_id: int, count: int) -> None:
    """Settlement is batched every few milliseconds in the gateway process; wait for the rows to land."""
    from billing.models import UsageRecord

    deadline = time.monotonic() + 15
    while UsageRecord.objects.filter(key_id=key_id).count() < count:
        assert time.monotonic() < deadline, "the gateway did not record the request"
        time.sleep(0.1)


def sample_usage(model, i: int, ago: int):
    """One request's tokens: a long prompt, mostly read from the provider's cache on two requests in three
    where the model prices cached input apart (an agent resending its instructions), and some reasoning."""
    from billing.usage import Usage

    prompt, completion = 2000 + 37 * i, 400 + 53 * ((ago + i) % 9)
    cached = 16_384 if model.prices.cached_input != model.prices.input and i % 3 else 0
    return Usage(
        input=prompt, cache_read=cached, output=completion, reasoning=completion // 3 if i % 4 == 1 else 0
    )


def seed_history(user, keys: list, model_names: list[str]) -> None:
    """A month of earlier traffic, written through the same settlement path as live requests (usage records,
    ledger debits and the balance together, oldest first), so the charts have history and the books balance.
    A few requests of this morning make sure this month has cache reads, on its first day too."""
    from billing.models import Account, LedgerEntry
    from billing.pricing import usage_cost
    from billing.services import credits_grant
    from billing.settlement import Finished, write_batch
    from proxy.catalog.models import Model

    account, now = Account.objects.get(user=user), timezone.now()
    morning = now.replace(hour=8, minute=0, second=0, microsecond=0)  # each day's traffic within that UTC day
    grant = credits_grant(account=account, amount=Decimal(25), reason="Welcome credit", actor=None)
    LedgerEntry.objects.filter(pk=grant.pk).update(created_at=now - timedelta(days=30))  # history starts here
    models = {m.name: m for m in Model.objects.filter(name__in=model_names)}
    batch = []
    times = [
        (ago, i, morning - timedelta(days=ago) + timedelta(minutes=23 * i))
        for ago in range(29, 0, -1) for i in range((ago * 7) % 11 + 3 + (29 - ago) // 3)
    ] + [(0, i, now - timedelta(minutes=2 * i)) for i in (1, 5)]  # two models with cache prices  # fmt: skip
    for ago, i, when in times:
        model = models[model_names[(ago + i) % len(model_names)]]
        usage = sample_usage(model, i, ago)
        batch.append(Finished(
            request_id=uuid.uuid4(), user_id=user.pk, account_id=account.pk, hold_id=None,
            key_id=keys[i % len(keys)].pk, model_id=model.pk, provider_id=None, prompt_tokens=usage.prompt,
            completion_tokens=usage.output, cache_read_tokens=usage.cache_read, reasoning_tokens=usage.reasoning,
            tokens_estimated=False, cost=usage_cost(usage, model.prices), status=200 if i % 13 else 429,
            error_code="" if i % 13 else "rate_limit_exceeded", latency_ms=300 + 41 * i, ttft_ms=None,
            streamed=bool(i % 2), finish_reason="stop", client_disconnected=False, created_at=when,
        ))  # fmt: skip
    write_batch(batch, [], retry=False, touch_keys=set())


def log_in(page: Page, url: str, email: str) -> None:
    page.goto(url + "/login")
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Log in").click()
    expect(page).to_have_url(url + "/dashboard")


@pytest.mark.timeout(300)
def test_a_customer_signs_up_makes_a_call_redeems_a_code_and_revokes_the_key(
    gateway, catalog, sample_catalog, live_db, browser_page, artifacts
):
    from billing.jobs import usage_aggregate
    from billing.services import codes_generate
    from portal.accounts.models import ApiKey, User

    page, url = browser_page, gateway.url

    # Public pages.
    page.goto(url + "/")
    expect(page.get_by_role("heading", level=1)).to_contain_text("one key and one base URL")
    shoot(page, artifacts, "landing")
    page.get_by_role("link", name="Models", exact=True).first.click()
    expect(page.get_by_text("gpt-4o-mini")).to_be_visible()
    claude = page.get_by_test_id("models").locator("tr", has_text="claude-sonnet-4")
    expect(claude).to_contain_text("cached $0.30")
    expect(claude).to_contain_text("cache write $3.75")
    expect(page.get_by_test_id("models").locator("tr", has_text="sonar")).to_contain_text(
        "+ $0.005 per request"
    )
    shoot(page, artifacts, "models")
    page.goto(url + "/docs")
    shoot(page, artifacts, "docs")

    # Sign up: a bad password first, then a good one; land on the empty dashboard.
    email = f"{unique('journey')}@example.com"
    page.goto(url + "/")
    page.get_by_role("link", name="Sign up").first.click()
    page.get_by_label("Email").fill(email)
    page.get_by_label("Password").fill("12345678")
    page.get_by_role("button", name="Create account").click()
    expect(page.get_by_text("This password is too common.")).to_be_visible()
    page.get_by_label("Password").fill(PASSWORD)
    page.get_by_role("button", name="Create account").click()
    expect(page).to_have_url(url + "/dashboard")
    expect(page.get_by_text("Make your first API call in two minutes")).to_be_visible()
    shoot(page, artifacts, "dashboard-empty")
    user = User.objects.get(email=email)

    # Create a key and read it from the copy button's target.
    page.get_by_role("link", name="Create your first API key").click()
    page.get_by_label("Name").fill("laptop")
    page.get_by_role("button", name="Create key").click()
    target = page.get_by_role("button", name="Copy key").get_attribute("data-copy-target")
    button = page.locator(f'button[data-copy-target="{target}"]')  # its name changes to "Copied" on click
    raw = page.locator("#" + target).inner_text().strip()
    key = ApiKey.objects.get(owner=user)
    assert raw.startswith(key.prefix) and len(raw) == 46
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=url)
    button.click()
    expect(button).to_contain_text("Copied")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    shoot(page, artifacts, "keys-new-key")
    page.reload()
    assert raw not in page.content()  # shown once

    # Call the API with it through the official SDK.
    reply = sdk(gateway, raw).chat.completions.create(
        model=catalog["echo"], messages=[{"role": "user", "content": "hello from the browser test"}]
    )
    assert reply.choices[0].message.content
    wait_for_usage(key.pk, 1)
    usage_aggregate()

    page.goto(url + "/usage")
    table = page.get_by_test_id("usage-table")
    expect(table).to_contain_text(catalog["echo"])
    expect(table).to_contain_text("laptop")
    expect(page.locator(".chart-total").first).to_have_text("1")
    with page.expect_download() as download:
        page.get_by_role("link", name="Export CSV").click()
    rows = list(csv.DictReader(io.StringIO(Path(download.value.path()).read_text())))
    assert [r["model"] for r in rows] == [catalog["echo"]] and rows[0]["key_prefix"] == key.prefix
    assert {"cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens"} <= set(
        rows[0]
    )

    page.get_by_role("link", name="Dashboard").click()
    bars = page.get_by_test_id("requests-chart").locator("rect.chart-bar")
    expect(bars).to_have_count(30)
    assert float(bars.nth(29).get_attribute("height")) > 0  # today's bar
    expect(page.locator(".stat-value").nth(1)).to_contain_text("1")  # requests today

    # Redeem a code: the balance and the ledger show it.
    code = codes_generate(amount=Decimal(5), count=1, batch=unique("e2e"), actor=None)[0].code
    page.get_by_role("link", name="Billing").click()
    page.get_by_label("Redemption code").fill(code.lower())
    page.get_by_role("button", name="Redeem").click()
    expect(page.get_by_text("$5.00 added to your balance")).to_be_visible()
    expect(page.get_by_test_id("balance")).to_have_text("$5.00")
    expect(page.get_by_test_id("ledger")).to_contain_text("Redemption code")
    expect(page.get_by_test_id("ledger")).to_contain_text("+$5.00")

    shoot(page, artifacts, "billing-first-credit")

    # Revoke the key: confirm, then the SDK is refused at once.
    page.get_by_role("link", name="API keys").click()
    page.get_by_role("link", name="Revoke laptop").click()
    expect(page.get_by_role("heading", level=2)).to_contain_text("Revoke “laptop”")
    shoot(page, artifacts, "key-revoke")
    page.get_by_role("button", name="Revoke key").click()
    expect(page.get_by_text("is revoked")).to_be_visible()
    with pytest.raises(openai.AuthenticationError):
        sdk(gateway, raw).chat.completions.create(
            model=catalog["echo"], messages=[{"role": "user", "content": "still there?"}]
        )

    page.reload()
    assert raw not in page.content()

    # Log out and back in.
    page.get_by_role("button", name="Log out").click()
    expect(page).to_have_url(url + "/")
    page.goto(url + "/login")
    shoot(page, artifacts, "login")
    log_in(page, url, email)


@pytest.mark.timeout(300)
def test_an_established_customers_pages_with_a_month_of_history(
    gateway, catalog, sample_catalog, live_db, browser_page, artifacts
):
    """A customer with two keys, credits and a month of traffic: the pages as a paying customer sees them."""
    from billing.jobs import usage_aggregate
    from billing.models import UsageRecord
    from billing.selectors import cache_saving_get
    from billing.services import code_redeem, codes_generate, customer_create
    from portal.accounts.services import key_create, key_revoke
    from portal.templatetags.money import usd_cents

    page, url = browser_page, gateway.url
    email = f"dana.{uuid.uuid4().hex[:6]}@acme-robotics.example"
    user = customer_create(email=email, password=PASSWORD)
    production, raw = key_create(owner=user, name="production")
    staging, _ = key_create(owner=user, name="staging", allowed_models=["gpt-4o-mini", "llama-3.1-8b-instruct"],
                            spend_limit=Decimal(5), spend_reset="monthly")  # fmt: skip
    old, _ = key_create(owner=user, name="old-laptop")
    seed_history(user, [production, staging], sample_catalog)
    key_revoke(key=old)
    code_redeem(
        user=user, code=codes_generate(amount=Decimal(10), count=1, batch=unique("e2e"), actor=None)[0].code
    )
    before = UsageRecord.objects.filter(key=production).count()
    client = sdk(gateway, raw)
    for i in range(4):
        client.chat.completions.create(
            model=sample_catalog[i % 2],
            messages=[{"role": "user", "content": f"question {i} " * 30}],
            max_tokens=60,
        )
    for _ in client.chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "stream please"}], stream=True
    ):
        pass
    wait_for_usage(production.pk, before + 5)
    usage_aggregate(days=31)

    log_in(page, url, email)
    expect(page.get_by_test_id("spend-chart")).to_be_visible()
    today = timezone.now().date()
    saving = cache_saving_get(user=user, since=today.replace(day=1), until=today)
    expect(page.get_by_test_id("cache-saving")).to_have_text(f"{usd_cents(saving.saved)} saved by caching")
    shoot(page, artifacts, "dashboard-data")
    page.goto(url + "/usage")
    expect(page.get_by_test_id("usage-table")).to_contain_text("gpt-4o-mini")
    expect(page.get_by_test_id("usage-table")).to_contain_text("16,384 cached")
    shoot(page, artifacts, "usage")
    cached = UsageRecord.objects.filter(user=user, cache_read_tokens__gt=0, reasoning_tokens__gt=0).first()
    page.goto(url + f"/usage/{cached.request_id}")
    expect(page.get_by_test_id("usage-detail")).to_contain_text("Of the output, reasoning")
    shoot(page, artifacts, "usage-detail")
    page.goto(url + "/billing")
    expect(page.get_by_test_id("ledger")).to_contain_text("Redemption code")
    shoot(page, artifacts, "billing")
    page.goto(url + "/keys")
    shoot(page, artifacts, "keys")
    page.get_by_text("New key").click()
    page.get_by_role("button", name="Create key").click()  # no name: the form says what to fix
    expect(page.get_by_text("Give the key a name")).to_be_visible()
    shoot(page, artifacts, "keys-form-error")
    page.goto(url + f"/docs?key={production.pk}")
    expect(page.locator("#ex-python")).to_contain_text(production.prefix + "...")
    assert raw not in page.content()
    shoot(page, artifacts, "docs-signed-in")
    page.goto(url + "/models")
    shoot(page, artifacts, "models-signed-in")
    page.goto(url + "/account")
    shoot(page, artifacts, "account")


@pytest.fixture(scope="module")
def card_gateway(live_database, catalog, artifacts):
    """A gateway with card payments configured (no payment is taken: the test stops before Stripe)."""
    from django.conf import settings

    from tests.conftest import database_url
    from tests.live import start_gateway

    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123",
                       STRIPE_SECRET_KEY="sk_test_dummy", STRIPE_WEBHOOK_SECRET="whsec_test_dummy")  # fmt: skip
    yield gw
    gw.stop()


def test_buying_credits_offers_presets_and_explains_an_amount_it_does_not_sell(
    card_gateway, live_db, browser_page, artifacts
):
    from billing.services import customer_create

    page, url = browser_page, card_gateway.url
    email = f"{unique('buyer')}@example.com"
    customer_create(email=email, password=PASSWORD)
    log_in(page, url, email)
    page.get_by_role("link", name="Billing").click()
    expect(page.get_by_role("radio", name="$25")).to_be_checked()
    shoot(page, artifacts, "billing-buy")
    page.get_by_label("Other amount in USD").fill("2")  # typing an amount picks "Other amount"
    expect(page.get_by_role("radio", name="Other amount")).to_be_checked()
    page.get_by_role("button", name="Continue to payment").click()
    expect(page.get_by_text("Buy between 5 and 10000 USD of credits at a time")).to_be_visible()
    expect(page).to_have_url(url + "/billing/checkout")
