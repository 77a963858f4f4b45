"""The catalog admin: provider URLs and secrets, the connection test, model price and route rules, and the
catalog change counter that makes every gateway reload."""

import threading
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, HTTPServer

from billing.models import UsageRecord
from portal.accounts.models import AuditEntry
from portal.accounts.notify import catalog_version_sync
from proxy.catalog.models import Model, Provider, Route
from proxy.catalog.prices import Prices
from proxy.catalog.snapshot import provider_secret
from tests.admin.conftest import messages_of, run_action
from tests.admin.test_journey import model_form, provider_form
from tests.conftest import unique

PROVIDERS = "/admin/proxy/provider/"


def make_provider(ops, base_url: str, **extra) -> Provider:
    name = unique("cat-up")
    answer = ops.post(f"{PROVIDERS}add/", provider_form(name, base_url, **extra))
    assert answer.status_code == 302, answer.content
    return Provider.objects.get(name=name)


def test_only_http_and_https_base_urls_are_accepted(ops):
    for url in ["ftp://files.example.com/v1", "file:///etc/passwd", "javascript:alert(1)", "gopher://x/"]:
        answer = ops.post(f"{PROVIDERS}add/", provider_form(unique("bad"), url))
        assert answer.status_code == 200, url  # the form again, with an error
        assert answer.context["adminform"].form.errors["base_url"], url
    assert not Provider.objects.filter(base_url__startswith="ftp://").exists()


def test_the_secret_is_write_only_kept_when_left_empty_and_can_be_cleared(ops, upstream):
    provider = make_provider(ops, upstream.url_for("sec"), secret="first-secret-value")
    stored = provider.api_key_encrypted
    change = f"{PROVIDERS}{provider.pk}/change/"
    form = ops.get(change)
    assert b"first-secret-value" not in form.content and stored.encode() not in form.content

    # Saving without typing a secret keeps the stored one.
    answer = ops.post(change, provider_form(provider.name, provider.base_url, idle_timeout="20"))
    assert answer.status_code == 302
    provider.refresh_from_db()
    assert provider.api_key_encrypted == stored and provider.idle_timeout == 20

    # A new one replaces it; "clear" removes it. The audit trail says so without the value.
    ops.post(change, provider_form(provider.name, provider.base_url, secret="second-secret-value"))
    provider.refresh_from_db()
    assert provider_secret(encrypted=provider.api_key_encrypted, env_name="") == "second-secret-value"
    ops.post(change, provider_form(provider.name, provider.base_url, clear_secret="on"))
    provider.refresh_from_db()
    assert provider.api_key_encrypted == ""
    trail = AuditEntry.objects.filter(action="catalog.provider", target_id=str(provider.pk)).order_by("pk")
    assert [e.after.get("secret") for e in trail] == ["set", None, "replaced", "none"]
    assert "second-secret-value" not in str([(e.before, e.after) for e in trail])


def test_setting_a_secret_and_clearing_it_at_once_is_refused(ops, upstream):
    provider = make_provider(ops, upstream.url_for("both"))
    answer = ops.post(
        f"{PROVIDERS}{provider.pk}/change/",
        provider_form(provider.name, provider.base_url, secret="x-secret", clear_secret="on"),
    )
    assert answer.status_code == 200 and answer.context["adminform"].form.errors["clear_secret"]


def test_test_connection_reports_the_answer_and_never_the_secret(ops, upstream):
    prefix = unique("conn")
    good = make_provider(ops, upstream.url_for(prefix), secret="conn-secret-value")
    dead = make_provider(ops, "http://127.0.0.1:9/v1", secret="conn-secret-value")
    answer = run_action(ops, PROVIDERS, "test_connection", [good, dead])
    shown = messages_of(ops.get(PROVIDERS)) if answer.status_code == 302 else messages_of(answer)
    assert any(good.name in m and "HTTP 200" in m and "models listed" in m for m in shown), shown
    assert any(dead.name in m and "could not connect" in m for m in shown), shown
    assert not any("conn-secret-value" in m for m in shown)
    seen = upstream.find(prefix=prefix)[-1]
    assert (seen.method, seen.path.endswith("/v1/models")) == ("GET", True)
    assert seen.headers["authorization"] == "Bearer conn-secret-value"


