"""A real OpenAI-compatible HTTP server that plays the upstream LLM provider.

The test-suite points the gateway's providers at it, and the benchmark uses it as the "direct upstream"
baseline, so it speaks real HTTP over a real socket and stays cheap per request.

Behaviour is chosen by the ``model`` field of the request body (the gateway forwards the provider's upstream
model name there). Grammar: ``<base>[:<param>]``.

=========================  ===========================================================================
``echo`` / anything else   success; content is ``"You said: " + <last user text>`` (whitespace collapsed)
``long:N``                 success with exactly N content words ``"w1 w2 ... wN"``
``no-usage``               success, but ``usage`` is never sent (not even with ``include_usage``)
``fail-NNN[:S]``           HTTP NNN with an OpenAI error body; ``Retry-After: S`` (``fail-429``: 1 by default)
``hang``                   accept the request and never answer
``slow-first-byte:S``      wait S seconds before the response headers, then behave normally
``slow-stream[:S]``        streams wait S seconds (default 0.1) between chunks; at least 20 content words
``slow-first-token:S``     streams send their headers at once, then wait S seconds before the first event
``cut-after:N``            stream: headers + role chunk + N content chunks, then abort the TCP connection;
                           non-stream: headers + half the body, then abort
``garbage``                HTTP 200, ``application/json``, body that is not JSON
``early-close``            close the connection without sending any response
=========================  ===========================================================================

Request options honoured on success: ``stream``, ``stream_options.include_usage``, ``max_tokens`` /
``max_completion_tokens`` (truncates, finish_reason ``length``), ``response_format`` ``json_object``
(content is ``{"echo": "<text>"}``) and ``tools`` / ``tool_choice`` (answers with a call to the first, or
the named, tool).

Token accounting is deterministic so billing tests can predict it: prompt_tokens is the number of
whitespace-separated words in all message text plus 3 per message; completion_tokens is the number of content
words, i.e. the number of streamed content chunks (a tool call counts as its 2 chunks: name and arguments).

Run in the foreground with ``python -m tests.upstream --port 9100`` (or ``python tests/upstream.py``).
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import functools
import itertools
import json
import math
import os
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from aiohttp import web

try:
    import orjson

    _dumps: Callable[[Any], bytes] = orjson.dumps
    _loads: Callable[[bytes], Any] = orjson.loads
except ImportError:  # pragma: no cover - orjson is a project dependency; the fallback keeps the tool portable

    def _dumps(obj: Any) -> bytes:
        return json.dumps(obj, separators=(",", ":")).encode()

    _loads = json.loads


DEFAULT_MODELS = ("echo", "gpt-x", "long", "slow-stream", "fail-500")
SLOW_STREAM_DELAY = 0.1
SLOW_STREAM_MIN_WORDS = 20
# How often a sleeping handler checks whether its client went away; bounds disconnect-detection latency.
POLL_INTERVAL = 0.02
# A tool call is streamed as two chunks (name, then arguments); usage counts them like content chunks.
TOOL_CALL_TOKENS = 2
FINGERPRINT = "fp_fakeupstream"
SSE_HEADERS = {"Content-Type": "text/event-stream", "Cache-Control": "no-cache"}
GARBAGE_BODY = b"<html><body>502 this is not JSON {"
DONE_EVENT = b"data: [DONE]\n\n"

_RUN_TAG = os.urandom(4).hex()
_ids = itertools.count(1)


def _new_id(kind: str) -> str:
    """Cheap unique ids (a counter, not uuid4) because this server also runs in the benchmark."""
    return f"{kind}{_RUN_TAG}{next(_ids):012d}"


# --------------------------------------------------------------------------------------------- records


@dataclass(slots=True)
class RecordedRequest:
    """One request as the upstream saw it. ``headers`` keys are lower-cased for predictable lookups."""

    prefix: str
    path: str
    method: str
    headers: dict[str, str]
    json: Any
    received_at: float

    @property
    def model(self) -> str | None:
        return self.json.get("model") if isinstance(self.json, dict) else None


@dataclass(slots=True)
class DisconnectRecord:
    """The client went away before the response was complete (``chunks_sent`` = SSE events written)."""

    model: str
    prefix: str
    stream: bool
    chunks_sent: int
    noticed_at: float


# ------------------------------------------------------------------------------------------- behaviour


@dataclass(frozen=True, slots=True)
class Behaviour:
    name: str
    param: str | None

    def number(self, default: float) -> float:
        try:
            return float(self.param) if self.param is not None else default
        except ValueError:
            return default

    def integer(self, default: int) -> int:
        return int(self.number(default))

    @property
    def fail_status(self) -> int | None:
        """The HTTP status of a ``fail-NNN`` behaviour, else None."""
        head, _, code = self.name.partition("-")
        if head == "fail" and code.isdigit() and 400 <= int(code) <= 599:
            return int(code)
        return None


@functools.lru_cache(maxsize=4096)
def parse_behaviour(model: str) -> Behaviour:
    base, sep, param = model.partition(":")
    return Behaviour(base, param if sep else None)


_ERROR_KINDS: dict[int, tuple[str, str | None, str]] = {
    400: ("invalid_request_error", None, "Invalid request (simulated upstream error)."),
    401: ("invalid_request_error", "invalid_api_key", "Incorrect API key provided (simulated)."),
    403: ("permission_error", None, "You are not allowed to use this model (simulated)."),
    404: ("invalid_request_error", "model_not_found", "The model does not exist (simulated)."),
    429: ("requests", "rate_limit_exceeded", "Rate limit reached for requests (simulated)."),
    500: ("server_error", None, "The server had an error while processing your request (simulated)."),
    503: ("server_error", "service_unavailable", "The engine is currently overloaded (simulated)."),
}


def error_response(
    status: int,
    message: str | None = None,
    *,
    param: str | None = None,
    code: str | None = None,
    retry_after: str | None = None,
) -> web.Response:
    """An OpenAI-style error (``{"error": {message, type, param, code}}``)."""
    kind = "server_error" if status >= 500 else "invalid_request_error"
    fallback = (kind, None, f"HTTP {status} (simulated).")
    kind, default_code, default_message = _ERROR_KINDS.get(status, fallback)
    error = {"message": message or default_message, "type": kind, "param": param}
    body = {"error": {**error, "code": code or default_code}}
    headers = {"Retry-After": retry_after} if retry_after is not None else None
    return web.Response(status=status, body=_dumps(body), content_type="application/json", headers=headers)


# ------------------------------------------------------------------------------------------ completion


def message_text(content: Any) -> str:
    """Text of a message content: a string, or the text parts of a content-part array joined by spaces."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return " ".join(
            part.get("text", "") for part in content if isinstance(part, dict) and part.get("type") == "text"
        )
    return ""


