"""Reads behind the management API. Money is returned as exact decimal strings, never floats."""

import uuid
from dataclasses import dataclass
from datetime import UTC, date, datetime
from decimal import Decimal

from django.db.models import Count, QuerySet, Sum
from django.db.models.functions import Coalesce
from django.utils import timezone

from billing.models import Account, DailyUsage, LedgerEntry, UsageRecord
from billing.services import account_for
from portal.accounts.limits import effective_limits, window_usage
from portal.accounts.models import ApiKey, User

ZERO = Decimal(0)
# What the usage endpoint sums of the rollups: the tokens, and their kinds (parts of the prompt and the output).
TOKEN_KINDS = (
    "prompt_tokens", "completion_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
    "reasoning_tokens",
)  # fmt: skip
GROUPS = {
    "day": ("day",), "model": ("model__name",), "key": ("key_id", "key__name", "key__prefix"),
    "endpoint": ("endpoint",),
}  # fmt: skip


def usd(value: Decimal) -> str:
    """Exact, and never in exponent form ("0E-12")."""
    return format(value, "f")


def key_ceiling(*, user: User) -> tuple[int, int]:
    """The RPM and RPD a key of this user gets without limits of its own: what an owner may lower, not raise."""
    account = account_for(user=user)
    rpm, rpd, _ = effective_limits(
        key_rpm=None, key_rpd=None, user_rpm=user.rpm_limit, user_rpd=user.rpd_limit,
        purchased=account.total_purchased,
    )  # fmt: skip
    return rpm, rpd


def keys_of(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner=user).order_by("-created_at", "-id")


@dataclass(frozen=True)
class Credits:
    balance: Decimal
    held: Decimal
    available: Decimal
    total_purchased: Decimal
    total_used: Decimal


def credits_get(*, user: User) -> Credits:
    """The cached balance and holds, and the usage debits summed from the ledger (the same truth as the balance)."""
    account = Account.objects.get(pk=account_for(user=user).pk)
    used = LedgerEntry.objects.filter(account=account, kind=LedgerEntry.Kind.USAGE).aggregate(
        s=Coalesce(Sum("amount"), ZERO)
    )["s"]
    return Credits(account.balance, account.held, account.available, account.total_purchased, -used)


def usage_totals(
    *,
    user: User,
    since: date,
    until: date,
    group_by: str,
    model: str | None = None,
    key_id: int | None = None,
    endpoint: str | None = None,
) -> tuple[list[dict], dict]:
    """Usage from the daily rollups between two UTC days (inclusive), grouped by day, model, key or endpoint.

    Returns the rows and their total. The rollups are rebuilt every minute, so today may lag a minute behind.
    """
    rows = DailyUsage.objects.filter(user=user, day__gte=since, day__lte=until)
    if model:
        rows = rows.filter(model__name=model)
    if key_id is not None:
        rows = rows.filter(key_id=key_id)
    if endpoint:
        rows = rows.filter(endpoint=endpoint)
    sums = {
        "requests": Coalesce(Sum("requests"), 0), "cost": Coalesce(Sum("cost"), ZERO),
        **{name: Coalesce(Sum(name), 0) for name in TOKEN_KINDS},
    }  # fmt: skip
    fields = GROUPS[group_by]
    grouped = rows.values(*fields).annotate(**sums).order_by(*fields)
    return [_usage_row(group_by, row) for row in grouped], rows.aggregate(**sums)


def _usage_row(group_by: str, row: dict) -> dict:
    if group_by == "model":
        row["model"] = row.pop("model__name")
    elif group_by == "key":
        row["key"] = {"id": row.pop("key_id"), "name": row.pop("key__name"), "prefix": row.pop("key__prefix")}
        if row["key"]["id"] is None:
            row["key"] = None  # usage of a key that no longer exists
    return row


def generation_get(*, user: User, request_id: uuid.UUID) -> UsageRecord:
    """One request's record; raises UsageRecord.DoesNotExist for another user's request as for a missing one."""
    return UsageRecord.objects.select_related("model", "provider").get(user=user, request_id=request_id)


def _usage_since(*, key: ApiKey, month_start: date, today: date) -> dict[str, dict]:
    """Usage today (exact, from the records) and this month (earlier days from the rollups, plus today)."""
    start = datetime.combine(today, datetime.min.time(), tzinfo=UTC)
    todays = UsageRecord.objects.filter(key=key, created_at__gte=start).aggregate(
        requests=Count("pk"), prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0), cost=Coalesce(Sum("cost"), ZERO),
    )  # fmt: skip
    earlier = DailyUsage.objects.filter(key=key, day__gte=month_start, day__lt=today).aggregate(
        requests=Coalesce(Sum("requests"), 0), prompt_tokens=Coalesce(Sum("prompt_tokens"), 0),
        completion_tokens=Coalesce(Sum("completion_tokens"), 0), cost=Coalesce(Sum("cost"), ZERO),
    )  # fmt: skip
    month = {name: earlier[name] + todays[name] for name in todays}
    return {"today": {**todays, "cost": usd(todays["cost"])}, "month": {**month, "cost": usd(month["cost"])}}


def key_summary(*, key_id: int) -> dict:
    """What ``GET /api/v1/key`` (and the gateway's ``GET /v1/key``) says about a key: its name, limits and
    what remains of them now, its spend limit, its usage today and this month, and the account's tier.

    Sync (runs the ORM); returns plain JSON types only (decimals as strings), ready for any JSON encoder.
    Raises ApiKey.DoesNotExist.
    """
    key = ApiKey.objects.select_related("owner").get(pk=key_id)
    account = account_for(user=key.owner)
    rpm, rpd, free_tier = effective_limits(
        key_rpm=key.rpm_limit, key_rpd=key.rpd_limit, user_rpm=key.owner.rpm_limit,
        user_rpd=key.owner.rpd_limit, purchased=account.total_purchased,
    )  # fmt: skip
    used = window_usage(key_id=key.pk, user_id=key.owner_id)
    remaining = None if used is None else {"rpm": max(rpm - used[0], 0), "rpd": max(rpd - used[1], 0)}
    spend_left = None if key.spend_limit is None else max(key.spend_limit - key.spend_used, ZERO)
    today = timezone.now().date()
    return {
        "id": key.pk,
        "name": key.name,
        "prefix": key.prefix,
        "kind": key.kind,
        "status": key.status,
        "is_free_tier": free_tier,
        "limits": {"rpm": rpm, "rpd": rpd},
        "remaining": remaining,
        "spend": {
            "limit": None if key.spend_limit is None else usd(key.spend_limit),
            "reset": key.spend_reset,
            "used": usd(key.spend_used),
            "remaining": None if spend_left is None else usd(spend_left),
        },
        "usage": _usage_since(key=key, month_start=today.replace(day=1), today=today),
        "allowed_models": list(key.allowed_models),
        "expires_at": key.expires_at.isoformat() if key.expires_at else None,
    }
