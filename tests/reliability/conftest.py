"""Fixtures for the fault suites: private servers to break, a chaos upstream, paid models and funded keys."""

from decimal import Decimal
from pathlib import Path

import pytest

from tests.conftest import unique, write_catalog
from tests.reliability.chaos import ChaosUpstream
from tests.reliability.services import PrivateRedis

# Output at 300 USD per million tokens, input free: a request with max_tokens=1000 holds exactly 0.30 USD.
OUTPUT_PRICE = "300"


@pytest.fixture(scope="session")
def log_dir(artifacts) -> Path:
    """Where the fault suites' gateways write their logs (kept apart from the other suites' gateways)."""
    path = artifacts / "reliability" / "logs"
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture
def private_redis():
    server = PrivateRedis().start()
    yield server
    server.kill()


@pytest.fixture(scope="session")
def chaos_upstream():
    server = ChaosUpstream().start()
    yield server
    server.stop()


def paid_model_spec(upstream, routes: list[str], *, prefixes: list[str] | None = None, **provider) -> tuple:
    """(providers, [model]) for a paid model whose routes, tried in order, play ``routes`` on the upstream,
    each on a provider of its own (or on ``prefixes``)."""
    names = prefixes or [unique("rp") for _ in routes]
    providers = [
        {"name": n, "base_url": upstream.url_for(n), "api_key_env": "TEST_UPSTREAM_KEY", "connect_timeout": 1.0,
         "first_byte_timeout": 5.0, "idle_timeout": 5.0, "circuit_threshold": 100_000, **provider}
        for n in dict.fromkeys(names)
    ]  # fmt: skip
    pairs = zip(names, routes, strict=True)
    model = {
        "id": unique("paid"), "owned_by": "test", "input_usd_per_mtok": "0", "output_usd_per_mtok": OUTPUT_PRICE,
        "routes": [{"provider": n, "upstream_model": b, "priority": i} for i, (n, b) in enumerate(pairs, 1)],
    }  # fmt: skip
    return providers, [model]


def import_paid_model(path: Path, upstream, routes: list[str], **provider) -> str:
    """A paid model on the shared test database; returns its public id."""
    from proxy.catalog.importer import catalog_import

    providers, models = paid_model_spec(upstream, routes, **provider)
    catalog_import(path=write_catalog(path, providers, models))
    return models[0]["id"]


@pytest.fixture
def funded_key(make_user, make_key):
    """A key whose account holds ``usd`` of granted credit. Returns (ApiKey, raw key, account id)."""
    from billing.services import account_for, credits_grant

    def make(usd: str):
        user = make_user()
        account = account_for(user=user)
        credits_grant(account=account, amount=Decimal(usd), reason="reliability test funds", actor=None)
        key, raw = make_key(owner=user, rpm_limit=100_000, rpd_limit=100_000)
        return key, raw, account.pk

    return make
