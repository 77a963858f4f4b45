"""The dashboard's forms. Each error message says what to change, not only what is wrong."""

from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from typing import Any

from django import forms
from django.contrib.auth import forms as auth_forms
from django.contrib.auth import password_validation
from django.core.exceptions import ValidationError
from django.utils import timezone

from billing.models import Endpoint
from billing.selectors import UsageFilter
from portal.accounts.models import ApiKey, User
from portal.site import throttle
from portal.site.selectors import key_list, model_catalog_list
from proxy.catalog.models import Model

PRESET_AMOUNTS = [Decimal(10), Decimal(25), Decimal(50), Decimal(100)]
MAX_USAGE_RANGE_DAYS = 366
# Django's validators explain themselves as an HTML list; one sentence reads better under a field.
PASSWORD_HELP = "At least 8 characters; not a common password, not all digits, not like your email."


def _dollars_field(
    *, label: str, what: str, max_digits: int, attrs: dict[str, str], messages: dict[str, str]
) -> forms.DecimalField:
    """An optional amount of US dollars in whole cents; ``what`` names it in the messages, and ``messages`` adds
    the field's own (what to do when it is too small, ...)."""
    return forms.DecimalField(
        label=label,
        required=False,
        min_value=Decimal("0.01"),
        max_digits=max_digits,
        decimal_places=2,
        widget=forms.NumberInput(attrs={"step": "0.01", **attrs}),
        error_messages={
            "invalid": f"Enter {what} as a number of dollars, like 20 or 12.50.",
            "max_decimal_places": "Use at most 2 decimal places (cents).",
            **messages,
        },
    )


class SignupForm(forms.Form):
    email = forms.EmailField(
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        error_messages={
            "required": "Enter your email address.",
            "invalid": "Enter a valid email address, like name@example.com.",
        },
    )
    password = forms.CharField(
        strip=False,
        widget=forms.PasswordInput(attrs={"autocomplete": "new-password"}),
        help_text=PASSWORD_HELP,
        error_messages={"required": "Choose a password."},
    )

    TAKEN = "An account with this email already exists. Log in, or reset your password if you forgot it."

    def clean_email(self) -> str:
        email = self.cleaned_data["email"].strip().lower()
        if User.objects.filter(email__iexact=email).exists():
            raise ValidationError(self.TAKEN, code="taken")
        return email

    def clean(self):
        data = super().clean()
        email, password = data.get("email"), data.get("password")
        if password:
            try:
                password_validation.validate_password(password, user=User(email=email or ""))
            except ValidationError as exc:
                self.add_error("password", exc)
        return data


class LoginForm(auth_forms.AuthenticationForm):
    """Django's sign-in form with email as the name, friendlier errors, and the throttle in front."""

    username = forms.EmailField(
        label="Email",
        max_length=254,
        widget=forms.EmailInput(attrs={"autocomplete": "email", "autofocus": True}),
        error_messages={
            "required": "Enter your email address.",
            "invalid": "Enter a valid email address, like name@example.com.",
        },
    )
    error_messages = {
        "invalid_login": (
            "That email and password don't match an account. Check both, or reset your password."
        ),
        "inactive": "This account is disabled. Contact the operator of this service.",
    }

    def __init__(self, request=None, *args, **kwargs):
        super().__init__(request, *args, **kwargs)
        self.fields["password"].error_messages["required"] = "Enter your password."

    def clean_username(self) -> str:
        return self.cleaned_data["username"].strip().lower()

    def clean(self):
        email = self.cleaned_data.get("username")
        address = throttle.client_address(self.request) if self.request else "unknown"
        if email and self.cleaned_data.get("password"):
            lockout = throttle.login_lockout_get(email=email, address=address)
            if lockout is not None:
                raise ValidationError(lockout.message, code="throttled")
            try:
                super().clean()
            except ValidationError:
                throttle.login_failure_record(email=email, address=address)
                raise
            throttle.login_success_record(email=email)
        return self.cleaned_data


