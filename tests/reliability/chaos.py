"""The fake upstream of tests/upstream.py with three more behaviours, for the fault and security suites.

=========================  ===========================================================================
``chaos:SEED``             one of the ordinary behaviours, drawn from a fixed menu by a generator seeded
                           with SEED and the last user text (give each route its own SEED): the same request on
                           the same route always meets the same fault, whatever the arrival order
``redirect-NNN``           HTTP NNN (301, 302, 307, 308) with ``Location: <redirect_to>``
``overbill:N``             a normal answer whose ``usage`` claims N completion tokens
``reflect-NNN``            HTTP NNN with an OpenAI error whose message quotes the request's Authorization
                           header, as careless upstreams do
=========================  ===========================================================================

Every other model name behaves exactly as in tests/upstream.py.
"""

import collections
import random

import orjson
from aiohttp import web

from tests.upstream import (
    Behaviour,
    FakeUpstream,
    completion_body,
    error_response,
    last_user_text,
    parse_behaviour,
    plan_completion,
    stream_events,
)

# (name, weight, behaviour of tests/upstream.py). The chaos catalog's providers wait 2.5 s for a first byte
# (connect + first-byte limits), so "slow" is served and "too-slow" times out; "cut" cuts a stream after two
# content chunks, or a plain answer halfway through its body.
CHAOS_MENU = [
    ("ok", 40, "echo+cached:2"),  # served routes read two of the prompt tokens from the provider's cache
    ("slow", 8, "slow-first-byte:0.3+cached:2"),
    ("too-slow", 4, "slow-first-byte:4"),
    ("cut", 8, "cut-after:2"),
    ("500", 10, "fail-500"),
    ("429", 8, "fail-429"),
    ("garbage", 8, "garbage"),
    ("early-close", 6, "early-close"),
    ("no-usage", 8, "no-usage"),
]


def chaos_pick(seed: str, text: str) -> tuple[str, str]:
    """The (fault name, behaviour) a chaos route plays for this request."""
    rng = random.Random(f"{seed}|{text}")
    names = [m[0] for m in CHAOS_MENU]
    name = rng.choices(names, weights=[m[1] for m in CHAOS_MENU])[0]
    return name, dict((m[0], m[2]) for m in CHAOS_MENU)[name]


class ChaosUpstream(FakeUpstream):
    def __init__(self, *args, **kwargs) -> None:
        super().__init__(*args, **kwargs)
        self.redirect_to = "http://127.0.0.1:9/"
        self.faults: collections.Counter[str] = collections.Counter()  # chaos draws, by fault name

    async def _respond(
        self, request: web.Request, body: dict, model: str, stream: bool
    ) -> web.StreamResponse:
        behaviour = parse_behaviour(model)
        if behaviour.name == "chaos":
            name, played = chaos_pick(behaviour.param or "", last_user_text(body.get("messages") or []))
            self.faults[name] += 1
            return await super()._respond(request, {**body, "model": played}, played, stream)
        head, _, code = behaviour.name.partition("-")
        if head == "redirect" and code in ("301", "302", "307", "308"):
            return web.Response(status=int(code), headers={"Location": self.redirect_to})
        if head == "reflect" and code.isdigit():
            message = f"Rejected credentials: {request.headers.get('Authorization', '')}"
            return error_response(int(code), message)
        if behaviour.name == "overbill":
            return await self._overbilled(body, model, stream, behaviour.integer(1_000_000), request)
        return await super()._respond(request, body, model, stream)

    async def _overbilled(self, body: dict, model: str, stream: bool, tokens: int, request: web.Request):
        completion = plan_completion({**body, "model": model}, Behaviour("echo", None))
        usage = {
            "prompt_tokens": completion.prompt_tokens,
            "completion_tokens": tokens,
            "total_tokens": completion.prompt_tokens + tokens,
        }
        if not stream:
            answer = orjson.loads(completion_body(completion))
            answer["usage"] = usage
            return web.Response(body=orjson.dumps(answer), content_type="application/json")
        include = bool((body.get("stream_options") or {}).get("include_usage"))
        events = []
        for event in stream_events(completion, include):
            data = event[6:].strip()
            if data != b"[DONE]":
                chunk = orjson.loads(data)
                if chunk.get("usage"):
                    chunk["usage"] = usage
                    event = b"data: " + orjson.dumps(chunk) + b"\n\n"
            events.append(event)
        return await self._stream(request, model, events, 0.0, None)
