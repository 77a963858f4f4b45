"""Celery tasks: thin wrappers over billing/jobs.py. Each is safe to run twice or concurrently."""

from celery import shared_task

from billing import jobs


@shared_task
def aggregate_usage() -> int:
    """Every minute: roll usage records into DailyUsage."""
    return jobs.usage_aggregate()


@shared_task
def reset_daily_quotas() -> int:
    """00:00 UTC: reset per-key spend counters whose period has rolled over (Redis day windows expire alone)."""
    return jobs.quotas_reset()


@shared_task
def release_stale_holds() -> int:
    """Every minute: return credit held by gateway processes that died."""
    return jobs.holds_release_stale()


@shared_task
def reconcile_ledger() -> bool:
    """Hourly: check balances against the ledger; drift is logged and shown in the admin."""
    return jobs.ledger_reconcile().ok
