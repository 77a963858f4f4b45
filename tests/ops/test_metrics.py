"""GET /metrics over HTTP, parsed with prometheus_client's own parser: the series move as requests are made,
in one process and adding up across two workers, behind METRICS_TOKEN when it is set, with bounded labels."""

import json
import re
import time
import urllib.request
from decimal import Decimal
from pathlib import Path

import openai
import pytest
from django.conf import settings
from prometheus_client.parser import text_string_to_metric_families

from billing.models import UsageRecord
from billing.services import account_for, credits_grant
from proxy.catalog.importer import catalog_import
from tests.conftest import database_url, unique, write_catalog
from tests.live import ROOT, start_gateway
from tests.proxy.test_chat import HIGH_LIMITS, client, fake_provider, serve_model, user, wait_usage

NS = "inference_space"
PUBLISHED = 1.3  # a process publishes what finished, and samples its gauges, once a second


def scrape(gateway, token: str | None = None) -> dict[tuple[str, frozenset], float]:
    """Every sample of one scrape, by name and labels."""
    request = urllib.request.Request(f"{gateway.url}/metrics")
    if token:
        request.add_header("Authorization", f"Bearer {token}")
    with urllib.request.urlopen(request, timeout=10) as answer:
        assert answer.headers["Content-Type"].startswith("text/plain")
        text = answer.read().decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples[(sample.name, frozenset(sample.labels.items()))] = sample.value
    return samples


def value(samples, name: str, **labels) -> float:
    """The sum of a series over every sample whose labels include these."""
    wanted = set(labels.items())
    return sum(v for (n, lbls), v in samples.items() if n == name and wanted <= lbls)


def settled(request_ids: list[str]) -> None:
    for request_id in request_ids:
        wait_usage(request_id)


def test_requests_tokens_and_latency_move_with_requests(gateway, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    model = catalog["echo"]
    before = scrape(gateway)
    api = client(gateway, raw)
    ids = [api.chat.completions.create(model=model, messages=user("count me"))._request_id for _ in range(3)]
    streamed = api.chat.completions.with_raw_response.create(
        model=model, messages=user("me too"), stream=True
    )
    list(streamed.parse())
    settled([*ids, streamed.headers["x-request-id"]])
    time.sleep(PUBLISHED)
    after = scrape(gateway)
    route = {"endpoint": "chat.completions", "model": model}
    assert (
        value(after, f"{NS}_requests_total", status_class="2xx", **route)
        - value(before, f"{NS}_requests_total", status_class="2xx", **route)
        == 4
    )
    assert (
        value(after, f"{NS}_request_duration_seconds_count", **route)
        - value(before, f"{NS}_request_duration_seconds_count", **route)
        == 4
    )
    assert (
        value(after, f"{NS}_time_to_first_token_seconds_count", **route)
        - value(before, f"{NS}_time_to_first_token_seconds_count", **route)
        == 1
    )  # streams only
    output = value(after, f"{NS}_tokens_total", kind="output", **route) - value(
        before, f"{NS}_tokens_total", kind="output", **route
    )
    assert output >= 3 * 4  # "You said: count me" is 4 tokens as the fake upstream counts
    assert value(after, f"{NS}_tokens_total", kind="input", **route) > value(
        before, f"{NS}_tokens_total", kind="input", **route
    )
    assert value(after, f"{NS}_overhead_seconds_count", endpoint="chat.completions") >= 4
    assert value(after, f"{NS}_upstream_duration_seconds_sum", endpoint="chat.completions") > 0
    assert value(after, f"{NS}_settlement_flush_seconds_count") > value(
        before, f"{NS}_settlement_flush_seconds_count"
    )
    assert (
        value(after, f"{NS}_settlement_records_total") >= value(before, f"{NS}_settlement_records_total") + 4
    )
    assert (f"{NS}_settlement_queue_depth", frozenset()) in after
    assert (f"{NS}_requests_in_flight", frozenset()) in after


def test_refusals_are_counted_by_reason(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=1, rpd_limit=100)
    api = client(gateway, raw)
    before = scrape(gateway)
    api.chat.completions.create(model=catalog["echo"], messages=user("one"))
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model=catalog["echo"], messages=user("two"))
    with pytest.raises(openai.AuthenticationError):
        client(gateway, "sk-not-a-real-key").chat.completions.create(
            model=catalog["echo"], messages=user("x")
        )
    with pytest.raises(openai.BadRequestError):
        api.chat.completions.create(model=catalog["echo"], messages=[{"role": "wizard", "content": "x"}])
    after = scrape(gateway)
    for reason in ("limits", "auth", "validation"):
        name = f"{NS}_refusals_total"
        grown = value(after, name, endpoint="chat.completions", reason=reason) - value(
            before, name, endpoint="chat.completions", reason=reason
        )
        assert grown == 1, reason


def paid_requests(
    gateway, upstream, make_user, make_key, tmp_path, count: int
) -> tuple[str, list[UsageRecord]]:
    """``count`` requests to a new paid model, by a funded key, settled."""
    provider = fake_provider(upstream)
    model = unique("paid")
    spec = {"id": model, "owned_by": "test", "input_usd_per_mtok": "3", "output_usd_per_mtok": "15",
            "routes": [{"provider": provider["name"], "upstream_model": "echo"}]}  # fmt: skip
    catalog_import(path=write_catalog(tmp_path / f"{model}.toml", [provider], [spec]))
    owner = make_user()
    credits_grant(account=account_for(user=owner), amount=Decimal(5), reason="test funds", actor=None)
    _, raw = make_key(owner=owner, **HIGH_LIMITS)
    api = client(gateway, raw)
    api.models.retrieve(model)
    ids = [
        api.chat.completions.create(model=model, messages=user("bill me"))._request_id for _ in range(count)
    ]
    return model, [wait_usage(i) for i in ids]


