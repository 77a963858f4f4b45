"""The periodic jobs: each through a real Celery worker once, and each idempotent."""

import os
import signal
import subprocess
import sys
import time
import uuid
from datetime import UTC, datetime, timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.utils import timezone

from billing import jobs, tasks
from billing.models import Account, DailyUsage, Hold, ReconcileRun, UsageRecord
from billing.services import account_for, credits_grant
from portal.accounts.models import ApiKey
from portal.celery import app as celery_app
from proxy.catalog.models import Model
from tests.conftest import database_url
from tests.live import ROOT


@pytest.fixture(scope="module")
def worker(live_database, artifacts):
    env = {**os.environ, "DJANGO_SETTINGS_MODULE": "portal.settings", "DATABASE_URL": database_url(),
           "REDIS_URL": settings.REDIS_URL}  # fmt: skip
    log = (artifacts / "celery-worker.log").open("wb")
    proc = subprocess.Popen(
        [sys.executable, "-m", "celery", "-A", "portal.celery:app", "worker", "--pool", "solo", "--loglevel", "INFO"],
        cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
    )  # fmt: skip
    deadline = time.monotonic() + 90  # a loaded machine can take a while to start a worker
    while not celery_app.control.ping(timeout=1.0):
        assert proc.poll() is None, "the Celery worker exited; see test-artifacts/celery-worker.log"
        assert time.monotonic() < deadline, "the Celery worker did not start within 90 s"
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.wait(20)


def usage(user, key, model, *, cost: str, when: datetime) -> UsageRecord:
    return UsageRecord.objects.create(
        user=user, key=key, model=model, prompt_tokens=10, completion_tokens=5, cost=Decimal(cost), status=200,
        created_at=when,
    )  # fmt: skip


def test_aggregate_usage_through_a_worker_then_again_changes_nothing(worker, make_key, catalog):
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    now = timezone.now()
    for _ in range(3):
        usage(key.owner, key, model, cost="0", when=now)
    assert tasks.aggregate_usage.delay().get(timeout=30) >= 1
    row = DailyUsage.objects.get(user=key.owner, key=key, model=model, day=now.date())
    assert (row.requests, row.prompt_tokens, row.completion_tokens) == (3, 30, 15)
    tasks.aggregate_usage.delay().get(timeout=30)
    again = DailyUsage.objects.get(pk=row.pk)
    assert (again.requests, again.prompt_tokens, again.cost) == (3, 30, row.cost)
    assert DailyUsage.objects.filter(user=key.owner).count() == 1


def test_release_stale_holds_through_a_worker(worker, make_user):
    user = make_user()
    account = account_for(user=user)
    credits_grant(account=account, amount=Decimal("2"), reason="test", actor=None)
    Account.objects.filter(pk=account.pk).update(held=Decimal("0.5"))
    Hold.objects.create(account=account, amount=Decimal("0.5"), owner="dead:1",
                        expires_at=timezone.now() - timedelta(seconds=1))  # fmt: skip
    assert tasks.release_stale_holds.delay().get(timeout=30) >= 1
    account.refresh_from_db()
    assert (account.held, account.balance) == (0, Decimal(2))
    assert not Hold.objects.filter(account=account).exists()
    tasks.release_stale_holds.delay().get(timeout=30)
    account.refresh_from_db()
    assert account.held == 0


def test_reconcile_finds_drift_and_passes_when_clean(worker, make_user):
    """Through the worker. The database is shared by the session, so only this test's accounts are judged."""

    def drift_of(account) -> list[str]:
        return [d["what"] for d in ReconcileRun.objects.first().drift if d["account"] == account.pk]

    clean, lying = (account_for(user=make_user()) for _ in range(2))
    for account in (clean, lying):
        credits_grant(account=account, amount=Decimal("1"), reason="test", actor=None)
    Account.objects.filter(pk=lying.pk).update(balance=Decimal("1.5"))  # a cached sum that lies
    tasks.reconcile_ledger.delay().get(timeout=30)
    assert (drift_of(clean), drift_of(lying)) == ([], ["balance"])
    finding = next(d for d in ReconcileRun.objects.first().drift if d["account"] == lying.pk)
    assert (finding["cached"], finding["truth"]) == ("1.500000000000", "1.000000000000")
    Account.objects.filter(pk=lying.pk).update(balance=Decimal("1"))
    tasks.reconcile_ledger.delay().get(timeout=30)
    assert drift_of(lying) == []


def test_reset_daily_quotas_through_a_worker_is_idempotent(worker, make_key):
    yesterday = timezone.now() - timedelta(days=1)
    key, _ = make_key(spend_limit=Decimal("5"), spend_reset=ApiKey.SpendReset.DAILY)
    never, _ = make_key(spend_limit=Decimal("5"))
    ApiKey.objects.filter(pk__in=[key.pk, never.pk]).update(
        spend_used=Decimal("3"), spend_period_start=yesterday
    )
    tasks.reset_daily_quotas.delay().get(timeout=30)
    key.refresh_from_db()
    never.refresh_from_db()
    assert key.spend_used == 0 and never.spend_used == 3
    start = key.spend_period_start
    tasks.reset_daily_quotas.delay().get(timeout=30)
    key.refresh_from_db()
    assert key.spend_period_start == start and key.spend_used == 0


def test_spend_periods():
    monday = datetime(2030, 1, 7, 15, 0, tzinfo=UTC)  # a Monday
    wednesday = monday + timedelta(days=2)
    assert jobs.period_start("daily", wednesday) == datetime(2030, 1, 9, tzinfo=UTC)
    assert jobs.period_start("weekly", wednesday) == datetime(2030, 1, 7, tzinfo=UTC)
    assert jobs.period_start("monthly", wednesday) == datetime(2030, 1, 1, tzinfo=UTC)
    assert jobs.period_start("never", wednesday) is None


def test_usage_rolls_up_per_endpoint_and_a_second_run_changes_nothing(make_key, catalog):
    from billing.settlement import Finished, write_batch

    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    account = account_for(user=key.owner)
    now = timezone.now()

    def finished(tokens: int, **endpoint) -> Finished:
        return Finished(
            request_id=uuid.uuid4(), user_id=key.owner_id, account_id=account.pk, hold_id=None, key_id=key.pk,
            model_id=model.pk, provider_id=None, prompt_tokens=tokens, completion_tokens=1,
            tokens_estimated=False, cost=Decimal(0), status=200, error_code="", latency_ms=5, ttft_ms=None,
            streamed=False, finish_reason="stop", client_disconnected=False, created_at=now, **endpoint,
        )  # fmt: skip

    batch = [finished(10), finished(20, endpoint="chat.completions")]
    batch += [finished(100, endpoint="embeddings") for _ in range(3)]
    write_batch(batch, [], retry=False, touch_keys=set())

    def rollups() -> dict[str, tuple]:
        rows = DailyUsage.objects.filter(user=key.owner, key=key, model=model, day=now.date())
        return {r.endpoint: (r.requests, r.prompt_tokens, r.completion_tokens) for r in rows}

    jobs.usage_aggregate()
    assert rollups() == {"chat.completions": (2, 30, 2), "embeddings": (3, 300, 3)}
    jobs.usage_aggregate()
    assert rollups() == {"chat.completions": (2, 30, 2), "embeddings": (3, 300, 3)}
    assert DailyUsage.objects.filter(user=key.owner).count() == 2
