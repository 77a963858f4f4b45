"""Writes that move money. Every movement is an append-only LedgerEntry plus an update of the cached balance,
in one transaction."""

import secrets
from decimal import Decimal

from django.db import transaction
from django.db.models import Expression, F, Value
from django.db.models.functions import Greatest
from django.utils import timezone

from billing.models import Account, Hold, LedgerEntry, RedemptionCode
from portal.accounts.models import AuditEntry, User
from portal.accounts.services import audit_record, user_create

# No 0/O, 1/I/L: a code read aloud or copied from paper can't be mistyped into another valid code.
CODE_ALPHABET = "ABCDEFGHJKMNPQRSTUVWXYZ23456789"
CODE_GROUPS, CODE_GROUP_LENGTH = 3, 4  # 31**12, about 59 bits: guessing a live code is hopeless
MAX_CODES_PER_BATCH = 10_000


class RedeemError(ValueError):
    """A code that can't be redeemed. The message is for the person who typed it and says what to do."""


def held_minus(amount: Decimal | Expression):
    """``held - amount`` (an amount, or an expression per row), never below zero. On PostgreSQL's exact
    numerics the floor never applies; it absorbs the float rounding of SQLite's embedded mode, which stores
    decimals as floating point."""
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
        entry = ledger_post(
            account=account, kind=LedgerEntry.Kind.GRANT, amount=amount, memo=reason, actor=actor
        )
        if actor is not None:
            money_audit(actor=actor, action="credits.grant", entry=entry)
        return entry


def credits_deduct(*, account: Account, amount: Decimal, reason: str, actor: User | None) -> LedgerEntry:
    """Take credit back (a negative entry). Refused if it would take the available balance below zero."""
    if amount <= 0:
        raise ValueError("a deduction must be positive: give the amount to take away")
    if not reason.strip():
        raise ValueError("a deduction needs a reason")
    with transaction.atomic():
        # The row lock keeps gateways from leasing this credit between the check and the entry.
        row = Account.objects.select_for_update().get(pk=account.pk)
        if row.available < amount:
            raise ValueError(
                f"cannot deduct {amount.normalize()} USD: only {max(row.available, Decimal(0)).normalize()} "
                "USD is available (balance minus credit held for requests in flight)"
            )
        entry = ledger_post(
            account=account, kind=LedgerEntry.Kind.DEDUCT, amount=-amount, memo=reason, actor=actor
        )
        if actor is not None:
            money_audit(actor=actor, action="credits.deduct", entry=entry)
        return entry


def money_audit(*, actor: User, action: str, entry: LedgerEntry) -> AuditEntry:
    """Record a person's money movement with the balance before and after. Call right after ``ledger_post``
    in its transaction: the balance update there locks the row, so the balance read here is exactly ours."""
    after = Account.objects.values("balance", "held").get(pk=entry.account_id)
    return AuditEntry.objects.create(
        actor=actor, action=action, target_type="billing.account", target_id=str(entry.account_id),
        before={"balance": str(after["balance"] - entry.amount)},
        after={"balance": str(after["balance"]), "available": str(after["balance"] - after["held"]),
               "amount": str(entry.amount), "reason": entry.memo, "ledger_entry": entry.pk},
    )  # fmt: skip


def code_make() -> str:
    groups = (
        "".join(secrets.choice(CODE_ALPHABET) for _ in range(CODE_GROUP_LENGTH)) for _ in range(CODE_GROUPS)
    )
    return "ISP-" + "-".join(groups)


def code_normalise(raw: str) -> str:
    """What a person typed, as stored: no surrounding or inner spaces, upper case."""
    return "".join(raw.split()).upper()


def codes_generate(*, amount: Decimal, count: int, batch: str, actor: User | None) -> list[RedemptionCode]:
    """A batch of single-use codes worth ``amount`` each."""
    if amount <= 0:
        raise ValueError("a code must be worth a positive amount")
    if not 1 <= count <= MAX_CODES_PER_BATCH:
        raise ValueError(f"generate between 1 and {MAX_CODES_PER_BATCH} codes at a time")
    max_length = RedemptionCode._meta.get_field("batch").max_length
    if max_length is not None and len(batch) > max_length:
        raise ValueError("the batch name is too long (64 characters at most)")
    codes: set[str] = set()
    while len(codes) < count:  # a collision is astronomically unlikely; the unique column would catch it
        codes |= {code_make() for _ in range(count - len(codes))}
    return RedemptionCode.objects.bulk_create(
        [RedemptionCode(code=c, amount=amount, batch=batch, created_by=actor) for c in sorted(codes)]
    )


def code_redeem(*, user: User, code: str) -> LedgerEntry:
    """Credit ``user`` with a code's amount, once per code however many try it at the same moment."""
    normal = code_normalise(code)
    if not normal:
        raise RedeemError("Enter a redemption code.")
    with transaction.atomic():
        row = RedemptionCode.objects.filter(code=normal).first()
        if row is None:
            raise RedeemError(
                "That is not a valid code. Check it for typos: codes look like ISP-XXXX-XXXX-XXXX."
            )
        # The conditional UPDATE is the claim: a concurrent redeemer waits on the row lock, then matches nothing.
        claimed = RedemptionCode.objects.filter(pk=row.pk, redeemed_at__isnull=True).update(
            redeemed_at=timezone.now(), redeemed_by=user
        )
        if not claimed:
            raise RedeemError(_used_message(row.pk, user))
        return ledger_post(
            account=account_for(user=user), kind=LedgerEntry.Kind.REDEEM, amount=row.amount,
            memo=f"code {row.code}", reference=f"redeem:{row.pk}",
        )  # fmt: skip


def _used_message(code_id: int, user: User) -> str:
    if RedemptionCode.objects.filter(pk=code_id, redeemed_by=user).exists():
        return "You have already redeemed this code; its credit is in your balance."
    return "This code has already been used. Each code can be redeemed once."


def hold_release(*, hold_id: int) -> bool:
    """Return a slice of held credit to its account. Safe to call twice. Call inside a transaction."""
    account_id = Hold.objects.filter(pk=hold_id).values_list("account_id", flat=True).first()
    if account_id is None:
        return False
    accounts_lock(ids=[account_id])  # the account before its hold, as every writer does
    hold = Hold.objects.select_for_update().filter(pk=hold_id).first()
    if hold is None:
        return False
    Account.objects.filter(pk=hold.account_id).update(held=held_minus(hold.amount))
    hold.delete()
    return True


def accounts_lock(*, ids) -> None:
    """Lock account rows in id order. Every transaction that writes accounts and holds takes its account
    locks first and in this order, so two of them can never wait on each other in a cycle (a deadlock)."""
    list(
        Account.objects.select_for_update(no_key=True)
        .filter(pk__in=sorted(set(ids)))
        .order_by("pk")
        .values("pk")
    )


def codes_batch_create(*, amount: Decimal, count: int, batch: str, actor: User | None) -> list:
    """Generate a batch of redemption codes and record who made how much credit, in one transaction."""
    with transaction.atomic():
        codes = codes_generate(amount=amount, count=count, batch=batch, actor=actor)
        audit_record(
            actor=actor, action="codes.generate", target=("billing.redemptioncode", batch), before={},
            after={"count": len(codes), "amount": str(amount), "total": str(amount * len(codes))},
        )  # fmt: skip
    return codes


def customer_create(*, email: str, password: str | None = None, is_staff: bool = False) -> User:
    """A new user with their credit account, in one transaction: signing up, and the account commands."""
    with transaction.atomic():
        user = user_create(email=email, password=password, is_staff=is_staff)
        account_for(user=user)
    return user
