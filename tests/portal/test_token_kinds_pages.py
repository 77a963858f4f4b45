"""Cached, cache-write and reasoning tokens where people look: the usage table, a request's page, the CSV, what
caching saved on the dashboard, and the cache prices and request fee on the public models page."""

import re
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from billing.selectors import CSV_HEADER, cache_saving_get
from portal.accounts.services import key_create
from proxy.catalog.models import Model, Provider, Route
from tests.conftest import unique
from tests.portal.test_usage_pages import csv_rows

pytestmark = pytest.mark.django_db


@pytest.fixture
def cached_model(db):
    """A model priced like Anthropic's: reads at a tenth of the input, writes dearer, and a fee per request."""
    provider = Provider.objects.create(name=unique("prov"), base_url="http://127.0.0.1:9/v1")
    model = Model.objects.create(
        name=unique("claude-like"), owned_by="acme", input_usd_per_mtok=Decimal(3), output_usd_per_mtok=Decimal(15),
        cached_input_usd_per_mtok=Decimal("0.30"), cache_write_usd_per_mtok=Decimal("3.75"),
        cache_write_1h_usd_per_mtok=Decimal(6), request_usd=Decimal("0.01"),
    )  # fmt: skip
    Route.objects.create(model=model, provider=provider, upstream_model="claude")
    return model


def _row_of(body: str, text: str) -> str:
    return re.search(rf"<tr>(?:(?!</tr>).)*{re.escape(text)}.*?</tr>", body, re.S).group(0)


# --- the usage table, a request's page and the CSV -----------------------------------------------------------


def test_the_usage_table_shows_cached_and_reasoning_tokens_only_where_there_are_some(
    user, client_of, models, add_usage
):
    key, _ = key_create(owner=user, name="k")
    add_usage(user, key=key, model=models["paid"], prompt_tokens=1500, completion_tokens=300, cache_read_tokens=1200,
              reasoning_tokens=250)  # fmt: skip
    add_usage(user, key=key, model=models["paid"], prompt_tokens=77, completion_tokens=5, ago=1)
    body = client_of(user).get("/usage").content.decode()
    cached = _row_of(body, "1,500 / 300")
    assert "1,200 cached</span>" in cached and "250 reasoning</span>" in cached
    plain = _row_of(body, "77 / 5")
    assert "cached" not in plain and "reasoning" not in plain and "u-kinds" not in plain

    add_usage(
        user, key=key, model=models["free"], prompt_tokens=9, completion_tokens=40, reasoning_tokens=31, ago=2
    )
    row = _row_of(client_of(user).get("/usage").content.decode(), "9 / 40")
    assert "31 reasoning</span>" in row and "cached" not in row and " · " not in row


def test_a_requests_page_shows_its_cache_buckets_and_its_reasoning(user, client_of, models, add_usage):
    key, _ = key_create(owner=user, name="k")
    record = add_usage(user, key=key, model=models["paid"], prompt_tokens=2000, completion_tokens=90,
                       cache_read_tokens=1200, cache_write_tokens=300, cache_write_1h_tokens=100,
                       reasoning_tokens=64)[0]  # fmt: skip
    body = client_of(user).get(f"/usage/{record.request_id}").content.decode()
    assert "1,200 read · 300 written (5 min) · 100 written (1 h)" in body
    assert re.search(r"Of the output, reasoning</th><td>64<", body)
    plain = add_usage(user, key=key, model=models["paid"], prompt_tokens=5, completion_tokens=5)[0]
    assert "reasoning" not in client_of(user).get(f"/usage/{plain.request_id}").content.decode()


def test_the_csv_has_a_column_per_token_kind_after_the_columns_it_had(user, client_of, models, add_usage):
    key, _ = key_create(owner=user, name="k")
    add_usage(user, key=key, model=models["paid"], prompt_tokens=2000, completion_tokens=90, cache_read_tokens=1200,
              cache_write_tokens=300, cache_write_1h_tokens=100, reasoning_tokens=64)  # fmt: skip
    add_usage(user, key=key, model=models["free"], ago=1)
    assert CSV_HEADER[:13] == [
        "time_utc", "request_id", "model", "key_name", "key_prefix", "prompt_tokens", "completion_tokens",
        "cost_usd", "latency_ms", "status", "error_code", "streamed", "endpoint",
    ]  # fmt: skip
    assert CSV_HEADER[13:] == [
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
    ]
    cached, plain = csv_rows(client_of(user).get("/usage/export.csv"))
    kinds = (
        "prompt_tokens",
        "cache_read_tokens",
        "cache_write_tokens",
        "cache_write_1h_tokens",
        "reasoning_tokens",
    )
    assert [cached[k] for k in kinds] == ["2000", "1200", "300", "100", "64"]
    assert [plain[k] for k in kinds] == ["10", "0", "0", "0", "0"]


