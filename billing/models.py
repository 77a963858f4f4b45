"""Money and usage. The ledger is append-only; an account's balance is a cached sum of it.

All amounts are USD as exact Decimals with 12 decimal places: a price with up to 6 decimals per million tokens
times a whole number of tokens is then always exact (see billing/pricing.py).
"""

import uuid
from typing import Any

from django.conf import settings
from django.db import models
from django.utils import timezone

MONEY: dict[str, Any] = {"max_digits": 24, "decimal_places": 12}


class Account(models.Model):
    """A user's credit account. ``balance`` caches the ledger sum; ``held`` caches the open holds' sum."""

    user = models.OneToOneField(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="account")
    balance = models.DecimalField(default=0, **MONEY)
    held = models.DecimalField(default=0, **MONEY)
    total_purchased = models.DecimalField(default=0, **MONEY)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints = [
            models.CheckConstraint(condition=models.Q(held__gte=0), name="account_held_not_negative")
        ]

    def __str__(self) -> str:
        return f"account of {self.user}"

    @property
    def available(self):
        return self.balance - self.held


class LedgerEntry(models.Model):
    """One movement of money. Never updated or deleted: corrections are new entries."""

    class Kind(models.TextChoices):
        GRANT = "grant", "Operator grant"
        DEDUCT = "deduct", "Operator deduction"
        PURCHASE = "purchase", "Card purchase"
        REDEEM = "redeem", "Redemption code"
        USAGE = "usage", "Usage"

    account = models.ForeignKey(Account, on_delete=models.PROTECT, related_name="ledger")
    kind = models.CharField(max_length=16, choices=Kind.choices)
    amount = models.DecimalField(**MONEY, help_text="Positive adds credit, negative takes it")
    memo = models.CharField(max_length=300, blank=True)
    actor = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    # A usage debit names its request; the unique constraint makes a second debit for one request impossible.
    request_id = models.UUIDField(null=True, blank=True, unique=True)
    reference = models.CharField(
        max_length=128, null=True, blank=True, unique=True, help_text="Idempotency key"
    )
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        verbose_name_plural = "ledger entries"
        indexes = [models.Index(fields=["account", "id"])]

    def __str__(self) -> str:
        return f"{self.kind} {self.amount}"


class Hold(models.Model):
    """Credit set aside by a gateway process (a lease), so concurrent requests can never overdraw.

    The owning process renews ``expires_at`` while it lives; ``release_stale_holds`` returns expired ones.
    """

    account = models.ForeignKey(Account, on_delete=models.CASCADE, related_name="holds")
    amount = models.DecimalField(**MONEY)
    owner = models.CharField(max_length=64, help_text="The gateway process holding it")
    created_at = models.DateTimeField(default=timezone.now)
    expires_at = models.DateTimeField(db_index=True)

    def __str__(self) -> str:
        return f"hold {self.amount} on {self.account_id}"


class UsageNote(models.TextChoices):
    """Why a usage record's tokens or cost are not the plain reading of the upstream's usage (see the gateway's
    settlement)."""

    NONE = "", "-"
    COUNT_FAILED = "count_failed", "Tokens estimated from the text's size (the local count failed)"
    PRICE_FAILED = "price_failed", "Not charged (the price could not be computed)"
    RECORD_FAILED = "record_failed", "Recorded without tokens or charge (the request could not be accounted)"
    COST_CAPPED = "cost_capped", "Charge capped at the reservation (the worst case was underestimated)"


class Endpoint(models.TextChoices):
    """The /v1 endpoint a request was for (its path without /v1/, dots for slashes)."""

    CHAT_COMPLETIONS = "chat.completions", "Chat completions"
    EMBEDDINGS = "embeddings", "Embeddings"
    COMPLETIONS = "completions", "Completions"
    RESPONSES = "responses", "Responses"
    MESSAGES = "messages", "Messages"


# A default in the database too: rows from before endpoints were recorded are all chat, and a raw COPY that
# leaves the column out still gets a valid value.
ENDPOINT: dict[str, Any] = {
    "max_length": 32, "choices": Endpoint.choices, "default": Endpoint.CHAT_COMPLETIONS,
    "db_default": Endpoint.CHAT_COMPLETIONS,
}  # fmt: skip


