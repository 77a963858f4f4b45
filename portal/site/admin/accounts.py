"""The operators' admin for users, keys and the audit trail. Actions are thin: they call portal/accounts/services.py.

Every change to money or access made here writes an AuditEntry (the services do it) and tells the gateways.
"""

from datetime import datetime
from decimal import Decimal
from typing import TYPE_CHECKING, TypedDict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.auth.admin import UserAdmin as BaseUserAdmin
from django.contrib.auth.forms import BaseUserCreationForm
from django.db.models import Count, Max, Q, QuerySet
from django.http import HttpRequest
from django.utils import timezone

from billing.services import account_for, credits_deduct, credits_grant
from portal.accounts import services
from portal.accounts.models import ApiKey, AuditEntry, User
from portal.site.admin_actions import form_action
from portal.site.auth import acting_user

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

# --- Users -----------------------------------------------------------------------------------------------------


class UserCreationForm(BaseUserCreationForm):
    class Meta:
        model = User
        fields = ("email",)

    def clean_email(self) -> str:
        email = User.objects.normalize_email(self.cleaned_data["email"]).lower()
        if User.objects.filter(email__iexact=email).exists():
            raise forms.ValidationError("A user with this email already exists.")
        return email


class CreditsForm(forms.Form):
    amount = forms.DecimalField(
        min_value=Decimal("0.000001"),
        max_digits=18,
        decimal_places=6,
        help_text="USD, for each selected user",
    )
    reason = forms.CharField(max_length=300, help_text="Kept in the ledger and the audit trail")


class LimitsForm(forms.Form):
    rpm_limit = forms.IntegerField(
        min_value=1, required=False, label="Requests per minute", help_text="Empty: the site default"
    )
    rpd_limit = forms.IntegerField(
        min_value=1, required=False, label="Requests per day", help_text="Empty: the default or the tier rule"
    )


class _UserRow(TypedDict):
    """What ``UserAdmin.get_queryset`` annotates each user with."""

    live_keys: int
    last_used: datetime | None


