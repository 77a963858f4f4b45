"""Server-side render time of the dashboard pages for one user with 100,000 usage records.

This measures; it asserts nothing about time. It prints a table and writes it to
test-artifacts/render-times.txt: the median of several renders through Django's test client, and the number
of SQL queries each page made. The rows are written inside the test's transaction and vanish with it.
"""

import statistics
import time
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from billing.jobs import usage_aggregate
from billing.models import Account, LedgerEntry, UsageRecord
from portal.accounts.services import key_create

ROWS = 100_000
DAYS = 90
RUNS = 5


def bulk_history(user, keys, models) -> None:
    """ROWS paid requests over DAYS days, each with its ledger debit, as the gateway's settlement writes them."""
    account = Account.objects.get(user=user)
    now, usage, ledger = timezone.now(), [], []
    LedgerEntry.objects.create(account=account, kind="grant", amount=Decimal(1000), memo="bulk",
                               created_at=now - timedelta(days=DAYS + 1))  # fmt: skip
    for i in range(ROWS):
        rid, cost = uuid.uuid4(), Decimal("0.000123") + Decimal(i % 97) / 1_000_000
        when = now - timedelta(seconds=(ROWS - i) * DAYS * 86_400 // ROWS)
        usage.append(UsageRecord(request_id=rid, user=user, key=keys[i % len(keys)], model=models[i % len(models)],
                                 prompt_tokens=100 + i % 500, completion_tokens=200 + i % 700, cost=cost,
                                 status=200 if i % 50 else 429, latency_ms=200 + i % 900, created_at=when))  # fmt: skip
        ledger.append(
            LedgerEntry(account=account, kind="usage", amount=-cost, request_id=rid, created_at=when)
        )
    UsageRecord.objects.bulk_create(usage, batch_size=5000)
    LedgerEntry.objects.bulk_create(ledger, batch_size=5000)
    Account.objects.filter(pk=account.pk).update(balance=Decimal(1000) - sum(u.cost for u in usage))
    usage_aggregate(days=DAYS + 1)
    with connection.cursor() as cursor:  # fresh rows: give the planner real statistics, as autovacuum would
        for table in ("billing_usagerecord", "billing_ledgerentry", "billing_dailyusage"):
            cursor.execute(f"ANALYZE {table}")


def measure(client, path: str) -> tuple[float, int, float, int]:
    """Median milliseconds over RUNS renders (after one warm-up), the query count, the slowest query's
    milliseconds, and the body size."""

    def render():
        response = client.get(path)
        assert response.status_code == 200, path
        return b"".join(response.streaming_content) if response.streaming else response.content

    render()
    times = []
    for _ in range(RUNS):
        start = time.perf_counter()
        render()
        times.append((time.perf_counter() - start) * 1000)
    with CaptureQueriesContext(connection) as queries:
        body = render()
    slowest = max((float(q["time"]) * 1000 for q in queries.captured_queries), default=0.0)
    return statistics.median(times), len(queries), slowest, len(body)


@pytest.mark.django_db
@pytest.mark.timeout(600)
def test_render_times_with_100k_usage_rows(user, client_of, models, artifacts):
    keys = [key_create(owner=user, name=f"key-{n}")[0] for n in range(3)]
    start = time.perf_counter()
    bulk_history(user, keys, [models["free"], models["paid"]])
    setup_s = time.perf_counter() - start
    assert UsageRecord.objects.filter(user=user).count() == ROWS

    client = client_of(user)
    today = timezone.now().date()
    paths = [
        "/dashboard",
        "/usage",
        "/usage?page=40",
        f"/usage?key={keys[1].pk}&model={models['paid'].name}",
        f"/usage?since={today - timedelta(days=DAYS)}&until={today}",
        f"/usage/export.csv?since={today - timedelta(days=6)}&until={today}",
        "/billing",
        "/billing?page=2000",
        "/keys",
        "/docs",
        "/models",
    ]
    lines = [f"Render times, one user with {ROWS:,} usage records and {ROWS:,} ledger entries over {DAYS} days",
             f"(median of {RUNS} renders through Django's test client; PostgreSQL; setup took {setup_s:.0f} s)", "",
             f"{'page':<58} {'ms':>7} {'queries':>8} {'slowest q':>10} {'KiB':>6}"]  # fmt: skip
    for path in paths:
        ms, queries, slowest, size = measure(client, path)
        lines.append(f"{path:<58} {ms:>7.1f} {queries:>8} {slowest:>8.1f}ms {size / 1024:>6.0f}")
    report = "\n".join(lines)
    print("\n" + report)
    (artifacts / "render-times.txt").write_text(report + "\n")
