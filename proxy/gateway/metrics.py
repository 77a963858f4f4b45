"""Prometheus metrics for the gateway, served at ``GET /metrics`` (optionally behind ``METRICS_TOKEN``).

Every gateway process writes its samples to files in ``PROMETHEUS_MULTIPROC_DIR`` (prometheus_client's
multiprocess mode; portal/settings.py points it at ``var/metrics`` unless set), and a scrape, whichever worker
answers it, adds up all of them: ``--workers N`` is one target, not N that a load balancer picks from. The
directory must start empty with the server (``deploy/entrypoint.sh web`` and ``make run`` clear it); a process
that died without stopping has its live gauges dropped by the next one to start here.

Labels are bounded by the operator's catalog: endpoint, model and provider names from it and the status
class, never a key, an account or a model name a client made up (a refusal before the model is known has no
model label). The hot path pays one list append per request: every quarter second the requests finished
meanwhile are published, a chunk at a time between turns of the event loop (counters summed per label set, so
one write each; histograms an observation at a time, into cached labelled children), and once a second the
gauges that change with every request (in flight, the settlement queue, the credit leases, the circuits) are
sampled. A scrape is at most a second behind.
"""

import asyncio
import glob
import hmac
import logging
import os
import tempfile
from collections import defaultdict
from collections.abc import Callable

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    generate_latest,
    multiprocess,
)

from proxy.gateway.endpoints import ENDPOINTS

log = logging.getLogger("proxy")

NS = "inference_space"
PUBLISH_SECONDS = 0.25  # how often finished requests are published
GAUGE_EVERY = 4  # publishes between two samples of the gauges (once a second)
CHUNK = 200  # requests published between two turns of the event loop, so a burst never stalls it
MAX_QUEUED = 200_000  # finished requests kept for publishing at most (a bound, should publishing ever stop)
MULTIPROCESS = bool(os.environ.get("PROMETHEUS_MULTIPROC_DIR"))


def _check_directory(path: str) -> None:
    """Fail at startup, naming the setting, when the samples can't be written where they must go."""
    try:
        os.makedirs(path, exist_ok=True)
        with tempfile.TemporaryFile(dir=path):
            pass
    except OSError as exc:
        raise ImproperlyConfigured(
            f"PROMETHEUS_MULTIPROC_DIR={path} can't be written ({exc.strerror}): point it at a writable "
            "directory, empty when the server starts."
        ) from None


if MULTIPROCESS:  # its samples go to files there, created as the metrics below are
    _check_directory(os.environ["PROMETHEUS_MULTIPROC_DIR"])

SECONDS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300)
OVERHEAD = (0.0002, 0.0005, 0.001, 0.002, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25)
FIRST_TOKEN = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60)
FLUSH = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5)
ROUTE = ("endpoint", "model", "provider")

REQUESTS = Counter(
    f"{NS}_requests", "Admitted /v1 requests, by how they ended.", [*ROUTE, "status_class"]
)  # fmt: skip
DURATION = Histogram(f"{NS}_request_duration_seconds", "Total time of an admitted request.", ROUTE,
                     buckets=SECONDS)  # fmt: skip
