"""Fixtures shared by the endpoint tests."""

from decimal import Decimal

import pytest

from tests.proxy.test_chat import HIGH_LIMITS


@pytest.fixture
def funded(make_user, make_key):
    """A raw key with high limits, on an account with 10 USD."""
    from billing.services import account_for, credits_grant

    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(10), reason="test funds", actor=None)
    return make_key(owner=user, **HIGH_LIMITS)[1]


@pytest.fixture(scope="module")
def anthropic_routes(live_database, upstream, tmp_path_factory) -> dict[str, str]:
    """Models on an Anthropic-style provider, by behaviour; ``mixed`` (a 500) and ``unpaid`` (a 402) fail
    there and have an OpenAI-style route second."""
    from proxy.catalog.importer import catalog_import
    from tests.conftest import unique, write_catalog

    native, chat_only = unique("claude"), unique("claude-chat")
    providers = [
        {"name": native, "kind": "anthropic", "base_url": upstream.url_for(native),
         "api_key_env": "TEST_UPSTREAM_KEY", "first_byte_timeout": 3.0, "idle_timeout": 3.0,
         "circuit_threshold": 1000},
        {"name": chat_only, "base_url": upstream.url_for(chat_only), "api_key_env": "TEST_UPSTREAM_KEY"},
    ]  # fmt: skip
    behaviours = ("echo", "cut-after:2", "fail-500", "fail-529", "slow-first-token:1.2")
    names = {b: unique(f"cl-{b.replace(':', '-').replace('.', '-')}") for b in behaviours}
    models = [
        {"id": names[b], "owned_by": "anthropic", "routes": [{"provider": native, "upstream_model": b}]}
        for b in behaviours
    ]
    for name, first in (("mixed", "fail-500"), ("unpaid", "fail-402")):
        names[name] = unique(f"cl-{name}")
        models.append({"id": names[name], "owned_by": "anthropic", "routes": [
            {"provider": native, "upstream_model": first, "priority": 1},
            {"provider": chat_only, "upstream_model": "echo", "priority": 2},
        ]})  # fmt: skip
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("claude") / "c.toml", providers, models))
    return {**names, "native": native, "chat_only": chat_only}
