"""Redemption codes: generated unique and unambiguous, redeemed once, even when many try at the same moment."""

import re
import threading
from decimal import Decimal

import pytest
from django.db import connection

from billing.models import LedgerEntry, RedemptionCode
from billing.services import CODE_ALPHABET, RedeemError, account_for, code_redeem, codes_generate
from tests.conftest import unique

CODE_SHAPE = re.compile(rf"ISP-[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}-[{CODE_ALPHABET}]{{4}}")


def race(n: int, work) -> list:
    """Run ``work(i)`` in ``n`` threads released together; each thread uses (and closes) its own connection.

    Returns each call's result, or the exception it raised."""
    barrier = threading.Barrier(n)
    results: list = [None] * n

    def run(i: int) -> None:
        try:
            barrier.wait()
            results[i] = work(i)
        except Exception as exc:
            results[i] = exc
        finally:
            connection.close()

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads), "a redeeming thread never finished"
    return results


def one_code(amount: str = "5") -> RedemptionCode:
    return codes_generate(amount=Decimal(amount), count=1, batch=unique("batch"), actor=None)[0]


def test_a_batch_is_unique_unambiguous_codes_worth_the_amount(live_db, make_user):
    operator = make_user(is_staff=True)
    batch = unique("promo")
    codes = codes_generate(amount=Decimal("2.50"), count=200, batch=batch, actor=operator)
    stored = RedemptionCode.objects.filter(batch=batch)
    assert stored.count() == 200 == len({c.code for c in codes})
    assert all(CODE_SHAPE.fullmatch(c.code) for c in stored)
    assert not set("".join(c.code[4:] for c in stored)) & set("01OIL")
    assert {(c.amount, c.created_by_id, c.redeemed_at) for c in stored} == {
        (Decimal("2.5"), operator.pk, None)
    }


@pytest.mark.parametrize(
    ("amount", "count", "message"),
    [("0", 1, "positive"), ("-1", 1, "positive"), ("1", 0, "between 1 and"), ("1", 10_001, "between 1 and")],
)
def test_generating_refuses_nonsense(live_db, amount, count, message):
    batch = unique("bad")
    with pytest.raises(ValueError, match=message):
        codes_generate(amount=Decimal(amount), count=count, batch=batch, actor=None)
    assert not RedemptionCode.objects.filter(batch=batch).exists()


def test_redeeming_credits_the_balance_with_one_ledger_entry(live_db, make_user):
    user = make_user()
    code = one_code("7.25")
    # Typed by a person: lower case, spaces around and inside.
    entry = code_redeem(user=user, code=f"  {code.code.lower()[:8]} {code.code.lower()[8:]}\n")
    assert (entry.kind, entry.amount, entry.reference) == (
        LedgerEntry.Kind.REDEEM,
        Decimal("7.25"),
        f"redeem:{code.pk}",
    )
    assert account_for(user=user).balance == Decimal("7.25")
    code.refresh_from_db()
    assert code.redeemed_by == user and code.redeemed_at is not None


def test_an_unknown_code_says_to_check_for_typos(live_db, make_user):
    user = make_user()
    with pytest.raises(RedeemError, match=r"not a valid code\. Check it for typos"):
        code_redeem(user=user, code="ISP-AAAA-BBBB-CCCC")
    with pytest.raises(RedeemError, match="Enter a redemption code"):
        code_redeem(user=user, code="   ")
    assert account_for(user=user).balance == 0


def test_a_used_code_is_refused_with_a_message_for_each_redeemer(live_db, make_user):
    first, second = make_user(), make_user()
    code = one_code("3")
    code_redeem(user=first, code=code.code)
    with pytest.raises(RedeemError, match="already been used"):
        code_redeem(user=second, code=code.code)
    with pytest.raises(RedeemError, match="You have already redeemed this code"):
        code_redeem(user=first, code=code.code)
    assert account_for(user=first).balance == Decimal(3)
    assert account_for(user=second).balance == 0
    assert LedgerEntry.objects.filter(reference=f"redeem:{code.pk}").count() == 1


def test_one_user_redeeming_one_code_from_eight_connections_at_once_is_credited_once(live_db, make_user):
    user = make_user()
    code = one_code("4")
    results = race(8, lambda i: code_redeem(user=user, code=code.code))
    losses = [r for r in results if not isinstance(r, LedgerEntry)]
    assert len(losses) == 7
    assert all(isinstance(r, RedeemError) and "already redeemed" in str(r) for r in losses)
    assert LedgerEntry.objects.filter(kind=LedgerEntry.Kind.REDEEM, account__user=user).count() == 1
    assert account_for(user=user).balance == Decimal(4)


def test_eight_users_racing_for_one_code_credit_exactly_one_of_them(live_db, make_user):
    users = [make_user() for _ in range(8)]
    code = one_code("6")
    results = race(8, lambda i: code_redeem(user=users[i], code=code.code))
    winners = [users[i] for i, r in enumerate(results) if isinstance(r, LedgerEntry)]
    assert len(winners) == 1
    losses = [r for r in results if not isinstance(r, LedgerEntry)]
    assert all(isinstance(r, RedeemError) and "already been used" in str(r) for r in losses)
    assert [account_for(user=u).balance for u in users if u != winners[0]] == [0] * 7
    assert account_for(user=winners[0]).balance == Decimal(6)
    code.refresh_from_db()
    assert code.redeemed_by == winners[0]
    assert LedgerEntry.objects.filter(reference=f"redeem:{code.pk}").count() == 1
