"""Reading through the API (DRF's test client): credits, usage rollups, one generation, and the calling key."""

import asyncio
import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.conf import settings
from django.test import override_settings
from django.utils import timezone

from billing.models import DailyUsage, LedgerEntry, UsageRecord
from billing.services import account_for, credits_deduct, credits_grant, ledger_post
from portal.accounts import limits
from portal.accounts.limits import window_usage
from portal.accounts.notify import versions_sync
from portal.accounts.services import key_update
from proxy.catalog.models import Model
from tests.api.conftest import error_of, key_client

# --- credits ---------------------------------------------------------------------------------------------------


def test_credits_show_balance_held_purchased_and_used(caller, owner):
    account = account_for(user=owner)
    credits_grant(account=account, amount=Decimal("10"), reason="start", actor=None)
    credits_deduct(account=account, amount=Decimal("1.5"), reason="correction", actor=None)
    ledger_post(account=account, kind=LedgerEntry.Kind.PURCHASE, amount=Decimal("4"), purchased=True)
    ledger_post(account=account, kind=LedgerEntry.Kind.USAGE, amount=Decimal("-0.25"))
    ledger_post(account=account, kind=LedgerEntry.Kind.USAGE, amount=Decimal("-0.000001"))
    body = caller.get("/api/v1/credits").json()
    assert Decimal(body["balance"]) == Decimal("12.249999")
    assert Decimal(body["held"]) == 0 and Decimal(body["available"]) == Decimal("12.249999")
    assert Decimal(body["total_purchased"]) == 4 and Decimal(body["total_used"]) == Decimal("0.250001")
    assert body["currency"] == "USD" and body["balance"] == "12.249999000000"  # exact, as a string


def test_another_users_money_never_shows(caller, make_user):
    credits_grant(account=account_for(user=make_user()), amount=Decimal(99), reason="theirs", actor=None)
    assert Decimal(caller.get("/api/v1/credits").json()["balance"]) == 0


# --- usage -----------------------------------------------------------------------------------------------------


@pytest.fixture
def usage_rows(owner, make_key, make_user, catalog):
    """Rollups for the owner over three days, two models and two keys, and one row of someone else's."""
    key_a, _ = make_key(owner=owner, name="a")
    key_b, _ = make_key(owner=owner, name="b")
    echo, other = Model.objects.get(name=catalog["echo"]), Model.objects.get(name=catalog["no-usage"])
    today = timezone.now().date()
    for days_ago, key, model, n, cost in [(0, key_a, echo, 3, "0.3"), (0, key_b, other, 1, "1"),
                                          (1, key_a, echo, 2, "0.2"), (40, key_a, echo, 9, "9")]:  # fmt: skip
        DailyUsage.objects.create(
            user=owner, key=key, model=model, day=today - timedelta(days=days_ago), requests=n,
            prompt_tokens=10 * n, completion_tokens=n, cost=Decimal(cost), cache_read_tokens=5 * n,
            cache_write_tokens=2 * n, cache_write_1h_tokens=n, reasoning_tokens=n // 2,
        )  # fmt: skip
    stranger, _ = make_key(owner=make_user())
    DailyUsage.objects.create(user=stranger.owner, key=stranger, model=echo, day=today, requests=100)
    return {"a": key_a, "b": key_b, "echo": echo, "other": other, "today": today, "stranger": stranger}


def test_usage_by_day_covers_the_last_30_days_by_default(caller, usage_rows):
    body = caller.get("/api/v1/usage").json()
    today = usage_rows["today"]
    assert (body["from"], body["to"], body["group_by"]) == (
        str(today - timedelta(days=29)),
        str(today),
        "day",
    )
    assert [(r["day"], r["requests"]) for r in body["data"]] == [
        (str(today - timedelta(days=1)), 2),
        (str(today), 4),
    ]
    assert body["total"]["requests"] == 6 and Decimal(body["total"]["cost"]) == Decimal("1.5")
    assert body["total"]["prompt_tokens"] == 60 and body["total"]["completion_tokens"] == 6


