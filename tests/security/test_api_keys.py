"""API keys: stored only as keyed hashes, never logged, revoked everywhere at once.

Comparison in constant time is tested where it lives: tests/portal/test_keys.py::test_comparison_is_constant_time
(``portal.accounts.keys.key_matches`` answers through ``hmac.compare_digest``). The gateway itself never compares keys:
it looks the keyed hash up (an index and a dict), which tells a guesser nothing about any stored key.
"""

import time

import requests

from billing.models import UsageRecord
from portal.accounts import keys
from portal.accounts.models import ApiKey
from portal.accounts.services import key_revoke
from tests.conftest import database_url
from tests.live import start_gateway
from tests.security.conftest import pg_dump_text, redis_text


def chat(gw, raw: str, model: str, text: str = "hello") -> requests.Response:
    return requests.post(
        f"{gw.base_url}/chat/completions", headers={"Authorization": f"Bearer {raw}"}, timeout=30,
        json={"model": model, "messages": [{"role": "user", "content": text}]},
    )  # fmt: skip


def secret_parts(raw: str) -> list[str]:
    """What must never be stored or logged: the key, and the part of it beyond the displayed prefix."""
    return [raw, raw[keys.DISPLAY_CHARS :]]


def wait_usage(request_id: str) -> None:
    deadline = time.monotonic() + 10
    while not UsageRecord.objects.filter(pk=request_id).exists():
        assert time.monotonic() < deadline, f"no usage record for {request_id}"
        time.sleep(0.05)


def test_keys_are_stored_only_as_hashes_and_never_logged(loud_gateway, gateway, catalog, make_key):
    live, live_raw = make_key(rpm_limit=1000, rpd_limit=1000)
    revoked, revoked_raw = make_key(rpm_limit=1000, rpd_limit=1000)
    key_revoke(key=revoked)
    unknown_raw = keys.key_generate()  # well formed, never stored
    malformed_raw = "sk-" + keys.key_generate()[3:20] + "!not-a-key"
    answers = {}
    for raw in (live_raw, revoked_raw, unknown_raw, malformed_raw):
        for gw in (loud_gateway, gateway):
            answers[(raw, gw.port)] = chat(gw, raw, catalog["echo"]).status_code
            requests.get(f"{gw.base_url}/models", headers={"Authorization": f"Bearer {raw}"}, timeout=30)
            requests.get(f"{gw.url}/api/v1/key", headers={"Authorization": f"Bearer {raw}"}, timeout=30)
            requests.get(f"{gw.url}/api/v1/usage", headers={"Authorization": f"Bearer {raw}"}, timeout=30)
    assert {answers[(live_raw, p)] for p in (loud_gateway.port, gateway.port)} == {200}
    for raw in (revoked_raw, unknown_raw, malformed_raw):
        assert {answers[(raw, p)] for p in (loud_gateway.port, gateway.port)} == {401}
    wait_usage(chat(loud_gateway, live_raw, catalog["echo"]).headers["x-request-id"])

    dump, cache = pg_dump_text(), redis_text()
    logs = loud_gateway.log() + gateway.log()
    for row, raw in ((live, live_raw), (revoked, revoked_raw)):
        assert row.hash in dump and row.hash == keys.key_hash(raw)  # the key's row is in the dump, as a hash
    for raw in (live_raw, revoked_raw, unknown_raw, malformed_raw):
        for part in secret_parts(raw):
            assert part not in dump, "a raw API key is stored in the database"
            assert part not in cache, "a raw API key is stored in Redis"
            assert part not in logs, "a raw API key was logged"


def test_a_revoked_key_is_refused_on_the_very_next_request_by_two_warm_gateways(
    loud_gateway, catalog, make_user, make_key, security_logs
):
    from django.conf import settings

    second = start_gateway(database_url(), settings.REDIS_URL, security_logs)
    try:
        owner = make_user()
        doomed, doomed_raw = make_key(owner=owner, rpm_limit=1000, rpd_limit=1000)
        sibling, sibling_raw = make_key(owner=owner, rpm_limit=1000, rpd_limit=1000)
        gateways = (loud_gateway, second)
        for gw in gateways:
            for raw in (doomed_raw, sibling_raw):
                assert [chat(gw, raw, catalog["echo"]).status_code for _ in range(3)] == [200] * 3

        # The caches are warm: an edit that bypasses the services (so tells no gateway) is not seen yet.
        ApiKey.objects.filter(pk=sibling.pk).update(disabled=True)
        assert [chat(gw, sibling_raw, catalog["echo"]).status_code for gw in gateways] == [200, 200]

        key_revoke(key=doomed)
        for gw in gateways:
            refused = chat(gw, doomed_raw, catalog["echo"])
            assert refused.status_code == 401, refused.text
            error = refused.json()["error"]
            assert (error["type"], error["code"]) == ("invalid_request_error", "invalid_api_key")
            assert "revoked" in error["message"]
            listing = requests.get(
                f"{gw.base_url}/models", headers={"Authorization": f"Bearer {doomed_raw}"}, timeout=30
            )
            assert listing.status_code == 401
    finally:
        second.stop()
