"""The dashboard and the public pages. Thin: parse with a form, call a service or selector, render.

Reads come from ``portal.site.selectors`` and ``billing.selectors``; writes from ``portal.accounts.services``
and ``billing.services``. Card payments are off (and the billing page says so) while Stripe is not configured.
"""

import csv
import itertools
import uuid
from datetime import timedelta
from urllib.parse import urlencode

import stripe
from asgiref.sync import sync_to_async
from django.conf import settings
from django.contrib import messages
from django.contrib.auth import login
from django.contrib.auth.decorators import login_required
from django.core.handlers.asgi import ASGIRequest
from django.core.paginator import Paginator
from django.db import IntegrityError
from django.http import Http404, HttpRequest, HttpResponse, StreamingHttpResponse
from django.shortcuts import redirect, render
from django.urls import reverse
from django.utils import timezone
from django.utils.safestring import mark_safe
from django.utils.text import capfirst
from django.views.decorators.cache import never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import payments
from billing import selectors as money
from billing.api_selectors import generation_get
from billing.models import Endpoint, UsageRecord
from billing.services import RedeemError, code_redeem, customer_create
from portal.accounts.models import ApiKey
from portal.accounts.services import key_create, key_revoke
from portal.site import charts, forms
from portal.site import selectors as portal_selectors
from portal.site.auth import AuthedRequest
from portal.templatetags.money import usd, usd_compact
from proxy.conversations.services import conversation_texts, response_of_request

NEW_KEY_SESSION = "new_key"  # carries a fresh key's raw value to exactly one render of the keys page
LEDGER_PAGE, USAGE_PAGE = 25, 50


def api_base_url() -> str:
    return f"{settings.PUBLIC_BASE_URL}/v1"


# --- public pages ------------------------------------------------------------------------------------------


@require_GET
def landing(request: HttpRequest) -> HttpResponse:
    context = {
        "base_url": api_base_url(),
        "model": portal_selectors.model_example_get() or "deepseek-chat",
        "model_count": portal_selectors.model_catalog_list().count(),
        "public_page": True,  # the marketing layout, signed in or not
    }
    return render(request, "landing.html", context)


@require_GET
def models_page(request: HttpRequest) -> HttpResponse:
    return render(request, "models.html", {"rows": portal_selectors.model_catalog_rows()})


@require_GET
def docs(request: HttpRequest) -> HttpResponse:
    """The API guide. A signed-in user may pick one of their keys: its prefix fills the examples as a hint."""
    keys, hint = [], None
    if request.user.is_authenticated:
        keys = list(portal_selectors.key_active_list(user=request.user).only("id", "name", "prefix"))
        wanted = request.GET.get("key", "")
        hint = next((k for k in keys if str(k.pk) == wanted), None)
    context = {
        "base_url": api_base_url(),
        "root_url": settings.PUBLIC_BASE_URL,  # Anthropic's SDKs add /v1 themselves
        "model": portal_selectors.model_example_get() or "deepseek-chat",
        "embedding_model": portal_selectors.model_example_get(mode="embedding"),
        "completion_model": portal_selectors.model_example_get(mode="completion"),
        "retention_days": settings.RESPONSES_RETENTION_DAYS,
        "keys": keys,
        "hint": hint,
        "api_key": f"{hint.prefix}..." if hint else "sk-your-api-key",
        "default_rpm": settings.DEFAULT_RPM,
        "default_rpd": settings.DEFAULT_RPD,
        "tier_rpd": settings.TIER_RPD,
        "tier_threshold": settings.TIER_THRESHOLD_USD,
    }
    return render(request, "docs.html", context)


# --- accounts --------------------------------------------------------------------------------------------------


@require_http_methods(["GET", "POST"])
def signup(request: HttpRequest) -> HttpResponse:
    if request.user.is_authenticated:
        return redirect("dashboard")
    form = forms.SignupForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        try:
            user = customer_create(email=form.cleaned_data["email"], password=form.cleaned_data["password"])
        except IntegrityError:  # the same address signed up a moment ago, between the check and the insert
            form.add_error("email", forms.SignupForm.TAKEN)
        else:
            login(request, user, backend="django.contrib.auth.backends.ModelBackend")
            messages.success(
                request, "Welcome! Your account is ready. Create an API key to make your first call."
            )
            return redirect("dashboard")
    return render(request, "registration/signup.html", {"form": form})


# --- dashboard -------------------------------------------------------------------------------------------------


def _chart_pair(days: list[money.UsageDay], label: str) -> dict:
    points_requests = [(d.day, d.requests) for d in days]
    points_cost = [(d.day, d.cost) for d in days]
    return {
        "requests": mark_safe(  # chart_svg escapes every text it writes
            charts.chart_svg(points_requests, label=f"Requests {label}", kind="bar", unit=" requests")
        ),
        "spend": mark_safe(
            charts.chart_svg(points_cost, label=f"Spend {label}", kind="line", value_format=usd_compact)
        ),
    }


