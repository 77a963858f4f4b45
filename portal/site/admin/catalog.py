"""The operators' admin for the catalog: providers, models and their routes.

Every save ends with ``proxy.catalog.services.catalog_saved()``, so each gateway process reloads its catalog at once.
"""

from datetime import timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any, TypedDict
from urllib.parse import urlparse

from django import forms
from django.contrib import admin, messages
from django.db.models import Count, IntegerField, OuterRef, Q, QuerySet, Subquery
from django.db.models.functions import Coalesce
from django.http import HttpRequest
from django.utils import timezone

from billing.models import UsageRecord
from billing.selectors import PROVIDER_FAILED
from proxy.catalog import services
from proxy.catalog.models import Model, Provider, Route
from proxy.catalog.prices import Prices

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

ERROR_WINDOW = timedelta(hours=1)

# --- Providers -------------------------------------------------------------------------------------------------


class ProviderForm(forms.ModelForm):
    base_url = forms.URLField(
        max_length=300,
        required=False,
        assume_scheme="https",
        help_text="For example https://api.deepseek.com/v1",
    )
    secret = forms.CharField(
        required=False, strip=True, widget=forms.PasswordInput(render_value=False, attrs={"autocomplete": "off"}),
        help_text="The provider's API key. Stored encrypted; never shown again. Leave empty to keep the current one.",
    )  # fmt: skip
    clear_secret = forms.BooleanField(
        required=False,
        help_text="Remove the stored secret (the environment variable, if named, is used instead)",
    )

    class Meta:
        model = Provider
        fields = [
            "name", "kind", "base_url", "enabled", "api_key_env", "connect_timeout", "first_byte_timeout",
            "idle_timeout", "stream_usage", "responses", "circuit_threshold", "circuit_cooldown",
        ]  # fmt: skip

    def clean_base_url(self) -> str:
        url = self.cleaned_data["base_url"].strip()
        parsed = urlparse(url)
        if url and (parsed.scheme not in ("http", "https") or not parsed.netloc):
            raise forms.ValidationError("Only http:// and https:// URLs are allowed.")
        return url

    def clean(self) -> dict[str, Any]:
        super().clean()  # a ModelForm's clean() returns its cleaned_data
        data = self.cleaned_data
        if (
            data.get("kind") != Provider.Kind.DEMO
            and not data.get("base_url")
            and "base_url" not in self.errors
        ):
            self.add_error("base_url", "An HTTP provider needs a base URL.")
        if data.get("secret") and data.get("clear_secret"):
            self.add_error("clear_secret", "Either set a new secret or clear it, not both.")
        return data


def _usage_count(since, failed: bool) -> Coalesce:
    rows = UsageRecord.objects.filter(provider=OuterRef("pk"), created_at__gte=since)
    if failed:
        rows = rows.filter(PROVIDER_FAILED)
    counted = rows.order_by().values("provider").annotate(n=Count("pk")).values("n")
    return Coalesce(Subquery(counted, output_field=IntegerField()), 0)


class _ProviderRow(TypedDict):
    """What ``ProviderAdmin.get_queryset`` annotates each provider with (a new one has neither)."""

    recent_requests: int
    recent_failures: int


