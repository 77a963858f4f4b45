from django.contrib import admin

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

for model in (Account, DailyUsage, Hold, LedgerEntry, Purchase, RedemptionCode, ReconcileRun, UsageRecord):
    admin.site.register(model)
