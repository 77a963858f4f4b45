"""Fixtures for the security sweep: a gateway that logs everything, upstreams to probe it with, and a dump of
what the test database and Redis hold."""

import subprocess
from decimal import Decimal
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests.conftest import database_url, unique, write_catalog
from tests.live import start_gateway
from tests.reliability.chaos import ChaosUpstream
from tests.upstream import FakeUpstream

PG_DUMP = "/usr/lib/postgresql/15/bin/pg_dump"
MAX_BODY = 65_536  # the security gateway's body limit, small so the fuzzer reaches it cheaply


@pytest.fixture(scope="session")
def security_logs(artifacts) -> Path:
    path = artifacts / "security" / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def loud_gateway(live_database, catalog, security_logs):
    """A gateway logging at DEBUG (so a leak has every chance to show), with a small body limit."""
    gw = start_gateway(
        database_url(), settings.REDIS_URL, security_logs, LOG_LEVEL="DEBUG", MAX_BODY_BYTES=str(MAX_BODY),
        TEST_UPSTREAM_KEY="upstream-secret-123",
    )  # fmt: skip
    yield gw
    gw.stop()


@pytest.fixture(scope="session")
def trap():
    """An upstream nobody should ever call: redirects point here."""
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture(scope="session")
def probe_upstream(trap):
    """The fake upstream plus ``redirect-NNN`` (to the trap), ``reflect-NNN`` (tests/reliability/chaos.py)."""
    server = ChaosUpstream().start()
    server.redirect_to = f"{trap.url_for('trap')}/chat/completions"
    yield server
    server.stop()


def import_model(
    path: Path, providers: list[dict], routes: list[tuple[str, str]], *, paid: bool = False
) -> str:
    from proxy.catalog.importer import catalog_import

    model = {
        "id": unique("sec"), "owned_by": "test",
        "input_usd_per_mtok": "1" if paid else "0", "output_usd_per_mtok": "2" if paid else "0",
        "routes": [{"provider": p, "upstream_model": m, "priority": i} for i, (p, m) in enumerate(routes, 1)],
    }  # fmt: skip
    catalog_import(path=write_catalog(path, providers, [model]))
    return model["id"]


def provider_on(upstream, **extra) -> dict:
    name = unique("sp")
    return {
        "name": name, "base_url": upstream.url_for(name), "connect_timeout": 1.0, "first_byte_timeout": 3.0,
        "idle_timeout": 3.0, "circuit_threshold": 100_000, **extra,
    }  # fmt: skip


@pytest.fixture
def funded(make_user, make_key):
    from billing.services import account_for, credits_grant

    def make(usd: str = "10"):
        user = make_user()
        credits_grant(account=account_for(user=user), amount=Decimal(usd), reason="security test", actor=None)
        return make_key(owner=user, rpm_limit=100_000, rpd_limit=100_000)

    return make


def pg_dump_text() -> str:
    """Everything in the test database, as pg_dump writes it."""
    db = settings.DATABASES["default"]
    result = subprocess.run(
        [PG_DUMP, "-h", db["HOST"], "-p", str(db["PORT"] or 5432), "-U", db["USER"], "--data-only", db["NAME"]],
        capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    assert "COPY public.portal_apikey" in result.stdout  # it really is our database
    return result.stdout


def redis_text() -> str:
    """Every key and value in the test Redis database, as text."""
    client = redis.Redis.from_url(settings.REDIS_URL)
    parts = []
    for name in client.scan_iter(count=1000):
        parts.append(name.decode(errors="replace"))
        kind = client.type(name).decode()
        if kind == "string":
            parts.append(str(client.get(name)))
        elif kind == "zset":
            parts += [str(m) for m in client.zrange(name, 0, -1)]
        elif kind == "hash":
            parts += [f"{k}={v}" for k, v in client.hgetall(name).items()]
        elif kind == "list":
            parts += [str(v) for v in client.lrange(name, 0, -1)]
        elif kind == "set":
            parts += [str(v) for v in client.smembers(name)]
    return "\n".join(parts)