def test_test_connection_reports_an_error_status(ops, upstream):
    provider = make_provider(ops, f"http://127.0.0.1:{upstream.port}/nowhere")  # the fake answers 404 here
    run_action(ops, PROVIDERS, "test_connection", [provider])
    shown = messages_of(ops.get(PROVIDERS))
    assert any(provider.name in m and "HTTP 404" in m for m in shown), shown


class Redirecting(BaseHTTPRequestHandler):
    target = ""

    def do_GET(self) -> None:
        self.send_response(302)
        self.send_header("Location", self.target)
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


def test_test_connection_does_not_follow_redirects(ops, upstream):
    prefix = unique("redir")
    Redirecting.target = upstream.url_for(prefix) + "/models"
    server = HTTPServer(("127.0.0.1", 0), Redirecting)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        provider = make_provider(ops, f"http://127.0.0.1:{server.server_port}/v1", secret="redir-secret")
        run_action(ops, PROVIDERS, "test_connection", [provider])
    finally:
        server.shutdown()
        server.server_close()
    shown = messages_of(ops.get(PROVIDERS))
    assert any(provider.name in m and "redirect (not followed)" in m for m in shown), shown
    assert upstream.find(prefix=prefix) == []  # the secret never went where the redirect pointed


def test_the_provider_list_shows_recent_error_rates_from_usage(ops, upstream, make_key, catalog):
    provider = make_provider(ops, upstream.url_for("rates"))
    key, _ = make_key()
    model = Model.objects.get(name=catalog["echo"])
    for status, error in ((200, ""), (200, ""), (200, "upstream_cut"), (502, "bad_gateway"), (400, "x")):
        UsageRecord.objects.create(
            user=key.owner, key=key, model=model, provider=provider, status=status, error_code=error
        )
    page = ops.get(f"{PROVIDERS}?q={provider.name}").content.decode()
    assert (
        "2/5 failed (40%)" in page
    )  # the broken stream and the 502; the client's own 400 isn't the provider's
    detail = ops.get(f"{PROVIDERS}{provider.pk}/change/").content.decode()
    assert "in memory" in detail  # says why the circuit state itself can't be shown


def route(provider: Provider, **extra) -> dict:
    return {"provider": provider.pk, "upstream_model": "echo", "priority": "1", "enabled": "on", **extra}


def test_a_paid_model_needs_a_price_and_a_free_one_has_none(ops, upstream):
    provider = make_provider(ops, upstream.url_for("prices"))
    paid_at_zero = model_form(unique("m"), [route(provider)], input_usd_per_mtok="0", output_usd_per_mtok="0")
    answer = ops.post("/admin/proxy/model/add/", paid_at_zero)
    assert answer.status_code == 200
    assert "A paid model needs a price" in str(answer.context["adminform"].form.non_field_errors())

    free_with_price = model_form(unique("m"), [route(provider)], free="on")
    answer = ops.post("/admin/proxy/model/add/", free_with_price)
    assert "A free model has every price 0" in str(answer.context["adminform"].form.non_field_errors())

    name = unique("m")
    free = model_form(name, [route(provider)], free="on", input_usd_per_mtok="0", output_usd_per_mtok="0")
    assert ops.post("/admin/proxy/model/add/", free).status_code == 302
    assert Model.objects.get(name=name).is_free
    output_only = unique("m")
    priced = model_form(output_only, [route(provider)], input_usd_per_mtok="0", output_usd_per_mtok="3")
    assert ops.post("/admin/proxy/model/add/", priced).status_code == 302


def test_the_cache_prices_and_the_fee_count_in_the_free_rule(ops, upstream):
    provider = make_provider(ops, upstream.url_for("fee-rule"))
    zero = {"input_usd_per_mtok": "0", "output_usd_per_mtok": "0"}
    fee_only = unique("m")
    answer = ops.post(
        "/admin/proxy/model/add/", model_form(fee_only, [route(provider)], **zero, request_usd="0.01")
    )
    assert answer.status_code == 302, answer.content  # paid per request only
    assert not Model.objects.get(name=fee_only).is_free
    for extra in ({"request_usd": "0.01"}, {"cache_write_usd_per_mtok": "1.25"}):
        answer = ops.post(
            "/admin/proxy/model/add/", model_form(unique("m"), [route(provider)], free="on", **zero, **extra)
        )
        assert "A free model has every price 0" in str(answer.context["adminform"].form.non_field_errors()), (
            extra
        )
    # A fee left empty is no fee; and a free model stays free with its cache prices empty.
    name = unique("m")
    assert (
        ops.post(
            "/admin/proxy/model/add/", model_form(name, [route(provider)], free="on", **zero, request_usd="")
        ).status_code
        == 302
    )
    model = Model.objects.get(name=name)
    assert model.is_free and model.request_usd == 0 and model.cached_input_usd_per_mtok is None


