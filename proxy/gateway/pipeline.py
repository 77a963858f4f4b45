"""The /v1 hot path, top to bottom. Each step raises a typed error from proxy/gateway/errors.py on refusal.

``serve`` runs any endpoint's declaration (proxy/gateway/endpoints/): authenticate -> parse -> resolve model
-> admit -> reserve -> relay -> settle. The listing and key routes below it read, and count nothing.
"""

import asyncio
import logging
import time
from functools import partial

import orjson
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from billing.api_selectors import key_summary
from billing.credits import Reservation, worst_case
from portal.accounts.limits import LimiterUnavailable, Quota
from portal.accounts.redispipe import RedisUnavailable
from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.conversations.services import items_page
from proxy.gateway import admission, errors, settlement, spend, streaming, tokens, tracing
from proxy.gateway.auth import KeyInfo
from proxy.gateway.db import run_db
from proxy.gateway.endpoints.base import ANTHROPIC, Endpoint, Request, route_style
from proxy.gateway.endpoints.messages import MESSAGES
from proxy.gateway.http import Incoming, dumps, send_json
from proxy.gateway.runtime import Runtime
from proxy.gateway.schemas.anthropic import checked_messages_body
from proxy.gateway.spend import SpendClaim
from proxy.gateway.streaming import Lines, Tally
from proxy.gateway.translate.messages import chat_body_from_messages
from proxy.gateway.upstream import UPSTREAM_FAULTS, UpstreamFailure, first_answer, open_route

log = logging.getLogger("proxy")

OUTAGES = (DatabaseError, RedisError, LimiterUnavailable, OSError)
ENDPOINT_OF_MODE = {
    "chat": "/v1/chat/completions",
    "embedding": "/v1/embeddings",
    "completion": "/v1/completions",
}


async def serve(rt: Runtime, req: Incoming, endpoint: Endpoint) -> None:
    key_hash, key = await rt.keys.authenticate(req.credentials())  # 401 / 403, before the body is read
    request = endpoint.parse(req.body)  # 400 with `param` on any violation
    model = await rt.catalog.resolve(request.model, key.allowed_models)  # 404 / 403 before anything counts
    _check_serves(model, endpoint)  # 404 for a model of another endpoint
    request.output_limit = endpoint.max_output(request, model)
    if endpoint.prepare is not None:
        await endpoint.prepare(rt, req, key, request)  # the endpoint's own reads (an earlier turn, say): 400
    _check_context(endpoint, model, request, len(req.body))  # 400 context_length_exceeded
    settlement.check_capacity(rt)  # 503 while usage can't be recorded
    with tracing.step("admission"):
        key, quota = await admission.admit(rt, req, key_hash, key)  # 429 + Retry-After
    with tracing.step("reservation", model=model.name):
        model, reservation, claim = await _reserve(rt, req, endpoint, key, quota, request)  # 402; no overdraw
    tally, status = Tally(), 500
    if settlement.wants_cost(request.body):  # its cost in the answer's usage
        tally.cost_of = partial(settlement.cost_report, model, tally)
    try:
        status = await _relay(rt, req, endpoint, key, model, request, tally)  # failover before the first byte
    except errors.ApiError as err:
        status, tally.error_code = err.status, err.code or err.type
        raise
    finally:
        with tracing.step("settlement"):
            settlement.settle(
                rt, req, endpoint=endpoint, key=key, model=model, request=request, tally=tally,
                reservation=reservation, claim=claim, status=status,
            )  # fmt: skip


def _check_serves(model: ModelInfo, endpoint: Endpoint) -> None:
    if model.mode != endpoint.mode:
        raise errors.wrong_endpoint(model.name, endpoint.path, ENDPOINT_OF_MODE.get(model.mode))


def _check_context(endpoint: Endpoint, model: ModelInfo, request: Request, size: int) -> None:
    """Refuse an input longer than the model's context (400, as OpenAI does), counted locally.

    Only a body that could be too long is counted: an input has at most two tokens per byte of its body
    (text has at most one per byte, and a non-text part, estimated at 85 tokens, takes at least 46 bytes)."""
    limit = model.context_length
    if limit and size * 2 > limit:
        request.prompt_tokens = endpoint.count_input(request)
        if request.prompt_tokens > limit:
            raise errors.context_length_exceeded(limit, request.prompt_tokens)