UPSTREAM = Histogram(
    f"{NS}_upstream_duration_seconds",
    "Time spent waiting on upstreams: the whole answer when plain, until the first event when streamed.",
    ["endpoint", "provider"], buckets=SECONDS,
)  # fmt: skip
OVERHEAD_SECONDS = Histogram(
    f"{NS}_overhead_seconds", "The gateway's own time before the response began (upstream time excluded).",
    ["endpoint"], buckets=OVERHEAD,
)  # fmt: skip
FIRST_TOKEN_SECONDS = Histogram(
    f"{NS}_time_to_first_token_seconds", "Time to the first token of a streamed answer.", ROUTE,
    buckets=FIRST_TOKEN,
)  # fmt: skip
TOKENS = Counter(
    f"{NS}_tokens",
    "Tokens billed, by kind: input (uncached), cache_read, cache_write_5m, cache_write_1h, output, and "
    "reasoning (a part of output).",
    [*ROUTE, "kind"],
)  # fmt: skip
COST = Counter(f"{NS}_cost_usd", "What admitted requests were charged, in USD.", ROUTE)
IN_FLIGHT = Gauge(f"{NS}_requests_in_flight", "/v1 requests being served.", multiprocess_mode="livesum")
REFUSALS = Counter(
    f"{NS}_refusals",
    "/v1 requests refused before they were admitted, by reason: auth, limits, credits, validation, "
    "unavailable, other.",
    ["endpoint", "reason"],
)  # fmt: skip
CIRCUIT = Gauge(
    f"{NS}_provider_circuit_state", "A provider's circuit: 0 closed, 1 half-open, 2 open (the worst of any process).",
    ["provider"], multiprocess_mode="livemax",
)  # fmt: skip
UPSTREAM_FAILURES = Counter(
    f"{NS}_upstream_failures", "Failed upstream calls, by provider and kind: connect, timeout, status, garbage.",
    ["provider", "kind"],
)  # fmt: skip
FAILOVERS = Counter(
    f"{NS}_failovers", "Routes given up for the next one, by the provider that failed.", ["model", "provider"]
)  # fmt: skip
QUEUE = Gauge(f"{NS}_settlement_queue_depth", "Finished requests waiting to be written.",
              multiprocess_mode="livesum")  # fmt: skip
FLUSH_SECONDS = Histogram(f"{NS}_settlement_flush_seconds", "Time of one settlement write.", buckets=FLUSH)
FLUSH_FAILURES = Counter(f"{NS}_settlement_flush_failures", "Settlement writes that failed (retried later).")
FLUSHED = Counter(f"{NS}_settlement_records", "Usage records written by settlement.")
LEASES = Gauge(f"{NS}_credit_leases_open", "Credit leases (holds) the gateway processes have open.",
               multiprocess_mode="livesum")  # fmt: skip

REFUSAL_REASONS = {401: "auth", 403: "auth", 402: "credits", 429: "limits", 503: "unavailable"}
VALIDATION = {400, 404, 405, 409, 413, 415, 422}
CIRCUIT_VALUES = {"half-open": 1, "open": 2}
STATUS_CLASSES = {1: "1xx", 2: "2xx", 3: "3xx", 4: "4xx", 5: "5xx"}
READ_LABELS = (
    ("/v1/messages/count_tokens", "messages.count_tokens"), ("/v1/models", "models"), ("/v1/key", "key"),
    ("/v1/responses/", "responses.stored"),
)  # fmt: skip

_children: dict[tuple, object] = {}
_finished: list[tuple] = []  # requests settled since the last publish


def _child(metric, *labels: str):
    """A metric's labelled child, made once (``labels`` is the costly part of an increment)."""
    key = (metric, labels)
    child = _children.get(key)
    if child is None:
        child = _children[key] = metric.labels(*labels)
    return child


def finished(
    *, endpoint: str, model: str, provider: str, status: int, total: float, upstream: float, overhead: float,
    first_token: float | None, tokens: tuple[tuple[str, int], ...], cost: float,
) -> None:  # fmt: skip
    """One admitted request, as settlement recorded it: queued for ``publish`` (one append on the hot path)."""
    if len(_finished) < MAX_QUEUED:
        _finished.append(
            (endpoint, model, provider, status, total, upstream, overhead, first_token, tokens, cost)
        )