def test_usage_totals_say_how_many_tokens_of_each_kind(caller, usage_rows):
    body = caller.get("/api/v1/usage", {"group_by": "model"}).json()
    kinds = ("cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens", "reasoning_tokens")
    by_model = {r["model"]: tuple(r[k] for k in kinds) for r in body["data"]}
    # echo: 3 requests today and 2 yesterday (1 + 1 reasoning: n // 2 per row); the other model: 1 request.
    assert by_model == {usage_rows["echo"].name: (25, 10, 5, 2), usage_rows["other"].name: (5, 2, 1, 0)}
    assert tuple(body["total"][k] for k in kinds) == (30, 12, 6, 2)
    empty = caller.get("/api/v1/usage", {"endpoint": "messages"}).json()["total"]
    assert tuple(empty[k] for k in kinds) == (0, 0, 0, 0)


def test_usage_by_model_and_by_key_with_filters(caller, usage_rows):
    by_model = caller.get("/api/v1/usage", {"group_by": "model"}).json()["data"]
    assert {r["model"]: r["requests"] for r in by_model} == {
        usage_rows["echo"].name: 5,
        usage_rows["other"].name: 1,
    }
    by_key = caller.get("/api/v1/usage", {"group_by": "key"}).json()["data"]
    a, b = usage_rows["a"], usage_rows["b"]
    assert {r["key"]["id"]: r["requests"] for r in by_key} == {a.pk: 5, b.pk: 1}
    assert {r["key"]["prefix"] for r in by_key} == {a.prefix, b.prefix}
    one_model = caller.get("/api/v1/usage", {"model": usage_rows["other"].name}).json()
    assert one_model["total"]["requests"] == 1
    one_key = caller.get(
        "/api/v1/usage", {"key": a.pk, "from": str(usage_rows["today"] - timedelta(days=60))}
    )
    assert one_key.json()["total"]["requests"] == 14


@pytest.mark.parametrize(
    "query",
    [{"group_by": "week"}, {"group_by": ""}, {"to": ""}, {"model": ""},
     {"from": "yesterday"}, {"from": "2025-02-30"}, {"key": "abc"}, {"key": "0"},
     {"from": "2025-03-02", "to": "2025-03-01"}, {"from": "2023-01-01", "to": "2025-01-01"}],
)  # fmt: skip
def test_bad_usage_queries_are_400s(caller, query):
    answer = caller.get("/api/v1/usage", query)
    assert answer.status_code == 400 and error_of(answer)["code"] == "invalid_request"


def test_usage_of_another_users_key_is_not_found(caller, usage_rows):
    answer = caller.get("/api/v1/usage", {"key": usage_rows["stranger"].pk})
    assert answer.status_code == 404 and error_of(answer)["code"] == "not_found"


# --- one generation --------------------------------------------------------------------------------------------


def test_a_generation_shows_model_provider_tokens_cost_and_timing(caller, owner, make_key, catalog):
    key, _ = make_key(owner=owner)
    model = Model.objects.get(name=catalog["echo"])
    provider = model.routes.get().provider
    record = UsageRecord.objects.create(
        user=owner, key=key, model=model, provider=provider, prompt_tokens=12, completion_tokens=30,
        cost=Decimal("0.000123"), status=200, latency_ms=321, ttft_ms=45, streamed=True, finish_reason="stop",
        cache_read_tokens=6, cache_write_tokens=3, cache_write_1h_tokens=2, reasoning_tokens=11,
        usage_raw={"prompt_tokens": 12, "secret_upstream_field": "x"},
    )  # fmt: skip
    body = caller.get("/api/v1/generation", {"id": str(record.request_id)}).json()
    assert body["id"] == str(record.request_id) and (body["model"], body["provider"]) == (
        model.name,
        provider.name,
    )
    assert (body["prompt_tokens"], body["completion_tokens"], body["total_tokens"]) == (12, 30, 42)
    assert Decimal(body["cost"]) == Decimal("0.000123") and body["key_id"] == key.pk
    assert (body["cache_read_tokens"], body["cache_write_tokens"], body["cache_write_1h_tokens"]) == (6, 3, 2)
    assert body["reasoning_tokens"] == 11
    assert "usage_raw" not in body and "secret_upstream_field" not in str(
        body
    )  # the raw usage is the admin's
    assert (body["latency_ms"], body["ttft_ms"], body["streamed"], body["finish_reason"], body["status"]) == (
        321, 45, True, "stop", 200,
    )  # fmt: skip


