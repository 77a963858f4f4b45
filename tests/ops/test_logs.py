"""One access line per /v1 request, with no key and no prompt in it; LOG_FORMAT=json makes every line JSON."""

import json
import time

import pytest
from django.conf import settings

from tests.conftest import database_url
from tests.live import start_gateway
from tests.proxy.test_chat import HIGH_LIMITS, client, marker


@pytest.fixture(scope="module")
def json_gateway(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, LOG_FORMAT="json", LOG_LEVEL="INFO")
    yield gw
    gw.stop()


def access_lines(gateway, request_id: str, timeout: float = 5.0) -> list[str]:
    deadline = time.monotonic() + timeout
    while True:
        found = [line for line in gateway.log().splitlines() if request_id in line and "proxy.access" in line]
        if found or time.monotonic() > deadline:
            return found
        time.sleep(0.05)


def test_each_request_writes_one_access_line_without_its_key_or_prompt(gateway, catalog, make_key):
    key, raw = make_key(**HIGH_LIMITS)
    secret_word = marker()
    answer = client(gateway, raw).chat.completions.with_raw_response.create(
        model=catalog["echo"], messages=[{"role": "user", "content": f"private {secret_word}"}]
    )
    request_id = answer.headers["x-request-id"]
    lines = access_lines(gateway, request_id)
    assert len(lines) == 1
    line = lines[0]
    for field in (f"key_prefix={key.prefix.removeprefix('sk-')}", "endpoint=chat.completions", f"model={catalog['echo']}",
                  "status=200", "completion_tokens="):  # fmt: skip
        assert field in line, line
    assert secret_word not in gateway.log() and raw not in gateway.log()


def test_json_logs_are_one_object_per_line(json_gateway, catalog, make_key):
    key, raw = make_key(**HIGH_LIMITS)
    answer = client(json_gateway, raw).chat.completions.with_raw_response.create(
        model=catalog["echo"], messages=[{"role": "user", "content": "json please"}]
    )
    (line,) = access_lines(json_gateway, answer.headers["x-request-id"])
    record = json.loads(line)
    assert record["logger"] == "proxy.access" and record["level"] == "INFO" and record["status"] == 200
    assert record["key_prefix"] == key.prefix.removeprefix("sk-") and record["endpoint"] == "chat.completions"
    for other in json_gateway.log().splitlines():
        if other.startswith("{"):
            json.loads(other)
