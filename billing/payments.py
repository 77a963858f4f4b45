"""Card purchases through Stripe Checkout.

A purchase starts as a pending ``Purchase`` named by its Checkout Session id, and is credited when Stripe's
signed webhook says the session is paid. Stripe delivers webhooks at least once, sometimes twice at the same
moment, so crediting is a conditional UPDATE pending -> complete: only the delivery that wins it writes the
ledger entry, whose unique reference ``stripe:<session id>`` is a second guard against a double credit.

Card purchases are off unless both STRIPE_SECRET_KEY and STRIPE_WEBHOOK_SECRET are set: then checkout refuses
with a message for the operator, and the webhook URL answers 404.
"""

import logging
from decimal import Decimal

import stripe
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from billing.models import LedgerEntry, Purchase
from billing.services import account_for, ledger_post
from portal.accounts import notify
from portal.accounts.models import User

log = logging.getLogger("billing.payments")

MIN_PURCHASE_USD = Decimal(5)
MAX_PURCHASE_USD = Decimal(10_000)
CENT = Decimal("0.01")
PAID_EVENTS = {"checkout.session.completed", "checkout.session.async_payment_succeeded"}


class PaymentsDisabled(RuntimeError):
    pass


class PurchaseError(ValueError):
    """A paid session that can't be credited as it stands (not ours, or not what we asked Stripe to charge)."""


def payments_enabled() -> bool:
    return bool(settings.STRIPE_SECRET_KEY and settings.STRIPE_WEBHOOK_SECRET)


def purchase_amount_check(amount: Decimal) -> Decimal:
    if not isinstance(amount, Decimal) or not amount.is_finite():
        raise ValueError("the amount must be a number of US dollars, such as 20 or 12.50")
    if amount != amount.quantize(CENT):
        raise ValueError("the amount must be in whole cents")
    if not MIN_PURCHASE_USD <= amount <= MAX_PURCHASE_USD:
        raise ValueError(
            f"buy between {MIN_PURCHASE_USD} and {MAX_PURCHASE_USD} USD of credits at a time "
            f"(asked for {amount.normalize()} USD)"
        )
    return amount


def cents(amount: Decimal) -> int:
    return int(amount * 100)


def _client() -> stripe.StripeClient:
    # Bounded waits: the person is waiting for the redirect. Retries carry an idempotency key, so they can't
    # create two sessions. STRIPE_API_BASE (unset in production) points the client at stripe-mock or a test double.
    base = getattr(settings, "STRIPE_API_BASE", "")
    return stripe.StripeClient(
        settings.STRIPE_SECRET_KEY, http_client=stripe.RequestsClient(timeout=(5, 20)), max_network_retries=2,
        base_addresses={"api": base} if base else None,
    )  # fmt: skip


def checkout_create(*, user: User, amount: Decimal, success_url: str, cancel_url: str) -> str:
    """Open a Checkout Session for ``amount`` USD of credits and return the URL to send the person to.

    Raises ValueError for an amount we don't sell, PaymentsDisabled, or stripe.StripeError when Stripe refuses
    or can't be reached (then nothing is recorded)."""
    if not payments_enabled():
        raise PaymentsDisabled(
            "Card purchases are not enabled on this server: the operator must set STRIPE_SECRET_KEY and "
            "STRIPE_WEBHOOK_SECRET."
        )
    amount = purchase_amount_check(amount)
    session = _client().v1.checkout.sessions.create(
        params={
            "mode": "payment",
            "line_items": [{"quantity": 1, "price_data": {
                "currency": "usd", "unit_amount": cents(amount),
                "product_data": {"name": f"{amount} USD of Inference Space credits"},
            }}],
            "success_url": success_url,
            "cancel_url": cancel_url,
            "client_reference_id": str(user.pk),
            "customer_email": user.email,
            "metadata": {"user_id": str(user.pk), "credits_usd": str(amount)},
        }
    )  # fmt: skip
    if session.url is None:  # a hosted Checkout Session always has one
        raise RuntimeError(f"Stripe returned Checkout Session {session.id} without a URL")
    # Recorded only once Stripe has answered: no network wait inside a transaction. If this insert fails the
    # person never gets the URL, so there is no way to pay for a session we don't know.
    Purchase.objects.create(user=user, amount=amount, stripe_session_id=session.id)
    return session.url


def purchase_complete(*, session_id: str, amount_total_cents: int) -> Purchase:
    """Credit a paid session, exactly once however often (or however concurrently) Stripe says so."""
    with transaction.atomic():
        purchase = Purchase.objects.filter(stripe_session_id=session_id).first()
        if purchase is None:
            raise PurchaseError(f"no purchase for checkout session {session_id}")
        if amount_total_cents != cents(purchase.amount):
            raise PurchaseError(
                f"checkout session {session_id} charged {amount_total_cents} cents, "
                f"but the purchase is for {cents(purchase.amount)}"
            )
        won = Purchase.objects.filter(pk=purchase.pk, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.COMPLETE, completed_at=timezone.now()
        )
        if won:
            ledger_post(
                account=account_for(user=purchase.user), kind=LedgerEntry.Kind.PURCHASE, amount=purchase.amount,
                memo="Card purchase", reference=f"stripe:{session_id}", purchased=True,
            )  # fmt: skip
            notify.user_changed(purchase.user_id)  # after commit: the tier rule may now raise the daily limit
    purchase.refresh_from_db()
    return purchase


def purchase_expire(*, session_id: str) -> bool:
    """Mark a session that expired unpaid. A purchase that completed stays complete."""
    return bool(
        Purchase.objects.filter(stripe_session_id=session_id, status=Purchase.Status.PENDING).update(
            status=Purchase.Status.EXPIRED
        )
    )


def event_handle(*, event: stripe.Event) -> Purchase | None:
    """Act on a verified webhook event. Events we don't need are acknowledged and ignored."""
    if event.type == "checkout.session.expired":
        purchase_expire(session_id=event.data.object.id)
        return None
    if event.type not in PAID_EVENTS:
        return None
    session = event.data.object.to_dict()
    # An asynchronous payment method completes the session unpaid; async_payment_succeeded follows when it pays.
    if session.get("payment_status") != "paid":
        return None
    try:
        if session.get("currency") != "usd":
            raise PurchaseError(f"checkout session {session['id']} was paid in {session.get('currency')}")
        total = session.get("amount_total") or 0
        return purchase_complete(session_id=session["id"], amount_total_cents=total)
    except PurchaseError as exc:
        # Retrying can't fix either case, so Stripe gets its 200; an operator settles it by hand.
        log.error("paid checkout session not credited: %s", exc)
        return None
