"""The usage page (filters, chart, paginated table), its streamed CSV export, and the dashboard's numbers."""

import csv
import io
import re
from collections import Counter
from datetime import timedelta
from decimal import Decimal

import pytest
from django.utils import timezone

from billing.services import account_for, credits_grant
from portal.accounts.services import key_create

pytestmark = pytest.mark.django_db


def csv_rows(response) -> list[dict]:
    assert response.streaming
    text = b"".join(response.streaming_content).decode()
    return list(csv.DictReader(io.StringIO(text)))


@pytest.fixture
def traffic(user, models, add_usage):
    """Two keys, two models, today and 10 days ago."""
    a, _ = key_create(owner=user, name="key-a")
    b, _ = key_create(owner=user, name="key-b")
    add_usage(user, key=a, model=models["free"], n=3, rollup=False)
    add_usage(user, key=b, model=models["paid"], n=2, cost="0.015", rollup=False)
    add_usage(user, key=a, model=models["paid"], n=4, cost="0.001", ago=10, status=502)
    return {"a": a, "b": b}


def test_the_dashboard_of_a_new_account_leads_to_creating_a_key(user, client_of):
    body = client_of(user).get("/dashboard").content.decode()
    assert "Make your first API call" in body and 'href="/keys"' in body
    assert "No requests in the last 30 days" in body and "No active key" in body


def test_the_dashboard_shows_balance_today_month_limits_chart_and_recent(user, client_of, traffic, models):
    credits_grant(account=account_for(user=user), amount=Decimal("12.5"), reason="test", actor=None)
    body = client_of(user).get("/dashboard").content.decode()
    assert "$12.50" in body
    today = re.search(r"Today</p>\s*<p class=\"stat-value\">(\d+)", body).group(1)
    assert today == "5"
    assert "$0.03 spent" in body  # 2 x 0.015
    assert '<p class="quota-key" title="The active key with the most requests today">key-a ' in body  # 3 vs 2
    assert "20 / 20" in body and "50 / 50" in body  # nothing counted by the limiter in these tests
    svg = re.search(r'data-testid="requests-chart">(<svg.*?</svg>)', body, re.S).group(1)
    assert svg.count('class="chart-bar"') == 30
    assert "Make your first API call" not in body
    assert body.count(models["paid"].name) >= 2  # in the recent requests table


def test_the_usage_page_lists_filters_and_charts_requests(user, client_of, traffic, models):
    client = client_of(user)
    body = client.get("/usage").content.decode()
    assert "9 requests" in body
    assert body.count('data-label="Model"') == 9
    by_key = client.get(f"/usage?key={traffic['b'].pk}").content.decode()
    assert by_key.count('data-label="Model"') == 2
    by_model = client.get(f"/usage?model={models['paid'].name}").content.decode()
    assert by_model.count('data-label="Model"') == 6
    today = timezone.now().date()
    recent = client.get(f"/usage?since={today.isoformat()}&until={today.isoformat()}").content.decode()
    assert recent.count('data-label="Model"') == 5
    assert ">502<" in body  # failed requests are listed with their status
    assert 'href="/usage/export.csv?model=' in by_model  # the export keeps the filter


def test_bad_filters_say_what_to_fix_and_fall_back_to_the_last_30_days(user, client_of, traffic):
    body = client_of(user).get("/usage?since=2025-02-10&until=2025-01-01&key=999999").content.decode()
    assert "Pick an end date on or after the start date." in body
    assert "Pick one of your keys from the list." in body
    assert "9 requests" in body


def test_the_table_is_paginated(user, client_of, models, add_usage):
    key, _ = key_create(owner=user, name="busy")
    add_usage(user, key=key, model=models["free"], n=120)
    client = client_of(user)
    first = client.get("/usage").content.decode()
    assert "Page 1 of 3" in first and first.count('data-label="Model"') == 50
    last = client.get("/usage?page=3").content.decode()
    assert last.count('data-label="Model"') == 20


def test_csv_export_streams_the_filtered_requests(user, client_of, traffic, models):
    client = client_of(user)
    response = client.get(f"/usage/export.csv?model={models['paid'].name}")
    assert response["Content-Type"].startswith("text/csv")
    assert response["Content-Disposition"].startswith('attachment; filename="usage-')
    rows = csv_rows(response)
    assert len(rows) == 6 and {r["model"] for r in rows} == {models["paid"].name}
    assert {r["cost_usd"] for r in rows} == {"0.015", "0.001"}
    assert {r["key_name"] for r in rows} == {"key-a", "key-b"}
    assert rows[0]["time_utc"] >= rows[-1]["time_utc"]  # newest first
    assert len(csv_rows(client.get("/usage/export.csv"))) == 9


def test_a_second_user_sees_none_of_the_first_users_usage(user, other_user, client_of, traffic, models):
    client = client_of(other_user)
    for path in ["/usage", "/dashboard"]:
        body = client.get(path).content.decode()
        assert "key-a" not in body and traffic["a"].prefix not in body, path
    assert "No requests match these filters" in client.get("/usage").content.decode()
    assert csv_rows(client.get("/usage/export.csv")) == []
    # Naming the first user's key in the filter is refused, not obeyed.
    body = client.get(f"/usage?key={traffic['a'].pk}").content.decode()
    assert "Pick one of your keys" in body
    assert csv_rows(client.get(f"/usage/export.csv?key={traffic['a'].pk}")) == []


