"""The operators' admin for money and usage. The ledger and usage are read-only here for everyone, superusers
included: money moves only through billing/services.py (the user admin's grant and deduct actions call it)."""

import csv
import json
from decimal import Decimal

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.utils.html import format_html
from django.utils.http import urlencode

from billing.models import (
    Account,
    DailyUsage,
    Hold,
    LedgerEntry,
    Purchase,
    ReconcileRun,
    RedemptionCode,
    UsageRecord,
)
from billing.services import MAX_CODES_PER_BATCH, codes_batch_create
from portal.accounts.services import audit_record
from portal.site import overview
from portal.site.admin.accounts import ReadOnlyAdmin
from portal.site.auth import acting_user


@admin.register(LedgerEntry)
class LedgerEntryAdmin(ReadOnlyAdmin):
    """Append-only: corrections are new entries (grant or deduct on the user), never edits."""

    list_display = ["created_at", "account", "kind", "amount", "memo", "actor", "request_id"]
    list_filter = ["kind"]
    list_select_related = ["account__user", "actor"]
    search_fields = ["account__user__email", "memo", "=reference"]
    date_hierarchy = "created_at"


@admin.register(Account)
class AccountAdmin(ReadOnlyAdmin):
    list_display = ["user", "balance", "held", "available", "total_purchased", "updated_at"]
    list_select_related = ["user"]
    search_fields = ["user__email"]


@admin.register(Hold)
class HoldAdmin(ReadOnlyAdmin):
    list_display = ["account", "amount", "owner", "created_at", "expires_at"]
    list_select_related = ["account__user"]


@admin.register(UsageRecord)
class UsageRecordAdmin(ReadOnlyAdmin):
    list_display = [
        "request_id", "created_at", "user", "model", "endpoint", "provider", "status", "prompt_tokens",
        "cache_read_tokens", "completion_tokens", "reasoning_tokens", "cost", "latency_ms", "streamed",
        "client_disconnected",
    ]  # fmt: skip
    readonly_fields = ["usage_raw_json"]
    fieldsets = [
        (None, {"fields": ["request_id", "created_at", "user", "key", "model", "endpoint", "provider"]}),
        (
            "Tokens",
            {
                "fields": ["prompt_tokens", "cache_read_tokens", "cache_write_tokens", "cache_write_1h_tokens",
                           "completion_tokens", "reasoning_tokens", "tokens_estimated", "usage_raw_json"],
                "description": "Cache tokens are parts of the prompt tokens, reasoning tokens a part of the "
                "completion tokens. The raw usage is the upstream's object as it came, for audits.",
            },
        ),
        (
            "Outcome",
            {"fields": ["cost", "status", "error_code", "finish_reason", "latency_ms", "ttft_ms", "streamed",
                        "client_disconnected", "note"]},
        ),
    ]  # fmt: skip
    list_filter = [
        "model", "endpoint", "provider", "status", "streamed", "client_disconnected", "note", "error_code",
    ]  # fmt: skip
    list_select_related = ["user", "model", "provider"]
    search_fields = ["=request_id"]
    search_help_text = "An exact request id"
    date_hierarchy = "created_at"
    show_full_result_count = False  # the table is large; don't count it twice per page

    @admin.display(description="Raw usage")
    def usage_raw_json(self, record: UsageRecord) -> str:
        if record.usage_raw is None:
            return "none (counted locally, or not kept)"
        # Escaped by format_html; <pre> keeps the indentation an auditor reads the object by.
        return format_html("<pre>{}</pre>", json.dumps(record.usage_raw, indent=2, sort_keys=True))

    def get_search_results(self, request: HttpRequest, queryset, search_term: str):
        # An exact UUID match: a text search over request ids would scan the whole table.
        term = search_term.strip()
        if not term:
            return queryset, False
        try:
            return queryset.filter(request_id=term), False
        except ValidationError:
            return queryset.none(), False

    def get_urls(self):
        view = self.admin_site.admin_view(self.overview_view)
        return [path("overview/", view, name="overview"), *super().get_urls()]

    def overview_view(self, request: HttpRequest) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "title": "Overview",
            "overview": overview.overview_get(),
        }
        return TemplateResponse(request, "admin/overview.html", context)


