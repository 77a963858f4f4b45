"""Reconciliation under live paid traffic: it reads one snapshot of the books, so a settlement that commits
while it reads is seen whole or not at all, and only real drift is reported.

Settlement here is the real ``write_batch``, fed the way a gateway feeds it: each round takes a credit hold
per account (``hold_take``), settles requests from it, and now and then hands the hold back. Every committed
state of these books balances exactly, so any drift a run reports on them is a torn read or a seeded lie.
"""

import threading
import uuid
from contextlib import contextmanager
from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import connection
from django.db.models import F
from django.utils import timezone

from billing import jobs
from billing.credits import hold_take
from billing.models import Account
from billing.services import account_for, credits_grant
from billing.settlement import Finished, write_batch
from portal.accounts.services import key_create
from proxy.catalog.models import Model
from tests.reliability.books import drift_of

ACCOUNTS = 6
COST = Decimal("0.001")
PER_ACCOUNT = 5  # requests per account in each settled batch
HISTORY = 3000  # requests already settled per account: sums worth reading make reconcile take a while
RUNS = 30


@pytest.fixture
def books(make_user, catalog) -> list[tuple]:
    """(key, account id, model id) for funded accounts that already have a long settled history."""
    model_id = Model.objects.get(name=catalog["echo"]).pk
    out = []
    for _ in range(ACCOUNTS):
        user = make_user()
        account = account_for(user=user)
        credits_grant(account=account, amount=Decimal(1000), reason="test funds", actor=None)
        key, _ = key_create(owner=user, name="recon")
        out.append((key, account.pk))
    history = [finished(key, model_id, account_id, None) for key, account_id in out for _ in range(HISTORY)]
    write_batch(history, [], retry=False, touch_keys=set())
    return [(key, account_id, model_id) for key, account_id in out]


def finished(key, model_id: int, account_id: int, hold_id: int | None) -> Finished:
    return Finished(
        request_id=uuid.uuid4(), user_id=key.owner_id, account_id=account_id, hold_id=hold_id, key_id=key.pk,
        model_id=model_id, provider_id=None, prompt_tokens=10, completion_tokens=20, tokens_estimated=False,
        cost=COST, status=200, error_code="", latency_ms=5, ttft_ms=None, streamed=False, finish_reason="stop",
        client_disconnected=False, created_at=timezone.now(),
    )  # fmt: skip


class Settling:
    """Paid traffic on ``books`` from a thread of its own (with its own database connection)."""

    def __init__(self, books: list[tuple]) -> None:
        self.books = books
        self.batches = 0
        self.errors: list[BaseException] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="settling", daemon=True)

    def _run(self) -> None:
        holds: dict[int, int | None] = {account_id: None for _, account_id, _ in self.books}
        try:
            while not self._stop.is_set():
                self._round(holds)
            write_batch([], [h for h in holds.values() if h], retry=False, touch_keys=set())
        except BaseException as exc:  # reported by the test, not lost with the thread
            self.errors.append(exc)
        finally:
            connection.close()

    def _round(self, holds: dict[int, int | None]) -> None:
        """Reserve a batch's worth from each account's hold, then settle it; every fourth batch also hands
        the holds back, as idle holds go back in a gateway."""
        expires = timezone.now() + timedelta(minutes=10)
        want = COST * PER_ACCOUNT
        for account_id, hold_id in holds.items():
            holds[account_id], taken, _ = hold_take(
                account_id=account_id, hold_id=hold_id, want=want, minimum=want, owner="test-recon",
                expires_at=expires,
            )  # fmt: skip
            assert taken == want
        batch = [
            finished(key, model_id, account_id, holds[account_id])
            for key, account_id, model_id in self.books
            for _ in range(PER_ACCOUNT)
        ]
        releases = [h for h in holds.values() if h] if self.batches % 4 == 3 else []
        write_batch(batch, releases, retry=False, touch_keys=set())
        if releases:
            holds.update(dict.fromkeys(holds))
        self.batches += 1

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(60)
        assert not self._thread.is_alive(), "the settling thread did not stop"
        assert not self.errors, self.errors


@contextmanager
def settling(books: list[tuple]):
    traffic = Settling(books)
    traffic.start()
    try:
        yield traffic
    finally:
        traffic.stop()


def test_reconcile_under_live_settlement_reports_no_drift(books):
    ours = {account_id for _, account_id, _ in books}
    with settling(books) as traffic:
        before = traffic.batches
        runs = [drift_of(jobs.ledger_reconcile(), ours) for _ in range(RUNS)]
        settled_meanwhile = traffic.batches - before
    assert settled_meanwhile > 0  # the runs really did race settlement
    torn = [drift for drift in runs if drift]
    assert not torn, f"{len(torn)} of {RUNS} runs found drift in balanced books, the first: {torn[0]}"
    assert drift_of(jobs.ledger_reconcile(), ours) == []  # and the traffic itself kept the books exact


def test_seeded_drift_is_found_exactly_under_live_settlement(books):
    ours = {account_id for _, account_id, _ in books}
    lying = books[0][1]
    with settling(books) as traffic:
        Account.objects.filter(pk=lying).update(balance=F("balance") + 1)  # credit with no ledger entry
        runs = [drift_of(jobs.ledger_reconcile(), ours) for _ in range(RUNS // 3)]
        assert traffic.batches > 0
    for drift in runs:
        assert [(d["account"], d["what"]) for d in drift] == [(lying, "balance")]
        assert Decimal(drift[0]["cached"]) - Decimal(drift[0]["truth"]) == 1  # the lie, not a torn read
    Account.objects.filter(pk=lying).update(balance=F("balance") - 1)
    assert drift_of(jobs.ledger_reconcile(), ours) == []