def test_usage_rows_of_a_range_end_at_the_end_of_the_last_day(user, client_of, models, add_usage):
    key, _ = key_create(owner=user, name="k")
    add_usage(user, key=key, model=models["free"], n=1, ago=1)
    yesterday = timezone.now().date() - timedelta(days=1)
    rows = csv_rows(client_of(user).get(f"/usage/export.csv?since={yesterday}&until={yesterday}"))
    assert len(rows) == 1


def test_the_overview_counts_the_whole_month_even_on_its_31st_day(user, models):
    from datetime import date

    from billing.models import DailyUsage
    from billing.selectors import usage_overview_get

    key, _ = key_create(owner=user, name="k")
    for day, n in [
        (date(2025, 2, 28), 100),
        (date(2025, 3, 1), 3),
        (date(2025, 3, 15), 4),
        (date(2025, 3, 31), 5),
    ]:
        DailyUsage.objects.create(
            user=user, key=key, model=models["paid"], day=day, requests=n, cost=Decimal(n)
        )
    overview = usage_overview_get(user=user, today=date(2025, 3, 31))
    assert (overview.month_requests, overview.month_cost) == (12, Decimal(12))
    assert (overview.today.requests, overview.today.cost) == (5, Decimal(5))
    assert len(overview.days) == 30 and overview.days[0].day == date(2025, 3, 2)
    assert sum(d.requests for d in overview.days) == 9  # the chart's 30 days start after Mar 1


def test_under_asgi_the_export_is_sent_in_batches_read_from_one_cursor(user, models, add_usage):
    """The ASGI path (an async iterator fed from the request's thread); the browser test downloads through it."""
    from asgiref.sync import async_to_sync

    from billing.selectors import UsageFilter, usage_csv_rows
    from portal.site import views

    key, _ = key_create(owner=user, name="k")
    add_usage(user, key=key, model=models["free"], n=2500, rollup=False)
    today = timezone.now().date()
    rows = usage_csv_rows(
        user=user, usage_filter=UsageFilter(today - timedelta(days=1), today), chunk_size=500
    )

    async def collect():
        return [chunk async for chunk in views._batched_async(views._csv_lines(rows), batch=1000)]

    chunks = async_to_sync(collect)()
    assert len(chunks) == 3  # 2,501 lines in batches of 1,000: never the whole file at once
    assert sum(chunk.count("\r\n") for chunk in chunks) == 2501


@pytest.fixture
def two_endpoints(user, models, add_usage):
    """Chat and embeddings on one key: today, and (through the rollups) 10 days ago."""
    key, _ = key_create(owner=user, name="mixed")
    add_usage(user, key=key, model=models["paid"], n=3, rollup=False)
    add_usage(user, key=key, model=models["paid"], n=2, endpoint="embeddings", rollup=False)
    add_usage(user, key=key, model=models["paid"], n=4, endpoint="embeddings", ago=10)
    return key


def test_the_usage_table_shows_each_requests_endpoint_and_filters_by_it(user, client_of, two_endpoints):
    client = client_of(user)
    body = client.get("/usage").content.decode()
    cells = re.findall(r'data-label="Endpoint"><span class="badge" title="([a-z.]+)">([^<]+)</span>', body)
    assert sorted(set(cells)) == [("chat.completions", "Chat"), ("embeddings", "Embeddings")]
    assert len(cells) == 9 and '<th scope="col">Endpoint</th>' in body
    only = client.get("/usage?endpoint=embeddings").content.decode()
    assert "6 requests" in only and only.count('data-label="Endpoint"') == 6
    assert 'title="chat.completions"' not in only
    # The chart total and the pages' count read the rollups of the same endpoint.
    assert '<span class="chart-total">6</span>' in only
    assert 'href="/usage/export.csv?endpoint=embeddings"' in only


def test_the_endpoint_filter_offers_only_the_endpoints(user, client_of):
    body = client_of(user).get("/usage").content.decode()
    select = re.search(r'<select name="endpoint".*?</select>', body, re.S).group(0)
    options = re.findall(r'<option value="([^"]*)"[^>]*>([^<]+)</option>', select)
    assert options == [
        ("", "All endpoints"), ("chat.completions", "Chat completions"), ("embeddings", "Embeddings"),
        ("completions", "Completions"), ("responses", "Responses"), ("messages", "Messages"),
    ]  # fmt: skip


def test_an_unknown_endpoint_in_the_filter_says_what_to_fix(user, client_of, two_endpoints):
    body = client_of(user).get("/usage?endpoint=/v1/chat/completions").content.decode()
    assert re.search(r'id="id_endpoint_error"><p>Pick an endpoint from the list.</p>', body)
    assert "9 requests" in body  # the page falls back to every request of the last 30 days


def test_csv_export_names_each_requests_endpoint(user, client_of, two_endpoints):
    client = client_of(user)
    rows = csv_rows(client.get("/usage/export.csv"))
    assert Counter(r["endpoint"] for r in rows) == {"chat.completions": 3, "embeddings": 6}
    only = csv_rows(client.get("/usage/export.csv?endpoint=embeddings"))
    assert len(only) == 6 and {r["endpoint"] for r in only} == {"embeddings"}


def test_the_usage_table_reads_the_endpoint_with_its_rows(user, client_of, models, add_usage):
    """The endpoint comes with the table's columns: a page of 50 requests costs the queries of a page of 1."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    key, _ = key_create(owner=user, name="k")
    client = client_of(user)

    def queries() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert client.get("/usage").status_code == 200
        return len(captured)

    add_usage(user, key=key, model=models["free"], n=1, endpoint="completions", rollup=False)
    queries()  # the first visit may set up what later ones reuse
    one = queries()
    add_usage(user, key=key, model=models["free"], n=49, endpoint="completions", rollup=False)
    assert queries() == one
