"""Fixtures for the dashboard's Django test-client tests: users, signed-in clients, a small catalog, usage."""

import uuid
from datetime import timedelta
from decimal import Decimal

import pytest
from django.test import Client
from django.utils import timezone

from tests.conftest import unique

PASSWORD = "a-long-and-unusual-passphrase-42"


@pytest.fixture(autouse=True)
def fast_password_hashing(settings):
    # The real hasher is slow on purpose; these tests sign in hundreds of times and test flows, not hashing.
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def user(db):
    from billing.services import customer_create

    return customer_create(email=f"{unique('alice')}@example.com", password=PASSWORD)


@pytest.fixture
def other_user(db):
    from billing.services import customer_create

    return customer_create(email=f"{unique('mallory')}@example.com", password=PASSWORD)


@pytest.fixture
def client_of():
    """A test client signed in as ``user``; ``csrf=True`` enforces CSRF checks as a browser would meet them."""

    def make(user, *, csrf: bool = False) -> Client:
        client = Client(
            enforce_csrf_checks=csrf, REMOTE_ADDR=f"10.9.{uuid.uuid4().int % 250}.{uuid.uuid4().int % 250}"
        )
        client.force_login(user)
        return client

    return make


@pytest.fixture
def models(db):
    """Two served models (one free, one paid) and one disabled model, on one provider."""
    from proxy.catalog.models import Model, Provider, Route

    provider = Provider.objects.create(name=unique("prov"), base_url="http://127.0.0.1:9/v1")
    free = Model.objects.create(name=unique("free-model"), owned_by="acme", context_length=32768)
    paid = Model.objects.create(
        name=unique("paid-model"), owned_by="acme", input_usd_per_mtok=Decimal("0.27"),
        output_usd_per_mtok=Decimal("1.10"), context_length=128000, description="A paid model",
    )  # fmt: skip
    hidden = Model.objects.create(name=unique("off-model"), owned_by="acme", enabled=False)
    for m in (free, paid, hidden):
        Route.objects.create(model=m, provider=provider, upstream_model=m.name)
    return {"free": free, "paid": paid, "hidden": hidden}


@pytest.fixture
def add_usage():
    """Write usage records (and, with ``rollup``, their DailyUsage) for a user, ``ago`` days back."""
    from billing.jobs import usage_aggregate
    from billing.models import UsageRecord

    def add(
        user,
        *,
        key,
        model,
        n: int = 1,
        cost: str = "0",
        ago: int = 0,
        status: int = 200,
        rollup=True,
        endpoint: str = "chat.completions",
        prompt_tokens: int = 10,
        completion_tokens: int = 20,
        **token_kinds: int,  # cache_read_tokens and the like: parts of the prompt and the completion
    ):
        when = timezone.now() - timedelta(days=ago)
        rows = [
            UsageRecord(user=user, key=key, model=model, endpoint=endpoint, prompt_tokens=prompt_tokens,
                        completion_tokens=completion_tokens, cost=Decimal(cost), status=status, latency_ms=123,
                        created_at=when - timedelta(seconds=i), **token_kinds)
            for i in range(n)
        ]  # fmt: skip
        UsageRecord.objects.bulk_create(rows)
        if rollup:
            usage_aggregate(days=ago + 2)
        return rows

    return add