class KeyCreateForm(forms.Form):
    name = forms.CharField(
        max_length=64,
        widget=forms.TextInput(attrs={"placeholder": "e.g. production-backend", "autocomplete": "off"}),
        help_text="Something that tells you where the key is used.",
        error_messages={
            "required": "Give the key a name, so you can tell it apart later.",
            "max_length": "Use at most 64 characters for the name.",
        },
    )
    expires_on = forms.DateField(
        required=False,
        label="Expires on (optional)",
        widget=forms.DateInput(attrs={"type": "date"}),
        help_text="The key stops working at 00:00 UTC on this day. Leave empty for no expiry.",
        error_messages={"invalid": "Enter the expiry date as YYYY-MM-DD."},
    )
    allowed_models = forms.MultipleChoiceField(
        required=False,
        label="Allowed models (optional)",
        widget=forms.CheckboxSelectMultiple,
        help_text="Leave all unticked to allow every model.",
    )
    spend_limit = _dollars_field(
        label="Spend limit in USD (optional)",
        what="the spend limit",
        max_digits=12,
        attrs={"min": "0.01", "placeholder": "e.g. 20.00"},
        messages={"min_value": "Enter a spend limit of at least 0.01 USD, or leave it empty for no limit."},
    )
    spend_reset = forms.ChoiceField(
        label="Spend limit resets",
        choices=ApiKey.SpendReset.choices,
        initial=ApiKey.SpendReset.MONTHLY,
        help_text="How often the amount spent against the limit starts again from zero.",
    )

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.fields["allowed_models"].choices = [
            (m, m) for m in model_catalog_list().values_list("name", flat=True)
        ]

    def clean_expires_on(self) -> date | None:
        day = self.cleaned_data["expires_on"]
        if day is not None and day <= timezone.now().date():
            raise ValidationError("Pick an expiry date after today (UTC), or leave it empty.")
        return day

    def service_kwargs(self) -> dict:
        """The cleaned data as ``key_create`` arguments."""
        data = self.cleaned_data
        day = data["expires_on"]
        return {
            "name": data["name"].strip(),
            "expires_at": datetime.combine(day, time.min, tzinfo=UTC) if day else None,
            "allowed_models": data["allowed_models"] or None,
            "spend_limit": data["spend_limit"],
            "spend_reset": data["spend_reset"] if data["spend_limit"] else ApiKey.SpendReset.NEVER,
        }


class RedeemForm(forms.Form):
    code = forms.CharField(
        max_length=64,
        label="Redemption code",
        widget=forms.TextInput(attrs={"autocomplete": "off", "spellcheck": "false", "autocapitalize": "off"}),
        error_messages={
            "required": "Enter the code you were given.",
            "max_length": "That is longer than any code: check that you pasted only the code.",
        },
    )


class BuyCreditsForm(forms.Form):
    """An amount to buy: a preset, or "Other amount" and a custom one. The range is the payment module's rule,
    checked when the purchase is opened; its message lands on the custom field."""

    preset = forms.TypedChoiceField(
        label="Amount",
        required=False,
        coerce=Decimal,
        empty_value=None,
        choices=[(str(a), f"${a}") for a in PRESET_AMOUNTS] + [("", "Other amount")],
        widget=forms.RadioSelect,
        initial=str(PRESET_AMOUNTS[1]),
    )
    custom = _dollars_field(
        label="Other amount in USD",
        what="the amount",
        max_digits=10,
        attrs={"min": "1", "placeholder": "e.g. 40"},
        messages={
            "min_value": "Enter an amount above zero.",
            "max_digits": "That amount is too large: enter a smaller one.",
        },
    )

    def clean(self):
        data = super().clean()
        amount = data.get("custom") if data.get("preset") is None else data.get("preset")
        if amount is None and "custom" not in self.errors:
            self.add_error("custom", "Pick an amount, or choose “Other amount” and enter one.")
        data["amount"] = amount
        return data


class _KeyChoiceField(forms.ModelChoiceField):
    """Lists each key by its name and prefix."""

    def label_from_instance(self, obj: ApiKey) -> str:
        return f"{obj.name} ({obj.prefix}…)"


