"""Liveness and readiness, for a load balancer or Kubernetes: ``GET /healthz`` and ``GET /readyz``.

``/healthz`` touches nothing (a process that answers is alive) and, like every probe, writes no log line.
``/readyz`` checks PostgreSQL and Redis, each within ``READY_CHECK_SECONDS``, and answers 503 naming what is
down. From the moment a graceful stop begins (SIGTERM) it answers 503 too: the process keeps serving for
``DRAIN_SECONDS`` so the load balancer can take it out of rotation before it stops listening, then stops as
the server would have, letting the streams in flight finish (proxy/gateway/runtime.py flushes at the end).
"""

import asyncio
import contextlib
import signal

from django.db import connection

from portal.accounts.limits import RedisLimiter
from proxy.gateway.db import run_db
from proxy.gateway.http import Incoming, dumps, send_json
from proxy.gateway.runtime import Runtime

READY_CHECK_SECONDS = 1.0


async def healthz(req: Incoming) -> None:
    await send_json(req, 200, b'{"status":"ok"}')


async def readyz(rt: Runtime, req: Incoming) -> None:
    if rt.draining:
        await send_json(req, 503, b'{"status":"stopping"}')
        return
    database, redis = await asyncio.gather(_check(_database()), _check(_redis(rt)))
    checks = {"database": database, "redis": redis}
    ready = all(state == "ok" for state in checks.values())
    body = {"status": "ready" if ready else "unavailable", "checks": checks}
    await send_json(req, 200 if ready else 503, dumps(body))


async def _check(probe) -> str:
    """``ok``, or why not (never an exception's text: it may name hosts and users)."""
    try:
        async with asyncio.timeout(READY_CHECK_SECONDS):
            await probe
    except TimeoutError:
        return "timeout"
    except Exception:
        return "down"
    return "ok"


async def _database() -> None:
    await run_db(_select_one)


def _select_one() -> None:
    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")


async def _redis(rt: Runtime) -> None:
    """Redis, when the gateway uses it (without it, limits are in-process and there is nothing to check)."""
    if isinstance(rt.limiter, RedisLimiter):
        await rt.limiter.redis.call(b"PING")


def drain_on_stop(rt: Runtime, drain_seconds: float) -> None:
    """On SIGTERM, mark the runtime as draining at once and pass the signal on to the server's own handler
    ``drain_seconds`` later (at once when 0). Installed at startup, after the server's handler."""
    previous = signal.getsignal(signal.SIGTERM)
    if not callable(previous):
        return  # no server handler to chain to: the default action stops the process as before
    loop = asyncio.get_running_loop()

    def on_term(signum, frame) -> None:
        if rt.draining:  # a second SIGTERM: stop now
            previous(signum, frame)
            return
        rt.draining = True
        if drain_seconds <= 0:
            previous(signum, frame)
        else:
            loop.call_soon_threadsafe(loop.call_later, drain_seconds, previous, signum, None)

    with contextlib.suppress(ValueError):  # not the main thread (an embedded server): probes still work
        signal.signal(signal.SIGTERM, on_term)