def test_another_users_generation_is_not_found_like_a_missing_one(caller, make_key, catalog):
    theirs, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    record = UsageRecord.objects.create(user=theirs.owner, key=theirs, model=model, status=200)
    for request_id in (record.request_id, uuid.uuid4()):
        answer = caller.get("/api/v1/generation", {"id": str(request_id)})
        assert answer.status_code == 404 and error_of(answer)["message"] == "No such request."


def test_a_generation_needs_a_valid_id(caller):
    for query in ({}, {"id": "42"}):
        answer = caller.get("/api/v1/generation", query)
        assert answer.status_code == 400 and "id" in error_of(answer)["fields"]


# --- the calling key -------------------------------------------------------------------------------------------


async def _admit(key, n: int, *, rpm: int, rpd: int) -> limits.Quota:
    """Count ``n`` requests for a key exactly as the gateway's limiter does."""
    limiter = limits.RedisLimiter(settings.REDIS_URL)
    try:
        for i in range(n):
            quota = await limiter.check(
                key_id=key.pk, user_id=key.owner_id, versions=versions_sync(key.pk, key.owner_id), rpm=rpm,
                rpd=rpd, count=True, token=f"t{i}",
            )  # fmt: skip
        return quota
    finally:
        await limiter.close()


def test_the_key_describes_its_limits_and_what_remains_of_them(owner, make_key):
    key, raw = make_key(owner=owner, rpm_limit=10, rpd_limit=40)
    fresh = key_client(raw).get("/api/v1/key").json()
    assert fresh["limits"] == {"rpm": 10, "rpd": 40} and fresh["remaining"] == {"rpm": 10, "rpd": 40}
    quota = asyncio.run(_admit(key, 3, rpm=10, rpd=40))
    body = key_client(raw).get("/api/v1/key").json()
    assert (
        body["remaining"] == {"rpm": quota.remaining_rpm, "rpd": quota.remaining_rpd} == {"rpm": 7, "rpd": 37}
    )
    assert (body["id"], body["name"], body["prefix"], body["kind"], body["status"]) == (
        key.pk, "test", key.prefix, "inference", "active",
    )  # fmt: skip
    assert body["is_free_tier"] is True and body["allowed_models"] == [] and body["expires_at"] is None


def test_a_key_without_limits_of_its_own_gets_the_accounts(owner, make_key):
    _, raw = make_key(owner=owner)
    assert key_client(raw).get("/api/v1/key").json()["limits"] == {
        "rpm": settings.DEFAULT_RPM, "rpd": settings.DEFAULT_RPD,
    }  # fmt: skip
    ledger_post(account=account_for(user=owner), kind="purchase", amount=Decimal(settings.TIER_THRESHOLD_USD),
                purchased=True)  # fmt: skip
    body = key_client(raw).get("/api/v1/key").json()
    assert body["is_free_tier"] is False and body["limits"]["rpd"] == settings.TIER_RPD


def test_the_key_shows_its_spend_limit_and_usage_today_and_this_month(owner, make_key, catalog):
    key, raw = make_key(owner=owner)
    key_update(key=key, actor=None, spend_limit=Decimal("2"), spend_reset="monthly")
    key.__class__.objects.filter(pk=key.pk).update(spend_used=Decimal("0.5"))
    model = Model.objects.get(name=catalog["echo"])
    now = timezone.now()
    for cost in ("0.1", "0.2"):
        UsageRecord.objects.create(user=owner, key=key, model=model, status=200, cost=Decimal(cost),
                                   prompt_tokens=5, completion_tokens=1, created_at=now)  # fmt: skip
    earlier_this_month = now.date().replace(day=1)
    if earlier_this_month < now.date():
        DailyUsage.objects.create(user=owner, key=key, model=model, day=earlier_this_month, requests=4,
                                  cost=Decimal("1"))  # fmt: skip
    DailyUsage.objects.create(user=owner, key=key, model=model, day=earlier_this_month - timedelta(days=1),
                              requests=100, cost=Decimal("50"))  # last month: not counted  # fmt: skip
    body = key_client(raw).get("/api/v1/key").json()
    assert body["spend"] == {"limit": "2.000000000000", "reset": "monthly", "used": "0.500000000000",
                             "remaining": "1.500000000000"}  # fmt: skip
    assert body["usage"]["today"]["requests"] == 2 and Decimal(body["usage"]["today"]["cost"]) == Decimal(
        "0.3"
    )
    assert body["usage"]["today"]["prompt_tokens"] == 10
    extra = 4 if earlier_this_month < now.date() else 0
    assert body["usage"]["month"]["requests"] == 2 + extra


