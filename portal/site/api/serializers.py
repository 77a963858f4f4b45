"""The management API's inputs and outputs. Inputs are strict about JSON types: ``"5"`` is not a number and
``1`` is not a name, so a client's mistake is a 400 instead of a silent coercion."""

from decimal import Decimal

from django.core.validators import RegexValidator
from django.utils import timezone
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from billing.api_selectors import GROUPS, key_ceiling
from billing.models import Endpoint
from portal.accounts.models import ApiKey
from proxy.catalog.models import Model

KEY_STATUSES = ["active", "disabled", "expired", "revoked"]
DECIMAL_STRING = {"type": "string", "format": "decimal", "pattern": r"^-?\d+(\.\d+)?$"}


class StrictCharField(serializers.CharField):
    def __init__(self, **kwargs) -> None:
        # Said in the schema too: some non-space character, and no NUL (which Django refuses in text).
        kwargs.setdefault("validators", []).append(RegexValidator(r"^[^\x00]*[^\s\x00][^\x00]*$"))
        super().__init__(**kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictIntegerField(serializers.IntegerField):
    def to_internal_value(self, data):
        if isinstance(data, bool) or not isinstance(data, int):
            self.fail("invalid")
        return super().to_internal_value(data)


class StrictBooleanField(serializers.BooleanField):
    def to_internal_value(self, data):
        if not isinstance(data, bool):
            self.fail("invalid")
        return data


@extend_schema_field({"type": "string", "format": "decimal", "pattern": r"^\d{1,12}(\.\d{1,6})?$"})
class UsdInputField(serializers.DecimalField):
    """USD as a decimal string, like "5.00": exact, unlike a JSON number, which many clients parse as a float."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_digits=18, decimal_places=6, min_value=Decimal(0), **kwargs)

    def to_internal_value(self, data):
        if not isinstance(data, str):
            self.fail("invalid")
        return super().to_internal_value(data)


@extend_schema_field(DECIMAL_STRING)
class UsdField(serializers.DecimalField):
    """USD, exact, as a string with 12 decimal places."""

    def __init__(self, **kwargs) -> None:
        super().__init__(max_digits=24, decimal_places=12, coerce_to_string=True, **kwargs)


# --- Keys ------------------------------------------------------------------------------------------------------


class KeyOut(serializers.ModelSerializer):
    status = serializers.ChoiceField(choices=KEY_STATUSES, read_only=True)
    allowed_models = serializers.ListField(
        child=serializers.CharField(), read_only=True, help_text="Model ids; empty allows every model"
    )
    spend_limit = UsdField(allow_null=True, read_only=True)
    spend_used = UsdField(read_only=True)

    class Meta:
        model = ApiKey
        fields = [
            "id", "name", "kind", "prefix", "status", "disabled", "created_at", "last_used_at", "expires_at",
            "revoked_at", "allowed_models", "rpm_limit", "rpd_limit", "spend_limit", "spend_reset", "spend_used",
        ]  # fmt: skip
        read_only_fields = fields


class KeyCreatedOut(KeyOut):
    key = serializers.CharField(
        read_only=True, help_text="The raw key. Shown in this response only: keep it."
    )

    class Meta(KeyOut.Meta):
        fields = [*KeyOut.Meta.fields, "key"]
        read_only_fields = fields


class KeySettingsIn(serializers.Serializer):
    """What an owner may set on a key. Limits may only lower what the account gets anyway (see key_ceiling)."""

    name = StrictCharField(max_length=64, min_length=1)
    expires_at = serializers.DateTimeField(required=False, allow_null=True)
    allowed_models = serializers.ListField(
        child=StrictCharField(max_length=128, min_length=1), required=False, max_length=200,
        help_text="Model ids this key may use; empty allows every model",
    )  # fmt: skip
    rpm_limit = StrictIntegerField(
        min_value=1, required=False, allow_null=True, help_text="Requests per minute"
    )
    rpd_limit = StrictIntegerField(min_value=1, required=False, allow_null=True, help_text="Requests per day")
    spend_limit = UsdInputField(required=False, allow_null=True, help_text="USD the key may spend per period")
    spend_reset = serializers.ChoiceField(choices=ApiKey.SpendReset.choices, required=False)

    def validate_expires_at(self, value):
        if value is not None and value <= timezone.now():
            raise serializers.ValidationError("must be in the future")
        return value

    def validate_allowed_models(self, value: list[str]) -> list[str]:
        unknown = sorted(
            set(value) - set(Model.objects.filter(name__in=value).values_list("name", flat=True))
        )
        if unknown:
            raise serializers.ValidationError(f"unknown model: {', '.join(unknown)}")
        return value

    def validate(self, data: dict) -> dict:
        rpm, rpd = key_ceiling(user=self.context["user"])
        errors = {}
        if (data.get("rpm_limit") or 0) > rpm:
            errors["rpm_limit"] = f"at most {rpm}, this account's limit"
        if (data.get("rpd_limit") or 0) > rpd:
            errors["rpd_limit"] = f"at most {rpd}, this account's limit"
        if errors:
            raise serializers.ValidationError(errors)
        return data


class KeyCreateIn(KeySettingsIn):
    kind = serializers.ChoiceField(
        choices=ApiKey.Kind.choices, default=ApiKey.Kind.INFERENCE,
        help_text="Only a dashboard session may create management keys",
    )  # fmt: skip


class KeyUpdateIn(KeySettingsIn):
    name = StrictCharField(max_length=64, min_length=1, required=False)
    disabled = StrictBooleanField(required=False, help_text="A disabled key is refused until enabled again")


# --- Key summary (GET /api/v1/key) ------------------------------------------------------------------------------


class LimitsOut(serializers.Serializer):
    rpm = serializers.IntegerField()
    rpd = serializers.IntegerField()


class SpendOut(serializers.Serializer):
    limit = UsdField(allow_null=True)
    reset = serializers.ChoiceField(choices=ApiKey.SpendReset.choices)
    used = UsdField()
    remaining = UsdField(allow_null=True)


class UsageTotalsOut(serializers.Serializer):
    requests = serializers.IntegerField()
    prompt_tokens = serializers.IntegerField()
    completion_tokens = serializers.IntegerField()
    cost = UsdField()


class KeyUsageOut(serializers.Serializer):
    today = UsageTotalsOut()
    month = UsageTotalsOut(help_text="The current UTC calendar month")


class KeySummaryOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()
    kind = serializers.ChoiceField(choices=ApiKey.Kind.choices)
    status = serializers.ChoiceField(choices=KEY_STATUSES)
    is_free_tier = serializers.BooleanField()
    limits = LimitsOut(help_text="The limits in force for this key")
    remaining = LimitsOut(allow_null=True, help_text="What is left now; null if the limiter can't be reached")
    spend = SpendOut()
    usage = KeyUsageOut()
    allowed_models = serializers.ListField(child=serializers.CharField())
    expires_at = serializers.DateTimeField(allow_null=True)


# --- Credits, usage, generations ---------------------------------------------------------------------------------


class CreditsOut(serializers.Serializer):
    balance = UsdField()
    held = UsdField(help_text="Set aside for requests in flight")
    available = UsdField(help_text="balance - held")
    total_purchased = UsdField()
    total_used = UsdField(help_text="All usage charges, ever")
    currency = serializers.CharField(default="USD")


class UsageQueryIn(serializers.Serializer):
    to = serializers.DateField(required=False, help_text="Last UTC day, inclusive (default: today)")
    model = serializers.CharField(required=False, max_length=128, help_text="A model id")
    key = serializers.IntegerField(required=False, min_value=1, help_text="A key id")
    endpoint = serializers.ChoiceField(choices=Endpoint.choices, required=False, help_text="A /v1 endpoint")
    group_by = serializers.ChoiceField(choices=list(GROUPS), default="day")

    def get_fields(self):
        fields = super().get_fields()
        # "from" is a Python keyword, so it can't be declared as a class attribute.
        fields["from"] = serializers.DateField(
            required=False, help_text="First UTC day (default: 29 days ago)"
        )
        return fields


class TokenKindsOut(serializers.Serializer):
    """The kinds of tokens within the totals, as the provider reported them (0 where it reported none)."""

    cache_read_tokens = serializers.IntegerField(
        help_text="Read from the provider's cache: part of prompt_tokens"
    )
    cache_write_tokens = serializers.IntegerField(
        help_text="Written to the provider's cache for 5 minutes: part of prompt_tokens"
    )
    cache_write_1h_tokens = serializers.IntegerField(
        help_text="Written to the provider's cache for 1 hour: part of prompt_tokens"
    )
    reasoning_tokens = serializers.IntegerField(help_text="Reasoning: part of completion_tokens")


class UsageSumsOut(UsageTotalsOut, TokenKindsOut):
    """The usage endpoint's totals: the key summary's, and the kinds of tokens within them."""


class UsageKeyOut(serializers.Serializer):
    id = serializers.IntegerField()
    name = serializers.CharField()
    prefix = serializers.CharField()


class UsageRowOut(UsageSumsOut):
    day = serializers.DateField(required=False, help_text="With group_by=day")
    model = serializers.CharField(required=False, help_text="With group_by=model")
    key = UsageKeyOut(required=False, allow_null=True, help_text="With group_by=key; null for a deleted key")
    endpoint = serializers.ChoiceField(
        choices=Endpoint.choices, required=False, help_text="With group_by=endpoint"
    )


class UsageOut(serializers.Serializer):
    group_by = serializers.ChoiceField(choices=list(GROUPS))
    data = UsageRowOut(many=True)
    total = UsageSumsOut()

    def get_fields(self):
        fields = super().get_fields()
        fields["from"] = serializers.DateField()
        fields["to"] = serializers.DateField()
        return fields


class GenerationQueryIn(serializers.Serializer):
    id = serializers.UUIDField(help_text="The request id: the X-Request-Id header of the /v1 response")


class GenerationOut(TokenKindsOut):
    id = serializers.UUIDField(source="request_id")
    created_at = serializers.DateTimeField()
    model = serializers.CharField(source="model.name")
    endpoint = serializers.ChoiceField(choices=Endpoint.choices, help_text="The /v1 endpoint it was for")
    provider = serializers.CharField(source="provider.name", allow_null=True, default=None)
    key_id = serializers.IntegerField(allow_null=True)
    prompt_tokens = serializers.IntegerField(help_text="All of the input, cache reads and writes included")
    completion_tokens = serializers.IntegerField(help_text="All of the output, reasoning included")
    total_tokens = serializers.SerializerMethodField()
    tokens_estimated = serializers.BooleanField()
    cost = UsdField()
    latency_ms = serializers.IntegerField()
    ttft_ms = serializers.IntegerField(allow_null=True)
    streamed = serializers.BooleanField()
    finish_reason = serializers.CharField()
    status = serializers.IntegerField(help_text="The HTTP status the client got (499: it went away first)")
    error_code = serializers.CharField()
    client_disconnected = serializers.BooleanField()

    def get_total_tokens(self, record) -> int:
        return record.prompt_tokens + record.completion_tokens


class ErrorDetailOut(serializers.Serializer):
    message = serializers.CharField()
    code = serializers.CharField()
    fields = serializers.DictField(required=False, help_text="Validation errors per field (400 only)")


class ErrorOut(serializers.Serializer):
    error = ErrorDetailOut()