def count_prompt_tokens(messages: list[Any]) -> int:
    return sum(3 + len(message_text(m.get("content")).split()) for m in messages if isinstance(m, dict))


def last_user_text(messages: list[Any]) -> str:
    for message in reversed(messages):
        if isinstance(message, dict) and message.get("role") == "user":
            return message_text(message.get("content"))
    return ""


def pick_tool(body: dict[str, Any]) -> str | None:
    """Name of the tool to call, or None when the reply should be plain content."""
    tools = body.get("tools")
    choice = body.get("tool_choice")
    if not isinstance(tools, list) or not tools or choice == "none":
        return None
    if isinstance(choice, dict):
        named = (choice.get("function") or {}).get("name")
        if named:
            return str(named)
    first = tools[0] if isinstance(tools[0], dict) else {}
    return str((first.get("function") or {}).get("name") or first.get("name") or "tool")


def completion_limit(body: dict[str, Any]) -> int | None:
    for key in ("max_completion_tokens", "max_tokens"):
        value = body.get(key)
        if isinstance(value, int) and not isinstance(value, bool):
            return max(value, 0)
    return None


def reply_words(body: dict[str, Any], behaviour: Behaviour, pad_to: int) -> list[str]:
    """The content words of the reply; the content is always ``" ".join(words)``."""
    if behaviour.name == "long":
        return [f"w{i}" for i in range(1, behaviour.integer(10) + 1)]
    text_words = last_user_text(body.get("messages") or []).split()
    if len(text_words) < pad_to:
        text_words += [f"word{i}" for i in range(1, pad_to - len(text_words) + 1)]
    response_format = body.get("response_format")
    if isinstance(response_format, dict) and response_format.get("type") == "json_object":
        # The text has no whitespace but single spaces, so splitting the JSON on spaces is lossless.
        return json.dumps({"echo": " ".join(text_words)}, ensure_ascii=False).split(" ")
    return ["You", "said:", *text_words]


