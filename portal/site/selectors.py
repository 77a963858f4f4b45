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


@dataclass(frozen=True, slots=True)
class CatalogRow:
    """A model on the public models page, with the prices it charges apart from its input and output prices:
    each is None where it is what it defaults to (proxy/catalog/prices.py), so the page shows only what
    makes a difference."""

    model: Model
    cached_input: Decimal | None
    cache_write: Decimal | None
    cache_write_1h: Decimal | None
    request: Decimal | None


def catalog_row(model: Model) -> CatalogRow:
    prices = model.prices
    return CatalogRow(
        model,
        cached_input=prices.cached_input if prices.cached_input != prices.input else None,
        cache_write=prices.cache_write if prices.cache_write != prices.input else None,
        cache_write_1h=prices.cache_write_1h if prices.cache_write_1h != prices.cache_write else None,
        request=prices.request or None,
    )


def model_catalog_rows() -> list[CatalogRow]:
    return [catalog_row(model) for model in model_catalog_list()]


def model_example_get(*, mode: str = Model.Mode.CHAT) -> str | None:
    """A model id of this mode for code examples: a free one when there is one, so a copied example just
    works. None when no such model is served (the docs then show a well-known name)."""
    models = list(model_catalog_list().filter(mode=mode)[:200])
    free = next((model for model in models if model.is_free), None)
    return (free or models[0]).name if models else None
