"""Plain-ASGI plumbing for the gateway: the incoming request, body reading, and response writing."""

import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qsl

import orjson

from proxy.gateway import errors

JSON = b"application/json"


@dataclass(slots=True)
class Incoming:
    scope: dict
    receive: Callable[[], Awaitable[dict]]
    send: Callable[[dict], Awaitable[None]]
    request_id: uuid.UUID
    started: float  # perf_counter at arrival
    body: bytes = b""
    headers_out: list[tuple[bytes, bytes]] = field(default_factory=list)  # added to whatever is sent
    upstream_time: float = 0.0  # seconds spent waiting on the upstream, excluded from Server-Timing
    overhead: float = 0.0  # the gateway's own seconds before the response began (Server-Timing's figure)
    settled: bool = False  # admitted and recorded: settlement counted it, whatever error follows
    response_started: bool = False
    finished: bool = False  # the handler is done; a disconnect from now on is the normal end
    anthropic: bool = False  # a client of Anthropic's Messages API: its errors come in Anthropic's shape
    span: Any = None  # its trace's server span, when tracing (proxy/gateway/tracing.py)

    def query(self) -> dict[str, str]:
        """The query string's parameters, the last of each name."""
        return dict(parse_qsl(self.scope.get("query_string", b"").decode("latin-1")))

    def header(self, name: bytes) -> str | None:
        for key, value in self.scope["headers"]:
            if key == name:
                return value.decode("latin-1")
        return None

    def header_joined(self, name: bytes) -> str | None:
        """Every value of a header a client may send more than once, as one comma-separated list."""
        values = [value.decode("latin-1") for key, value in self.scope["headers"] if key == name]
        return ", ".join(values) if values else None

    def common_headers(self) -> list[tuple[bytes, bytes]]:
        self.overhead = time.perf_counter() - self.started - self.upstream_time
        request_id = str(self.request_id).encode()
        headers = [
            (b"x-request-id", request_id),
            (b"server-timing", b"gateway;dur=%.2f" % (self.overhead * 1000)),
            *self.headers_out,
        ]
        if self.anthropic:  # Anthropic's SDKs read the id from its own header
            headers.append((b"request-id", request_id))
        return headers

    def credentials(self) -> str | None:
        """The key as ``Bearer <key>``: from ``Authorization``, or from Anthropic's ``x-api-key`` header."""
        authorization = self.header(b"authorization")
        if authorization is None:
            api_key = self.header(b"x-api-key")
            if api_key is not None:
                return f"Bearer {api_key}"
        return authorization


DRAIN_LIMIT = 16 * 1024 * 1024  # how much of a refused body is read (and dropped) so the client sees the 413


async def read_body(receive, scope: dict, limit: int) -> bytes:
    """The whole request body, refusing (413) once it passes ``limit`` bytes.

    A refused body is still read and dropped, up to ``DRAIN_LIMIT``: a client that writes its whole body
    before reading would otherwise see a reset connection instead of the 413.
    """
    chunks, size = [], 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise errors.invalid_request("The client closed the connection before sending the body.")
        chunk = message.get("body", b"")
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size > limit + DRAIN_LIMIT:
            raise errors.request_too_large(limit)
        if not message.get("more_body"):
            if size > limit:
                raise errors.request_too_large(limit)
            return b"".join(chunks)


async def send_json(
    req: Incoming, status: int, payload: bytes, extra: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    headers = [(b"content-type", JSON), (b"content-length", str(len(payload)).encode())]
    headers += req.common_headers()
    headers += extra
    req.response_started = True
    await req.send({"type": "http.response.start", "status": status, "headers": headers})
    await req.send({"type": "http.response.body", "body": payload})


async def send_error(req: Incoming, err: errors.ApiError) -> None:
    if req.response_started:
        return  # too late for a status; a stream reports its own errors in-band
    extra = [(k.encode(), v.encode()) for k, v in err.headers.items()]
    if req.anthropic:
        status = err.anthropic_status()[0]
        await send_json(req, status, dumps(err.anthropic_body(str(req.request_id))), extra)
    else:
        await send_json(req, err.status, err.render(), extra)


def dumps(obj) -> bytes:
    return orjson.dumps(obj)
