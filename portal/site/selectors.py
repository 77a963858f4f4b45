"""Reads about users, keys and the public catalog, shaped for the dashboard pages."""

from dataclasses import dataclass
from datetime import date
from decimal import Decimal

from django.db.models import Q, QuerySet, Sum
from django.utils import timezone

from billing.models import DailyUsage
from portal.accounts.limits import effective_limits, window_usage
from portal.accounts.models import ApiKey, User
from proxy.catalog.models import Model


@dataclass(frozen=True, slots=True)
class KeyQuota:
    """A key's limits and what is left of them right now; ``None`` left means the limiter could not say."""

    key: ApiKey
    rpm: int
    rpd: int
    rpm_left: int | None
    rpd_left: int | None


def key_list(*, user: User) -> QuerySet[ApiKey]:
    return ApiKey.objects.filter(owner=user).order_by("-created_at", "-id")


def key_get(*, user: User, key_id: int) -> ApiKey:
    """The user's key; ``ApiKey.DoesNotExist`` for anyone else's, so their URLs answer 404."""
    return ApiKey.objects.get(owner=user, pk=key_id)


def key_active_list(*, user: User) -> QuerySet[ApiKey]:
    now = timezone.now()
    return key_list(user=user).filter(
        Q(expires_at__isnull=True) | Q(expires_at__gt=now),
        kind=ApiKey.Kind.INFERENCE, revoked_at__isnull=True, disabled=False,
    )  # fmt: skip


def key_limits_get(*, key: ApiKey, purchased: Decimal) -> tuple[int, int]:
    """The RPM and RPD the gateway applies to this key (the same rule as the gateway's own)."""
    owner = key.owner
    rpm, rpd, _ = effective_limits(
        key_rpm=key.rpm_limit, key_rpd=key.rpd_limit, user_rpm=owner.rpm_limit, user_rpd=owner.rpd_limit,
        purchased=purchased,
    )  # fmt: skip
    return rpm, rpd


def key_busiest_get(*, user: User, day: date) -> ApiKey | None:
    """The active key with the most requests on ``day``; else the one used last; else the newest."""
    active = key_active_list(user=user).select_related("owner")
    busiest = (
        DailyUsage.objects.filter(user=user, day=day, key__in=active)
        .values("key_id")
        .annotate(n=Sum("requests"))
        .order_by("-n", "key_id")
        .first()
    )
    if busiest is not None:
        return active.get(pk=busiest["key_id"])
    return active.order_by("-last_used_at", "-created_at").first() if active.exists() else None


def key_quota_get(*, key: ApiKey, purchased: Decimal) -> KeyQuota:
    """Read the key's rate-limit windows without counting a request.

    ``purchased`` is the owner's all-time purchases, which decide the daily tier."""
    rpm, rpd = key_limits_get(key=key, purchased=purchased)
    used = window_usage(key_id=key.pk, user_id=key.owner_id)
    if used is None:  # the page still renders; it says the limiter can't be reached
        return KeyQuota(key, rpm, rpd, None, None)
    return KeyQuota(key, rpm, rpd, max(rpm - used[0], 0), max(rpd - used[1], 0))


def model_catalog_list() -> QuerySet[Model]:
    """The public catalog: enabled models that can be served (an enabled route on an enabled provider)."""
    return (
        Model.objects.filter(enabled=True, routes__enabled=True, routes__provider__enabled=True)
        .distinct()
        .order_by("owned_by", "name")
    )


def model_example_get(*, mode: str = Model.Mode.CHAT) -> str | None:
    """A model id of this mode for code examples: a free one when there is one, so a copied example just
    works. None when no such model is served (the docs then show a well-known name)."""
    served = model_catalog_list().filter(mode=mode)
    models = list(served.values_list("name", "input_usd_per_mtok", "output_usd_per_mtok")[:200])
    for name, price_in, price_out in models:
        if price_in == 0 and price_out == 0:
            return name
    return models[0][0] if models else None
