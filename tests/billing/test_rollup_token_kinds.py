"""The daily rollups keep the kinds of tokens of their records, rebuilding them changes nothing, and the books
balance with costs that have cache parts and a fee per request."""

import uuid
from decimal import Decimal

from django.db import connection
from django.utils import timezone

from billing import jobs
from billing.models import DailyUsage, UsageRecord
from billing.pricing import usage_cost
from billing.services import account_for, credits_grant
from billing.settlement import Finished, write_batch
from billing.usage import Usage
from proxy.catalog.models import Model
from proxy.catalog.prices import Prices

KINDS = ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")


def test_the_rollups_sum_every_kind_of_token_and_a_second_run_changes_nothing(make_key, catalog):
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    account, now = account_for(user=key.owner), timezone.now()

    def finished(**tokens) -> Finished:
        return Finished(
            request_id=uuid.uuid4(), user_id=key.owner_id, account_id=account.pk, hold_id=None, key_id=key.pk,
            model_id=model.pk, provider_id=None, tokens_estimated=False, cost=Decimal(0), status=200,
            error_code="", latency_ms=5, ttft_ms=None, streamed=False, finish_reason="stop",
            client_disconnected=False, created_at=now, **tokens,
        )  # fmt: skip

    write_batch([
        finished(prompt_tokens=1500, completion_tokens=300, cache_read_tokens=1200, cache_write_tokens=200,
                 reasoning_tokens=250),
        finished(prompt_tokens=900, completion_tokens=40, cache_write_tokens=100, cache_write_1h_tokens=700),
        finished(prompt_tokens=10, completion_tokens=1),
    ], [], retry=False, touch_keys=set())  # fmt: skip

    def rollup() -> tuple:
        row = DailyUsage.objects.get(user=key.owner, key=key, model=model, day=now.date())
        return row.requests, row.prompt_tokens, row.completion_tokens, *(getattr(row, kind) for kind in KINDS)

    jobs.usage_aggregate()
    assert rollup() == (3, 2410, 341, 1200, 300, 700, 250)
    jobs.usage_aggregate()
    assert rollup() == (3, 2410, 341, 1200, 300, 700, 250)
    assert DailyUsage.objects.filter(user=key.owner).count() == 1


def test_a_rollup_written_without_the_token_kinds_holds_zeros(make_key, catalog):
    """What the migration does to the rows rolled up before the kinds were counted: the database fills in 0."""
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    with connection.cursor() as cursor:
        cursor.execute(
            f"INSERT INTO {DailyUsage._meta.db_table} (user_id, key_id, model_id, endpoint, day, requests,"
            " prompt_tokens, completion_tokens, cost) VALUES (%s, %s, %s, 'chat.completions', %s, 2, 20, 4, 0)",
            [key.owner_id, key.pk, model.pk, timezone.now().date()],
        )
    row = DailyUsage.objects.get(user=key.owner)
    assert (row.requests, row.prompt_tokens) == (2, 20)
    assert [getattr(row, kind) for kind in KINDS] == [0, 0, 0, 0]


def test_reconciliation_balances_costs_with_cache_parts_and_a_fee(make_key, catalog):
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    account = account_for(user=key.owner)
    credits_grant(account=account, amount=Decimal(5), reason="test", actor=None)
    sheet = Prices.of(input=Decimal(3), output=Decimal(15), cached_input=Decimal("0.3"),
                      cache_write=Decimal("3.75"), cache_write_1h=Decimal(6), request=Decimal("0.002"))  # fmt: skip
    usages = [
        Usage(input=120, cache_read=40_000, cache_write_5m=2_000, output=700, reasoning=300),
        Usage(input=5, cache_write_1h=9_000, output=12),
        Usage(),  # refused before any token: the fee alone
    ]
    batch = [
        Finished(
            request_id=uuid.uuid4(), user_id=key.owner_id, account_id=account.pk, hold_id=None, key_id=key.pk,
            model_id=model.pk, provider_id=None, prompt_tokens=u.prompt, completion_tokens=u.output,
            cache_read_tokens=u.cache_read, cache_write_tokens=u.cache_write_5m,
            cache_write_1h_tokens=u.cache_write_1h, reasoning_tokens=u.reasoning, tokens_estimated=False,
            cost=usage_cost(u, sheet), status=200, error_code="", latency_ms=5, ttft_ms=None, streamed=False,
            finish_reason="stop", client_disconnected=False, created_at=timezone.now(),
        )
        for u in usages
    ]  # fmt: skip
    write_batch(batch, [], retry=False, touch_keys=set())
    # 0.00036 + 0.012 + 0.0075 + 0.0105 + 0.002; 0.000015 + 0.054 + 0.00018 + 0.002; 0.002
    expected = Decimal("0.03236") + Decimal("0.056195") + Decimal("0.002")
    assert sum(UsageRecord.objects.filter(key=key).values_list("cost", flat=True)) == expected
    run = jobs.ledger_reconcile()
    assert [d for d in run.drift if d["account"] == account.pk] == []
    account.refresh_from_db()
    assert account.balance == Decimal(5) - expected
