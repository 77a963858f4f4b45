"""The /v1 hot path, top to bottom. Each step raises a typed error from proxy/gateway/errors.py on refusal.

chat_completion: parse -> authenticate -> resolve model -> limit -> reserve -> relay -> settle.
"""

import asyncio
import logging
import time

import orjson
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from portal.accounts.limits import LimiterUnavailable
from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import catalog_cache, errors, streaming, tokens
from proxy.gateway.auth import KeyInfo
from proxy.gateway.db import run_db
from proxy.gateway.http import Incoming, dumps, send_json
from proxy.gateway.schemas import ChatRequest, parse_chat_request
from proxy.gateway.state import Gateway, gateway
from proxy.gateway.streaming import Lines, Tally
from proxy.gateway.upstream import UPSTREAM_FAULTS, UpstreamFailure, first_answer, open_route, upstream_body

log = logging.getLogger("proxy")

OUTAGES = (DatabaseError, RedisError, LimiterUnavailable, OSError)


async def list_models(req: Incoming) -> None:
    gw = gateway()
    key_hash, key = await gw.key_for(req.header(b"authorization"))
    key, quota = await gw.check(key_hash, key, count=False)  # answers with the headers, counts nothing
    req.headers_out += quota.headers()
    listing = {"object": "list", "data": gw.catalog.listing(key.allowed_models)}
    await send_json(req, 200, dumps(listing))


async def retrieve_model(req: Incoming, model_id: str) -> None:
    gw = gateway()
    key_hash, key = await gw.key_for(req.header(b"authorization"))
    key, quota = await gw.check(key_hash, key, count=False)
    req.headers_out += quota.headers()
    model = await gw.resolve(model_id, key.allowed_models)
    await send_json(req, 200, dumps(model.openai()))


async def key_self(req: Incoming) -> None:
    """The calling key's limits, what remains of them, its spend and usage: the same answer as the management
    API's GET /api/v1/key, so an inference client can check itself."""
    from billing.api_selectors import key_summary

    gw = gateway()
    key_hash, key = await gw.key_for(req.header(b"authorization"))
    key, quota = await gw.check(key_hash, key, count=False)
    req.headers_out += quota.headers()
    await send_json(req, 200, dumps(await run_db(key_summary, key_id=key.id)))


async def chat_completion(req: Incoming) -> None:
    gw = gateway()
    body = parse_chat_request(req.body)  # 400 with `param` on any violation
    key_hash, key = await gw.key_for(req.header(b"authorization"))  # 401 / 403; revocation is immediate
    model = await gw.resolve(body.model, key.allowed_models)  # 404 / 403 before anything counts
    _check_context(model, body, len(req.body))  # 400 context_length_exceeded
    gw.check_recording()  # 503 while usage can't be recorded
    key, quota = await _admit(gw, req, key_hash, key)  # 429 + Retry-After
    model, hold = await _reserve(gw, req, key, quota, body)  # 402; never overdraws
    tally, status = Tally(), 500
    try:
        status = await _relay(gw, req, model, body, tally)  # failover before the first byte
    except errors.ApiError as err:
        status, tally.error_code = err.status, err.code or err.type
        raise
    finally:
        gw.settle(req=req, key=key, model=model, body=body, tally=tally, hold=hold, status=status)  # once


async def _admit(gw: Gateway, req: Incoming, key_hash: str, key: KeyInfo):
    """Take a slot in the key's limits (every answer carries the limit headers), or refuse with 429."""
    key, quota = await gw.check(key_hash, key, count=True, token=req.request_id.hex)
    req.headers_out += quota.headers()
    if quota.retry_after:
        message = _limit_message(quota.verdict, key)
        raise errors.rate_limited(message, retry_after=quota.retry_after, retry=quota.verdict == 1)
    return key, quota


async def _reserve(gw: Gateway, req: Incoming, key: KeyInfo, quota, body: ChatRequest):
    """Set the worst case aside. A request refused here gives its limiter slot back: it never counted."""
    try:
        model = catalog_cache.resolve(
            gw.catalog, body.model, key.allowed_models
        )  # the catalog may have just been reloaded
        return model, await gw.reserve(key=key, model=model, request=body)
    except errors.ApiError:
        await gw.limiter.refund(key_id=key.id, user_id=key.user_id, quota=quota)
        raise
    except OUTAGES:  # only a real outage is worth a retry
        log.exception("reserving credit failed (request %s)", req.request_id)
        await gw.limiter.refund(key_id=key.id, user_id=key.user_id, quota=quota)
        raise errors.service_unavailable(
            "Credits could not be checked; nothing was charged. Please retry."
        ) from None
    except Exception:
        log.exception("reserving credit failed (request %s)", req.request_id)
        await gw.limiter.refund(key_id=key.id, user_id=key.user_id, quota=quota)
        raise errors.internal_error() from None


