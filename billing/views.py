"""The payment provider's webhook. Everything it does is in billing/payments.py."""

import stripe
from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.views.decorators.csrf import csrf_exempt

from billing import payments


@csrf_exempt  # Stripe can't send a CSRF token; the signature check below authenticates the request instead
def stripe_webhook(request: HttpRequest) -> HttpResponse:
    if not payments.payments_enabled():
        return HttpResponse(status=404)
    if request.method != "POST":
        return HttpResponse(status=405, headers={"Allow": "POST"})
    try:
        event = stripe.Webhook.construct_event(
            request.body, request.headers.get("Stripe-Signature"), settings.STRIPE_WEBHOOK_SECRET
        )
    except (ValueError, stripe.SignatureVerificationError):
        return HttpResponse(status=400)  # no details: they would only help someone forging signatures
    payments.event_handle(event=event)
    return HttpResponse(status=200)