@admin.register(Provider)
class ProviderAdmin(admin.ModelAdmin):
    form = ProviderForm
    list_display = ["name", "kind", "base_url", "secret_state", "timeouts", "enabled", "recent_errors"]
    list_filter = ["enabled", "kind"]
    search_fields = ["name", "base_url"]
    readonly_fields = ["secret_state", "recent_errors", "circuit", "created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "kind", "base_url", "responses", "enabled"]}),
        ("Secret", {"fields": ["secret_state", "secret", "clear_secret", "api_key_env"]}),
        ("Timeouts", {"fields": ["connect_timeout", "first_byte_timeout", "idle_timeout", "stream_usage"]}),
        (
            "Circuit breaker",
            {"fields": ["circuit_threshold", "circuit_cooldown", "circuit", "recent_errors"]},
        ),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]
    actions = ["test_connection"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        since = timezone.now() - ERROR_WINDOW
        return (
            super()
            .get_queryset(request)
            .annotate(recent_requests=_usage_count(since, False), recent_failures=_usage_count(since, True))
        )

    @admin.display(description="Secret")
    def secret_state(self, provider: Provider) -> str:
        if provider.api_key_encrypted:
            return "stored (encrypted)"
        if provider.api_key_env:
            return f"from ${provider.api_key_env}"
        return "none"

    @admin.display(description="Timeouts (s)")
    def timeouts(self, provider: Provider) -> str:
        p = provider
        return (
            f"connect {p.connect_timeout:g} / first byte {p.first_byte_timeout:g} / idle {p.idle_timeout:g}"
        )

    @admin.display(description="Errors, last hour")
    def recent_errors(self, provider: "WithAnnotations[Provider, _ProviderRow]") -> str:
        total = getattr(provider, "recent_requests", 0)
        if not total:
            return "no requests"
        failed = provider.recent_failures
        return f"{failed}/{total} failed ({failed / total:.0%})"

    @admin.display(description="Circuit state")
    def circuit(self, provider: Provider) -> str:
        return (
            "Each gateway process keeps its own circuit breaker in memory (it opens after "
            f"{provider.circuit_threshold} consecutive failures, for {provider.circuit_cooldown:g} s), so the "
            "database can't show it. The recent error rate from usage records is the shared signal."
        )

    def save_model(self, request: HttpRequest, obj: Provider, form, change: bool) -> None:
        before = services.provider_snapshot(provider=Provider.objects.get(pk=obj.pk)) if change else None
        services.provider_save(
            provider=obj, secret=form.cleaned_data.get("secret", ""),
            clear_secret=form.cleaned_data.get("clear_secret", False), before=before, actor=request.user,
        )  # fmt: skip

    def delete_model(self, request: HttpRequest, obj: Provider) -> None:
        super().delete_model(request, obj)
        services.catalog_saved()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        services.catalog_saved()

    @admin.action(description="Test the connection (GET /models)")
    def test_connection(self, request: HttpRequest, queryset: QuerySet) -> None:
        for provider in queryset:
            check = services.provider_connection_test(provider=provider)
            level = messages.SUCCESS if check.ok else messages.ERROR
            self.message_user(request, f"{provider.name}: {check.message}", level)


# --- Models and routes -----------------------------------------------------------------------------------------


class ModelForm(forms.ModelForm):
    """The price rule: a model is free when every price is 0 (the cache's prices as they default, and the fee
    per request), and paid when any is above 0 (a provider may charge for output only, or per request). The
    operator says which with the "free" box, and the prices must agree, so a paid model can't be saved at zero
    by mistake."""

    free = forms.BooleanField(
        required=False,
        help_text="A free model has every price 0 and needs no credits. A paid model needs a price above 0: "
        "input, output, a cache price or the fee per request.",
    )

    class Meta:
        model = Model
        fields = [
            "name", "mode", "owned_by", "description", "enabled", "input_usd_per_mtok", "output_usd_per_mtok",
            "cached_input_usd_per_mtok", "cache_write_usd_per_mtok", "cache_write_1h_usd_per_mtok",
            "request_usd", "context_length", "max_output_tokens",
        ]  # fmt: skip
        labels = {
            "input_usd_per_mtok": "Input", "output_usd_per_mtok": "Output",
            "cached_input_usd_per_mtok": "Cached input", "cache_write_usd_per_mtok": "Cache write (5 minutes)",
            "cache_write_1h_usd_per_mtok": "Cache write (1 hour)", "request_usd": "Fee per request (USD)",
        }  # fmt: skip
        help_texts = {
            "input_usd_per_mtok": "Uncached input tokens",
            "output_usd_per_mtok": "Output tokens, reasoning included",
            "cached_input_usd_per_mtok": "Tokens read from the provider's cache. Empty: the input price.",
            "cache_write_usd_per_mtok": "Tokens written to the provider's cache for 5 minutes (the usual "
            "kind). Empty: the input price.",
            "cache_write_1h_usd_per_mtok": "Tokens written to the cache for 1 hour. Empty: the 5-minute price.",
            "request_usd": "Charged once per request on top of the tokens, in USD (not per million). "
            "Empty or 0: no fee.",
        }  # fmt: skip

    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        # Most models are chat models; a form that leaves the mode out means that one. Most charge no fee.
        self.fields["mode"].required = False
        self.fields["request_usd"].required = False
        self.fields["free"].initial = self.instance.pk is None or self.instance.is_free

    def clean_mode(self) -> str:
        return self.cleaned_data.get("mode") or Model.Mode.CHAT

    def clean_request_usd(self) -> Decimal:
        fee = self.cleaned_data.get("request_usd")
        return Decimal(0) if fee is None else fee

    def clean(self) -> dict[str, Any]:
        super().clean()  # a ModelForm's clean() returns its cleaned_data
        data = self.cleaned_data
        if any(name in self.errors for name in PRICE_FIELDS):
            return data  # a price field has its own error already
        prices = Prices.of(
            input=data["input_usd_per_mtok"], output=data["output_usd_per_mtok"],
            cached_input=data.get("cached_input_usd_per_mtok"), cache_write=data.get("cache_write_usd_per_mtok"),
            cache_write_1h=data.get("cache_write_1h_usd_per_mtok"), request=data["request_usd"],
        )  # fmt: skip
        if data.get("free") and not prices.is_free:
            raise forms.ValidationError(
                "A free model has every price 0, the fee per request too. Untick 'free' to charge for it."
            )
        if not data.get("free") and prices.is_free:
            raise forms.ValidationError(
                "A paid model needs a price: set a token price or the fee per request above 0, or tick 'free'."
            )
        return data


PRICE_FIELDS = (
    "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok", "cache_write_usd_per_mtok",
    "cache_write_1h_usd_per_mtok", "request_usd",
)  # fmt: skip


class RouteFormSet(forms.BaseInlineFormSet):
    """An enabled model needs an enabled route on an enabled provider, or the gateway couldn't serve it."""

    def clean(self) -> None:
        super().clean()
        if any(self.errors) or not self.instance.enabled:
            return  # a disabled model may be drafted without routes; the gateway doesn't serve it
        serving = [
            form.cleaned_data
            for form in self.forms
            if form.cleaned_data and not form.cleaned_data.get("DELETE")
            and form.cleaned_data.get("enabled") and form.cleaned_data["provider"].enabled
        ]  # fmt: skip
        if not serving:
            raise forms.ValidationError(
                "An enabled model needs at least one enabled route on an enabled provider."
            )


class RouteInline(admin.TabularInline):
    model = Route
    formset = RouteFormSet
    fields = ["provider", "upstream_model", "priority", "enabled"]
    extra = 1
    ordering = ["priority", "id"]


class _ModelRow(TypedDict):
    """What ``ModelAdmin.get_queryset`` annotates each model with."""

    serving_routes: int


@admin.register(Model)
class ModelAdmin(admin.ModelAdmin):
    form = ModelForm
    list_display = [
        "name", "mode", "owned_by", "input_usd_per_mtok", "output_usd_per_mtok", "is_free", "context_length",
        "max_output_tokens", "enabled", "route_count",
    ]  # fmt: skip
    list_filter = ["enabled", "mode", "owned_by"]
    search_fields = ["name", "owned_by", "description"]
    readonly_fields = ["created_at", "updated_at"]
    fieldsets = [
        (None, {"fields": ["name", "mode", "owned_by", "description", "enabled"]}),
        (
            "Prices (USD per million tokens)",
            {
                "fields": ["free", *PRICE_FIELDS],
                "description": "Leave a cache price empty to charge what it defaults to; a provider that "
                "bills cached tokens apart usually asks less for reads and more for writes.",
            },
        ),
        ("Limits", {"fields": ["context_length", "max_output_tokens"]}),
        ("Dates", {"fields": ["created_at", "updated_at"]}),
    ]
    inlines = [RouteInline]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        enabled = Q(routes__enabled=True, routes__provider__enabled=True)
        return super().get_queryset(request).annotate(serving_routes=Count("routes", filter=enabled))

    @admin.display(description="Free", boolean=True)
    def is_free(self, model: Model) -> bool:
        return model.is_free

    @admin.display(description="Enabled routes", ordering="serving_routes")
    def route_count(self, model: "WithAnnotations[Model, _ModelRow]") -> int:
        return model.serving_routes

    def save_related(self, request: HttpRequest, form, formsets, change: bool) -> None:
        super().save_related(request, form, formsets, change)
        # The form's initial values are the row as it was before this save.
        services.model_saved(
            model=form.instance, initial=form.initial if change else None, actor=request.user
        )

    def delete_model(self, request: HttpRequest, obj: Model) -> None:
        super().delete_model(request, obj)
        services.catalog_saved()

    def delete_queryset(self, request: HttpRequest, queryset: QuerySet) -> None:
        super().delete_queryset(request, queryset)
        services.catalog_saved()