def _check_context(model: ModelInfo, body: ChatRequest, size: int) -> None:
    """Refuse a prompt longer than the model's context (400, as OpenAI does), counted locally.

    Only a body that could be too long is counted: a prompt has at most two tokens per byte of its body (text
    has at most one per byte, and a non-text part, estimated at 85 tokens, takes at least 46 bytes of JSON)."""
    limit = model.context_length
    if limit and size * 2 > limit:
        body.prompt_tokens = tokens.count_messages(body.messages)
        if body.prompt_tokens > limit:
            raise errors.context_length_exceeded(limit, body.prompt_tokens)


def _limit_message(verdict: int, key: KeyInfo) -> str:
    if verdict == 1:
        return f"Rate limit reached: {key.rpm} requests per minute for this key. Retry after the Retry-After delay."
    return f"Daily limit reached: {key.rpd} requests per day for this key. It resets at 00:00 UTC."


async def _relay(gw: Gateway, req: Incoming, model: ModelInfo, body: ChatRequest, tally: Tally) -> int:
    """Send to the first route that answers, and relay its answer; the client going away cancels it.

    Returns the HTTP status the client got (499 when it left before the response began)."""
    watcher = asyncio.create_task(_watch_disconnect(req, asyncio.current_task(), tally))
    try:
        if body.stream:
            return await _relay_stream(gw, req, model, body, tally)
        return await _relay_plain(gw, req, model, body, tally)
    except asyncio.CancelledError:
        if not tally.client_disconnected:
            raise
        asyncio.current_task().uncancel()
        return 200 if req.response_started else 499  # the client closed the connection; nothing more to send
    finally:
        req.finished = True
        watcher.cancel()


async def _watch_disconnect(req: Incoming, handler: asyncio.Task, tally: Tally) -> None:
    """Cancel the handler (and with it the upstream request) as soon as the client goes away."""
    while True:
        message = await req.receive()
        if message["type"] == "http.disconnect":
            if not req.finished:
                tally.client_disconnected = True
                handler.cancel()
            return


async def _relay_plain(gw: Gateway, req: Incoming, model: ModelInfo, body: ChatRequest, tally: Tally):
    async def attempt(route: RouteInfo):
        response = await open_route(gw.session, route, upstream_body(body.body, route, False), False)
        try:
            async with asyncio.timeout(route.provider.idle_timeout):
                raw = await response.read()
            return _completion(raw)
        except UPSTREAM_FAULTS as exc:
            raise UpstreamFailure("timeout" if isinstance(exc, TimeoutError) else "garbage") from None
        finally:
            response.release()

    waited = time.perf_counter()
    tally.route, completion = await first_answer(gw.circuits, model, attempt)
    req.upstream_time += time.perf_counter() - waited
    tally.first_token_at = time.perf_counter()
    tally.take_choices(completion["choices"])
    tally.take_usage(completion.get("usage"))
    await send_json(req, 200, dumps(completion))
    return 200


def _completion(raw: bytes) -> dict:
    """The upstream's completion, with the fields OpenAI's schema requires filled in when an upstream omits
    them (strict clients validate them). Raises ValueError for anything that is not a completion."""
    data = orjson.loads(raw)
    if not isinstance(data, dict) or not isinstance(data.get("choices"), list):
        raise ValueError("not a chat completion")
    data.setdefault("object", "chat.completion")
    for choice in data["choices"]:
        if not isinstance(choice, dict) or not isinstance(choice.get("message"), dict):
            raise ValueError("a choice without a message")
        choice.setdefault("logprobs", None)
        choice.setdefault("finish_reason", "stop")
        choice["message"].setdefault("refusal", None)
        choice["message"].setdefault("content", None)
    return data


async def _relay_stream(gw: Gateway, req: Incoming, model: ModelInfo, body: ChatRequest, tally: Tally):
    keepalive = settings.STREAM_KEEPALIVE_SECONDS

    async def attempt(route: RouteInfo):
        response = await open_route(gw.session, route, upstream_body(body.body, route, True), True)
        lines = Lines(response, route.provider.first_byte_timeout, route.provider.idle_timeout)
        try:
            return response, lines, await streaming.first_event(lines, keepalive)
        except UPSTREAM_FAULTS as exc:
            response.close()
            raise UpstreamFailure("timeout" if isinstance(exc, TimeoutError) else "garbage") from None

    waited = time.perf_counter()
    tally.route, (response, lines, first) = await first_answer(gw.circuits, model, attempt)
    req.upstream_time += time.perf_counter() - waited
    try:
        await streaming.relay_stream(
            req, lines, first, tally, include_usage=body.include_usage, keepalive_every=keepalive
        )
    finally:
        # Closed, not drained: when the client has gone, the upstream should stop generating at once.
        response.close()
    return 200