async def _reserve(
    rt: Runtime, req: Incoming, endpoint: Endpoint, key: KeyInfo, quota: Quota, request: Request
) -> tuple[ModelInfo, Reservation | None, SpendClaim | None]:
    """Set the worst case aside (free models need none). A request refused here gives its limiter slot back:
    it never counted."""
    try:
        model = rt.catalog.resolve_now(
            request.model, key.allowed_models
        )  # the catalog may have just reloaded
        if model.is_free:
            return model, None, None
        if request.prompt_tokens is None:
            request.prompt_tokens = endpoint.count_input(request)
        need = worst_case(
            prompt_tokens=request.prompt_tokens, max_output=endpoint.max_output(request, model), model=model
        )
        reservation, claim = await spend.reserve(rt, key=key, need=need)
        return model, reservation, claim
    except errors.ApiError:
        await admission.refund(rt, key, quota)
        raise
    except OUTAGES:  # only a real outage is worth a retry
        log.exception("reserving credit failed (request %s)", req.request_id)
        await admission.refund(rt, key, quota)
        raise errors.service_unavailable(
            "Credits could not be checked; nothing was charged. Please retry."
        ) from None
    except Exception:
        log.exception("reserving credit failed (request %s)", req.request_id)
        await admission.refund(rt, key, quota)
        raise errors.internal_error() from None


async def _relay(
    rt: Runtime,
    req: Incoming,
    endpoint: Endpoint,
    key: KeyInfo,
    model: ModelInfo,
    request: Request,
    tally: Tally,
):
    """Send to the first route that answers, and relay its answer; the client going away cancels it.

    Returns the HTTP status the client got (499 when it left before the response began)."""
    handler = asyncio.current_task()
    assert handler is not None
    watcher = asyncio.create_task(_watch_disconnect(req, handler, tally))
    try:
        if request.stream:
            return await _relay_stream(rt, req, endpoint, key, model, request, tally)
        return await _relay_plain(rt, req, endpoint, key, model, request, tally)
    except asyncio.CancelledError:
        if not tally.client_disconnected:
            raise
        handler.uncancel()
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


async def _relay_plain(
    rt: Runtime, req: Incoming, endpoint: Endpoint, key: KeyInfo, model: ModelInfo, request, tally: Tally
):
    async def attempt(route: RouteInfo):
        upstream = endpoint.upstream_for(route)
        response = await open_route(
            rt.session, route, upstream.path, upstream.body(request, route, False), False, req
        )
        try:
            async with asyncio.timeout(route.provider.idle_timeout):
                raw = await response.read()
            return upstream, upstream.check_answer(raw)
        except UPSTREAM_FAULTS as exc:
            raise UpstreamFailure("timeout" if isinstance(exc, TimeoutError) else "garbage") from None
        finally:
            response.release()

    waited = time.perf_counter()
    tally.route, (upstream, answer) = await first_answer(rt.circuits, model, attempt)
    req.upstream_time += time.perf_counter() - waited
    tally.first_token_at = time.perf_counter()
    upstream.take_answer(tally, answer)
    out = upstream.write_answer(request, answer)
    if tally.cost_of is not None and isinstance(out.get("usage"), dict):
        out["usage"] = {**out["usage"], **tally.cost_of()}
    if endpoint.keep is not None:
        await endpoint.keep(rt, key, request, out)
    await send_json(req, 200, dumps(out))
    return 200


async def _relay_stream(
    rt: Runtime, req: Incoming, endpoint: Endpoint, key: KeyInfo, model: ModelInfo, request, tally: Tally
):
    keepalive = settings.STREAM_KEEPALIVE_SECONDS

    async def attempt(route: RouteInfo):
        upstream = endpoint.upstream_for(route)
        response = await open_route(
            rt.session, route, upstream.path, upstream.body(request, route, True), True, req
        )
        lines = Lines(response, route.provider.first_byte_timeout, route.provider.idle_timeout)
        try:
            return upstream, response, lines, await streaming.first_event(lines, keepalive)
        except UPSTREAM_FAULTS as exc:
            response.close()
            raise UpstreamFailure("timeout" if isinstance(exc, TimeoutError) else "garbage") from None

    waited = time.perf_counter()
    tally.route, (upstream, response, lines, first) = await first_answer(rt.circuits, model, attempt)
    req.upstream_time += time.perf_counter() - waited
    try:
        keep = partial(endpoint.keep, rt, key, request) if endpoint.keep is not None else None
        writer = upstream.stream_writer(request, keep)
        await streaming.relay_stream(req, lines, first, tally, writer=writer, keepalive_every=keepalive)
    finally:
        # Closed, not drained: when the client has gone, the upstream should stop generating at once.
        response.close()
    return 200


# --- reads: they carry the limit headers and count nothing -------------------------------------------------