@dataclass(slots=True)
class Completion:
    """Everything needed to answer a successful request, computed once for either wire format."""

    id: str
    created: int
    model: str
    words: list[str]
    tool_name: str | None
    tool_call_id: str
    finish_reason: str
    prompt_tokens: int
    send_usage: bool

    @property
    def completion_tokens(self) -> int:
        return TOOL_CALL_TOKENS if self.tool_name else len(self.words)

    @property
    def usage(self) -> dict[str, int]:
        completion = self.completion_tokens
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": completion,
            "total_tokens": self.prompt_tokens + completion,
        }


def plan_completion(body: dict[str, Any], behaviour: Behaviour) -> Completion:
    messages = body.get("messages") or []
    tool_name = pick_tool(body)
    words: list[str] = []
    finish_reason = "tool_calls" if tool_name else "stop"
    if not tool_name:
        pad_to = 0
        if behaviour.name == "slow-stream":
            pad_to = SLOW_STREAM_MIN_WORDS
        elif behaviour.name == "cut-after":
            pad_to = behaviour.integer(3) + 1  # so the cut always lands before the end of the content
        words = reply_words(body, behaviour, pad_to)
        limit = completion_limit(body)
        if limit is not None and len(words) > limit:
            words, finish_reason = words[:limit], "length"
    return Completion(
        id=_new_id("chatcmpl-"),
        created=int(time.time()),
        model=str(body.get("model")),
        words=words,
        tool_name=tool_name,
        tool_call_id=_new_id("call_") if tool_name else "",
        finish_reason=finish_reason,
        prompt_tokens=count_prompt_tokens(messages if isinstance(messages, list) else []),
        send_usage=behaviour.name != "no-usage",
    )


def completion_body(c: Completion) -> bytes:
    """A ``chat.completion`` object (CreateChatCompletionResponse)."""
    message: dict[str, Any] = {
        "role": "assistant",
        "content": None if c.tool_name else " ".join(c.words),
        "refusal": None,
        "annotations": [],
    }
    if c.tool_name:
        message["tool_calls"] = [
            {"id": c.tool_call_id, "type": "function", "function": {"name": c.tool_name, "arguments": "{}"}}
        ]
    body: dict[str, Any] = {
        "id": c.id,
        "object": "chat.completion",
        "created": c.created,
        "model": c.model,
        "choices": [{"index": 0, "message": message, "logprobs": None, "finish_reason": c.finish_reason}],
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if c.send_usage:
        body["usage"] = c.usage
    return _dumps(body)


def stream_events(c: Completion, include_usage: bool) -> list[bytes]:
    """All SSE events of a stream, in order: role chunk, content chunks, finish chunk, [usage], [DONE]."""
    base = {
        "id": c.id,
        "object": "chat.completion.chunk",
        "created": c.created,
        "model": c.model,
        "service_tier": "default",
        "system_fingerprint": FINGERPRINT,
    }
    if include_usage:
        base["usage"] = None  # as OpenAI does: every chunk but the last carries usage: null

    def chunk(delta: dict[str, Any], finish_reason: str | None = None) -> bytes:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}
        return b"data: " + _dumps({**base, "choices": [choice]}) + b"\n\n"

    if c.tool_name:
        # OpenAI's shape: the first delta opens the call (id, type, name, empty arguments), the next one
        # carries the arguments.
        opening = {"index": 0, "id": c.tool_call_id, "type": "function"}
        opening["function"] = {"name": c.tool_name, "arguments": ""}
        events = [
            chunk({"role": "assistant", "content": None, "tool_calls": [opening]}),
            chunk({"tool_calls": [{"index": 0, "function": {"arguments": "{}"}}]}),
        ]
    else:
        events = [chunk({"role": "assistant", "content": ""})]
        events += [chunk({"content": word if i == 0 else " " + word}) for i, word in enumerate(c.words)]
    events.append(chunk({}, c.finish_reason))
    if include_usage and c.send_usage:
        events.append(b"data: " + _dumps({**base, "choices": [], "usage": c.usage}) + b"\n\n")
    events.append(DONE_EVENT)
    return events