def publish(limit: int | None = None) -> bool:
    """Apply the oldest requests finished (``limit`` of them, or all): counters summed per label set (one
    write each), histograms an observation at a time. Returns whether more are waiting."""
    batch = _finished[:limit]
    del _finished[: len(batch)]
    sums: dict[tuple, float] = defaultdict(float)
    for endpoint, model, provider, status, total, upstream, overhead, first_token, tokens, cost in batch:
        sums[(REQUESTS, endpoint, model, provider, STATUS_CLASSES.get(status // 100, "other"))] += 1
        _child(DURATION, endpoint, model, provider).observe(total)
        if upstream:
            _child(UPSTREAM, endpoint, provider).observe(upstream)
        _child(OVERHEAD_SECONDS, endpoint).observe(max(overhead, 0.0))
        if first_token is not None:
            _child(FIRST_TOKEN_SECONDS, endpoint, model, provider).observe(first_token)
        for kind, count in tokens:
            if count:
                sums[(TOKENS, endpoint, model, provider, kind)] += count
        if cost:
            sums[(COST, endpoint, model, provider)] += cost
    for (metric, *labels), amount in sums.items():
        _child(metric, *labels).inc(amount)
    return bool(_finished)


def endpoint_label(path: str) -> str:
    """The endpoint a /v1 path is for, from a closed set (a made-up path is ``other``)."""
    endpoint = ENDPOINTS.get(path)
    if endpoint is not None:
        return endpoint.name
    for prefix, label in READ_LABELS:
        if path.startswith(prefix):
            return label
    return "other"


def refused(endpoint: str, status: int) -> None:
    """A request refused before admission (those after it are counted by ``finished``)."""
    reason = REFUSAL_REASONS.get(status) or ("validation" if status in VALIDATION else "other")
    _child(REFUSALS, endpoint, reason).inc()


def failover(model: str, provider: str) -> None:
    _child(FAILOVERS, model, provider).inc()


def upstream_failed(provider: str, kind: str) -> None:
    _child(UPSTREAM_FAILURES, provider, kind).inc()


def flushed(seconds: float, records: int, failed: bool) -> None:
    """One settlement write (billing/settlement.py calls this through the runtime)."""
    FLUSH_SECONDS.observe(seconds)
    if failed:
        FLUSH_FAILURES.inc()
    elif records:
        FLUSHED.inc(records)


async def sample(
    *, in_flight: Callable[[], int], queue_depth: Callable[[], int], leases: Callable[[], int],
    circuits: Callable[[], dict[str, str]],
) -> None:  # fmt: skip
    """For as long as the process serves: publish the requests finished, a chunk at a time, and once a second
    set the gauges that move with every request. A failure is logged and the next turn tries again."""
    seen: set[str] = set()
    tick = 0
    while True:
        try:
            await _publish_all()
            if tick % GAUGE_EVERY == 0:
                IN_FLIGHT.set(in_flight())
                QUEUE.set(queue_depth())
                LEASES.set(leases())
                states = circuits()
                for provider in seen | states.keys():
                    _child(CIRCUIT, provider).set(CIRCUIT_VALUES.get(states.get(provider, ""), 0))
                seen |= states.keys()
        except Exception:
            log.exception("metrics could not be published")
        tick += 1
        await asyncio.sleep(PUBLISH_SECONDS)


async def _publish_all() -> None:
    """Everything finished so far, a chunk per turn of the event loop (requests in flight go on between)."""
    for _ in range(MAX_QUEUED // CHUNK + 1):
        if not publish(CHUNK):
            return
        await asyncio.sleep(0)


def forget_dead_processes() -> None:
    """Drop the live gauges of processes that died here without stopping (a crash, a kill): their last
    values would otherwise count for ever. Files of live processes, on this host, stay."""
    if not MULTIPROCESS:
        return
    for path in glob.glob(os.path.join(os.environ["PROMETHEUS_MULTIPROC_DIR"], "gauge_live*_*.db")):
        pid = path.rsplit("_", 1)[1].removesuffix(".db")
        if pid.isdigit() and not _alive(int(pid)):
            multiprocess.mark_process_dead(int(pid))


def stopped() -> None:
    """The last requests published, and this process's live gauges stop counting (at a graceful stop)."""
    publish()
    if MULTIPROCESS:
        multiprocess.mark_process_dead(os.getpid())


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def authorized(authorization: str | None) -> bool:
    """Whether a scrape may read the metrics: with ``METRICS_TOKEN`` as a bearer token when one is set, else
    only if ``METRICS_OPEN`` (the default in DEBUG alone)."""
    token = settings.METRICS_TOKEN
    if not token:
        return settings.METRICS_OPEN
    given = (authorization or "").removeprefix("Bearer ").strip()
    return hmac.compare_digest(given.encode(), token.encode())


def exposition() -> tuple[bytes, str]:
    """The text format of every process's samples (reads files: call it off the event loop)."""
    if not MULTIPROCESS:
        from prometheus_client import REGISTRY

        return generate_latest(REGISTRY), CONTENT_TYPE_LATEST
    registry = CollectorRegistry()
    multiprocess.MultiProcessCollector(registry)
    return generate_latest(registry), CONTENT_TYPE_LATEST
