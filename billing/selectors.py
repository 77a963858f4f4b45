"""Reads about money and usage, shaped for the dashboard. No writes here (those are in services.py).

Totals and charts read the DailyUsage rollups (rebuilt every minute by ``aggregate_usage``), so a page costs a
few dozen rows however busy the account is. Lists of single requests read UsageRecord through its
(user, -created_at) index, newest first.
"""

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import DecimalField, ExpressionWrapper, F, QuerySet, RowRange, Subquery, Sum, Window
from django.db.models.functions import Coalesce

from billing.models import MONEY, Account, DailyUsage, LedgerEntry, UsageRecord
from portal.models import User

ZERO = Decimal(0)
MONEY_FIELD = DecimalField(**MONEY)


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    requests: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What the usage page and its CSV export show: a closed range of UTC days, optionally one key or model."""

    since: date
    until: date
    key_id: int | None = None
    model_id: int | None = None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return datetime.combine(self.until + timedelta(days=1), time.min, tzinfo=UTC)


def account_get(*, user: User) -> Account:
    account, _ = Account.objects.get_or_create(user=user)
    return account


def _daily(*, user: User, since: date, until: date, key_id: int | None = None, model_id: int | None = None):
    rows = DailyUsage.objects.filter(user=user, day__gte=since, day__lte=until)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if model_id is not None:
        rows = rows.filter(model_id=model_id)
    return rows


def usage_days_list(
    *, user: User, since: date, until: date, key_id: int | None = None, model_id: int | None = None
) -> list[UsageDay]:
    """One entry per day from ``since`` to ``until``, zeros included, so a chart's x axis is continuous."""
    rows = (
        _daily(user=user, since=since, until=until, key_id=key_id, model_id=model_id)
        .values("day")
        .annotate(n=Sum("requests"), spent=Sum("cost"))
    )
    by_day = {row["day"]: (row["n"], row["spent"]) for row in rows}
    days = []
    day = since
    while day <= until:
        n, spent = by_day.get(day, (0, ZERO))
        days.append(UsageDay(day, n, spent))
        day += timedelta(days=1)
    return days


@dataclass(frozen=True, slots=True)
class UsageOverview:
    """The dashboard's numbers, from one read of the rollups: the last 30 days, today, and this month."""

    days: list[UsageDay]
    today: UsageDay
    month_requests: int
    month_cost: Decimal


def usage_overview_get(*, user: User, today: date) -> UsageOverview:
    # 31 days cover both the 30-day chart and the month so far (a month starts at most 30 days ago).
    days = usage_days_list(user=user, since=today - timedelta(days=30), until=today)
    month = [d for d in days if d.day >= today.replace(day=1)]
    return UsageOverview(
        days=days[1:],
        today=days[-1],
        month_requests=sum(d.requests for d in month),
        month_cost=sum((d.cost for d in month), ZERO),
    )


TABLE_FIELDS = [
    "request_id", "created_at", "prompt_tokens", "completion_tokens", "tokens_estimated", "cost", "status",
    "error_code", "latency_ms", "streamed", "model__name", "key__name", "key__prefix",
]  # fmt: skip


def usage_records_filter(*, user: User, usage_filter: UsageFilter) -> QuerySet[UsageRecord]:
    """The requests in the filter, newest first (served by the (user, -created_at) index), with the model's
    and key's names joined in; only the columns a table of requests shows."""
    rows = UsageRecord.objects.filter(
        user=user, created_at__gte=usage_filter.start, created_at__lt=usage_filter.end
    )
    if usage_filter.key_id is not None:
        rows = rows.filter(key_id=usage_filter.key_id)
    if usage_filter.model_id is not None:
        rows = rows.filter(model_id=usage_filter.model_id)
    return rows.select_related("model", "key").only(*TABLE_FIELDS).order_by("-created_at")


def usage_records_count(*, user: User, usage_filter: UsageFilter, days: list[UsageDay], today: date) -> int:
    """How many requests the filter holds, without counting a month of rows one by one: closed days come from
    the rollups (``days``, already read for the chart), today from the records themselves, so requests too
    recent for the last rollup still count. At scale (a million records for one user) this keeps the usage
    page's pagination from scanning hundreds of thousands of rows."""
    closed = sum(d.requests for d in days if d.day < today)
    if usage_filter.until < today:
        return closed
    todays = UsageFilter(max(today, usage_filter.since), usage_filter.until, usage_filter.key_id,
                         usage_filter.model_id)  # fmt: skip
    return closed + usage_records_filter(user=user, usage_filter=todays).order_by().count()


def usage_recent_list(*, user: User, limit: int = 8) -> list[UsageRecord]:
    return list(
        UsageRecord.objects.filter(user=user).select_related("model", "key").order_by("-created_at")[:limit]
    )


CSV_HEADER = [
    "time_utc", "request_id", "model", "key_name", "key_prefix", "prompt_tokens", "completion_tokens",
    "cost_usd", "latency_ms", "status", "error_code", "streamed",
]  # fmt: skip


def usage_csv_rows(*, user: User, usage_filter: UsageFilter, chunk_size: int = 2000) -> Iterator[list]:
    """The filtered requests as CSV rows, read in chunks through a server-side cursor: memory stays flat."""
    rows = usage_records_filter(user=user, usage_filter=usage_filter).values_list(
        "created_at", "request_id", "model__name", "key__name", "key__prefix", "prompt_tokens",
        "completion_tokens", "cost", "latency_ms", "status", "error_code", "streamed",
    )  # fmt: skip
    for (
        created,
        rid,
        model,
        key_name,
        prefix,
        prompt,
        completion,
        cost,
        latency,
        status,
        code,
        streamed,
    ) in rows.iterator(chunk_size=chunk_size):
        yield [
            created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), rid, model, key_name or "", prefix or "",
            prompt, completion, f"{cost.normalize():f}", latency, status, code, "yes" if streamed else "no",
        ]  # fmt: skip


def ledger_list(*, user: User) -> QuerySet[LedgerEntry]:
    """The account's ledger, newest first, each row with ``running_balance``: the balance just after it.

    The running balance is SUM(amount) OVER (ORDER BY id): the ledger is append-only and ids only grow, so
    the order of ids is the order in which money moved. Computed that way, every page would sum the whole
    history first (measured: ~200 ms at 100,000 entries). The same number, counted from the newest end, is
    the balance minus the entries after this one: ``balance - SUM(amount) OVER (ORDER BY id DESC ROWS
    BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING)``, which PostgreSQL evaluates while walking the
    (account, id) index backwards and stops at the page's LIMIT. The cached balance moves in the same
    transaction as every ledger insert, so in one statement's snapshot it equals the ledger sum
    (``reconcile_ledger`` proves that hourly).
    """
    account = account_get(user=user)
    balance = Subquery(Account.objects.filter(pk=account.pk).values("balance")[:1])
    after = Window(Sum("amount"), order_by=F("id").desc(), frame=RowRange(start=None, end=-1))
    return (
        LedgerEntry.objects.filter(account=account)
        .annotate(
            running_balance=ExpressionWrapper(balance - Coalesce(after, ZERO), output_field=MONEY_FIELD)
        )
        .order_by("-id")
    )