@admin.register(DailyUsage)
class DailyUsageAdmin(ReadOnlyAdmin):
    list_display = [
        "day", "user", "key", "model", "endpoint", "requests", "prompt_tokens", "cache_read_tokens",
        "completion_tokens", "reasoning_tokens", "cost",
    ]  # fmt: skip
    list_filter = ["model", "endpoint"]
    list_select_related = ["user", "key", "model"]
    search_fields = ["user__email"]
    date_hierarchy = "day"


@admin.register(Purchase)
class PurchaseAdmin(ReadOnlyAdmin):
    list_display = ["created_at", "user", "amount", "status", "completed_at", "stripe_session_id"]
    list_filter = ["status"]
    list_select_related = ["user"]
    search_fields = ["user__email", "=stripe_session_id"]
    date_hierarchy = "created_at"


@admin.register(ReconcileRun)
class ReconcileRunAdmin(ReadOnlyAdmin):
    list_display = ["ran_at", "ok", "accounts_checked"]
    list_filter = ["ok"]


# --- Redemption codes ------------------------------------------------------------------------------------------


class CodeStateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(self, request, model_admin):
        return [("unused", "Unused"), ("redeemed", "Redeemed")]

    def queryset(self, request, queryset):
        if self.value() == "unused":
            return queryset.filter(redeemed_at__isnull=True)
        if self.value() == "redeemed":
            return queryset.filter(redeemed_at__isnull=False)
        return queryset


class CodeBatchForm(forms.Form):
    amount = forms.DecimalField(
        min_value=Decimal("0.01"), max_digits=18, decimal_places=6, help_text="USD per code"
    )
    count = forms.IntegerField(min_value=1, max_value=MAX_CODES_PER_BATCH, help_text="How many codes")
    batch = forms.CharField(max_length=64, help_text="A label for this batch, e.g. meetup-2025-06")


@admin.register(RedemptionCode)
class RedemptionCodeAdmin(ReadOnlyAdmin):
    """Codes are generated in batches (the "Generate codes" button) and redeemed by users; never edited."""

    list_display = ["code", "amount", "batch", "created_by", "created_at", "redeemed_by", "redeemed_at"]
    list_filter = [CodeStateFilter, "batch"]
    list_select_related = ["created_by", "redeemed_by"]
    search_fields = ["=code", "batch"]
    actions = ["export_unused_csv"]
    change_list_template = "admin/billing/redemptioncode/change_list.html"

    def get_urls(self):
        view = self.admin_site.admin_view(self.generate_view)
        return [path("generate/", view, name="billing_redemptioncode_generate"), *super().get_urls()]

    def generate_view(self, request: HttpRequest):
        if not request.user.has_perm("billing.add_redemptioncode"):
            raise PermissionDenied  # codes are money: only operators allowed to create them
        form = CodeBatchForm(request.POST or None)
        if request.method == "POST" and form.is_valid():
            codes = codes_batch_create(**form.cleaned_data, actor=acting_user(request))
            batch = form.cleaned_data["batch"]
            self.message_user(request, f"Generated {len(codes)} codes in batch {batch}.")
            return redirect(
                f"{reverse('admin:billing_redemptioncode_changelist')}?{urlencode({'batch': batch})}"
            )
        context = {
            **self.admin_site.each_context(request),
            "title": "Generate redemption codes",
            "intro": "Each code is single-use and adds its amount to the account that redeems it. "
            "The batch is recorded in the audit trail.",
            "submit_label": "Generate",
            "form": form,
            "opts": self.model._meta,
        }
        return TemplateResponse(request, "admin/billing/redemptioncode/generate.html", context)

    @admin.action(description="Export the selected unused codes as CSV")
    def export_unused_csv(self, request: HttpRequest, queryset) -> HttpResponse:
        codes = queryset.filter(redeemed_at__isnull=True).order_by("batch", "id")
        response = HttpResponse(content_type="text/csv")
        response["Content-Disposition"] = 'attachment; filename="redemption-codes.csv"'
        writer = csv.writer(response)
        writer.writerow(["code", "amount_usd", "batch", "created_at"])
        for code in codes:
            writer.writerow([code.code, code.amount, code.batch, code.created_at.isoformat()])
        audit_record(
            actor=acting_user(request), action="codes.export", target=("billing.redemptioncode", "export"),
            before={}, after={"count": len(codes), "ids": [c.pk for c in codes][:1000]},
        )  # fmt: skip
        return response
