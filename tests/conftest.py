"""Shared fixtures: the real services, a fake upstream, a fake Stripe, a live gateway process, and data factories.

Tests that talk to a live gateway use ``live_db``: their rows are committed (the gateway is another process) and
never flushed, so every factory makes unique names and tests scope their assertions to their own objects.
"""

import itertools
import uuid
from pathlib import Path

import pytest
import redis
from django.conf import settings

from tests import fakestripe
from tests.live import ROOT, start_gateway
from tests.upstream import FakeUpstream

ARTIFACTS = ROOT / "test-artifacts"
_seq = itertools.count(1)


def pytest_sessionstart(session) -> None:
    """Fail at once, with the fix, when a service the suite needs is down. Nothing here ever skips."""
    try:
        redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=2).flushdb()
    except redis.RedisError as exc:
        pytest.exit(f"Redis is not reachable at {settings.REDIS_URL} ({exc}). Start it: bash .ci/services", 2)
    import psycopg

    db = settings.DATABASES["default"]
    try:
        psycopg.connect(host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres").close()
    except psycopg.Error as exc:
        pytest.exit(f"PostgreSQL is not reachable ({exc}). Start it: bash .ci/services", 2)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    return ARTIFACTS


@pytest.fixture(scope="session")
def django_db_setup(django_test_environment, django_db_blocker):
    """Always set up the default test database: live tests use it without a django_db mark."""
    from django.test.utils import setup_databases, teardown_databases

    with django_db_blocker.unblock():
        config = setup_databases(
            verbosity=0, interactive=False, aliases={"default"}, serialized_aliases=set()
        )
    yield
    with django_db_blocker.unblock():
        _disconnect_others(settings.DATABASES["default"])
        teardown_databases(config, verbosity=0)


def _disconnect_others(db: dict) -> None:
    """Stopped gateways' sessions linger a moment on the server; end them so the test database can go."""
    import psycopg

    with psycopg.connect(
        host=db["HOST"], port=db["PORT"] or 5432, user=db["USER"], dbname="postgres"
    ) as conn:
        conn.execute(
            "SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = %s AND pid <> pg_backend_pid()",
            [db["NAME"]],
        )


@pytest.fixture(scope="session")
def live_database(django_db_setup, django_db_blocker):
    """The test database, committed to directly (no per-test flush), for tests that use a live gateway."""
    with django_db_blocker.unblock():
        yield settings.DATABASES["default"]


@pytest.fixture
def live_db(live_database, django_db_blocker):
    with django_db_blocker.unblock():
        yield


def database_url() -> str:
    db = settings.DATABASES["default"]
    return f"postgres://{db['USER']}@{db['HOST']}:{db['PORT'] or 5432}/{db['NAME']}"


@pytest.fixture(scope="session")
def upstream():
    server = FakeUpstream().start()
    yield server
    server.stop()


@pytest.fixture
def fake_stripe(settings):
    """Card payments on, with this process's Stripe client talking to a fake (tests/fakestripe.py)."""
    with fakestripe.serving() as (handler, url):
        settings.STRIPE_SECRET_KEY = fakestripe.SECRET_KEY
        settings.STRIPE_WEBHOOK_SECRET = fakestripe.WEBHOOK_SECRET
        settings.STRIPE_API_BASE = url
        yield handler


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_seq)}-{uuid.uuid4().hex[:6]}"


def write_catalog(path: Path, providers: list[dict], models: list[dict]) -> Path:
    """A catalog TOML file from plain dicts (routes as a list of dicts)."""

    def value(v) -> str:
        if isinstance(v, bool):
            return "true" if v else "false"
        if isinstance(v, int | float):
            return str(v)
        return '"' + str(v).replace("\\", "\\\\").replace('"', '\\"') + '"'

    lines = []
    for p in providers:
        lines.append("[[providers]]")
        lines += [f"{k} = {value(v)}" for k, v in p.items()]
    for m in models:
        lines.append("[[models]]")
        lines += [f"{k} = {value(v)}" for k, v in m.items() if k != "routes"]
        routes = ", ".join(
            "{ " + ", ".join(f"{k} = {value(v)}" for k, v in r.items()) + " }" for r in m["routes"]
        )
        lines.append(f"routes = [{routes}]")
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def catalog(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    """A session catalog on the fake upstream: a free ``echo`` model and one model per failure behaviour.

    Returns public model id by behaviour name.
    """
    from proxy.catalog.importer import catalog_import

    provider = unique("up")
    behaviours = [
        "echo",
        "no-usage",
        "fail-500",
        "hang",
        "slow-stream",
        "cut-after:3",
        "garbage",
        "early-close",
    ]
    names = {b: unique(b.replace(":", "-")) for b in behaviours}
    models = [
        {"id": names[b], "owned_by": "test", "routes": [{"provider": provider, "upstream_model": b}]}
        for b in behaviours
    ]
    path = tmp_path_factory.mktemp("catalog") / "catalog.toml"
    providers = [{"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY",
                  "first_byte_timeout": 3.0, "idle_timeout": 3.0, "circuit_threshold": 1000}]  # fmt: skip
    catalog_import(path=write_catalog(path, providers, models))
    return names


@pytest.fixture(scope="session")
def gateway(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123")
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def second_gateway(live_database, catalog, artifacts):
    """Another gateway process on the same database and Redis, for tests of what processes share."""
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123")
    yield gw
    gw.stop()


@pytest.fixture
def make_user(live_db):
    from billing.services import customer_create

    def make(email: str | None = None, **kwargs):
        return customer_create(email=email or f"{unique('user')}@example.com", **kwargs)

    return make


@pytest.fixture
def make_key(make_user):
    """An API key for a new user (or ``owner``). Returns (ApiKey row, raw key)."""
    from portal.accounts.services import key_create

    def make(owner=None, **kwargs):
        return key_create(owner=owner or make_user(), name=kwargs.pop("name", "test"), **kwargs)

    return make
