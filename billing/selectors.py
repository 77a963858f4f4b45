"""Reads about money and usage, shaped for the dashboard. No writes here (those are in services.py).

Totals and charts read the DailyUsage rollups (rebuilt every minute by ``aggregate_usage``), so a page costs a
few dozen rows however busy the account is. Lists of single requests read UsageRecord through its
(user, -created_at, -request_id) index, newest first; the usage page's pages start at the right day by the
rollups' counts (see ``UsageRecordPages``).
"""

from collections.abc import Iterator
from dataclasses import dataclass, replace
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal

from django.db.models import (
    Count,
    DecimalField,
    ExpressionWrapper,
    F,
    Q,
    QuerySet,
    RowRange,
    Subquery,
    Sum,
    Window,
)
from django.db.models.functions import Coalesce

from billing.models import MONEY, Account, DailyUsage, LedgerEntry, UsageRecord
from billing.pricing import usage_cost
from billing.usage import Usage
from portal.accounts.models import User
from proxy.catalog.models import Model

ZERO = Decimal(0)
MONEY_FIELD = DecimalField(**MONEY)


@dataclass(frozen=True, slots=True)
class UsageDay:
    day: date
    requests: int
    cost: Decimal


@dataclass(frozen=True, slots=True)
class UsageFilter:
    """What the usage page and its CSV export show: a closed range of UTC days, optionally one key, model or
    endpoint (a billing.models.Endpoint)."""

    since: date
    until: date
    key_id: int | None = None
    model_id: int | None = None
    endpoint: str | None = None

    @property
    def start(self) -> datetime:
        return datetime.combine(self.since, time.min, tzinfo=UTC)

    @property
    def end(self) -> datetime:
        return day_end(self.until)


def day_end(day: date) -> datetime:
    """The first instant after a UTC day: a request made exactly at midnight belongs to the next day, as in the
    rollups (``TruncDate`` in UTC)."""
    return datetime.combine(day + timedelta(days=1), time.min, tzinfo=UTC)


def account_get(*, user: User) -> Account:
    account, _ = Account.objects.get_or_create(user=user)
    return account


def _daily(
    *,
    user: User,
    since: date,
    until: date,
    key_id: int | None = None,
    model_id: int | None = None,
    endpoint: str | None = None,
):
    rows = DailyUsage.objects.filter(user=user, day__gte=since, day__lte=until)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if model_id is not None:
        rows = rows.filter(model_id=model_id)
    if endpoint is not None:
        rows = rows.filter(endpoint=endpoint)
    return rows


def usage_days_list(
    *,
    user: User,
    since: date,
    until: date,
    key_id: int | None = None,
    model_id: int | None = None,
    endpoint: str | None = None,
) -> list[UsageDay]:
    """One entry per day from ``since`` to ``until``, zeros included, so a chart's x axis is continuous."""
    rows = (
        _daily(user=user, since=since, until=until, key_id=key_id, model_id=model_id, endpoint=endpoint)
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
class CacheSaving:
    """What the provider's cache changed on the bill over a range of days; see ``cache_saving_get``."""

    cache_read_tokens: int
    saved: Decimal

    @property
    def extra_cost(self) -> Decimal:
        """What caching cost beyond what it saved, when the writes cost more than the reads saved."""
        return max(-self.saved, ZERO)


def cache_saving_get(*, user: User, since: date, until: date) -> CacheSaving | None:
    """What caching saved between two UTC days (inclusive), or None when nothing was read from a cache.

    Saved = what the cached input (reads and writes) would have cost at the model's input price, minus what
    it cost at the cache's own prices. Reads are usually far cheaper than input and writes dearer, so this is
    what the reads saved net of the extra the writes cost; it is negative when the writes cost more than the
    reads saved. Priced from the rollups with each model's current price sheet (a price changed during the
    range prices the whole range), so it is an estimate of the saving, not a second bill.
    """
    rows = list(
        _daily(user=user, since=since, until=until).values("model_id")
        .annotate(read=Sum("cache_read_tokens"), write_5m=Sum("cache_write_tokens"),
                  write_1h=Sum("cache_write_1h_tokens"))
        .filter(Q(read__gt=0) | Q(write_5m__gt=0) | Q(write_1h__gt=0))
        .values_list("model_id", "read", "write_5m", "write_1h")
    )  # fmt: skip
    if not any(read for _, read, _, _ in rows):
        return None
    prices = {model.pk: model.prices for model in Model.objects.filter(pk__in=[row[0] for row in rows])}
    saved, read_total = ZERO, 0
    for model_id, read, write_5m, write_1h in rows:
        sheet = prices[model_id]
        cached = Usage(cache_read=read, cache_write_5m=write_5m, cache_write_1h=write_1h)
        # The fee per request is in both costs, so it cancels out.
        saved += usage_cost(Usage(input=cached.prompt), sheet) - usage_cost(cached, sheet)
        read_total += read
    return CacheSaving(read_total, saved)


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
    "request_id", "created_at", "prompt_tokens", "completion_tokens", "cache_read_tokens", "reasoning_tokens",
    "tokens_estimated", "cost", "status", "error_code", "latency_ms", "streamed", "endpoint", "model__name",
    "key__name", "key__prefix",
]  # fmt: skip
# The request id breaks ties between requests settled in the same microsecond, so every page of a list is cut
# at the same place however often it is read; the (user, -created_at, -request_id) index holds this order.
NEWEST_FIRST = ("-created_at", "-request_id")
# How long after a UTC day ends its rollup counts as final: ``aggregate_usage`` rebuilds the last two days
# every minute, so by then it has seen the requests of the day's last seconds, settled just after midnight.
ROLLUP_SETTLED = timedelta(minutes=5)


