"""The lean ASGI application behind ``/v1``: routing, body reading and response writing, nothing else.

The work itself is in proxy/gateway/pipeline.py. Every failure becomes an OpenAI-shaped error here.
"""

import logging
import random
import time
import uuid

from django.conf import settings

from proxy.gateway import errors, pipeline, state
from proxy.gateway.http import Incoming, read_body, send_error

log = logging.getLogger("proxy")


async def app(scope: dict, receive, send) -> None:
    started = time.perf_counter()
    # Request ids need to be unique, not secret (every lookup by id checks the owner): skip the syscall.
    request_id = uuid.UUID(int=random.getrandbits(128), version=4)
    path, method = scope["path"].rstrip("/"), scope["method"]
    req = Incoming(scope, receive, send, request_id, started)
    try:
        if path == "/v1/chat/completions":
            if method != "POST":
                raise errors.method_not_allowed(method, path)
            req.body = await read_body(receive, scope, settings.MAX_BODY_BYTES)
            await pipeline.chat_completion(req)
        elif path == "/v1/models":
            _only_get(method, path)
            await pipeline.list_models(req)
        elif path == "/v1/key":
            _only_get(method, path)
            await pipeline.key_self(req)
        elif path.startswith("/v1/models/"):
            _only_get(method, path)
            await pipeline.retrieve_model(req, path.removeprefix("/v1/models/"))
        else:
            raise errors.unknown_url(method, scope["path"])
    except errors.ApiError as err:
        await send_error(req, err)
    except Exception:
        log.exception("unhandled error in %s %s (request %s)", method, path, request_id)
        await send_error(req, errors.internal_error())


def _only_get(method: str, path: str) -> None:
    if method != "GET":
        raise errors.method_not_allowed(method, path)


async def lifespan(receive, send) -> None:
    """Start the gateway's shared state with the server, and flush it on a graceful stop."""
    while True:
        message = await receive()
        if message["type"] == "lifespan.startup":
            try:
                state.GATEWAY = state.Gateway()
                await state.GATEWAY.start()
            except Exception as exc:
                log.exception("gateway failed to start")
                await send({"type": "lifespan.startup.failed", "message": str(exc)})
                return
            await send({"type": "lifespan.startup.complete"})
        elif message["type"] == "lifespan.shutdown":
            if state.GATEWAY is not None:
                await state.GATEWAY.stop()
            await send({"type": "lifespan.shutdown.complete"})
            return
