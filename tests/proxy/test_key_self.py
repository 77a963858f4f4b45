"""GET /v1/key: an inference client checks its own limits, spend and usage through the gateway."""

import json
import time
import urllib.error
import urllib.request
from decimal import Decimal

import openai
import pytest

from billing.models import UsageRecord


def get_key(gateway, raw: str) -> tuple[int, dict, dict]:
    request = urllib.request.Request(f"{gateway.base_url}/key", headers={"Authorization": f"Bearer {raw}"})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, dict(response.headers), json.loads(response.read())
    except urllib.error.HTTPError as err:
        return err.code, dict(err.headers), json.loads(err.read())


def test_a_key_sees_its_limits_remaining_and_usage(gateway, catalog, make_key):
    key, raw = make_key(name="laptop", rpm_limit=7, spend_limit=Decimal("2.5"))
    api = openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)
    api.chat.completions.create(model=catalog["echo"], messages=[{"role": "user", "content": "hi"}])
    deadline = time.monotonic() + 10
    while not UsageRecord.objects.filter(key=key).exists():
        assert time.monotonic() < deadline
        time.sleep(0.05)
    status, headers, body = get_key(gateway, raw)
    assert status == 200
    assert (body["name"], body["prefix"], body["is_free_tier"]) == ("laptop", key.prefix, True)
    assert body["limits"] == {"rpm": 7, "rpd": 50}
    assert body["remaining"] == {"rpm": 6, "rpd": 49}  # the chat counted; this call does not
    assert Decimal(body["spend"]["limit"]) == Decimal("2.5")
    assert body["usage"]["today"]["requests"] == 1
    assert headers["x-ratelimit-remaining-rpm"] == "6"
    assert raw not in json.dumps(body)


@pytest.mark.parametrize("kind", ["unknown", "revoked"])
def test_an_unknown_or_revoked_key_gets_401(gateway, make_key, kind):
    from portal.accounts.services import key_revoke

    key, raw = make_key()
    if kind == "revoked":
        key_revoke(key=key)
    else:
        raw = "sk-" + "Z" * 43
    status, _, body = get_key(gateway, raw)
    assert status == 401 and body["error"]["code"] == "invalid_api_key"