async def list_models(rt: Runtime, req: Incoming) -> None:
    """The catalog, in Anthropic's list shape for a client that sends ``anthropic-version`` (every entry at
    once: ``has_more`` is false, and the paging parameters have nothing more to page)."""
    anthropic = _anthropic_client(req)
    key = await _caller(rt, req)
    if anthropic:
        data = rt.catalog.listing(key.allowed_models, anthropic=True)
        first, last = (data[0]["id"], data[-1]["id"]) if data else (None, None)
        page = {"data": data, "has_more": False, "first_id": first, "last_id": last}
        await send_json(req, 200, dumps(page))
        return
    await send_json(req, 200, dumps({"object": "list", "data": rt.catalog.listing(key.allowed_models)}))


async def retrieve_model(rt: Runtime, req: Incoming, model_id: str) -> None:
    anthropic = _anthropic_client(req)
    key = await _caller(rt, req)
    model = await rt.catalog.resolve(model_id, key.allowed_models)
    await send_json(req, 200, dumps(model.anthropic() if anthropic else model.openai()))


def _anthropic_client(req: Incoming) -> bool:
    """An Anthropic SDK sends its API version with every request; its errors then come in its shape too."""
    req.anthropic = req.header(b"anthropic-version") is not None
    return req.anthropic


async def key_self(rt: Runtime, req: Incoming) -> None:
    """The calling key's limits, what remains of them, its spend and usage: the same answer as the management
    API's GET /api/v1/key, so an inference client can check itself."""
    key = await _caller(rt, req)
    await send_json(req, 200, dumps(await run_db(key_summary, key_id=key.id)))


async def _caller(rt: Runtime, req: Incoming) -> KeyInfo:
    key_hash, key = await rt.keys.authenticate(req.credentials())
    return await admission.peek(rt, req, key_hash, key)


async def count_tokens(rt: Runtime, req: Incoming) -> None:
    """``POST /v1/messages/count_tokens``: a valid key, but no request against its limits (Claude clients
    call it often). The model's first route answers it when it speaks Anthropic's API; otherwise, or when
    that upstream fails, the input is counted here. A request the upstream refuses is the client's to see."""
    key = await _caller(rt, req)
    body = checked_messages_body(req.body, counting=True)
    model = await rt.catalog.resolve(body["model"], key.allowed_models)
    _check_serves(model, MESSAGES)
    route = next((r for r in model.routes if not rt.circuits.is_open(r.provider)), None)
    if route is not None and route_style(route) == ANTHROPIC:
        counted = await _count_upstream(rt, req, route, body)
        if counted is not None:
            await send_json(req, 200, dumps(counted))
            return
    local = tokens.count_messages(chat_body_from_messages(body).get("messages") or []) + tokens.count_tools(
        body.get("tools")
    )
    await send_json(req, 200, dumps({"input_tokens": local}))


async def _count_upstream(rt: Runtime, req: Incoming, route: RouteInfo, body: dict) -> dict | None:
    payload = dumps({**body, "model": route.upstream_model})
    try:
        response = await open_route(rt.session, route, "/messages/count_tokens", payload, False, req)
        try:
            async with asyncio.timeout(route.provider.idle_timeout):
                answer = orjson.loads(await response.read())
        finally:
            response.release()
    except UpstreamFailure as failure:
        if failure.client_error is not None:
            raise failure.client_error from None
        return None
    except UPSTREAM_FAULTS:
        return None
    if not isinstance(answer, dict) or type(answer.get("input_tokens")) is not int:
        return None
    return answer


# --- stored responses: they carry the limit headers and count nothing ----------------------------------------


async def response_retrieve(rt: Runtime, req: Incoming, response_id: str) -> None:
    key = await _caller(rt, req)
    stored = await rt.responses.get(key.account_id, response_id)  # Redis first: it may not be written yet
    if stored is None:
        raise errors.response_not_found(response_id)
    await send_json(req, 200, dumps(stored.response))


async def response_remove(rt: Runtime, req: Incoming, response_id: str) -> None:
    key = await _caller(rt, req)
    try:
        deleted = await rt.responses.delete(key.account_id, response_id)
    except RedisUnavailable:  # without its tombstone, a write on its way could bring the response back
        raise errors.service_unavailable("The response could not be deleted. Please retry.") from None
    if not deleted:
        raise errors.response_not_found(response_id)
    await send_json(req, 200, dumps({"id": response_id, "object": "response", "deleted": True}))


async def response_input_items(rt: Runtime, req: Incoming, response_id: str) -> None:
    """A stored response's input items, a page at a time (``limit``, ``order``, ``after``), as OpenAI lists
    them: this turn's input, newest first unless ``order=asc``."""
    key = await _caller(rt, req)
    stored = await rt.responses.get(key.account_id, response_id)
    if stored is None:
        raise errors.response_not_found(response_id)
    await send_json(req, 200, dumps(items_page(stored.input_items, req.query())))
