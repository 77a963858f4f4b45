"""OpenTelemetry traces: with OTEL_EXPORTER_OTLP_ENDPOINT set, a gateway sends each request's spans (server,
admission, reservation, upstream, settlement) by OTLP over HTTP to a collector, here one the test runs; the
client's traceparent is the parent, and the upstream receives the traceparent of its own span."""

import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest
from django.conf import settings
from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import ExportTraceServiceRequest

from tests.conftest import database_url
from tests.live import start_gateway
from tests.proxy.test_chat import HIGH_LIMITS, client, fake_provider, serve_model, user

CLIENT_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CLIENT_SPAN = "00f067aa0ba902b7"


class Collector(ThreadingHTTPServer):
    """An OTLP/HTTP trace receiver: every span it was sent, decoded from protobuf."""

    def __init__(self) -> None:
        super().__init__(("127.0.0.1", 0), _Handler)
        self.spans: list = []
        self.paths: list[str] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def wait_for(self, predicate, timeout: float = 10.0) -> list:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            found = [span for span in list(self.spans) if predicate(span)]
            if found:
                return found
            time.sleep(0.05)
        raise AssertionError(f"no such span within {timeout} s; got {[s.name for s in self.spans]}")


class _Handler(BaseHTTPRequestHandler):
    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers["Content-Length"]))
        export = ExportTraceServiceRequest.FromString(body)
        for resource in export.resource_spans:
            for scope in resource.scope_spans:
                self.server.spans.extend(scope.spans)  # type: ignore[attr-defined]
        self.server.paths.append(self.path)  # type: ignore[attr-defined]
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args) -> None:
        pass


@pytest.fixture(scope="module")
def collector():
    server = Collector()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()


@pytest.fixture(scope="module")
def traced(live_database, catalog, artifacts, collector):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123",
                       OTEL_EXPORTER_OTLP_ENDPOINT=collector.url, OTEL_BSP_SCHEDULE_DELAY="50")  # fmt: skip
    yield gw
    gw.stop()


def attributes(span) -> dict:
    return {a.key: a.value.string_value or a.value.int_value for a in span.attributes}


def test_a_request_is_a_trace_under_the_clients_with_a_span_per_step(
    traced, collector, upstream, make_key, tmp_path
):
    _, raw = make_key(**HIGH_LIMITS)
    api = client(traced, raw, default_headers={"traceparent": f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"})
    failing, working = fake_provider(upstream), fake_provider(upstream)
    model = serve_model(
        api, tmp_path, [failing, working], [(failing["name"], "fail-500"), (working["name"], "echo")]
    )
    secret_word = "confidential-banana"
    answer = api.chat.completions.create(model=model, messages=user(f"trace {secret_word}"))
    (server,) = collector.wait_for(
        lambda s: s.name == "POST chat.completions" and attributes(s).get("gateway.model") == model
    )
    trace_id = server.trace_id.hex()
    assert trace_id == CLIENT_TRACE and server.parent_span_id.hex() == CLIENT_SPAN
    assert attributes(server)["gateway.request_id"] == answer._request_id
    assert attributes(server)["gateway.status"] == 200
    assert attributes(server)["gateway.provider"] == working["name"]
    collector.wait_for(lambda s: s.name == "settlement" and s.trace_id.hex() == trace_id)
    steps = [s for s in collector.spans if s.parent_span_id == server.span_id]
    names = sorted(s.name for s in steps)
    assert names == ["admission", "reservation", "settlement", "upstream", "upstream"], (
        names
    )  # a failover: two
    assert all(s.trace_id.hex() == trace_id for s in steps)
    calls = sorted((s for s in steps if s.name == "upstream"), key=lambda s: s.start_time_unix_nano)
    assert [attributes(s)["gateway.provider"] for s in calls] == [failing["name"], working["name"]]
    assert calls[0].status.code == 2 and calls[1].status.code != 2  # the failed route is an error
    # Each upstream call carried the traceparent of its own span.
    (seen,) = upstream.find(prefix=working["name"])
    assert seen.headers["traceparent"] == f"00-{trace_id}-{calls[1].span_id.hex()}-01"
    assert all(path == "/v1/traces" for path in collector.paths)
    for span in collector.spans:  # no prompt, no key in any span
        text = str(span)
        assert secret_word not in text and raw not in text


def test_without_tracing_the_clients_traceparent_goes_upstream_unchanged(
    gateway, upstream, make_key, tmp_path
):
    _, raw = make_key(**HIGH_LIMITS)
    header = f"00-{CLIENT_TRACE}-{CLIENT_SPAN}-01"
    api = client(gateway, raw, default_headers={"traceparent": header, "tracestate": "vendor=1"})
    provider = fake_provider(upstream)
    model = serve_model(api, tmp_path, [provider], [(provider["name"], "echo")])
    api.chat.completions.create(model=model, messages=user("pass it on"))
    (seen,) = upstream.find(prefix=provider["name"])
    assert seen.headers["traceparent"] == header and seen.headers["tracestate"] == "vendor=1"