def test_a_management_key_can_describe_itself(mgmt_key):
    key, raw = mgmt_key
    body = key_client(raw).get("/api/v1/key").json()
    assert (body["id"], body["kind"]) == (key.pk, "management")


def test_the_reader_works_without_redis_from_the_in_process_limiter(owner, make_key):
    key, _ = make_key(owner=owner)
    with override_settings(REDIS_URL=""):
        versions = versions_sync(key.pk, owner.pk)
        asyncio.run(
            limits.LOCAL.check(
                key_id=key.pk, user_id=owner.pk, versions=versions, rpm=5, rpd=5, count=True, token="x"
            )
        )
        assert window_usage(key_id=key.pk, user_id=owner.pk) == (1, 1)


def test_an_unreachable_limiter_leaves_remaining_unknown(owner, make_key):
    from portal.accounts import limits

    _, raw = make_key(owner=owner)
    limits.sync_redis.cache_clear()
    try:
        with override_settings(REDIS_URL="redis://127.0.0.1:1/0"):
            body = key_client(raw).get("/api/v1/key").json()
    finally:
        limits.sync_redis.cache_clear()
    assert body["remaining"] is None and body["limits"]["rpm"] == settings.DEFAULT_RPM


# --- endpoints -------------------------------------------------------------------------------------------------


@pytest.fixture
def endpoint_rows(owner, make_key, catalog):
    """Rollups of one key: chat and embeddings on one model today, and embeddings on another yesterday."""
    key, _ = make_key(owner=owner, name="mixed")
    echo, other = Model.objects.get(name=catalog["echo"]), Model.objects.get(name=catalog["no-usage"])
    today = timezone.now().date()
    for days_ago, model, endpoint, n in [(0, echo, "chat.completions", 3), (0, echo, "embeddings", 2),
                                         (1, other, "embeddings", 1)]:  # fmt: skip
        DailyUsage.objects.create(
            user=owner, key=key, model=model, endpoint=endpoint, day=today - timedelta(days=days_ago),
            requests=n, prompt_tokens=10 * n, cost=Decimal(n),
        )  # fmt: skip
    return {"echo": echo, "other": other}


def test_usage_by_endpoint(caller, endpoint_rows):
    body = caller.get("/api/v1/usage", {"group_by": "endpoint"}).json()
    assert body["group_by"] == "endpoint"
    assert [(r["endpoint"], r["requests"], r["prompt_tokens"]) for r in body["data"]] == [
        ("chat.completions", 3, 30),
        ("embeddings", 3, 30),
    ]
    assert all("model" not in r and "day" not in r for r in body["data"])
    assert body["total"]["requests"] == 6


def test_usage_of_one_endpoint(caller, endpoint_rows):
    body = caller.get("/api/v1/usage", {"endpoint": "embeddings", "group_by": "model"}).json()
    assert {r["model"]: r["requests"] for r in body["data"]} == {
        endpoint_rows["echo"].name: 2,
        endpoint_rows["other"].name: 1,
    }
    assert body["total"]["requests"] == 3 and Decimal(body["total"]["cost"]) == 3
    assert caller.get("/api/v1/usage", {"endpoint": "messages"}).json()["total"]["requests"] == 0


def test_an_unknown_endpoint_is_a_400_naming_the_field(caller):
    for endpoint in ("chat/completions", "", "Embeddings"):
        answer = caller.get("/api/v1/usage", {"endpoint": endpoint})
        assert answer.status_code == 400 and "endpoint" in error_of(answer)["fields"], endpoint


def test_a_generation_shows_its_endpoint(caller, owner, make_key, catalog):
    key, _ = make_key(owner=owner)
    model = Model.objects.get(name=catalog["echo"])
    embedding = UsageRecord.objects.create(
        user=owner, key=key, model=model, status=200, endpoint="embeddings"
    )
    chat = UsageRecord.objects.create(user=owner, key=key, model=model, status=200)
    for record, endpoint in ((embedding, "embeddings"), (chat, "chat.completions")):
        assert caller.get("/api/v1/generation", {"id": str(record.request_id)}).json()["endpoint"] == endpoint