def models_body(models: tuple[str, ...]) -> bytes:
    data = [{"id": m, "object": "model", "created": 1700000000, "owned_by": "fake-upstream"} for m in models]
    return _dumps({"object": "list", "data": data})


def split_prefix(path: str) -> str:
    """The provider prefix of a path: ``/p2/v1/models`` -> ``p2``; ``/v1/models`` -> ``""``."""
    head, sep, _ = path.partition("/v1/")
    return head.strip("/") if sep else ""


def client_gone(request: web.BaseRequest) -> bool:
    transport = request.transport
    return transport is None or transport.is_closing()


# -------------------------------------------------------------------------------------------- server


class FakeUpstream:
    """An OpenAI-compatible upstream on a real port, run in a background thread (or in the foreground).

    Several fake "providers" can share one server: give each a different :meth:`url_for` prefix and tell their
    requests apart by ``RecordedRequest.prefix``.
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        models: tuple[str, ...] = DEFAULT_MODELS,
        log_limit: int | None = 10_000,
    ) -> None:
        self.host = host
        self._port = port
        self._models_body = models_body(tuple(models))
        self._model_ids = frozenset(models)
        self._log_enabled = log_limit != 0
        self._requests: collections.deque[RecordedRequest] = collections.deque(maxlen=log_limit)
        self._disconnects: list[DisconnectRecord] = []
        self._cond = threading.Condition()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._thread: threading.Thread | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self._stopping = False

    # ------------------------------------------------------------------------------------ public API

    @property
    def port(self) -> int:
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://{self.host}:{self._port}/v1"

    def url_for(self, prefix: str) -> str:
        """Base URL of a provider living under ``prefix``: ``url_for("p2")`` -> ``http://host:port/p2/v1``."""
        prefix = prefix.strip("/")
        return f"http://{self.host}:{self._port}/{prefix}/v1" if prefix else self.base_url

    @property
    def requests(self) -> list[RecordedRequest]:
        with self._cond:
            return list(self._requests)

    @property
    def disconnects(self) -> list[DisconnectRecord]:
        with self._cond:
            return list(self._disconnects)

    def clear(self) -> None:
        """Forget recorded requests and disconnects (call between tests sharing one server)."""
        with self._cond:
            self._requests.clear()
            self._disconnects.clear()

    def find(self, prefix: str | None = None, model: str | None = None) -> list[RecordedRequest]:
        wanted = None if prefix is None else prefix.strip("/")
        return [
            r
            for r in self.requests
            if (wanted is None or r.prefix == wanted) and (model is None or r.model == model)
        ]

    def count(self, prefix: str | None = None, model: str | None = None) -> int:
        return len(self.find(prefix, model))

    def wait_for_requests(
        self, n: int, timeout: float = 5.0, prefix: str | None = None, model: str | None = None
    ) -> bool:
        """Block until at least ``n`` matching requests were received; False on timeout."""
        with self._cond:
            return self._cond.wait_for(lambda: self.count(prefix, model) >= n, timeout)

    def wait_for_disconnect(
        self, timeout: float = 1.0, model: str | None = None, since: float | None = None
    ) -> DisconnectRecord | None:
        """The first recorded disconnect (optionally of ``model``, noticed at or after ``since``), waiting
        up to ``timeout`` seconds for one; None if none came."""

        def first() -> DisconnectRecord | None:
            for record in self._disconnects:
                if (model is None or record.model == model) and (since is None or record.noticed_at >= since):
                    return record
            return None

        with self._cond:
            self._cond.wait_for(lambda: first() is not None, timeout)
            return first()

    def start(self) -> FakeUpstream:
        """Serve from a daemon thread with its own event loop; returns once the socket is listening."""
        if self._thread is not None:
            raise RuntimeError("FakeUpstream is already running")
        self._ready.clear()
        self._startup_error = None
        self._thread = threading.Thread(target=self._run_thread, name="fake-upstream", daemon=True)
        self._thread.start()
        self._ready.wait(10)
        if self._startup_error is not None:
            self._thread.join(5)
            self._thread = None
            raise self._startup_error
        return self

    def stop(self) -> None:
        """Stop serving: hanging and streaming handlers are released and their connections aborted."""
        thread, loop = self._thread, self._loop
        if thread is None or loop is None:
            return
        try:
            asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(timeout=10)
        finally:
            loop.call_soon_threadsafe(loop.stop)
            thread.join(10)
            self._thread = None

    def serve_forever(self) -> None:
        """Serve in the foreground until SIGINT or SIGTERM."""
        asyncio.run(self._serve_until_signal())

    def __enter__(self) -> FakeUpstream:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()

    # ------------------------------------------------------------------------------------ lifecycle

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as exc:  # surfaced to the caller of start()
            self._startup_error = exc
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    async def _startup(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._stopping = False
        # access_log=None: logging every request would dominate the cost of a request in the benchmark.
        self._runner = web.AppRunner(self._make_app(), access_log=None, shutdown_timeout=1.0)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self._port, backlog=1024)
        await site.start()
        self._port = self._runner.addresses[0][1]

    async def _shutdown(self) -> None:
        self._stopping = True  # sleeping handlers poll this and let go of their connections
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def _serve_until_signal(self) -> None:
        await self._startup()
        print(f"fake upstream listening on {self.base_url}", flush=True)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        try:
            await stop.wait()
        finally:
            await self._shutdown()

    def _make_app(self) -> web.Application:
        app = web.Application(client_max_size=64 * 1024 * 1024)
        for root in ("", "/{prefix:.+}"):
            app.router.add_get(root + "/v1/models", self._list_models)
            app.router.add_get(root + "/v1/models/{model_id}", self._get_model)
            app.router.add_post(root + "/v1/chat/completions", self._chat_completions)
        app.router.add_route("*", "/{tail:.*}", self._unknown_path)
        return app

    # ------------------------------------------------------------------------------------- recording

    def _record(self, request: web.Request, body: Any) -> None:
        if not self._log_enabled:
            return
        record = RecordedRequest(
            prefix=split_prefix(request.path),
            path=request.path,
            method=request.method,
            headers={k.lower(): v for k, v in request.headers.items()},
            json=body,
            received_at=time.monotonic(),
        )
        with self._cond:
            self._requests.append(record)
            self._cond.notify_all()

    def _note_disconnect(self, request: web.Request, model: str, stream: bool, chunks_sent: int) -> None:
        record = DisconnectRecord(model, split_prefix(request.path), stream, chunks_sent, time.monotonic())
        with self._cond:
            self._disconnects.append(record)
            self._cond.notify_all()

    async def _pause(self, request: web.Request, seconds: float) -> bool:
        """Sleep, waking early (returning False) once the client is gone or the server is stopping.

        aiohttp does not cancel handlers when the peer disconnects, so polling the transport is what makes
        disconnects visible within ``POLL_INTERVAL`` even during long sleeps.
        """
        deadline = time.monotonic() + seconds
        while not (self._stopping or client_gone(request)):
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                return True
            await asyncio.sleep(min(remaining, POLL_INTERVAL))
        return False

    def _let_go(self, request: web.Request, model: str, stream: bool, chunks_sent: int) -> web.StreamResponse:
        """After a pause was cut short: record a client disconnect, or drop the connection if stopping."""
        if self._stopping:
            if request.transport is not None:
                request.transport.abort()
        else:
            self._note_disconnect(request, model, stream, chunks_sent)
        return web.Response()  # never reaches the wire: the connection is closed

    # -------------------------------------------------------------------------------------- handlers

    async def _list_models(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return web.Response(body=self._models_body, content_type="application/json")

    async def _get_model(self, request: web.Request) -> web.Response:
        self._record(request, None)
        model_id = request.match_info["model_id"]
        if model_id not in self._model_ids:
            return error_response(404, f"The model '{model_id}' does not exist", param="model")
        body = {"id": model_id, "object": "model", "created": 1700000000, "owned_by": "fake-upstream"}
        return web.Response(body=_dumps(body), content_type="application/json")

    async def _unknown_path(self, request: web.Request) -> web.Response:
        self._record(request, None)
        return error_response(404, f"Unknown path: {request.method} {request.path}", code="unknown_url")

    async def _chat_completions(self, request: web.Request) -> web.StreamResponse:
        raw = await request.read()
        try:
            body = _loads(raw) if raw else None
        except ValueError:
            body = None
        self._record(request, body)
        if not isinstance(body, dict):
            return error_response(400, "We could not parse the JSON body of your request.")
        model = body.get("model")
        if not isinstance(model, str) or not model:
            return error_response(400, "you must provide a model parameter", param="model")
        return await self._respond(request, body, model, bool(body.get("stream")))

    async def _respond(
        self, request: web.Request, body: dict[str, Any], model: str, stream: bool
    ) -> web.StreamResponse:
        behaviour = parse_behaviour(model)
        status = behaviour.fail_status
        if status is not None:
            retry_after = behaviour.param or ("1" if status == 429 else None)
            return error_response(status, retry_after=retry_after)
        name = behaviour.name
        if name == "garbage":
            return web.Response(body=GARBAGE_BODY, content_type="application/json")
        if name == "early-close":
            if request.transport is not None:
                request.transport.close()
            return web.Response()
        if name == "hang":
            await self._pause(request, math.inf)
            return self._let_go(request, model, stream, 0)
        if name == "slow-first-byte" and not await self._pause(request, behaviour.number(1.0)):
            return self._let_go(request, model, stream, 0)
        completion = plan_completion(body, behaviour)
        cut_after = behaviour.integer(3) if name == "cut-after" else None
        if stream:
            include_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            delay = behaviour.number(SLOW_STREAM_DELAY) if name == "slow-stream" else 0.0
            events = stream_events(completion, include_usage)
            first_delay = behaviour.number(1.0) if name == "slow-first-token" else 0.0
            return await self._stream(request, model, events, delay, cut_after, first_delay)
        if cut_after is not None:
            return await self._cut_body(request, completion_body(completion))
        body_bytes, headers = completion_body(completion), {"x-request-id": completion.id}
        return web.Response(body=body_bytes, content_type="application/json", headers=headers)

    async def _stream(
        self, request: web.Request, model: str, events: list[bytes], delay: float, cut_after: int | None,
        first_delay: float = 0.0,
    ) -> web.StreamResponse:  # fmt: skip
        """Write SSE events one by one, noticing a client that goes away mid-stream."""
        response = web.StreamResponse(headers=SSE_HEADERS)
        limit = len(events) if cut_after is None else min(len(events), 1 + cut_after)
        sent = 0
        try:
            await response.prepare(request)
            if first_delay and not await self._pause(request, first_delay):
                return self._let_go(request, model, True, 0)
            for event in events[:limit]:
                if sent and delay and not await self._pause(request, delay):
                    return self._let_go(request, model, True, sent)
                await response.write(event)
                sent += 1
        except ConnectionError:
            self._note_disconnect(request, model, True, sent)
            return response
        except asyncio.CancelledError:
            if not self._stopping:
                self._note_disconnect(request, model, True, sent)
            raise
        if cut_after is not None:
            await self._abort_when_flushed(request)
        return response

    async def _cut_body(self, request: web.Request, body: bytes) -> web.StreamResponse:
        """Promise the whole body in Content-Length, send half of it, then abort the connection."""
        response = web.StreamResponse(headers={"Content-Type": "application/json"})
        response.content_length = len(body)
        try:
            await response.prepare(request)
            await response.write(body[: len(body) // 2])
        except ConnectionError:
            return response
        await self._abort_when_flushed(request)
        return response

    async def _abort_when_flushed(self, request: web.Request) -> None:
        """Abort the TCP connection once what was written has left the process (abort drops the buffer)."""
        transport = request.transport
        if transport is None:
            return
        for _ in range(200):  # at most ~1 s
            if not transport.get_write_buffer_size():
                break
            await asyncio.sleep(0.005)
        transport.abort()


# ---------------------------------------------------------------------------------------------- main


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="OpenAI-compatible fake upstream provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=9100)
    parser.add_argument("--log-limit", type=int, default=0, help="keep the last N requests (default: none)")
    args = parser.parse_args(argv)
    FakeUpstream(args.host, args.port, log_limit=args.log_limit).serve_forever()


if __name__ == "__main__":
    main()
