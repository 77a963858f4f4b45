"""What an endpoint declares, for the pipeline to run (proxy/gateway/pipeline.py).

The pipeline's steps (parse, authenticate, resolve, admit, reserve, relay, settle) are written once; what
differs between endpoints is said here, as plain functions: how a request is parsed and validated, how its
input is counted and how much output it may produce (its worst case), and, for each style of route (the
dialect its provider speaks), an ``Upstream``: the upstream path and body, how its answer is checked, what it
produced, how the client's answer is written, and how its stream is relayed.

Adding an endpoint: write a module beside chat.py with its request type, its functions and one ``Endpoint``,
and list it in ``ENDPOINTS`` (endpoints/__init__.py). Authentication, limits, credits and settlement don't change.
"""

from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway.streaming import ChatChunks, StreamWriter, Tally


class Request(Protocol):
    """What the pipeline reads of any endpoint's parsed request."""

    model: str
    stream: bool
    include_usage: bool  # a stream's client asked for the usage chunk itself
    body: dict  # the parsed body, forwarded with the route's model name
    prompt_tokens: int | None  # the local count of the input, once one was needed
    output_limit: int | None  # the most output it may produce (Endpoint.max_output), set once resolved


@dataclass(frozen=True, slots=True)
class Upstream:
    """How an endpoint's request goes to a route of one style, and how the route's answer comes back."""

    path: str  # appended to the provider's base_url
    body: Callable[[Any, RouteInfo, bool], bytes]  # the upstream's body for a route; True: it streams
    check_answer: Callable[[bytes], dict]  # its plain answer, or ValueError (the route then fails over)
    take_answer: Callable[[Tally, dict], None]  # what a plain answer produced
    write_answer: Callable[[Any, dict], dict]  # the client's plain answer
    # How its stream is written for the client, chunk by chunk: (request, keep) -> a streaming.StreamWriter.
    stream_writer: Callable[[Any, Any], StreamWriter] = lambda request, _keep: ChatChunks(
        request.include_usage
    )


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # what usage records call it: "chat.completions", "embeddings", "completions"
    path: str  # the client's path
    mode: str  # the catalog mode of the models that serve it (proxy.catalog.models.Model.Mode)
    parse: Callable[[bytes], Any]  # the request, or a 400 naming the `param`
    count_input: Callable[[Any], int]  # a local count of the request's input tokens
    max_output: Callable[[Any, ModelInfo], int]  # the most output tokens it can be billed for
    count_output: Callable[[Tally], int]  # a local count of what was produced, when no usage came
    upstreams: dict[str, Upstream]  # by route style (route_style): how each kind of route is called
    # Optional: what an endpoint does with the runtime before the relay (read an earlier turn, say), and
    # with the client's whole answer before its end goes out (keep it, say).
    prepare: Callable[[Any, Any, Any, Any], Awaitable[None]] | None = (
        None  # (runtime, incoming, key, request)
    )
    keep: Callable[[Any, Any, Any, dict], Awaitable[None]] | None = None  # (runtime, key, request, answer)

    def upstream_for(self, route: RouteInfo) -> Upstream:
        """A route's own dialect when the endpoint declares one for it, else OpenAI's chat-style API."""
        return self.upstreams.get(route_style(route)) or self.upstreams[OPENAI]


def route_style(route: RouteInfo) -> str:
    """The dialect a route speaks: Anthropic's Messages API, OpenAI's chat-style HTTP API (the in-process
    demo speaks it too), and, for the Responses API, its own on a provider that serves ``/responses``
    itself."""
    if route.provider.kind == "anthropic":
        return ANTHROPIC
    return PASSTHROUGH if route.provider.responses else OPENAI


def as_received(_request: Any, answer: dict) -> dict:
    """A client's answer that is the upstream's own, as it came (already checked by ``check_answer``)."""
    return answer


OPENAI = "openai"
PASSTHROUGH = "responses"  # a provider's own /responses
ANTHROPIC = "anthropic"  # a provider's /messages