def _records(*, user: User, usage_filter: UsageFilter) -> QuerySet[UsageRecord]:
    rows = UsageRecord.objects.filter(
        user=user, created_at__gte=usage_filter.start, created_at__lt=usage_filter.end
    )
    if usage_filter.key_id is not None:
        rows = rows.filter(key_id=usage_filter.key_id)
    if usage_filter.model_id is not None:
        rows = rows.filter(model_id=usage_filter.model_id)
    # No index of its own: the filter is rare, and the (user, -created_at) index already narrows it to the range.
    if usage_filter.endpoint is not None:
        rows = rows.filter(endpoint=usage_filter.endpoint)
    return rows


def _table(rows: QuerySet[UsageRecord]) -> QuerySet[UsageRecord]:
    """Newest first, with the model's and key's names joined in; only the columns a table of requests shows."""
    return rows.select_related("model", "key").only(*TABLE_FIELDS).order_by(*NEWEST_FIRST)


def usage_records_filter(*, user: User, usage_filter: UsageFilter) -> QuerySet[UsageRecord]:
    """The requests in the filter, newest first, as a table of requests shows them."""
    return _table(_records(user=user, usage_filter=usage_filter))


@dataclass(frozen=True, slots=True)
class UsageSpan:
    """``requests`` of the filter's requests were made before ``end`` and at or after the next span's end."""

    end: datetime
    requests: int


def usage_spans(
    *, user: User, usage_filter: UsageFilter, days: list[UsageDay], now: datetime
) -> list[UsageSpan]:
    """The filter's requests counted by span, newest first, without counting a month of rows one by one.

    Days whose rollup is final come from ``days`` (``usage_days_list`` of the same filter, already read for the
    chart), one span each; the rest (today, and yesterday for a few minutes after midnight) form one span
    counted from the records themselves, so requests too recent for the last rollup still count."""
    live_since = max((now - ROLLUP_SETTLED).date(), usage_filter.since)
    spans = []
    if live_since <= usage_filter.until:
        live = _records(user=user, usage_filter=replace(usage_filter, since=live_since))
        spans.append(UsageSpan(usage_filter.end, live.count()))
    spans += [UsageSpan(day_end(d.day), d.requests) for d in reversed(days) if d.day < live_since]
    return spans


def span_seek(spans: list[UsageSpan], offset: int) -> tuple[datetime, int] | None:
    """Where the ``offset``-th newest request is (0 the newest): the end of its span and how many requests made
    before that end are newer than it. None past the oldest."""
    for span in spans:
        if offset < span.requests:
            return span.end, offset
        offset -= span.requests
    return None