class UsageRecord(models.Model):
    """Exactly one per admitted /v1 request. The request id is the primary key, so it can't be written twice."""

    request_id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="+")
    key = models.ForeignKey("portal.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.ForeignKey("proxy.Model", on_delete=models.PROTECT, related_name="+")
    endpoint = models.CharField(**ENDPOINT)
    provider = models.ForeignKey(
        "proxy.Provider", null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    prompt_tokens = models.PositiveIntegerField(
        default=0, help_text="All input, cache reads and writes included"
    )
    completion_tokens = models.PositiveIntegerField(default=0)
    # Parts of prompt_tokens, as the upstream reported them (billing/usage.py; 0 where none came).
    cache_read_tokens = models.PositiveIntegerField(default=0, db_default=0)
    cache_write_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Written for 5 minutes"
    )
    cache_write_1h_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="Written for 1 hour"
    )
    reasoning_tokens = models.PositiveIntegerField(
        default=0, db_default=0, help_text="A part of completion_tokens, billed as output"
    )
    usage_raw = models.JSONField(null=True, blank=True, help_text="The upstream's usage object, for audits")
    tokens_estimated = models.BooleanField(
        default=False, help_text="Counted locally: the upstream sent no usage"
    )
    cost = models.DecimalField(default=0, **MONEY)
    status = models.PositiveSmallIntegerField()
    error_code = models.CharField(max_length=64, blank=True)
    latency_ms = models.PositiveIntegerField(default=0)
    ttft_ms = models.PositiveIntegerField(null=True, blank=True)
    streamed = models.BooleanField(default=False)
    finish_reason = models.CharField(max_length=32, blank=True)
    client_disconnected = models.BooleanField(default=False)
    created_at = models.DateTimeField(default=timezone.now)
    note = models.CharField(max_length=16, blank=True, default="", db_default="", choices=UsageNote.choices)

    class Meta:
        indexes = [
            models.Index(fields=["user", "-created_at", "-request_id"]),
            models.Index(fields=["key", "-created_at"]),
            models.Index(fields=["created_at"]),
        ]

    def __str__(self) -> str:
        return str(self.request_id)


class DailyUsage(models.Model):
    """Usage rolled up per user, key, model, endpoint and UTC day. Rebuilt idempotently by
    ``aggregate_usage``."""

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="+")
    key = models.ForeignKey("portal.ApiKey", null=True, on_delete=models.SET_NULL, related_name="+")
    model = models.ForeignKey("proxy.Model", on_delete=models.CASCADE, related_name="+")
    endpoint = models.CharField(**ENDPOINT)
    day = models.DateField()
    requests = models.PositiveIntegerField(default=0)
    prompt_tokens = models.PositiveBigIntegerField(default=0)
    completion_tokens = models.PositiveBigIntegerField(default=0)
    # The token kinds of the records (UsageRecord's columns of the same names): parts of prompt_tokens, and
    # reasoning a part of completion_tokens. Rows rolled up before they were counted hold 0.
    cache_read_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_write_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    cache_write_1h_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    reasoning_tokens = models.PositiveBigIntegerField(default=0, db_default=0)
    cost = models.DecimalField(default=0, **MONEY)

    class Meta:
        verbose_name_plural = "daily usage"
        constraints = [
            models.UniqueConstraint(
                fields=["user", "key", "model", "endpoint", "day"], name="daily_usage_unique"
            )
        ]
        indexes = [models.Index(fields=["user", "day"])]

    def __str__(self) -> str:
        return f"{self.day} {self.model_id}: {self.requests} requests"


class Purchase(models.Model):
    """A card purchase through Stripe Checkout; credited once, when its webhook says it is paid."""

    class Status(models.TextChoices):
        PENDING = "pending", "Pending"
        COMPLETE = "complete", "Complete"
        EXPIRED = "expired", "Expired"

    user = models.ForeignKey(settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="purchases")
    amount = models.DecimalField(**MONEY)
    stripe_session_id = models.CharField(max_length=255, unique=True)
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    created_at = models.DateTimeField(default=timezone.now)
    completed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.amount} USD ({self.status})"


class RedemptionCode(models.Model):
    """A single-use code worth a fixed amount of credit, generated in batches by operators."""

    code = models.CharField(max_length=64, unique=True)
    amount = models.DecimalField(**MONEY)
    batch = models.CharField(max_length=64, blank=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.SET_NULL, related_name="+"
    )
    created_at = models.DateTimeField(default=timezone.now)
    redeemed_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, null=True, blank=True, on_delete=models.PROTECT, related_name="+"
    )
    redeemed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.code[:4]}… ({self.amount} USD)"


class ReconcileRun(models.Model):
    """The result of one ``reconcile_ledger`` run, shown in the admin."""

    ran_at = models.DateTimeField(default=timezone.now, db_index=True)
    ok = models.BooleanField()
    accounts_checked = models.PositiveIntegerField(default=0)
    drift = models.JSONField(default=list, blank=True)

    class Meta:
        ordering = ["-ran_at"]

    def __str__(self) -> str:
        return f"{self.ran_at:%Y-%m-%d %H:%M} {'ok' if self.ok else 'DRIFT'}"
