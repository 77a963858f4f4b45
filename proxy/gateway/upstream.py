"""Calling upstream providers: one request on one route, and failover across a model's routes.

A route fails over (connect error, timeout, 5xx, 429, an unreadable answer, or an upstream that refuses our
credentials) only while nothing has reached the client. A 4xx caused by the request itself is the client's to
see, so it is passed back in OpenAI's shape instead of being retried elsewhere.
"""

import asyncio
import contextlib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import lru_cache
from typing import TypeVar

import aiohttp
import orjson

from portal.logs import redact
from proxy.catalog.snapshot import ModelInfo, ProviderInfo, RouteInfo
from proxy.gateway import demo, errors, metrics, tracing
from proxy.gateway.circuits import Circuits
from proxy.gateway.http import Incoming

T = TypeVar("T")

# What an upstream's broken answer raises while it is read: a timeout, a cut connection (aiohttp's payload and
# connection errors), or bytes that are not what was promised (ValueError from the JSON and SSE parsers).
UPSTREAM_FAULTS = (TimeoutError, ValueError, OSError, aiohttp.ClientError)

# Statuses that say "this provider, not this request": try the next route. A 402 is the operator's account
# with the provider running dry, never the client's credit (which is ours to refuse, before the relay).
_RETRYABLE = {401, 402, 403, 408, 409, 425, 429}


@dataclass(eq=False)
class UpstreamFailure(Exception):
    """One route failed before anything reached the client."""

    kind: str  # connect | timeout | status | garbage
    status: int = 0
    client_error: errors.ApiError | None = None  # set when the request itself was refused: don't fail over


def routed_body(body: dict, route: RouteInfo, stream: bool, extra: dict | None = None) -> bytes:
    """The client's body for this route: the upstream's model name, ``extra`` fields, and usage asked for on
    streams (the gateway needs it; the usage chunk is kept back unless the client asked for it too). The
    client's ``usage`` option is the gateway's (proxy/gateway/settlement.py ``cost_report``)."""
    out = {**body, "model": route.upstream_model}
    out.pop("usage", None)  # the gateway's own option (its cost in the answer), not the upstream's
    if extra:
        out.update(extra)
    if stream and route.provider.stream_usage:
        out["stream_options"] = {**(body.get("stream_options") or {}), "include_usage": True}
    return orjson.dumps(out)


@lru_cache(maxsize=256)
def _headers(secret: str | None) -> dict[str, str]:
    """Built once per provider secret, not per request (aiohttp copies them; nothing mutates this dict)."""
    headers = {"Content-Type": "application/json", "Accept": "application/json, text/event-stream"}
    if secret:
        headers["Authorization"] = f"Bearer {secret}"
    return headers


ANTHROPIC_VERSION = "2023-06-01"  # sent when the client named none: the version Anthropic's docs use


@lru_cache(maxsize=256)
def _anthropic_headers(secret: str | None, version: str | None, beta: str | None) -> dict[str, str]:
    """An Anthropic-style upstream's headers: its key as ``x-api-key``, and the client's API version and beta
    features, so a Claude client gets the behaviour it asked for."""
    headers = {
        "Content-Type": "application/json", "Accept": "application/json, text/event-stream",
        "anthropic-version": version or ANTHROPIC_VERSION,
    }  # fmt: skip
    if secret:
        headers["x-api-key"] = secret
    if beta:
        headers["anthropic-beta"] = beta
    return headers


def _request_headers(provider: ProviderInfo, client: Incoming | None) -> tuple[str, dict[str, str]]:
    """The query and headers of a call to ``provider`` on behalf of ``client``."""
    if provider.kind != "anthropic":
        return "", _headers(provider.secret)
    if client is None:
        return "", _anthropic_headers(provider.secret, None, None)
    version, beta = client.header(b"anthropic-version"), client.header_joined(b"anthropic-beta")
    query = "?beta=true" if client.query().get("beta") == "true" else ""
    return query, _anthropic_headers(provider.secret, version, beta)


@lru_cache(maxsize=256)
def _timeout(connect: float) -> aiohttp.ClientTimeout:
    # Only the connect phase is aiohttp's; the first byte and idle gaps are timed by the relay itself.
    return aiohttp.ClientTimeout(total=None, sock_connect=connect, sock_read=None)


