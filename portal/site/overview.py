"""Reads for the admin overview page: traffic, spend and revenue, the top models and users, provider error
rates and the last ledger reconciliation. Reads only; shaped for templates/admin/overview.html."""

from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal

from django.db.models import Sum
from django.utils import timezone

from billing.models import DailyUsage, Purchase, ReconcileRun
from billing.selectors import provider_error_rates
from proxy.catalog.models import Provider

ZERO = Decimal(0)
PERIODS = (("Today", 1), ("7 days", 7), ("30 days", 30))


@dataclass(frozen=True)
class PeriodTotals:
    label: str
    requests: int
    spend: Decimal
    revenue: Decimal


@dataclass(frozen=True)
class ProviderHealth:
    name: str
    enabled: bool
    requests: int
    errors: int
    rate: float


def _midnight(day: date) -> datetime:
    return datetime.combine(day, datetime.min.time(), tzinfo=UTC)


def period_totals(*, today: date) -> list[PeriodTotals]:
    """Requests and spend come from the daily rollups (``aggregate_usage`` runs every minute, so today's figures
    may be a minute behind); revenue is completed card purchases."""
    totals = []
    for label, days in PERIODS:
        since = today - timedelta(days=days - 1)
        usage = DailyUsage.objects.filter(day__gte=since).aggregate(n=Sum("requests"), spend=Sum("cost"))
        revenue = Purchase.objects.filter(
            status=Purchase.Status.COMPLETE, completed_at__gte=_midnight(since)
        ).aggregate(s=Sum("amount"))["s"]
        totals.append(PeriodTotals(label, usage["n"] or 0, usage["spend"] or ZERO, revenue or ZERO))
    return totals


def top_usage(*, since: date, by: str, limit: int = 10) -> list[dict]:
    """The biggest spenders (``by`` = "model__name" or "user__email") since a day, with their request counts."""
    return list(
        DailyUsage.objects.filter(day__gte=since)
        .values(by)
        .annotate(requests=Sum("requests"), spend=Sum("cost"))
        .order_by("-spend", "-requests")[:limit]
        .values_list(by, "requests", "spend")
    )


def provider_health(*, since: datetime) -> list[ProviderHealth]:
    rates = provider_error_rates(since=since)
    rows = []
    for provider in Provider.objects.order_by("name"):
        rate = rates.get(provider.id)
        requests, errors = (rate.requests, rate.errors) if rate else (0, 0)
        rows.append(
            ProviderHealth(
                provider.name, provider.enabled, requests, errors, errors / requests if requests else 0
            )
        )
    return rows


def overview_get(*, now: datetime | None = None) -> dict:
    now = now or timezone.now()
    today = now.date()
    month = today - timedelta(days=29)
    return {
        "periods": period_totals(today=today),
        "top_models": top_usage(since=month, by="model__name"),
        "top_users": top_usage(since=month, by="user__email"),
        "providers": provider_health(since=now - timedelta(hours=24)),
        "reconcile": ReconcileRun.objects.first(),
    }
