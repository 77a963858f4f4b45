"""OpenTelemetry traces of /v1 requests, when ``OTEL_EXPORTER_OTLP_ENDPOINT`` is set (OTLP over HTTP).

A request is one server span (``POST /v1/chat/completions``), a child of the client's ``traceparent`` when it
sent one, with a span per step: ``admission`` (the key's limits), ``reservation`` (its credit), ``upstream``
(one per route tried, so a failover shows as two) and ``settlement``. Spans carry the endpoint, model,
provider, status and request id, never a key, a prompt or an answer. Each upstream call carries the
``traceparent`` of its span, so a traced upstream joins the same trace; with tracing off, a client's own
``traceparent`` and ``tracestate`` are passed on unchanged.

Off, each step costs one ``nullcontext``: nothing of OpenTelemetry is imported. The exporter batches in its own
thread and reads the standard ``OTEL_*`` variables (``OTEL_SERVICE_NAME``, ``OTEL_BSP_SCHEDULE_DELAY``,
headers, timeouts); every process configures its own after the server forks it (at startup).
"""

import contextlib
from typing import Any

from django.conf import settings

from proxy.gateway import metrics

OFF = contextlib.nullcontext()
TRACE_HEADERS = (b"traceparent", b"tracestate")

_tracer: Any = None
_provider: Any = None
_propagator: Any = None


def start() -> None:
    """Configure this process's tracer (called at startup), if an endpoint is set."""
    global _tracer, _provider, _propagator
    if not (settings.OTEL_EXPORTER_OTLP_ENDPOINT or settings.OTEL_EXPORTER_OTLP_TRACES_ENDPOINT) or _tracer:
        return
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    _provider = TracerProvider(resource=Resource.create({"service.name": settings.OTEL_SERVICE_NAME}))
    _provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))
    _tracer = _provider.get_tracer("inference_space.gateway")
    _propagator = TraceContextTextMapPropagator()


def stop() -> None:
    """Send what is left (at a graceful stop)."""
    global _tracer, _provider
    if _provider is not None:
        _provider.shutdown()
    _tracer = _provider = None


def request(scope: dict, method: str, path: str):
    """The request's server span, under the client's trace if it sent a ``traceparent``."""
    if _tracer is None:
        return OFF
    from opentelemetry.trace import SpanKind

    carrier = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"] if k in TRACE_HEADERS}
    parent = _propagator.extract(carrier) if carrier else None
    # Named by endpoint, not by path: ids and made-up paths would make span names without bound.
    name = f"{method} {metrics.endpoint_label(path)}"
    return _tracer.start_as_current_span(name, context=parent, kind=SpanKind.SERVER)


def step(name: str, **attributes: Any):
    """A span for one step of the request, under its server span."""
    if _tracer is None:
        return OFF
    return _tracer.start_as_current_span(name, attributes=_clean(attributes))


def upstream(provider: str, model: str):
    if _tracer is None:
        return OFF
    from opentelemetry.trace import SpanKind

    attributes = {"gateway.provider": provider, "gateway.upstream_model": model}
    return _tracer.start_as_current_span("upstream", kind=SpanKind.CLIENT, attributes=attributes)


def describe(span: Any, **attributes: Any) -> None:
    """Attributes for a request's server span (``None`` when not tracing)."""
    if span is not None:
        span.set_attributes(_clean(attributes))


def outgoing(headers: dict[str, str], client_headers: list[tuple[bytes, bytes]] | None) -> dict[str, str]:
    """An upstream call's headers with the trace's: the current span's context when tracing, else the
    client's own trace headers as they came. ``headers`` is shared (cached): a copy is returned if needed."""
    if _tracer is not None:
        carrier: dict[str, str] = {}
        _propagator.inject(carrier)
        return {**headers, **carrier} if carrier else headers
    if not client_headers:
        return headers
    passed = {k.decode("latin-1"): v.decode("latin-1") for k, v in client_headers if k in TRACE_HEADERS}
    return {**headers, **passed} if passed else headers


def _clean(attributes: dict[str, Any]) -> dict[str, Any]:
    return {f"gateway.{name}": value for name, value in attributes.items() if value is not None}
