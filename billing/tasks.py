"""Celery tasks. Each is thin and calls a service; each is safe to run twice or at the same time."""

from celery import shared_task


@shared_task
def aggregate_usage() -> None:
    """Roll UsageRecords into DailyUsage (filled in by the credits issue)."""


@shared_task
def reset_daily_quotas() -> None:
    """Reset per-key daily spend counters at 00:00 UTC."""


@shared_task
def release_stale_holds() -> None:
    """Return holds left behind by a crashed gateway process."""


@shared_task
def reconcile_ledger() -> None:
    """Prove balances equal ledger sums."""