def test_an_operator_sets_the_cache_prices_and_the_fee_and_clears_one_back_to_its_default(ops, upstream):
    provider = make_provider(ops, upstream.url_for("cache-prices"))
    name = unique("m")
    page = ops.get("/admin/proxy/model/add/").content.decode()
    assert (
        "Empty: the input price." in page and "Empty: the 5-minute price." in page
    )  # the defaults, explained
    prices = {"input_usd_per_mtok": "3", "output_usd_per_mtok": "15", "cached_input_usd_per_mtok": "0.3",
              "cache_write_usd_per_mtok": "3.75", "cache_write_1h_usd_per_mtok": "6", "request_usd": "0.002"}  # fmt: skip
    assert (
        ops.post("/admin/proxy/model/add/", model_form(name, [route(provider)], **prices)).status_code == 302
    )
    model = Model.objects.get(name=name)
    assert model.prices == Prices(
        input=Decimal(3), output=Decimal(15), cached_input=Decimal("0.3"), cache_write=Decimal("3.75"),
        cache_write_1h=Decimal(6), request=Decimal("0.002"),
    )  # fmt: skip

    existing = model.routes.get()
    data = model_form(name, [], **{**prices, "cache_write_1h_usd_per_mtok": ""})
    data.update({
        "routes-TOTAL_FORMS": "1", "routes-INITIAL_FORMS": "1", "routes-0-id": existing.pk,
        "routes-0-model": model.pk, **{f"routes-0-{k}": v for k, v in route(provider).items()},
    })  # fmt: skip
    assert ops.post(f"/admin/proxy/model/{model.pk}/change/", data).status_code == 302
    model.refresh_from_db()
    assert model.cache_write_1h_usd_per_mtok is None and model.prices.cache_write_1h == Decimal("3.75")


def test_an_enabled_model_needs_an_enabled_route_on_an_enabled_provider(ops, upstream):
    provider = make_provider(ops, upstream.url_for("routes"))
    off = make_provider(ops, upstream.url_for("routes-off"), enabled="")
    for routes in ([], [route(provider, enabled="")], [route(off)]):
        answer = ops.post("/admin/proxy/model/add/", model_form(unique("m"), routes))
        assert answer.status_code == 200, routes
        errors = " ".join(str(fs.non_form_errors()) for fs in answer.context["inline_admin_formsets"])
        assert "at least one enabled route" in errors, routes
    draft = unique("draft")
    answer = ops.post("/admin/proxy/model/add/", {**model_form(draft, []), "enabled": ""})
    assert answer.status_code == 302  # a disabled model may wait for its routes


def test_every_catalog_save_moves_the_catalog_counter(ops, upstream):
    before = catalog_version_sync()
    provider = make_provider(ops, upstream.url_for("counter"))
    after_provider = catalog_version_sync()
    assert after_provider > before
    name = unique("m")
    ops.post("/admin/proxy/model/add/", model_form(name, [route(provider)]))
    model = Model.objects.get(name=name)
    after_model = catalog_version_sync()
    assert after_model > after_provider
    existing = model.routes.get()
    data = model_form(name, [], input_usd_per_mtok="4")
    data.update({
        "routes-TOTAL_FORMS": "1", "routes-INITIAL_FORMS": "1", "routes-0-id": existing.pk,
        "routes-0-model": model.pk, **{f"routes-0-{k}": v for k, v in route(provider, priority="2").items()},
    })  # fmt: skip
    assert ops.post(f"/admin/proxy/model/{model.pk}/change/", data).status_code == 302
    assert Route.objects.get(pk=existing.pk).priority == 2
    assert catalog_version_sync() > after_model
    change = AuditEntry.objects.filter(action="catalog.model", target_id=str(model.pk)).latest("pk")
    assert change.before == {"input_usd_per_mtok": "1.000000"} and change.after == {
        "input_usd_per_mtok": "4.000000"
    }
