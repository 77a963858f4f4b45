"""What an endpoint declares, for the pipeline to run (proxy/gateway/pipeline.py).

The pipeline's steps (parse, authenticate, resolve, admit, reserve, relay, settle) are written once; what
differs between endpoints is said here, as plain functions: how a request is parsed and validated, how its
input is counted and how much output it may produce (its worst case), the upstream path and body for a route,
how an upstream's answer is checked and what it produced, and how the client's answer is written.

Adding an endpoint: write a module beside chat.py with its request type, its functions and one ``Endpoint``,
and list it in ``ENDPOINTS`` (endpoints/__init__.py). Authentication, limits, credits and settlement don't change.
"""

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway.streaming import Tally


class Request(Protocol):
    """What the pipeline reads of any endpoint's parsed request."""

    model: str
    stream: bool
    include_usage: bool  # a stream's client asked for the usage chunk itself
    body: dict  # the parsed body, forwarded with the route's model name
    prompt_tokens: int | None  # the local count of the input, once one was needed


@dataclass(frozen=True, slots=True)
class Endpoint:
    name: str  # what usage records call it: "chat.completions", "embeddings", "completions"
    path: str  # the client's path
    mode: str  # the catalog mode of the models that serve it (proxy.catalog.models.Model.Mode)
    upstream_path: str  # appended to an OpenAI-style provider's base_url
    parse: Callable[[bytes], Any]  # the request, or a 400 naming the `param`
    count_input: Callable[[Any], int]  # a local count of the request's input tokens
    max_output: Callable[[Any, ModelInfo], int]  # the most output tokens it can be billed for
    upstream_body: Callable[[Any, RouteInfo, bool], bytes]  # for a route; True: the upstream streams
    check_answer: Callable[[bytes], dict]  # the upstream's plain answer, or ValueError (it fails over)
    take_answer: Callable[[Tally, dict], None]  # what a plain answer produced
    write_answer: Callable[[Any, dict], bytes]  # the client's plain answer
    count_output: Callable[[Tally], int]  # a local count of what was produced, when no usage came