def test_a_paid_request_adds_its_cost_and_shows_an_open_lease(
    gateway, upstream, make_user, make_key, tmp_path
):
    before = scrape(gateway)
    model, records = paid_requests(gateway, upstream, make_user, make_key, tmp_path, 2)
    time.sleep(PUBLISHED)
    after = scrape(gateway)
    cost = value(after, f"{NS}_cost_usd_total", model=model) - value(
        before, f"{NS}_cost_usd_total", model=model
    )
    assert cost == pytest.approx(float(sum(r.cost for r in records)), rel=1e-9) and cost > 0
    assert value(after, f"{NS}_credit_leases_open") >= 1


def failover_model(gateway, upstream, make_key, tmp_path) -> tuple[str, str]:
    """A model whose first route always fails (its circuit opens after two failures), used three times."""
    _, raw = make_key(**HIGH_LIMITS)
    api = client(gateway, raw)
    broken = fake_provider(upstream, circuit_threshold=2, circuit_cooldown=60)
    working = fake_provider(upstream)
    model = serve_model(
        api, tmp_path, [broken, working], [(broken["name"], "fail-500"), (working["name"], "echo")]
    )
    for _ in range(3):
        assert api.chat.completions.create(model=model, messages=user("around")).choices[0].message.content
    return model, broken["name"]


def test_failovers_and_the_circuit_are_visible(gateway, upstream, make_key, tmp_path):
    model, broken = failover_model(gateway, upstream, make_key, tmp_path)
    time.sleep(PUBLISHED)
    samples = scrape(gateway)
    assert value(samples, f"{NS}_failovers_total", model=model, provider=broken) == 2  # then it opened
    assert value(samples, f"{NS}_upstream_failures_total", provider=broken, kind="status") == 2
    assert value(samples, f"{NS}_provider_circuit_state", provider=broken) == 2


def test_labels_never_hold_keys_or_made_up_names(gateway, catalog, make_key):
    key, raw = make_key(**HIGH_LIMITS)
    invented = f"no-such-model-{unique('x')}"
    with pytest.raises(openai.NotFoundError):
        client(gateway, raw).chat.completions.create(model=invented, messages=user("x"))
    text = urllib.request.urlopen(f"{gateway.url}/metrics", timeout=10).read().decode()
    assert invented not in text and raw not in text and key.prefix not in text
    assert "refusals_total" in text


def test_every_series_the_grafana_dashboard_plots_exists(
    gateway, upstream, catalog, make_user, make_key, tmp_path
):
    """After traffic of every kind (streamed, refused, failed over, paid), each metric the dashboard's queries
    name is in a scrape."""
    failover_model(gateway, upstream, make_key, tmp_path)
    paid_requests(gateway, upstream, make_user, make_key, tmp_path, 1)
    _, raw = make_key(rpm_limit=1, rpd_limit=10)
    api = client(gateway, raw)
    list(api.chat.completions.create(model=catalog["echo"], messages=user("stream"), stream=True))
    with pytest.raises(openai.RateLimitError):
        api.chat.completions.create(model=catalog["echo"], messages=user("refused"))
    time.sleep(PUBLISHED)
    samples = scrape(gateway)
    dashboard = json.loads((ROOT / "docs" / "grafana-dashboard.json").read_text())
    exprs = [target["expr"] for panel in dashboard["panels"] for target in panel["targets"]]
    named = set(re.findall(rf"{NS}_[a-z0-9_]+", " ".join(exprs)))
    present = {name for name, _ in samples}
    assert len(named) >= 15 and named <= present, named - present


def test_without_a_token_the_metrics_are_closed_unless_opened(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, METRICS_OPEN="false")
    try:
        with pytest.raises(urllib.error.HTTPError) as refused:
            scrape(gw)
        assert refused.value.code == 403 and b"METRICS_TOKEN" in refused.value.read()
    finally:
        gw.stop()


@pytest.fixture(scope="module")
def two_workers(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, workers=2, TEST_UPSTREAM_KEY="upstream-secret-123",
                       METRICS_TOKEN="scrape-secret")  # fmt: skip
    yield gw
    gw.stop()


def test_two_workers_add_up_in_every_scrape_and_the_token_guards_it(two_workers, catalog, make_key):
    _, raw = make_key(**HIGH_LIMITS)
    model = catalog["echo"]
    api = openai.OpenAI(base_url=two_workers.base_url, api_key=raw, max_retries=0)
    ids = [
        api.chat.completions.create(model=model, messages=user(f"worker {i}"))._request_id for i in range(24)
    ]
    settled(ids)
    assert UsageRecord.objects.filter(pk__in=ids).count() == 24
    time.sleep(PUBLISHED)
    directory = Path(two_workers.env["PROMETHEUS_MULTIPROC_DIR"])
    pids = {path.stem.rsplit("_", 1)[1] for path in directory.glob("counter_*.db")}
    assert len(pids) == 2, pids  # both workers served and wrote their own files
    route = {"endpoint": "chat.completions", "model": model, "status_class": "2xx"}
    for _ in range(6):  # whichever worker answers the scrape, it adds up both
        assert value(scrape(two_workers, "scrape-secret"), f"{NS}_requests_total", **route) == 24
    with pytest.raises(urllib.error.HTTPError) as refused:
        scrape(two_workers)
    assert refused.value.code == 401
    with pytest.raises(urllib.error.HTTPError) as wrong:
        scrape(two_workers, "not-it")
    assert wrong.value.code == 401
