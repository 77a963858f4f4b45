"""The catalog: upstream providers, the public models clients ask for, and the routes between them."""

from decimal import Decimal
from typing import Any

from django.core.validators import MinValueValidator
from django.db import models
from django.utils import timezone

from proxy.catalog.prices import Prices

PRICE: dict[str, Any] = {"max_digits": 18, "decimal_places": 6, "validators": [MinValueValidator(Decimal(0))]}


class Provider(models.Model):
    """An upstream: OpenAI-compatible HTTP, Anthropic's Messages API, or the in-process demo. Its secret is
    encrypted or named by env var."""

    class Kind(models.TextChoices):
        OPENAI = "openai", "OpenAI-compatible HTTP"
        ANTHROPIC = "anthropic", "Anthropic Messages API ({base_url}/messages)"
        DEMO = "demo", "Demo (answers in-process)"

    name = models.SlugField(max_length=64, unique=True)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.OPENAI)
    base_url = models.URLField(
        max_length=300, blank=True, help_text="For example https://api.deepseek.com/v1"
    )
    api_key_env = models.CharField(
        max_length=128, blank=True, help_text="Environment variable holding the secret"
    )
    api_key_encrypted = models.TextField(blank=True, editable=False)
    connect_timeout = models.FloatField(default=5.0, help_text="Seconds to open a connection")
    first_byte_timeout = models.FloatField(default=60.0, help_text="Seconds to wait for the first byte")
    idle_timeout = models.FloatField(default=60.0, help_text="Seconds a stream may stay silent")
    stream_usage = models.BooleanField(
        default=True, help_text="Ask for stream_options.include_usage (turn off for upstreams that reject it)"
    )
    responses = models.BooleanField(
        default=False, help_text="The upstream serves OpenAI's Responses API itself ({base_url}/responses)"
    )
    circuit_threshold = models.PositiveIntegerField(default=5, help_text="Consecutive failures that open it")
    circuit_cooldown = models.FloatField(default=30.0, help_text="Seconds an open circuit skips the provider")
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    def __str__(self) -> str:
        return self.name


class Model(models.Model):
    """A model as clients see it. Prices are USD per million tokens; both zero makes it free."""

    class Mode(models.TextChoices):
        """Which endpoints a model serves."""

        CHAT = "chat", "Chat (chat completions, responses, messages)"
        EMBEDDING = "embedding", "Embedding (/v1/embeddings)"
        COMPLETION = "completion", "Completion (/v1/completions, legacy)"

    name = models.CharField(max_length=128, unique=True, help_text="The id clients send, e.g. deepseek-chat")
    mode = models.CharField(max_length=16, choices=Mode.choices, default=Mode.CHAT)
    owned_by = models.CharField(max_length=64)
    description = models.CharField(max_length=300, blank=True)
    input_usd_per_mtok = models.DecimalField(default=Decimal(0), **PRICE)
    output_usd_per_mtok = models.DecimalField(default=Decimal(0), **PRICE)
    # The cache's prices, where the provider bills cached input apart; unset: the input price (1 hour: the
    # 5-minute price). And a fee per request, on top of the tokens.
    cached_input_usd_per_mtok = models.DecimalField(
        null=True, blank=True, help_text="Cache reads; empty: the input price", **PRICE
    )
    cache_write_usd_per_mtok = models.DecimalField(
        null=True, blank=True, help_text="Cache writes kept 5 minutes; empty: the input price", **PRICE
    )
    cache_write_1h_usd_per_mtok = models.DecimalField(
        null=True, blank=True, help_text="Cache writes kept 1 hour; empty: the 5-minute price", **PRICE
    )
    request_usd = models.DecimalField(
        default=Decimal(0), db_default=Decimal(0), help_text="A fee per request, in USD", **PRICE
    )
    context_length = models.PositiveIntegerField(null=True, blank=True)
    max_output_tokens = models.PositiveIntegerField(null=True, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(default=timezone.now)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def prices(self) -> Prices:
        """Every price, the unset ones defaulted (billing/pricing.py)."""
        return Prices.of(
            input=self.input_usd_per_mtok, output=self.output_usd_per_mtok,
            cached_input=self.cached_input_usd_per_mtok, cache_write=self.cache_write_usd_per_mtok,
            cache_write_1h=self.cache_write_1h_usd_per_mtok, request=self.request_usd,
        )  # fmt: skip

    @property
    def is_free(self) -> bool:
        return self.prices.is_free


class Route(models.Model):
    """One way to serve a model: a provider and its name for the model. Lower priority is tried first."""

    model = models.ForeignKey(Model, on_delete=models.CASCADE, related_name="routes")
    provider = models.ForeignKey(Provider, on_delete=models.PROTECT, related_name="routes")
    upstream_model = models.CharField(max_length=128)
    priority = models.PositiveIntegerField(default=1)
    enabled = models.BooleanField(default=True)

    class Meta:
        ordering = ["model", "priority", "id"]
        constraints = [
            models.UniqueConstraint(
                fields=["model", "provider", "upstream_model"], name="route_unique_target"
            )
        ]

    def __str__(self) -> str:
        return f"{self.model} → {self.provider}/{self.upstream_model}"
