"""The billing page: balance, buying credits through Stripe Checkout, redeeming codes, the ledger."""

import re
import uuid
from decimal import Decimal

import pytest

from billing.models import LedgerEntry, Purchase, RedemptionCode
from billing.services import account_for, credits_grant, ledger_post
from portal.templatetags.money import MINUS
from tests.conftest import unique
from tests.fakestripe import PAY_URL

pytestmark = pytest.mark.django_db


def code(amount: str) -> RedemptionCode:
    return RedemptionCode.objects.create(code=f"ISP-{uuid.uuid4().hex[:12].upper()}", amount=Decimal(amount))


def test_without_payments_the_page_says_so_and_shows_no_buy_form(user, client_of, settings):
    settings.STRIPE_SECRET_KEY = settings.STRIPE_WEBHOOK_SECRET = ""
    body = client_of(user).get("/billing").content.decode()
    assert "Card payments are not set up on this service" in body
    assert 'action="/billing/checkout"' not in body
    response = client_of(user).post("/billing/checkout", {"preset": "10"}, follow=True)
    assert "Card payments are not set up" in response.content.decode()
    assert not Purchase.objects.filter(user=user).exists()


def test_buying_a_preset_amount_redirects_to_checkout(user, client_of, fake_stripe):
    client = client_of(user)
    page = client.get("/billing").content.decode()
    assert 'action="/billing/checkout"' in page and "$25" in page and "Other amount" in page
    response = client.post("/billing/checkout", {"preset": "25"})
    assert response.status_code == 302 and response.url.startswith(PAY_URL + "cs_test_")
    purchase = Purchase.objects.get(user=user)
    assert purchase.amount == Decimal(25) and purchase.status == "pending"
    sent = fake_stripe.calls[0].form
    assert sent["success_url"] == ["http://testserver/billing/success"]
    assert sent["cancel_url"] == ["http://testserver/billing/cancel"]


def test_a_custom_amount_is_used_when_other_is_chosen(user, client_of, fake_stripe):
    response = client_of(user).post("/billing/checkout", {"preset": "", "custom": "42.50"})
    assert response.status_code == 302
    assert Purchase.objects.get(user=user).amount == Decimal("42.50")


@pytest.mark.parametrize(
    ("data", "message"),
    [
        ({"preset": ""}, "Pick an amount"),
        ({"preset": "", "custom": "abc"}, "number of dollars"),
        ({"preset": "", "custom": "1.001"}, "2 decimal places"),
        ({"preset": "", "custom": "2"}, "Buy between 5 and 10000 USD"),  # the payment module's own rule
    ],
)
def test_buy_errors_say_what_to_fix(user, client_of, fake_stripe, data, message):
    response = client_of(user).post("/billing/checkout", data)
    assert response.status_code == 400
    assert message in response.content.decode()
    assert not Purchase.objects.filter(user=user).exists()


def test_a_refusal_from_the_payment_provider_is_explained(user, client_of, fake_stripe):
    fake_stripe.refuse = True
    response = client_of(user).post("/billing/checkout", {"preset": "10"})
    assert response.status_code == 400
    assert "could not start the payment. Nothing was charged" in response.content.decode()


def test_success_and_cancel_pages(user, client_of):
    client = client_of(user)
    assert "Your payment went through" in client.get("/billing/success").content.decode()
    assert "Nothing was charged" in client.get("/billing/cancel").content.decode()


def test_redeeming_a_code_adds_credit_and_a_ledger_row(user, client_of):
    c = code("7.50")
    client = client_of(user)
    response = client.post("/billing/redeem", {"code": c.code.lower()}, follow=True)
    body = response.content.decode()
    assert "$7.50 added to your balance" in body
    assert "Redemption code" in body
    account_for(user=user).refresh_from_db()
    assert account_for(user=user).balance == Decimal("7.50")
    again = client.post("/billing/redeem", {"code": c.code})
    assert again.status_code == 400 and "already redeemed this code" in again.content.decode()


@pytest.mark.parametrize(
    ("typed", "message"), [("", "Enter the code you were given."), ("NOPE-NOPE", "not a valid code")]
)
def test_redeem_errors_say_what_to_fix(user, client_of, typed, message):
    response = client_of(user).post("/billing/redeem", {"code": typed})
    assert response.status_code == 400 and message in response.content.decode()


def test_the_ledger_shows_every_movement_with_its_running_balance(
    user, client_of, django_assert_max_num_queries
):
    account = account_for(user=user)
    credits_grant(account=account, amount=Decimal(10), reason="welcome", actor=None)
    ledger_post(account=account, kind=LedgerEntry.Kind.USAGE, amount=Decimal("-0.25"))
    ledger_post(account=account, kind=LedgerEntry.Kind.USAGE, amount=Decimal("-0.000125"))
    client = client_of(user)
    body = client.get("/billing").content.decode()
    rows = re.findall(
        r'data-label="Amount">(.*?)</td>\s*<td class="num" data-label="Balance">(.*?)</td>', body
    )
    assert rows == [(f"{MINUS}$0.000125", "$9.749875"), (f"{MINUS}$0.25", "$9.75"), ("+$10.00", "$10.00")]
    assert "welcome" in body and "Operator grant" in body


def test_the_ledger_pages_keep_true_running_balances(user, client_of):
    account = account_for(user=user)
    for i in range(60):
        ledger_post(account=account, kind=LedgerEntry.Kind.GRANT, amount=Decimal(1), memo=f"grant {i}")
    client = client_of(user)
    first = client.get("/billing").content.decode()
    third = client.get("/billing?page=3").content.decode()
    assert "Page 1 of 3" in first and "60 transactions" in first
    assert 'data-label="Balance">$60.00<' in first
    assert re.findall(r'data-label="Balance">(.*?)<', third) == [f"${n}.00" for n in range(10, 0, -1)]


def test_another_users_ledger_and_balance_are_never_shown(user, other_user, client_of):
    credits_grant(
        account=account_for(user=other_user), amount=Decimal("123.45"), reason=unique("secret"), actor=None
    )
    body = client_of(user).get("/billing").content.decode()
    assert "123.45" not in body and "secret" not in body and "No transactions yet" in body
