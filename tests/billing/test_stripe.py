"""Card purchases: Stripe's signed webhook, posted over HTTP to live gateway processes, credits each paid
Checkout Session exactly once, and the tier rule raises the daily limit on the very next request.

Payloads are signed here with Stripe's scheme written out (HMAC-SHA256 over ``"{t}.{payload}"``), not with the
library the server verifies with, so a mistake on either side can't cancel out.
"""

import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal

import openai
import pytest
import requests
import stripe
from django.conf import settings

from billing.models import LedgerEntry, Purchase
from billing.payments import PaymentsDisabled, checkout_create, purchase_complete
from billing.services import account_for
from tests.billing.test_redeem import race
from tests.conftest import database_url
from tests.fakestripe import PAY_URL, SECRET_KEY
from tests.fakestripe import WEBHOOK_SECRET as SECRET
from tests.live import start_gateway

STRIPE_ENV = {"STRIPE_SECRET_KEY": SECRET_KEY, "STRIPE_WEBHOOK_SECRET": SECRET}


def start_stripe_gateway(artifacts):
    return start_gateway(
        database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123", **STRIPE_ENV
    )


@pytest.fixture(scope="module")
def shop(live_database, catalog, artifacts):
    gw = start_stripe_gateway(artifacts)
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def second_shop(live_database, catalog, artifacts):
    gw = start_stripe_gateway(artifacts)
    yield gw
    gw.stop()


def session_event(session_id: str, cents: int, *, kind: str = "checkout.session.completed", paid: str = "paid",
                  currency: str = "usd") -> str:  # fmt: skip
    return json.dumps({
        "id": f"evt_{uuid.uuid4().hex}", "object": "event", "type": kind, "created": int(time.time()),
        "livemode": False, "api_version": "2024-06-20",
        "data": {"object": {"id": session_id, "object": "checkout.session", "mode": "payment", "status": "complete",
                            "payment_status": paid, "amount_total": cents, "currency": currency}},
    })  # fmt: skip


def signature(payload: str, *, secret: str = SECRET, at: int | None = None) -> str:
    at = int(time.time()) if at is None else at
    digest = hmac.new(secret.encode(), f"{at}.{payload}".encode(), hashlib.sha256).hexdigest()
    return f"t={at},v1={digest}"


def deliver(gw, payload: str, sig: str | None = None) -> requests.Response:
    headers = {"Content-Type": "application/json", "Stripe-Signature": sig or signature(payload)}
    return requests.post(f"{gw.url}/stripe/webhook/", data=payload.encode(), headers=headers, timeout=30)


def pending(user, usd: str) -> Purchase:
    """What checkout_create leaves behind once Stripe has answered (it can't reach Stripe from here)."""
    return Purchase.objects.create(
        user=user, amount=Decimal(usd), stripe_session_id=f"cs_test_{uuid.uuid4().hex}"
    )


def credits_for(purchase: Purchase) -> list[LedgerEntry]:
    return list(LedgerEntry.objects.filter(account__user=purchase.user_id, kind=LedgerEntry.Kind.PURCHASE))


def test_a_paid_session_is_credited_once_as_a_purchase(shop, make_user):
    purchase = pending(make_user(), "25")
    answer = deliver(shop, session_event(purchase.stripe_session_id, 2500))
    assert answer.status_code == 200
    [entry] = credits_for(purchase)
    assert (entry.amount, entry.reference) == (Decimal(25), f"stripe:{purchase.stripe_session_id}")
    account = account_for(user=purchase.user)
    assert (account.balance, account.total_purchased) == (Decimal(25), Decimal(25))
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.COMPLETE and purchase.completed_at is not None


def test_a_redelivered_event_is_acknowledged_and_credits_nothing_more(shop, make_user):
    purchase = pending(make_user(), "10")
    event = session_event(purchase.stripe_session_id, 1000)
    assert [deliver(shop, event).status_code for _ in range(3)] == [200, 200, 200]
    # Stripe also sends async_payment_succeeded for some sessions: the same purchase, still once.
    assert (
        deliver(
            shop,
            session_event(purchase.stripe_session_id, 1000, kind="checkout.session.async_payment_succeeded"),
        ).status_code
        == 200
    )
    assert len(credits_for(purchase)) == 1
    assert account_for(user=purchase.user).balance == Decimal(10)