@admin.register(User)
class UserAdmin(BaseUserAdmin):
    add_form = UserCreationForm
    ordering = ["email"]
    list_display = [
        "email", "balance", "total_purchased", "tier", "key_count", "last_activity", "is_active", "is_staff",
    ]  # fmt: skip
    list_filter = ["is_active", "is_staff"]
    search_fields = ["email"]
    readonly_fields = ["date_joined", "last_login"]
    fieldsets = [
        (None, {"fields": ["email", "name", "password"]}),
        ("Limits", {"fields": ["rpm_limit", "rpd_limit"]}),
        ("Access", {"fields": ["is_active", "is_staff", "is_superuser", "groups", "user_permissions"]}),
        ("Dates", {"fields": ["date_joined", "last_login"]}),
    ]
    add_fieldsets = [(None, {"classes": ["wide"], "fields": ["email", "password1", "password2"]})]
    actions = ["grant_credits", "deduct_credits", "disable_accounts", "enable_accounts", "set_limits"]

    def get_queryset(self, request: HttpRequest) -> QuerySet:
        return (
            super()
            .get_queryset(request)
            .select_related("account")
            .annotate(
                live_keys=Count("api_keys", filter=Q(api_keys__revoked_at__isnull=True)),
                last_used=Max("api_keys__last_used_at"),
            )
        )

    @admin.display(description="Balance (USD)", ordering="account__balance")
    def balance(self, user: User):
        return _money(getattr(getattr(user, "account", None), "balance", None))

    @admin.display(description="Purchased (USD)", ordering="account__total_purchased")
    def total_purchased(self, user: User):
        return _money(getattr(getattr(user, "account", None), "total_purchased", None))

    @admin.display(description="Tier")
    def tier(self, user: User) -> str:
        account = getattr(user, "account", None)
        purchased = account.total_purchased if account else Decimal(0)
        return "paid" if purchased >= Decimal(settings.TIER_THRESHOLD_USD) else "free"

    @admin.display(description="Keys", ordering="live_keys")
    def key_count(self, user: "WithAnnotations[User, _UserRow]") -> int:
        return user.live_keys

    @admin.display(description="Last activity", ordering="last_used")
    def last_activity(self, user: "WithAnnotations[User, _UserRow]") -> datetime | None:
        return user.last_used

    def save_model(self, request: HttpRequest, obj: User, form, change: bool) -> None:
        if not change:
            super().save_model(request, obj, form, change)
            account_for(user=obj)
            services.audit_record(
                actor=acting_user(request), action="user.create", target=obj, before={},
                after=services.snapshot(obj=obj, fields=services.USER_AUDITED_FIELDS),
            )  # fmt: skip
            return
        before = services.snapshot(obj=User.objects.get(pk=obj.pk), fields=services.USER_AUDITED_FIELDS)
        super().save_model(request, obj, form, change)
        services.user_edit_record(user=obj, before=before, actor=acting_user(request))

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False  # accounts carry a ledger: disable them instead

    @admin.action(permissions=["change"], description="Grant credits to the selected users")
    def grant_credits(self, request: HttpRequest, queryset: QuerySet):
        def apply(users: QuerySet, data: dict) -> None:
            for user in users:
                credits_grant(
                    account=account_for(user=user),
                    amount=data["amount"],
                    reason=data["reason"],
                    actor=acting_user(request),
                )  # writes the ledger entry and the audit entry
            self.message_user(request, f"Granted {data['amount']} USD to {len(users)} user(s).")

        return form_action(
            self, request, queryset, form_class=CreditsForm, title="Grant credits",
            intro="Add credits to each of these accounts:", submit_label="Grant", apply=apply,
        )  # fmt: skip

    @admin.action(permissions=["change"], description="Deduct credits from the selected users")
    def deduct_credits(self, request: HttpRequest, queryset: QuerySet):
        def apply(users: QuerySet, data: dict) -> None:
            done = 0
            for user in users:
                try:
                    credits_deduct(
                        account=account_for(user=user),
                        amount=data["amount"],
                        reason=data["reason"],
                        actor=acting_user(request),
                    )
                    done += 1
                except ValueError as exc:
                    self.message_user(request, f"{user}: {exc}", messages.ERROR)
            if done:
                self.message_user(request, f"Deducted {data['amount']} USD from {done} user(s).")

        return form_action(
            self, request, queryset, form_class=CreditsForm, title="Deduct credits",
            intro="Take credits from each of these accounts:", submit_label="Deduct", apply=apply,
        )  # fmt: skip

    @admin.action(
        permissions=["change"], description="Disable the selected accounts (their keys get 403 at once)"
    )
    def disable_accounts(self, request: HttpRequest, queryset: QuerySet) -> None:
        done = 0
        for user in queryset:
            try:
                services.user_set_active(user=user, active=False, actor=acting_user(request))
                done += 1
            except ValueError as exc:
                self.message_user(request, f"{user}: {exc}", messages.ERROR)
        self.message_user(request, f"Disabled {done} account(s).")

    @admin.action(permissions=["change"], description="Enable the selected accounts")
    def enable_accounts(self, request: HttpRequest, queryset: QuerySet) -> None:
        for user in queryset:
            services.user_set_active(user=user, active=True, actor=acting_user(request))
        self.message_user(request, f"Enabled {len(queryset)} account(s).")

    @admin.action(permissions=["change"], description="Set per-user RPM/RPD limits")
    def set_limits(self, request: HttpRequest, queryset: QuerySet):
        def apply(users: QuerySet, data: dict) -> None:
            for user in users:
                services.user_set_limits(
                    user=user,
                    rpm_limit=data["rpm_limit"],
                    rpd_limit=data["rpd_limit"],
                    actor=acting_user(request),
                )
            self.message_user(request, f"Set the limits of {len(users)} user(s).")

        return form_action(
            self, request, queryset, form_class=LimitsForm, title="Set limits",
            intro="Per-user limits apply to keys without limits of their own:", submit_label="Set limits",
            apply=apply,
        )  # fmt: skip


def _money(value: Decimal | None) -> str:
    return "—" if value is None else f"{value:.2f}"


# --- API keys --------------------------------------------------------------------------------------------------


class KeyStatusFilter(admin.SimpleListFilter):
    title = "status"
    parameter_name = "status"

    def lookups(self, request, model_admin):
        return [
            ("active", "Active"),
            ("disabled", "Disabled"),
            ("expired", "Expired"),
            ("revoked", "Revoked"),
        ]

    def queryset(self, request, queryset):
        now = timezone.now()
        live = Q(revoked_at__isnull=True)
        unexpired = Q(expires_at__isnull=True) | Q(expires_at__gt=now)
        return {
            "active": queryset.filter(live & unexpired, disabled=False),
            "disabled": queryset.filter(live, disabled=True),
            "expired": queryset.filter(live, disabled=False, expires_at__lte=now),
            "revoked": queryset.filter(revoked_at__isnull=False),
        }.get(self.value(), queryset)