async def open_route(
    session: aiohttp.ClientSession, route: RouteInfo, path: str, payload: bytes, stream: bool,
    client: Incoming | None = None,
) -> aiohttp.ClientResponse | demo.DemoResponse:  # fmt: skip
    """Send the request to ``path`` under the provider's base URL and wait for the response headers (the
    first byte), within the provider's timeouts. ``client`` is the request it is made for: an Anthropic-style
    upstream gets its API version and beta headers."""
    provider = route.provider
    if provider.kind == "demo":
        return demo.respond(path, orjson.loads(payload), stream)
    query, headers = _request_headers(provider, client)
    headers = tracing.outgoing(headers, client.scope["headers"] if client is not None else None)
    try:
        async with asyncio.timeout(provider.connect_timeout + provider.first_byte_timeout):
            response = await session.post(
                f"{provider.base_url}{path}{query}", data=payload, headers=headers,
                timeout=_timeout(provider.connect_timeout), allow_redirects=False,
            )  # fmt: skip
    except TimeoutError:
        raise UpstreamFailure("timeout") from None
    except (aiohttp.ClientError, OSError):
        raise UpstreamFailure("connect") from None
    if response.status >= 300:
        failure = await _refusal(response, provider)
        response.close()
        raise failure
    return response


async def _refusal(response: aiohttp.ClientResponse, provider: ProviderInfo) -> UpstreamFailure:
    status = response.status
    if status >= 500 or status in _RETRYABLE or status < 400:
        return UpstreamFailure("status", status)
    # The upstream refused the request itself (a 400 for context length, say): pass its reason along, minus
    # anything secret it may quote back (some upstreams echo the Authorization header they were sent).
    with contextlib.suppress(Exception):
        async with asyncio.timeout(5):
            error = orjson.loads(await response.read()).get("error") or {}
        if isinstance(error, dict) and isinstance(error.get("message"), str):
            refused = errors.ApiError(
                status, str(error.get("type") or "invalid_request_error"), _clean(error.get("code")),
                _scrub(error["message"], provider), _clean(error.get("param")),
            )  # fmt: skip
            if provider.kind == "anthropic":  # its own error type, for a Claude client to see unchanged
                refused.anthropic_type = _clean(error.get("type")) or ""
            return UpstreamFailure("status", status, refused)
    return UpstreamFailure("status", status, errors.ApiError(status, "invalid_request_error", None,
                                                             "The upstream provider refused the request."))  # fmt: skip


def _scrub(message: str, provider: ProviderInfo) -> str:
    if provider.secret:
        message = message.replace(provider.secret, "[redacted]")
    return redact(message)[:2000]


def _clean(value: object) -> str | None:
    return value[:200] if isinstance(value, str) else None


async def first_answer(
    circuits: Circuits, model: ModelInfo, attempt: Callable[[RouteInfo], Awaitable[T]]
) -> tuple[RouteInfo, T]:
    """Try the model's routes in priority order; return the first that answers, or raise the right error.

    ``attempt`` does everything that happens before the first byte goes to the client, so a failure anywhere
    in it (even a garbled body) can still move on to the next route.
    """
    last: UpstreamFailure | None = None
    failed: RouteInfo | None = None
    for route in model.routes:
        if circuits.is_open(route.provider):
            continue
        if failed is not None:  # moving on from a route that failed
            metrics.failover(model.name, failed.provider.name)
        try:
            with tracing.upstream(route.provider.name, route.upstream_model):
                result = await attempt(route)
        except UpstreamFailure as failure:
            if failure.client_error is not None:
                raise failure.client_error from None
            circuits.failure(route.provider)
            metrics.upstream_failed(route.provider.name, failure.kind)
            last, failed = failure, route
            continue
        circuits.success(route.provider)
        return route, result
    raise exhausted(last)


def exhausted(last: UpstreamFailure | None) -> errors.ApiError:
    """The client's error when no route could answer (details stay in our logs, never in the answer)."""
    if last is None:
        return errors.service_unavailable(
            "Every provider for this model is temporarily unavailable.", retry_after=5
        )
    if last.kind == "timeout":
        return errors.upstream_timeout()
    if last.status == 429:
        return errors.service_unavailable(
            "The upstream providers are rate limiting; retry shortly.", retry_after=2
        )
    if (
        last.status == 529
    ):  # Anthropic's overload: the client's SDK retries a 529 (an Anthropic client's) or 503
        return errors.service_unavailable(
            "The upstream providers are overloaded; retry shortly.", retry_after=2
        )
    return errors.bad_gateway()