def test_concurrent_deliveries_to_two_processes_credit_once(shop, second_shop, make_user):
    # Django runs the (sync) webhook view on one thread per process, so the race needs two processes.
    purchase = pending(make_user(), "40")
    event = session_event(purchase.stripe_session_id, 4000)
    answers = race(8, lambda i: deliver((shop, second_shop)[i % 2], event).status_code)
    assert answers == [200] * 8
    assert len(credits_for(purchase)) == 1
    account = account_for(user=purchase.user)
    assert (account.balance, account.total_purchased) == (Decimal(40), Decimal(40))


def test_purchase_complete_from_eight_connections_at_once_credits_once(live_db, make_user):
    purchase = pending(make_user(), "15")
    results = race(
        8, lambda i: purchase_complete(session_id=purchase.stripe_session_id, amount_total_cents=1500)
    )
    assert all(isinstance(r, Purchase) and r.status == Purchase.Status.COMPLETE for r in results)
    assert len(credits_for(purchase)) == 1
    assert account_for(user=purchase.user).balance == Decimal(15)


@pytest.mark.parametrize(
    "forge",
    [
        pytest.param(lambda payload: signature(payload, secret="whsec_someone_else"), id="wrong-secret"),
        pytest.param(lambda payload: signature(payload.replace("1000", "9000")), id="other-payload"),
        pytest.param(lambda payload: signature(payload, at=int(time.time()) - 3600), id="an-hour-old"),
        pytest.param(lambda payload: "t=1,v1=", id="garbage"),
    ],
)
def test_a_bad_signature_is_400_without_details_and_credits_nothing(shop, make_user, forge):
    purchase = pending(make_user(), "10")
    payload = session_event(purchase.stripe_session_id, 1000)
    answer = deliver(shop, payload, forge(payload))
    assert answer.status_code == 400 and answer.content == b""
    unsigned = requests.post(f"{shop.url}/stripe/webhook/", data=payload, timeout=30)
    assert unsigned.status_code == 400
    assert credits_for(purchase) == []
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PENDING


def test_an_unpaid_session_waits_for_its_async_payment(shop, make_user):
    purchase = pending(make_user(), "20")
    assert deliver(shop, session_event(purchase.stripe_session_id, 2000, paid="unpaid")).status_code == 200
    assert credits_for(purchase) == []
    paid = session_event(purchase.stripe_session_id, 2000, kind="checkout.session.async_payment_succeeded")
    assert deliver(shop, paid).status_code == 200
    assert [e.amount for e in credits_for(purchase)] == [Decimal(20)]


@pytest.mark.parametrize(("cents", "currency"), [(999, "usd"), (1000, "eur")])
def test_a_session_that_does_not_match_its_purchase_is_not_credited(shop, make_user, cents, currency):
    purchase = pending(make_user(), "10")
    answer = deliver(shop, session_event(purchase.stripe_session_id, cents, currency=currency))
    assert answer.status_code == 200  # retrying can't fix it; the log tells the operator
    assert credits_for(purchase) == []
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.PENDING
    assert "not credited" in shop.log()


def test_other_events_and_unknown_sessions_are_acknowledged_and_change_nothing(shop, make_user):
    purchase = pending(make_user(), "10")
    assert deliver(shop, session_event(f"cs_test_{uuid.uuid4().hex}", 1000)).status_code == 200
    assert (
        deliver(shop, session_event(purchase.stripe_session_id, 1000, kind="charge.refunded")).status_code
        == 200
    )
    assert credits_for(purchase) == []
    assert (
        deliver(
            shop, session_event(purchase.stripe_session_id, 0, kind="checkout.session.expired")
        ).status_code
        == 200
    )
    purchase.refresh_from_db()
    assert purchase.status == Purchase.Status.EXPIRED


def test_without_stripe_keys_the_webhook_is_404(gateway, make_user):
    purchase = pending(make_user(), "10")
    answer = deliver(gateway, session_event(purchase.stripe_session_id, 1000))
    assert answer.status_code == 404
    assert credits_for(purchase) == []


