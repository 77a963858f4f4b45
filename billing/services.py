"""Writes that move money. Every movement is an append-only LedgerEntry plus an update of the cached balance,
in one transaction."""

from decimal import Decimal

from django.db import transaction
from django.db.models import F, Value
from django.db.models.functions import Greatest

from billing.models import Account, Hold, LedgerEntry
from portal.models import User


def held_minus(amount: Decimal):
    """``held - amount``, never below zero. On PostgreSQL's exact numerics the floor never applies; it absorbs
    the float rounding of SQLite's embedded mode, which stores decimals as floating point."""
    return Greatest(F("held") - amount, Value(Decimal(0)))


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


def hold_release(*, hold_id: int) -> bool:
    """Return a slice of held credit to its account. Safe to call twice. Call inside a transaction."""
    hold = Hold.objects.select_for_update().filter(pk=hold_id).first()
    if hold is None:
        return False
    Account.objects.filter(pk=hold.account_id).update(held=held_minus(hold.amount))
    hold.delete()
    return True