class UsageFilterForm(forms.Form):
    """The usage page's filter (a GET form). Invalid input falls back to the defaults, with the error shown."""

    since = forms.DateField(
        label="From", required=False, widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the start date as YYYY-MM-DD."},
    )  # fmt: skip
    until = forms.DateField(
        label="To", required=False, widget=forms.DateInput(attrs={"type": "date"}),
        error_messages={"invalid": "Enter the end date as YYYY-MM-DD."},
    )  # fmt: skip
    key = _KeyChoiceField(
        queryset=ApiKey.objects.none(), required=False, empty_label="All keys",
        error_messages={"invalid_choice": "Pick one of your keys from the list."},
    )  # fmt: skip
    model = forms.ModelChoiceField(
        queryset=Model.objects.none(), required=False, empty_label="All models", to_field_name="name",
        error_messages={"invalid_choice": "Pick a model from the list."},
    )  # fmt: skip
    endpoint = forms.ChoiceField(
        choices=[("", "All endpoints"), *Endpoint.choices], required=False,
        error_messages={"invalid_choice": "Pick an endpoint from the list."},
    )  # fmt: skip

    def __init__(self, *args, user: User, **kwargs):
        super().__init__(*args, **kwargs)
        key, model = self.fields["key"], self.fields["model"]
        assert isinstance(key, forms.ModelChoiceField) and isinstance(model, forms.ModelChoiceField)
        key.queryset = key_list(user=user)
        model.queryset = Model.objects.order_by("name")

    @staticmethod
    def default_range() -> tuple[date, date]:
        today = timezone.now().date()
        return today - timedelta(days=29), today

    def clean(self):
        data = super().clean()
        since, until = data.get("since"), data.get("until")
        if since and until and since > until:
            self.add_error("until", "Pick an end date on or after the start date.")
        elif since and until and (until - since).days >= MAX_USAGE_RANGE_DAYS:
            self.add_error("until", f"Pick a range of at most {MAX_USAGE_RANGE_DAYS} days.")
        return data

    def usage_filter(self) -> UsageFilter:
        """The filter to apply: the valid fields, with the last 30 days filling in missing dates."""
        default_since, default_until = self.default_range()
        data = self.cleaned_data if self.is_valid() else {}
        until = data.get("until") or default_until
        since = data.get("since") or until - timedelta(days=29)
        if since > until or (until - since).days >= MAX_USAGE_RANGE_DAYS:
            since, until = default_since, default_until
        key, model = data.get("key"), data.get("model")
        return UsageFilter(
            since, until, key.pk if key else None, model.pk if model else None, data.get("endpoint") or None
        )


_PASSWORD_REQUIRED = {
    "email": "Enter the email address of your account.",
    "old_password": "Enter your current password.",
    "new_password1": "Enter a new password.",
    "new_password2": "Enter the new password again, to confirm it.",
}


class _ClearMessages:
    """Django's password forms, with messages that say what to do instead of "This field is required"."""

    error_messages: dict[str, Any] = {
        "password_mismatch": "The two new passwords don't match. Type the same password in both fields.",
        "password_incorrect": "Your current password is not right. Enter it again, or reset it from the login page.",
    }

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        for name, field in self.fields.items():
            if name in _PASSWORD_REQUIRED:
                field.error_messages["required"] = _PASSWORD_REQUIRED[name]
        if "old_password" in self.fields:
            self.fields["old_password"].label = "Current password"
        if "new_password1" in self.fields:
            self.fields["new_password1"].help_text = PASSWORD_HELP
            self.fields["new_password2"].label = "Confirm new password"
            self.fields["new_password2"].help_text = ""
        if "email" in self.fields:
            self.fields["email"].error_messages["invalid"] = (
                "Enter a valid email address, like name@example.com."
            )


class PasswordResetForm(_ClearMessages, auth_forms.PasswordResetForm):
    pass


class SetPasswordForm(_ClearMessages, auth_forms.SetPasswordForm):
    def save(self, commit: bool = True):
        user = super().save(commit=commit)
        # The lockout message promises a reset gets you in at once: a new password lifts the account's lock.
        throttle.login_success_record(email=user.email)
        return user


class PasswordChangeForm(_ClearMessages, auth_forms.PasswordChangeForm):
    pass