def test_without_stripe_keys_checkout_says_card_purchases_are_off(live_db, make_user, settings):
    settings.STRIPE_SECRET_KEY = ""
    with pytest.raises(PaymentsDisabled, match=r"Card purchases are not enabled.*STRIPE_SECRET_KEY"):
        checkout_create(
            user=make_user(), amount=Decimal(10), success_url="https://x/ok", cancel_url="https://x/no"
        )


@pytest.mark.parametrize(
    ("amount", "message"),
    [(Decimal("4.99"), "between 5 and 10000"), (Decimal("10000.01"), "between 5 and 10000"),
     (Decimal("10.005"), "whole cents"), (Decimal("NaN"), "number of US dollars"), (10.5, "number of US dollars")],
)  # fmt: skip
def test_checkout_refuses_amounts_it_would_not_sell(live_db, make_user, settings, amount, message):
    settings.STRIPE_SECRET_KEY, settings.STRIPE_WEBHOOK_SECRET = STRIPE_ENV.values()
    user = make_user()
    with pytest.raises(ValueError, match=message):
        checkout_create(user=user, amount=amount, success_url="https://x/ok", cancel_url="https://x/no")
    assert not Purchase.objects.filter(user=user).exists()


def test_ten_dollars_bought_raise_the_daily_limit_on_the_very_next_request(shop, make_key):
    key, raw = make_key()
    api = openai.OpenAI(base_url=shop.base_url, api_key=raw, max_retries=0)
    assert (
        api.models.with_raw_response.list().headers["x-ratelimit-limit-rpd"]
        == str(settings.DEFAULT_RPD)
        == "50"
    )
    purchase = pending(key.owner, "10")
    assert deliver(shop, session_event(purchase.stripe_session_id, 1000)).status_code == 200
    assert (
        api.models.with_raw_response.list().headers["x-ratelimit-limit-rpd"]
        == str(settings.TIER_RPD)
        == "1000"
    )


def test_checkout_asks_stripe_for_the_amount_in_cents_and_records_a_pending_purchase(
    live_db, make_user, fake_stripe
):
    user = make_user()
    url = checkout_create(
        user=user, amount=Decimal("12.50"), success_url="https://x/ok", cancel_url="https://x/no"
    )
    [(path, auth, form)] = fake_stripe.calls
    assert (path, auth) == ("/v1/checkout/sessions", "Bearer sk_test_dummy")
    assert form["mode"] == ["payment"] and form["line_items[0][quantity]"] == ["1"]
    assert form["line_items[0][price_data][currency]"] == ["usd"]
    assert form["line_items[0][price_data][unit_amount]"] == ["1250"]
    assert (form["success_url"], form["cancel_url"]) == (["https://x/ok"], ["https://x/no"])
    assert form["metadata[user_id]"] == [str(user.pk)] and form["client_reference_id"] == [str(user.pk)]
    purchase = Purchase.objects.get(user=user)
    assert (purchase.amount, purchase.status) == (Decimal("12.5"), Purchase.Status.PENDING)
    assert url == PAY_URL + purchase.stripe_session_id


def test_when_stripe_refuses_checkout_nothing_is_recorded(live_db, make_user, fake_stripe):
    fake_stripe.refuse = True
    user = make_user()
    with pytest.raises(stripe.InvalidRequestError, match="Not a valid URL"):
        checkout_create(user=user, amount=Decimal(20), success_url="https://x/ok", cancel_url="https://x/no")
    assert len(fake_stripe.calls) == 1  # a refusal is final: not retried
    assert not Purchase.objects.filter(user=user).exists()


def test_a_checkout_then_its_webhook_credits_the_buyer(shop, make_user, fake_stripe):
    user = make_user()
    checkout_create(user=user, amount=Decimal(30), success_url="https://x/ok", cancel_url="https://x/no")
    purchase = Purchase.objects.get(user=user)
    assert deliver(shop, session_event(purchase.stripe_session_id, 3000)).status_code == 200
    assert [e.amount for e in credits_for(purchase)] == [Decimal(30)]