@login_required
@require_GET
def dashboard(request: AuthedRequest) -> HttpResponse:
    user, today = request.user, timezone.now().date()
    account = money.account_get(user=user)
    overview = money.usage_overview_get(user=user, today=today)
    busiest = portal_selectors.key_busiest_get(user=user, day=today)
    context = {
        "account": account,
        "overview": overview,
        "quota": portal_selectors.key_quota_get(key=busiest, purchased=account.total_purchased)
        if busiest
        else None,
        "cache": money.cache_saving_get(user=user, since=today.replace(day=1), until=today),
        "charts": _chart_pair(overview.days, "over the last 30 days"),
        "has_usage": any(d.requests for d in overview.days),
        "totals": {
            "requests": sum(d.requests for d in overview.days),
            "cost": sum((d.cost for d in overview.days), money.ZERO),
        },
        "recent": money.usage_recent_list(user=user, limit=6),
        "has_keys": portal_selectors.key_list(user=user).exists(),
        "base_url": api_base_url(),
    }
    return render(request, "dashboard.html", context)


# --- keys ----------------------------------------------------------------------------------------------------


@never_cache  # the page may carry a new key once: no cache may keep a copy
@login_required
@require_http_methods(["GET", "POST"])
def keys(request: AuthedRequest) -> HttpResponse:
    form = forms.KeyCreateForm(request.POST or None)
    if request.method == "POST" and form.is_valid():
        key, raw = key_create(owner=request.user, **form.service_kwargs())
        request.session[NEW_KEY_SESSION] = {"id": key.pk, "raw": raw}
        return redirect("keys", permanent=False)
    new_key = request.session.pop(NEW_KEY_SESSION, None)  # shown on this render only
    rows = list(portal_selectors.key_list(user=request.user).select_related("owner"))
    purchased = money.account_get(user=request.user).total_purchased
    for key in rows:  # keys.html shows each row's limits
        key.limits = portal_selectors.key_limits_get(key=key, purchased=purchased)  # type: ignore[attr-defined]
    context = {
        "form": form,
        "keys": rows,
        "new_key": new_key,
        "new_key_row": next((k for k in rows if new_key and k.pk == new_key["id"]), None),
        "open_form": request.method == "POST" or not rows,
        "base_url": api_base_url(),
    }
    return render(request, "keys.html", context, status=400 if form.errors else 200)


@login_required
@require_http_methods(["GET", "POST"])
def key_revoke_view(request: AuthedRequest, key_id: int) -> HttpResponse:
    try:
        key = portal_selectors.key_get(user=request.user, key_id=key_id)
    except ApiKey.DoesNotExist:
        raise Http404("No such key") from None
    if request.method == "POST":
        if key.revoked_at is None:
            key_revoke(key=key)
            messages.success(
                request, f"Key “{key.name}” is revoked. Requests with it are refused from now on."
            )
        return redirect("keys")
    return render(request, "key_revoke.html", {"key": key})


# --- billing ---------------------------------------------------------------------------------------------------


@login_required
@require_GET
def billing(request: AuthedRequest) -> HttpResponse:
    return _billing_page(request)


def _billing_page(request, *, buy_form=None, redeem_form=None, status: int = 200) -> HttpResponse:
    ledger = Paginator(money.ledger_list(user=request.user), LEDGER_PAGE).get_page(request.GET.get("page"))
    context = {
        "account": money.account_get(user=request.user),
        "payments_enabled": payments.payments_enabled(),
        "purchase_range": (payments.MIN_PURCHASE_USD, payments.MAX_PURCHASE_USD),
        "buy_form": buy_form or forms.BuyCreditsForm(),
        "redeem_form": redeem_form or forms.RedeemForm(),
        "ledger": ledger,
    }
    return render(request, "billing.html", context, status=status)


@login_required
@require_POST
def billing_checkout(request: AuthedRequest) -> HttpResponse:
    if not payments.payments_enabled():
        messages.error(request, "Card payments are not set up on this service.")
        return redirect("billing")
    form = forms.BuyCreditsForm(request.POST)
    if form.is_valid():
        try:
            url = payments.checkout_create(
                user=request.user,
                amount=form.cleaned_data["amount"],
                success_url=request.build_absolute_uri(reverse("billing_success")),
                cancel_url=request.build_absolute_uri(reverse("billing_cancel")),
            )
        except ValueError as exc:  # an amount we don't sell: the message says which ones we do
            form.add_error("custom", capfirst(str(exc)) + ".")
        except (stripe.StripeError, RuntimeError):
            form.add_error(None, "The payment provider could not start the payment. Nothing was charged; "
                                 "please try again in a minute.")  # fmt: skip
        else:
            return redirect(url)
    return _billing_page(request, buy_form=form, status=400)


