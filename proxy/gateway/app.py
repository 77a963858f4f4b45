"""The lean ASGI application behind ``/v1``: routing, body reading and response writing, nothing else.

The work itself is in proxy/gateway/pipeline.py. Every failure becomes an error here, in the client's dialect
(OpenAI's shape, or Anthropic's on /v1/messages). The
process's runtime (proxy/gateway/runtime.py) is built by the lifespan and reaches each request in its scope.
"""

import asyncio
import logging
import random
import time
import uuid

from django.conf import settings

from proxy.gateway import errors, health, metrics, pipeline, tracing
from proxy.gateway.endpoints import ENDPOINTS
from proxy.gateway.http import Incoming, read_body, send_error, send_json
from proxy.gateway.runtime import STATE_KEY, Runtime, runtime_start, runtime_stop

log = logging.getLogger("proxy")

PROBES = ("/healthz", "/readyz", "/metrics")  # served beside /v1: no API key, no log line


async def app(scope: dict, receive, send) -> None:
    started = time.perf_counter()
    # Request ids need to be unique, not secret (every lookup by id checks the owner): skip the syscall.
    request_id = uuid.UUID(int=random.getrandbits(128), version=4)
    path, method = scope["path"].rstrip("/"), scope["method"]
    req = Incoming(scope, receive, send, request_id, started)
    rt: Runtime | None = None
    with tracing.request(scope, method, path) as req.span:
        try:
            rt = scope["state"][STATE_KEY]
            rt.in_flight += 1
            tracing.describe(req.span, request_id=str(request_id))
            await _route(rt, req, path, method)
        except errors.ApiError as err:
            if not req.settled:
                _refused(path, err, req)
            await send_error(req, err)
        except Exception:
            log.exception("unhandled error in %s %s (request %s)", method, path, request_id)
            await send_error(req, errors.internal_error())
        finally:
            if rt is not None:
                rt.in_flight -= 1


def _refused(path: str, err: errors.ApiError, req: Incoming) -> None:
    try:
        metrics.refused(metrics.endpoint_label(path), err.status)
        tracing.describe(req.span, status=err.status, error=err.code or err.type)
    except Exception:  # never in the way of the client's error
        log.exception("a refusal could not be counted")


async def probe(scope: dict, receive, send) -> None:
    """``/healthz``, ``/readyz`` (proxy/gateway/health.py) and ``/metrics``: no API key, no log line."""
    req = Incoming(scope, receive, send, uuid.UUID(int=0), time.perf_counter())
    if scope["path"] == "/healthz":
        await health.healthz(req)
    elif scope["path"] == "/readyz":
        await health.readyz(scope["state"][STATE_KEY], req)
    else:
        await _metrics(req)


async def _metrics(req: Incoming) -> None:
    if not metrics.authorized(req.header(b"authorization")):
        if settings.METRICS_TOKEN:
            await send_json(req, 401, b'{"error":"send METRICS_TOKEN as a bearer token"}')
        else:
            await send_json(
                req, 403, b'{"error":"set METRICS_TOKEN, or METRICS_OPEN=true on a private network"}'
            )
        return
    body, content_type = await asyncio.to_thread(metrics.exposition)  # reads every worker's files
    await req.send({"type": "http.response.start", "status": 200, "headers": [
        (b"content-type", content_type.encode()), (b"content-length", str(len(body)).encode()),
    ]})  # fmt: skip
    await req.send({"type": "http.response.body", "body": body})


async def _route(rt: Runtime, req: Incoming, path: str, method: str) -> None:
    req.anthropic = path.startswith(
        "/v1/messages"
    )  # Anthropic's API: its errors in its shape, whatever they are
    endpoint = ENDPOINTS.get(path)
    if endpoint is not None:
        if method != "POST":
            raise errors.method_not_allowed(method, path)
        req.body = await read_body(req.receive, req.scope, settings.MAX_BODY_BYTES)
        await pipeline.serve(rt, req, endpoint)
    elif path == "/v1/messages/count_tokens":
        if method != "POST":
            raise errors.method_not_allowed(method, path)
        req.body = await read_body(req.receive, req.scope, settings.MAX_BODY_BYTES)
        await pipeline.count_tokens(rt, req)
    elif path == "/v1/models":
        _only_get(method, path)
        await pipeline.list_models(rt, req)
    elif path == "/v1/key":
        _only_get(method, path)
        await pipeline.key_self(rt, req)
    elif path.startswith("/v1/models/"):
        _only_get(method, path)
        await pipeline.retrieve_model(rt, req, path.removeprefix("/v1/models/"))
    elif path.startswith("/v1/responses/"):
        await _stored_response(rt, req, path.removeprefix("/v1/responses/").split("/"), method, path)
    else:
        raise errors.unknown_url(method, req.scope["path"])


async def _stored_response(rt: Runtime, req: Incoming, parts: list[str], method: str, path: str) -> None:
    if len(parts) == 2 and parts[1] == "input_items":
        _only_get(method, path)
        await pipeline.response_input_items(rt, req, parts[0])
    elif len(parts) == 1 and method == "GET":
        await pipeline.response_retrieve(rt, req, parts[0])
    elif len(parts) == 1 and method == "DELETE":
        await pipeline.response_remove(rt, req, parts[0])
    elif len(parts) == 1:
        raise errors.method_not_allowed(method, path)
    else:
        raise errors.unknown_url(method, req.scope["path"])


def _only_get(method: str, path: str) -> None:
    if method != "GET":
        raise errors.method_not_allowed(method, path)


async def lifespan(scope: dict, receive, send) -> None:
    """Start the gateway's runtime with the server, and flush it on a graceful stop."""
    runtime: Runtime | None = None
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                runtime = await runtime_start()
            except Exception as exc:
                log.exception("gateway failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            scope["state"][STATE_KEY] = runtime  # the server copies this state into every request's scope
            health.drain_on_stop(runtime, settings.DRAIN_SECONDS)
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if runtime is not None:
                await runtime_stop(runtime)
            await send({"type": "lifespan.shutdown.complete"})
            return
