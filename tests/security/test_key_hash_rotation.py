"""Rotating KEY_HASH_SECRET: alone, it invalidates every key; with the old secret in KEY_HASH_SECRET_PREVIOUS,
a key stored under the old one still works, on /v1 and on the management API, and is stored under the new
one from its first use on, so the old secret can go once every key has moved."""

import asyncio
import hashlib
import hmac

import pytest
import requests
from django.conf import settings
from django.test import override_settings

from portal.accounts.models import ApiKey
from tests.conftest import database_url
from tests.live import start_gateway
from tests.proxy.test_chat import HIGH_LIMITS, async_client, client, user

OLD, NEW = "old-hash-secret-for-rotation", "new-hash-secret-for-rotation"


def under(secret: str, raw: str) -> str:
    return hmac.new(secret.encode(), raw.encode(), hashlib.sha256).hexdigest()


@pytest.fixture(scope="module")
def rotating(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123",
                       KEY_HASH_SECRET=NEW, KEY_HASH_SECRET_PREVIOUS=OLD)  # fmt: skip
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def rotated_without_previous(live_database, catalog, artifacts):
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123",
                       KEY_HASH_SECRET=NEW)  # fmt: skip
    yield gw
    gw.stop()


def old_key(make_key, **kwargs):
    with override_settings(KEY_HASH_SECRET=OLD.encode()):
        return make_key(**kwargs)


def test_a_key_stored_under_the_previous_secret_works_and_moves_to_the_new(rotating, catalog, make_key):
    key, raw = old_key(make_key, **HIGH_LIMITS)
    assert ApiKey.objects.get(pk=key.pk).hash == under(OLD, raw)
    api = client(rotating, raw)
    for _ in range(2):
        assert api.chat.completions.create(model=catalog["echo"], messages=user("still me")).choices
    assert ApiKey.objects.get(pk=key.pk).hash == under(NEW, raw)


def test_concurrent_first_uses_all_pass_while_one_moves_the_key(rotating, catalog, make_key):
    key, raw = old_key(make_key, **HIGH_LIMITS)

    async def burst() -> list[int]:
        api = async_client(rotating, raw)
        calls = [api.chat.completions.with_raw_response.create(model=catalog["echo"], messages=user(f"n{i}"))
                 for i in range(16)]  # fmt: skip
        return [answer.status_code for answer in await asyncio.gather(*calls)]

    assert asyncio.run(burst()) == [200] * 16
    assert ApiKey.objects.get(pk=key.pk).hash == under(NEW, raw)


def test_the_management_api_moves_a_key_over_too(rotating, make_key):
    key, raw = old_key(make_key, management=True)
    answer = requests.get(
        f"{rotating.url}/api/v1/keys", headers={"Authorization": f"Bearer {raw}"}, timeout=10
    )
    assert answer.status_code == 200, answer.text
    assert ApiKey.objects.get(pk=key.pk).hash == under(NEW, raw)


def test_without_the_previous_secret_an_old_key_is_refused(rotated_without_previous, catalog, make_key):
    key, raw = old_key(make_key, **HIGH_LIMITS)
    answer = requests.post(
        f"{rotated_without_previous.base_url}/chat/completions", headers={"Authorization": f"Bearer {raw}"},
        json={"model": catalog["echo"], "messages": user("me?")}, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 401 and answer.json()["error"]["code"] == "invalid_api_key"
    assert ApiKey.objects.get(pk=key.pk).hash == under(OLD, raw)


def test_an_unknown_key_is_still_refused_during_a_rotation(rotating, catalog):
    raw = "sk-" + "x" * 43
    answer = requests.post(
        f"{rotating.base_url}/chat/completions", headers={"Authorization": f"Bearer {raw}"},
        json={"model": catalog["echo"], "messages": user("who")}, timeout=10,
    )  # fmt: skip
    assert answer.status_code == 401
