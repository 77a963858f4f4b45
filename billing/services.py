"""Writes that move money. Every movement is an append-only LedgerEntry plus an update of the cached balance,
in one transaction."""

from decimal import Decimal

from django.db import transaction
from django.db.models import F

from billing.models import Account, LedgerEntry
from portal.models import User


def account_for(*, user: User) -> Account:
    account, _ = Account.objects.get_or_create(user=user)
    return account


def ledger_post(
    *, account: Account, kind: str, amount: Decimal, memo: str = "", actor: User | None = None,
    reference: str | None = None, purchased: bool = False,
) -> LedgerEntry:  # fmt: skip
    """Append one entry and move the cached balance with it. Call inside the caller's transaction."""
    entry = LedgerEntry.objects.create(
        account=account, kind=kind, amount=amount, memo=memo, actor=actor, reference=reference
    )
    changes = {"balance": F("balance") + amount}
    if purchased:
        changes["total_purchased"] = F("total_purchased") + amount
    Account.objects.filter(pk=account.pk).update(**changes)
    return entry


def credits_grant(*, account: Account, amount: Decimal, reason: str, actor: User | None) -> LedgerEntry:
    if amount <= 0:
        raise ValueError("a grant must be positive")
    if not reason.strip():
        raise ValueError("a grant needs a reason")
    with transaction.atomic():
        return ledger_post(
            account=account, kind=LedgerEntry.Kind.GRANT, amount=amount, memo=reason, actor=actor
        )
