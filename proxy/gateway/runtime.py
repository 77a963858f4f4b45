"""The gateway process's resources: created by the ASGI lifespan, handed to every request, closed at shutdown.

The lifespan keeps the runtime in its state (``scope["state"]``), which the server copies into each request's
scope, as Starlette does; nothing is created at import time, and a test can build a runtime of its own.
"""

import asyncio
import contextlib
import os
import socket
from dataclasses import dataclass, field

import aiohttp
from django.conf import settings

from billing.credits import Credits
from billing.settlement import Settler
from portal.accounts.limits import Limiter, RedisLimiter, make_limiter
from proxy.conversations.stored import StoredResponses
from proxy.gateway import metrics, tokens, tracing
from proxy.gateway.access import AccessLog
from proxy.gateway.auth import Keys
from proxy.gateway.catalog_cache import CatalogCache
from proxy.gateway.circuits import Circuits
from proxy.gateway.db import run_db

STATE_KEY = "gateway"


@dataclass(eq=False)
class Runtime:
    name: str  # host:pid, the owner of this process's credit holds
    limiter: Limiter
    keys: Keys
    catalog: CatalogCache
    circuits: Circuits
    credits: Credits
    settler: Settler
    responses: StoredResponses
    session: aiohttp.ClientSession
    access: AccessLog | None = None  # the access log, unless ACCESS_LOG is off
    in_flight: int = 0  # /v1 requests being served (the metrics sample it)
    tasks: list[asyncio.Task] = field(default_factory=list)
    draining: bool = False  # a graceful stop has begun: /readyz answers 503 (proxy/gateway/health.py)


async def runtime_start() -> Runtime:
    tokens.count_text("warm up")  # loads the vocabulary now, not on the first request
    limiter = make_limiter()
    # Without a shared limiter another process can't tell us about a change, so don't trust a cache long.
    ttl = settings.KEY_CACHE_SECONDS if settings.REDIS_URL else min(settings.KEY_CACHE_SECONDS, 5.0)
    name = f"{socket.gethostname()}:{os.getpid()}"
    credits = Credits(run_db, name, settings.HOLD_TIMEOUT_SECONDS)
    catalog = CatalogCache(limiter)
    await catalog.start()
    metrics.forget_dead_processes()
    tracing.start()
    rt = Runtime(
        name=name, limiter=limiter, keys=Keys(ttl), catalog=catalog, circuits=Circuits(), credits=credits,
        settler=Settler(run_db, settings.SETTLE_FLUSH_SECONDS, credits, on_flush=metrics.flushed),
        responses=_responses(limiter), session=_session(),
        access=AccessLog(json=settings.LOG_FORMAT == "json") if settings.ACCESS_LOG and AccessLog.enabled() else None,
    )  # fmt: skip
    rt.tasks.append(asyncio.create_task(catalog.watch(), name="catalog-watch"))
    rt.tasks.append(asyncio.create_task(_sample(rt), name="metrics-sample"))
    rt.settler.start()
    rt.responses.start()
    if rt.access is not None:
        rt.access.start()
    return rt


def _sample(rt: Runtime):
    return metrics.sample(
        in_flight=lambda: rt.in_flight,
        queue_depth=lambda: rt.settler.pending,
        leases=lambda: len(rt.credits.active_holds()),
        circuits=rt.circuits.named_states,
    )


def _responses(limiter: Limiter) -> StoredResponses:
    # Stored responses go to Redis first only when every process shares it (the limiter's connection).
    redis = limiter.redis if isinstance(limiter, RedisLimiter) else None
    return StoredResponses(
        run_db, redis, flush_every=settings.RESPONSES_FLUSH_SECONDS, sweep_every=settings.RESPONSES_SWEEP_SECONDS,
        copy_seconds=settings.RESPONSES_COPY_SECONDS,
    )  # fmt: skip


def _session() -> aiohttp.ClientSession:
    connector = aiohttp.TCPConnector(
        limit=settings.UPSTREAM_POOL_SIZE, limit_per_host=settings.UPSTREAM_POOL_SIZE, keepalive_timeout=30
    )
    # No cookies, no proxies from the environment, no redirects (set per request): an upstream is an API.
    return aiohttp.ClientSession(
        connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=True
    )


async def runtime_stop(rt: Runtime) -> None:
    """Record everything and return every hold before the process exits (the settler's final flush), with
    the stored responses written first (they need Redis and the database, both still open)."""
    try:
        await rt.responses.stop()
        await rt.settler.stop()
        for task in rt.tasks:
            task.cancel()
        for task in rt.tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await rt.session.close()
        await rt.limiter.close()
    finally:  # whatever failed above, the last log lines, metrics and spans go out
        if rt.access is not None:
            await rt.access.stop()
        metrics.stopped()
        await asyncio.to_thread(tracing.stop)