# --- what caching saved --------------------------------------------------------------------------------------


def test_the_dashboard_shows_what_caching_saved_this_month_at_the_models_prices(
    user, other_user, client_of, models, cached_model, add_usage
):
    key, _ = key_create(owner=user, name="k")
    today = timezone.now().date()
    # Two requests reading 500,000 cached tokens each, writing 200,000 for 5 minutes and 100,000 for an hour.
    add_usage(user, key=key, model=cached_model, n=2, prompt_tokens=600_000, cache_read_tokens=500_000,
              cache_write_tokens=100_000)  # fmt: skip
    add_usage(user, key=key, model=cached_model, prompt_tokens=100_000, cache_write_1h_tokens=100_000)
    # Reads at a model without cache prices save nothing; last month's and another user's are not counted.
    add_usage(user, key=key, model=models["paid"], prompt_tokens=9_000, cache_read_tokens=9_000)
    add_usage(user, key=key, model=cached_model, prompt_tokens=10**6, cache_read_tokens=10**6, ago=today.day)
    theirs, _ = key_create(owner=other_user, name="theirs")
    add_usage(other_user, key=theirs, model=cached_model, prompt_tokens=10**6, cache_read_tokens=10**6)

    saving = cache_saving_get(user=user, since=today.replace(day=1), until=today)
    # 1,000,000 x (3 - 0.30) + 200,000 x (3 - 3.75) + 100,000 x (3 - 6), per million: 2.70 - 0.15 - 0.30
    assert saving is not None and saving.saved == Decimal("2.25") and saving.cache_read_tokens == 1_009_000
    body = client_of(user).get("/dashboard").content.decode()
    month = re.search(r"This month</p>.*?</div>", body, re.S).group(0)
    assert '<span class="saving">$2.25</span> saved by caching' in month
    assert "title=\"1,009,000 input tokens read from the provider's cache" in month


def test_no_saving_shows_without_cache_reads_and_writes_that_cost_more_say_so(
    user, client_of, models, cached_model, add_usage
):
    key, _ = key_create(owner=user, name="k")
    today = timezone.now().date()
    add_usage(user, key=key, model=cached_model, prompt_tokens=10**6, cache_write_tokens=10**6)
    assert (
        cache_saving_get(user=user, since=today.replace(day=1), until=today) is None
    )  # writes, no reads yet
    assert "by caching" not in client_of(user).get("/dashboard").content.decode()

    add_usage(user, key=key, model=cached_model, prompt_tokens=100_000, cache_read_tokens=100_000)
    saving = cache_saving_get(user=user, since=today.replace(day=1), until=today)
    assert saving.saved == Decimal(
        "-0.48"
    )  # 100,000 x 2.70 saved, 1,000,000 x 0.75 paid above the input price
    assert "Caching cost $0.48 more than it saved" in client_of(user).get("/dashboard").content.decode()


def test_the_saving_uses_the_rollups_so_it_counts_what_the_last_rollup_saw(
    user, models, cached_model, add_usage
):
    key, _ = key_create(owner=user, name="k")
    today = timezone.now().date()
    add_usage(user, key=key, model=cached_model, cache_read_tokens=10, prompt_tokens=10, rollup=False)
    assert cache_saving_get(user=user, since=today - timedelta(days=1), until=today) is None
    add_usage(user, key=key, model=cached_model, cache_read_tokens=10, prompt_tokens=10)
    saving = cache_saving_get(user=user, since=today - timedelta(days=1), until=today)
    assert saving.cache_read_tokens == 20 and saving.saved == Decimal("0.000054")  # 20 x 2.70 per million


# --- the models page -----------------------------------------------------------------------------------------


def test_the_models_page_shows_the_cache_prices_and_the_fee_where_they_differ_from_the_defaults(
    models, cached_model
):
    Model.objects.filter(pk=models["paid"].pk).update(cached_input_usd_per_mtok=Decimal("0.075"))
    body = Client().get("/models").content.decode()
    row = _row_of(body, cached_model.name)
    assert re.search(r'data-label="Input / 1M"><span>\$3<span class="sub"[^>]*>cached \$0.30</span>', row)
    assert ">cache write $3.75</span>" in row and ">1-hour write $6</span>" in row
    assert re.search(
        r'data-label="Output / 1M"><span>\$15<span class="sub"[^>]*>\+ \$0.01 per request</span>', row
    )
    paid = _row_of(body, models["paid"].name)
    assert ">cached $0.075</span>" in paid  # no trailing zeros
    for default in ("cache write", "1-hour write", "per request"):  # unset, or set to what it defaults to
        assert default not in paid, default
    free = _row_of(body, models["free"].name)
    assert "cached" not in free and ">Free<" in free
