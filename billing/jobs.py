"""The periodic jobs' logic (Celery tasks in billing/tasks.py only call these). Each is idempotent."""

import logging
from datetime import UTC, datetime, timedelta
from decimal import Decimal

from django.db import connection, transaction
from django.db.models import Count, Sum
from django.db.models.functions import Coalesce, TruncDate
from django.utils import timezone

from billing.models import Account, DailyUsage, Hold, LedgerEntry, ReconcileRun, UsageRecord
from billing.services import hold_release
from portal.accounts import notify
from portal.accounts.models import ApiKey

log = logging.getLogger("billing.jobs")
ZERO = Decimal(0)
# The token counts a rollup sums from its records, under the same names on both models.
ROLLED_UP_TOKENS = (
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens",
)  # fmt: skip


def usage_aggregate(*, days: int = 2) -> int:
    """Rebuild the DailyUsage rows of the last ``days`` UTC days from the usage records.

    Recomputing whole days (instead of adding increments) is what makes it safe to run twice or at once: the
    same records always give the same rows. Returns the number of rows written.
    """
    since = timezone.now().date() - timedelta(days=days - 1)
    start = datetime.combine(since, datetime.min.time(), tzinfo=UTC)
    rows = (
        UsageRecord.objects.filter(created_at__gte=start)
        .annotate(day=TruncDate("created_at"))
        .values("user_id", "key_id", "model_id", "endpoint", "day")
        .annotate(requests=Count("pk"), cost=Coalesce(Sum("cost"), ZERO))
        .annotate(**{name: Coalesce(Sum(name), 0) for name in ROLLED_UP_TOKENS})
    )
    written = 0
    with transaction.atomic():
        for row in rows:
            sums: dict[str, object] = dict(row)
            DailyUsage.objects.update_or_create(
                user_id=row["user_id"], key_id=row["key_id"], model_id=row["model_id"],
                endpoint=row["endpoint"], day=row["day"],
                defaults={name: sums[name] for name in ("requests", "cost", *ROLLED_UP_TOKENS)},
            )  # fmt: skip
            written += 1
    return written


def period_start(reset: str, now: datetime) -> datetime | None:
    """The start of the spend period that ``now`` is in, for a key's reset rule (None: never resets)."""
    day = datetime.combine(now.date(), datetime.min.time(), tzinfo=UTC)
    if reset == ApiKey.SpendReset.DAILY:
        return day
    if reset == ApiKey.SpendReset.WEEKLY:
        return day - timedelta(days=now.weekday())
    if reset == ApiKey.SpendReset.MONTHLY:
        return day.replace(day=1)
    return None


def quotas_reset(*, now: datetime | None = None) -> int:
    """Zero the spend counters of keys whose period has rolled over. Twice in a row changes nothing."""
    now = now or timezone.now()
    reset = 0
    for rule in (ApiKey.SpendReset.DAILY, ApiKey.SpendReset.WEEKLY, ApiKey.SpendReset.MONTHLY):
        start = period_start(rule, now)
        with transaction.atomic():
            due = ApiKey.objects.filter(spend_reset=rule, spend_period_start__lt=start)
            ids = list(due.select_for_update().values_list("pk", flat=True))
            reset += ApiKey.objects.filter(pk__in=ids).update(spend_used=0, spend_period_start=start)
            for key_id in ids:
                notify.key_changed(key_id)  # a key held back by its limit is served again at once
    return reset


def holds_release_stale(*, now: datetime | None = None) -> int:
    """Return the slices of credit whose gateway stopped renewing them (it crashed)."""
    now = now or timezone.now()
    released = 0
    for hold_id in Hold.objects.filter(expires_at__lt=now).values_list("pk", flat=True):
        with transaction.atomic():
            released += hold_release(hold_id=hold_id)
    if released:
        log.warning("released %d stale credit holds", released)
    return released


def ledger_reconcile() -> ReconcileRun:
    """Prove, per account, that the cached balance equals the ledger sum, the cached held amount equals the
    open holds, and the usage costs equal the usage debits. Any drift is logged loudly and kept for the admin.

    Every sum and balance is read from one snapshot of the database. Settlement writes a batch's usage records,
    debits, balances and slices in one transaction, and taking a slice moves an account's held amount and its
    hold together; reads that each saw the database at a different moment would catch those writes half done
    and report drift that is not there. The run's row is written once the read-only snapshot is over.
    """
    outermost = not connection.in_atomic_block
    with transaction.atomic():
        _snapshot_begin(outermost=outermost)
        checked, drift = _books_compare()
    run = ReconcileRun.objects.create(ok=not drift, accounts_checked=checked, drift=drift)
    if drift:
        log.error("LEDGER DRIFT in %d places: %s", len(drift), drift[:20])
    return run


def _snapshot_begin(*, outermost: bool) -> None:
    """Make the transaction just begun read one snapshot from its first statement to its last.

    PostgreSQL's default, READ COMMITTED, takes a new snapshot for every statement; REPEATABLE READ keeps the
    first one, and READ ONLY makes sure nothing is written from that old snapshot (nor can such a transaction
    fail to serialize). Only a transaction's first statement can set its level, so inside a caller's
    transaction, already under way, the caller's level stands. A SQLite transaction reads one snapshot already.
    """
    if connection.vendor != "postgresql" or not outermost:
        return
    with connection.cursor() as cursor:
        cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ READ ONLY")


def _books_compare() -> tuple[int, list[dict]]:
    """(accounts checked, drift found): each account's cached amounts against the rows they summarise."""
    ledger = dict(
        LedgerEntry.objects.values("account_id").annotate(s=Sum("amount")).values_list("account_id", "s")
    )
    holds = dict(Hold.objects.values("account_id").annotate(s=Sum("amount")).values_list("account_id", "s"))
    debits = dict(
        LedgerEntry.objects.filter(kind=LedgerEntry.Kind.USAGE).values("account__user_id").annotate(
            s=Sum("amount")).values_list("account__user_id", "s")
    )  # fmt: skip
    costs = dict(UsageRecord.objects.values("user_id").annotate(s=Sum("cost")).values_list("user_id", "s"))
    drift, checked = [], 0
    for account in Account.objects.only("id", "user_id", "balance", "held").iterator():
        checked += 1
        problems = {
            "balance": (account.balance, ledger.get(account.id) or ZERO),
            "held": (account.held, holds.get(account.id) or ZERO),
            "usage": (costs.get(account.user_id) or ZERO, -(debits.get(account.user_id) or ZERO)),
        }
        for what, (cached, truth) in problems.items():
            if cached != truth:
                drift.append(
                    {"account": account.id, "what": what, "cached": str(cached), "truth": str(truth)}
                )
    return checked, drift
