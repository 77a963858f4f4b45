"""Operator grants and deductions: ledger entries with the operator as actor, an audit trail, no overdraft."""

from datetime import timedelta
from decimal import Decimal

import pytest
from django.db import transaction
from django.utils import timezone

from billing.credits import hold_take
from billing.models import Account, LedgerEntry
from billing.services import account_for, credits_deduct, credits_grant, hold_release
from portal.accounts.models import AuditEntry


def audits(account: Account, action: str) -> list[AuditEntry]:
    return list(AuditEntry.objects.filter(action=action, target_id=str(account.pk)).order_by("pk"))


def test_a_grant_by_an_operator_is_a_ledger_entry_and_an_audit_entry(live_db, make_user):
    operator, user = make_user(is_staff=True), make_user()
    account = account_for(user=user)
    credits_grant(account=account, amount=Decimal("3"), reason="welcome", actor=operator)
    entry = credits_grant(account=account, amount=Decimal("2.5"), reason="support ticket 42", actor=operator)
    assert (entry.kind, entry.amount, entry.memo, entry.actor) == (
        "grant",
        Decimal("2.5"),
        "support ticket 42",
        operator,
    )
    assert account_for(user=user).balance == Decimal("5.5")
    last = audits(account, "credits.grant")[-1]
    assert last.actor == operator and last.target_type == "billing.account"
    assert Decimal(last.before["balance"]) == Decimal(3) and Decimal(last.after["balance"]) == Decimal("5.5")
    assert last.after["reason"] == "support ticket 42" and last.after["ledger_entry"] == entry.pk


def test_grants_by_the_system_are_not_audited_as_a_person(live_db, make_user):
    account = account_for(user=make_user())
    entry = credits_grant(account=account, amount=Decimal("1"), reason="signup bonus", actor=None)
    assert entry.actor is None
    assert audits(account, "credits.grant") == []


def test_a_deduction_is_a_negative_entry_with_its_operator(live_db, make_user):
    operator, user = make_user(is_staff=True), make_user()
    account = account_for(user=user)
    credits_grant(account=account, amount=Decimal("10"), reason="test funds", actor=None)
    entry = credits_deduct(account=account, amount=Decimal("4"), reason="chargeback", actor=operator)
    assert (entry.kind, entry.amount, entry.memo, entry.actor) == (
        "deduct",
        Decimal(-4),
        "chargeback",
        operator,
    )
    assert account_for(user=user).balance == Decimal(6)
    audit = audits(account, "credits.deduct")[-1]
    assert (Decimal(audit.before["balance"]), Decimal(audit.after["balance"])) == (Decimal(10), Decimal(6))
    assert audit.actor == operator


def test_a_deduction_may_not_take_the_available_balance_below_zero(live_db, make_user):
    operator = make_user(is_staff=True)
    account = account_for(user=make_user())
    credits_grant(account=account, amount=Decimal("5"), reason="test funds", actor=None)
    # A gateway holds 2 USD for requests in flight: only 3 USD is available.
    hold_id, _, _ = hold_take(
        account_id=account.pk, hold_id=None, want=Decimal(2), minimum=Decimal(2), owner="test",
        expires_at=timezone.now() + timedelta(minutes=5),
    )  # fmt: skip
    try:
        with pytest.raises(ValueError, match=r"only 3 USD is available"):
            credits_deduct(account=account, amount=Decimal("3.01"), reason="too much", actor=operator)
        assert LedgerEntry.objects.filter(account=account, kind="deduct").count() == 0
        assert audits(account, "credits.deduct") == []
        credits_deduct(account=account, amount=Decimal("3"), reason="all of it", actor=operator)
        assert account_for(user=account.user).available == 0
    finally:
        with transaction.atomic():
            hold_release(hold_id=hold_id)
    assert account_for(user=account.user).balance == Decimal(2)


@pytest.mark.parametrize(("amount", "reason", "message"), [("0", "x", "positive"), ("-1", "x", "positive"),
                                                            ("1", "  ", "reason")])  # fmt: skip
def test_adjustments_refuse_nonsense(live_db, make_user, amount, reason, message):
    account = account_for(user=make_user())
    for move in (credits_grant, credits_deduct):
        with pytest.raises(ValueError, match=message):
            move(account=account, amount=Decimal(amount), reason=reason, actor=None)
    assert not LedgerEntry.objects.filter(account=account).exists()
