"""Liveness and readiness over HTTP, on real gateway processes: /healthz touches nothing and logs nothing;
/readyz checks PostgreSQL and Redis and names what is down; a graceful stop turns it 503 while the process
still serves."""

import signal
import time

import requests
from django.conf import settings

from tests.conftest import database_url
from tests.live import start_gateway

UNREACHABLE_REDIS = "redis://127.0.0.1:9/0"  # the discard port: nothing listens there


def test_healthz_needs_no_key_and_writes_no_log_line(gateway):
    before = gateway.log()
    for _ in range(3):
        answer = requests.get(f"{gateway.url}/healthz", timeout=5)
        assert answer.status_code == 200 and answer.json() == {"status": "ok"}
    assert gateway.log() == before


def test_readyz_checks_the_database_and_redis(gateway):
    answer = requests.get(f"{gateway.url}/readyz", timeout=5)
    assert answer.status_code == 200
    assert answer.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}


def test_readyz_names_what_is_down_within_its_deadline(live_database, artifacts):
    gw = start_gateway(database_url(), UNREACHABLE_REDIS, artifacts)
    try:
        started = time.monotonic()
        answer = requests.get(f"{gw.url}/readyz", timeout=10)
        assert time.monotonic() - started < 5  # each check has a deadline; a dead Redis doesn't hang it
        assert answer.status_code == 503
        assert answer.json() == {"status": "unavailable", "checks": {"database": "ok", "redis": "down"}}
        assert requests.get(f"{gw.url}/healthz", timeout=5).status_code == 200  # alive all the same
    finally:
        gw.stop()


def test_a_graceful_stop_turns_readiness_off_while_it_still_serves(live_database, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, DRAIN_SECONDS="1.5")
    try:
        assert requests.get(f"{gw.url}/readyz", timeout=5).status_code == 200
        gw.proc.send_signal(signal.SIGTERM)
        time.sleep(0.3)
        answer = requests.get(f"{gw.url}/readyz", timeout=5)
        assert answer.status_code == 503 and answer.json() == {"status": "stopping"}
        assert requests.get(f"{gw.url}/healthz", timeout=5).status_code == 200
        assert gw.proc.wait(15) is not None  # and then it stops, gracefully
        assert "Traceback" not in gw.log()
    finally:
        gw.stop()