@dataclass(frozen=True, slots=True)
class UsageRecordPages:
    """The filter's requests, newest first, as Django's Paginator reads a list: ``count()`` and slices.

    With OFFSET alone, the last page of a month of a busy account (333,000 requests at scale) walks every row
    before it: 2.6 s. A slice here starts at the span (day) its first request is in, known from the counts, and
    skips only the newer requests of that span; those are skipped in the index alone (the ids are picked
    first, then 50 rows are read), which is an index-only scan once vacuum has marked the day's pages."""

    user: User
    usage_filter: UsageFilter
    spans: list[UsageSpan]

    def count(self) -> int:
        return sum(span.requests for span in self.spans)

    def __len__(self) -> int:
        return self.count()

    def __getitem__(self, index: slice) -> list[UsageRecord]:
        start, stop, _ = index.indices(self.count())
        seek = span_seek(self.spans, start)
        if seek is None or stop <= start:
            return []
        end, skip = seek
        rows = _records(user=self.user, usage_filter=self.usage_filter).filter(created_at__lt=end)
        ids = rows.order_by(*NEWEST_FIRST).values("pk")[skip : skip + stop - start]
        return list(_table(UsageRecord.objects.filter(pk__in=ids)))


def usage_record_pages(
    *, user: User, usage_filter: UsageFilter, days: list[UsageDay], now: datetime
) -> UsageRecordPages:
    """The requests in the filter for a Paginator; ``days`` is ``usage_days_list`` of the same filter."""
    return UsageRecordPages(
        user, usage_filter, usage_spans(user=user, usage_filter=usage_filter, days=days, now=now)
    )


def usage_recent_list(*, user: User, limit: int = 8) -> list[UsageRecord]:
    return list(
        UsageRecord.objects.filter(user=user).select_related("model", "key").order_by("-created_at")[:limit]
    )


# The token kinds come last, so a reader of the columns that were there before finds them where they were.
# Cache tokens are parts of prompt_tokens, reasoning tokens a part of completion_tokens.
CSV_HEADER = [
    "time_utc", "request_id", "model", "key_name", "key_prefix", "prompt_tokens", "completion_tokens",
    "cost_usd", "latency_ms", "status", "error_code", "streamed", "endpoint", "cache_read_tokens",
    "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
]  # fmt: skip


def usage_csv_rows(*, user: User, usage_filter: UsageFilter, chunk_size: int = 2000) -> Iterator[list]:
    """The filtered requests as CSV rows, read in chunks through a server-side cursor: memory stays flat."""
    rows = usage_records_filter(user=user, usage_filter=usage_filter).values_list(
        "created_at", "request_id", "model__name", "key__name", "key__prefix", "prompt_tokens",
        "completion_tokens", "cost", "latency_ms", "status", "error_code", "streamed", "endpoint",
        "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens",
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
        endpoint,
        *token_kinds,
    ) in rows.iterator(chunk_size=chunk_size):
        yield [
            created.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"), rid, model, key_name or "", prefix or "",
            prompt, completion, f"{cost.normalize():f}", latency, status, code, "yes" if streamed else "no",
            endpoint, *token_kinds,
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


# A request the provider failed: a 5xx for the client, or a stream that broke after it began (the client got a
# 200 and an error event; the record keeps the error code). The client's own 4xx mistakes don't count.
PROVIDER_FAILED = Q(status__gte=500) | Q(status__lt=400, error_code__gt="")


@dataclass(frozen=True)
class ErrorRate:
    requests: int
    errors: int

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0


def provider_error_rates(*, since: datetime) -> dict[int, ErrorRate]:
    """Per provider id: requests and provider failures (``PROVIDER_FAILED``) in the usage records since ``since``.

    Circuit breakers live in each gateway process's memory, so the database can't show them; this is the
    closest shared signal. Only a request's final route is recorded, so failovers that then succeeded
    elsewhere do not count against the provider that failed first.
    """
    rows = (
        UsageRecord.objects.filter(created_at__gte=since, provider__isnull=False)
        .values("provider_id")
        .annotate(n=Count("pk"), failed=Count("pk", filter=PROVIDER_FAILED))
    )
    return {row["provider_id"]: ErrorRate(row["n"], row["failed"]) for row in rows}