@login_required
@require_POST
def billing_redeem(request: AuthedRequest) -> HttpResponse:
    form = forms.RedeemForm(request.POST)
    if form.is_valid():
        try:
            entry = code_redeem(user=request.user, code=form.cleaned_data["code"])
        except RedeemError as exc:
            form.add_error("code", str(exc))
        else:
            messages.success(request, f"Code redeemed: {usd(entry.amount)} added to your balance.")
            return redirect("billing")
    return _billing_page(request, redeem_form=form, status=400)


@login_required
@require_GET
def billing_success(request: AuthedRequest) -> HttpResponse:
    return render(
        request, "billing_result.html", {"ok": True, "account": money.account_get(user=request.user)}
    )


@login_required
@require_GET
def billing_cancel(request: AuthedRequest) -> HttpResponse:
    return render(
        request, "billing_result.html", {"ok": False, "account": money.account_get(user=request.user)}
    )


# --- usage -----------------------------------------------------------------------------------------------------


@login_required
@require_GET
def usage(request: AuthedRequest) -> HttpResponse:
    since, until = forms.UsageFilterForm.default_range()
    form = forms.UsageFilterForm(
        request.GET or None, user=request.user, initial={"since": since, "until": until}
    )
    usage_filter = form.usage_filter()
    days = money.usage_days_list(
        user=request.user, since=usage_filter.since, until=usage_filter.until,
        key_id=usage_filter.key_id, model_id=usage_filter.model_id, endpoint=usage_filter.endpoint,
    )  # fmt: skip
    records = money.usage_record_pages(
        user=request.user, usage_filter=usage_filter, days=days, now=timezone.now()
    )
    # Paginator reads only count() and slices of the records; its stub also asks for iteration and indexing.
    paginator = Paginator(records, USAGE_PAGE)  # type: ignore[arg-type, var-annotated]
    page = paginator.get_page(request.GET.get("page"))
    query = {k: v for k, v in request.GET.items() if k != "page" and v}
    context = {
        "form": form,
        "filter": usage_filter,
        "charts": _chart_pair(days, f"from {usage_filter.since:%b %-d} to {usage_filter.until:%b %-d}"),
        "total_requests": sum(d.requests for d in days),
        "total_cost": sum((d.cost for d in days), money.ZERO),
        "page": page,
        "query": urlencode(query),
        "filtered": bool(query),
    }
    return render(request, "usage.html", context)


@login_required
@require_GET
def usage_detail(request: AuthedRequest, request_id: uuid.UUID) -> HttpResponse:
    """One request: its record and, for a stored response, what was asked and answered. Another user's
    request is a 404, as a missing one."""
    try:
        record = generation_get(user=request.user, request_id=request_id)
    except UsageRecord.DoesNotExist:
        raise Http404("No such request") from None
    stored = None
    if record.endpoint == Endpoint.RESPONSES:
        stored = response_of_request(
            account_id=money.account_get(user=request.user).pk, request_id=request_id
        )
    context = {
        "record": record,
        "stored": stored,
        "turns": conversation_texts(stored) if stored else [],
        "kept_until": stored.created_at + timedelta(days=settings.RESPONSES_RETENTION_DAYS)
        if stored
        else None,
    }
    return render(request, "usage_detail.html", context)


class _Echo:
    """A file-like object whose write() returns the line, so csv.writer can produce rows one at a time."""

    def write(self, value: str) -> str:
        return value


def _csv_lines(rows):
    writer = csv.writer(_Echo())
    try:
        yield writer.writerow(money.CSV_HEADER)
        for row in rows:
            yield writer.writerow(row)
    finally:
        rows.close()  # ends the server-side cursor at once, also when the download is cut short


@login_required
@require_GET
def usage_export(request: AuthedRequest) -> StreamingHttpResponse:
    form = forms.UsageFilterForm(request.GET or None, user=request.user)
    usage_filter = form.usage_filter()
    lines = _csv_lines(money.usage_csv_rows(user=request.user, usage_filter=usage_filter))
    # Under ASGI a plain iterator would be read to the end before the first byte is sent; feed it from the
    # request's thread in batches instead, so memory stays flat however many rows there are.
    content = _batched_async(lines) if isinstance(request, ASGIRequest) else lines
    response = StreamingHttpResponse(content, content_type="text/csv; charset=utf-8")
    name = f"usage-{usage_filter.since:%Y%m%d}-{usage_filter.until:%Y%m%d}.csv"
    response["Content-Disposition"] = f'attachment; filename="{name}"'
    response["Cache-Control"] = "no-store"
    return response


async def _batched_async(lines, batch: int = 1000):
    def take() -> str:
        return "".join(itertools.islice(lines, batch))

    try:
        while chunk := await sync_to_async(take)():  # the request's thread: the same database cursor
            yield chunk
    finally:
        await sync_to_async(lines.close)()