class ApiKeyForm(forms.ModelForm):
    class Meta:
        model = ApiKey
        fields = ["name", "disabled", "expires_at", "allowed_models", "rpm_limit", "rpd_limit", "spend_limit",
                  "spend_reset"]  # fmt: skip

    def clean_allowed_models(self) -> list[str]:
        value = self.cleaned_data["allowed_models"] or []
        if not isinstance(value, list) or not all(isinstance(v, str) and v.strip() for v in value):
            raise forms.ValidationError('A list of model ids, like ["deepseek-chat"]; [] allows every model.')
        return value


@admin.register(ApiKey)
class ApiKeyAdmin(admin.ModelAdmin):
    """Keys are minted by their owners (dashboard, API, ``mint_key``), never here: the raw key is shown once,
    to its owner. The hash is never shown. Keys are revoked, not deleted, so usage keeps its key."""

    form = ApiKeyForm
    list_display = [
        "name", "owner", "prefix", "kind", "status", "limits", "created_at", "last_used_at",
    ]  # fmt: skip
    list_filter = ["kind", KeyStatusFilter, "spend_reset", "created_at", "last_used_at"]
    list_select_related = ["owner"]
    search_fields = ["owner__email", "prefix", "name"]
    fieldsets = [
        (None, {"fields": ["owner", "kind", "name", "prefix", "status"]}),
        ("State", {"fields": ["disabled", "expires_at", "revoked_at", "created_at", "last_used_at"]}),
        ("Limits", {"fields": ["allowed_models", "rpm_limit", "rpd_limit"]}),
        ("Spend", {"fields": ["spend_limit", "spend_reset", "spend_used", "spend_period_start"]}),
    ]
    readonly_fields = [
        "owner", "kind", "prefix", "status", "revoked_at", "created_at", "last_used_at", "spend_used",
        "spend_period_start",
    ]  # fmt: skip
    actions = ["revoke_keys", "disable_keys", "enable_keys"]

    @admin.display(description="Limits")
    def limits(self, key: ApiKey) -> str:
        rpm = key.rpm_limit or "default"
        rpd = key.rpd_limit or "default"
        spend = (
            f", spend ≤ {key.spend_limit:.2f} USD {key.spend_reset}" if key.spend_limit is not None else ""
        )
        return f"{rpm} RPM, {rpd} RPD{spend}"

    def get_readonly_fields(self, request: HttpRequest, obj: ApiKey | None = None):
        if obj is not None and obj.revoked_at is not None:
            return [*self.readonly_fields, *ApiKeyForm.Meta.fields]  # a revoked key is final
        return self.readonly_fields

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def save_model(self, request: HttpRequest, obj: ApiKey, form, change: bool) -> None:
        changes = {name: form.cleaned_data[name] for name in form.changed_data}
        services.key_update(key=obj, actor=acting_user(request), **changes)

    @admin.action(
        permissions=["change"], description="Revoke the selected keys (for good, effective at once)"
    )
    def revoke_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        for key in queryset:
            services.key_revoke_audited(key=key, actor=acting_user(request))
        self.message_user(request, f"Revoked {len(queryset)} key(s).")

    @admin.action(permissions=["change"], description="Disable the selected keys")
    def disable_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_disabled(request, queryset.filter(revoked_at__isnull=True), True)

    @admin.action(permissions=["change"], description="Enable the selected keys")
    def enable_keys(self, request: HttpRequest, queryset: QuerySet) -> None:
        self._set_disabled(request, queryset.filter(revoked_at__isnull=True), False)

    def _set_disabled(self, request: HttpRequest, queryset: QuerySet, disabled: bool) -> None:
        for key in queryset:
            services.key_update(key=key, actor=acting_user(request), disabled=disabled)
        self.message_user(request, f"{'Disabled' if disabled else 'Enabled'} {len(queryset)} key(s).")


# --- The audit trail: read-only and append-only -----------------------------------------------------------------


class ReadOnlyAdmin(admin.ModelAdmin):
    """Nobody adds, changes or deletes these rows here, superusers included."""

    def has_add_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj=None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj=None) -> bool:
        return False


@admin.register(AuditEntry)
class AuditEntryAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "actor", "action", "target_type", "target_id"]
    list_filter = ["action", "target_type"]
    list_select_related = ["actor"]
    search_fields = ["=target_id", "actor__email", "action"]
    date_hierarchy = "created_at"
