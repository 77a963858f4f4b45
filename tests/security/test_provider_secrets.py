"""Provider secrets: encrypted at rest, used only on the wire to the provider, never in an answer or a log.

The secret is set the way the admin sets it (``proxy.catalog.services.provider_save``, which encrypts it with
``settings.FIELD_ENCRYPTION_KEY`` into ``Provider.api_key_encrypted``). It deliberately doesn't look like an
``sk-`` key, so the log filter's pattern (portal/logs.py) can't be what keeps it out of the logs.
"""

import secrets

import pytest
import requests
from cryptography.fernet import Fernet
from django.conf import settings

from proxy.catalog.models import Provider
from proxy.catalog.services import provider_save
from tests.conftest import unique
from tests.security.conftest import import_model, pg_dump_text

FAILURES = ["fail-401", "fail-500", "reflect-401", "reflect-500", "reflect-503"]


@pytest.fixture
def secret_provider(live_db, probe_upstream):
    secret = "prov_" + secrets.token_urlsafe(24)
    name = unique("enc")
    provider = Provider(
        name=name, base_url=probe_upstream.url_for(name), connect_timeout=1.0, first_byte_timeout=3.0,
        idle_timeout=3.0, circuit_threshold=100_000,
    )  # fmt: skip
    provider_save(provider=provider, secret=secret, before=None, actor=None)
    return name, secret


def chat(gw, raw: str, model: str, *, stream: bool) -> requests.Response:
    body = {"model": model, "messages": [{"role": "user", "content": "who am i"}], "stream": stream}
    return requests.post(
        f"{gw.base_url}/chat/completions", json=body, headers={"Authorization": f"Bearer {raw}"}, timeout=30
    )


def test_a_provider_secret_is_encrypted_at_rest_and_never_in_an_error_body_or_a_log(
    loud_gateway, probe_upstream, secret_provider, make_key, tmp_path
):
    name, secret = secret_provider
    stored = Provider.objects.get(name=name).api_key_encrypted
    assert stored and secret not in stored
    assert Fernet(settings.FIELD_ENCRYPTION_KEY.encode()).decrypt(stored.encode()).decode() == secret

    _, raw = make_key(rpm_limit=1000, rpd_limit=1000)
    answers = []
    for behaviour in FAILURES:
        model = import_model(tmp_path / f"{behaviour}.toml", [], [(name, behaviour)])
        for stream in (False, True):
            answer = chat(loud_gateway, raw, model, stream=stream)
            assert answer.status_code == 502, answer.text
            assert answer.json()["error"]["code"] == "bad_gateway"
            answers.append(answer)
    sent = probe_upstream.find(prefix=name)
    assert len(sent) == 2 * len(FAILURES)
    assert {r.headers["authorization"] for r in sent} == {
        f"Bearer {secret}"
    }  # decrypted, and used on the wire

    for answer in answers:
        assert secret not in answer.text and secret not in str(answer.headers)
    assert secret not in loud_gateway.log()
    dump = pg_dump_text()
    assert stored in dump  # the encrypted value is there...
    assert secret not in dump  # ...and the secret is not, anywhere in the database


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
def test_an_upstream_that_quotes_the_secret_in_a_client_error_does_not_leak_it(
    loud_gateway, probe_upstream, secret_provider, make_key, tmp_path, stream
):
    """A 400 is the request's own fault, so its message is passed on; the provider's secret inside it is not."""
    name, secret = secret_provider
    model = import_model(tmp_path / "reflect.toml", [], [(name, "reflect-400")])
    _, raw = make_key(rpm_limit=1000, rpd_limit=1000)
    answer = chat(loud_gateway, raw, model, stream=stream)
    assert probe_upstream.count(prefix=name) == 1
    assert answer.status_code == 400, answer.text
    assert secret not in answer.text, f"the provider's secret reached the client: {answer.text}"
    assert secret not in loud_gateway.log()


def test_the_encryption_key_rotates_without_losing_a_secret(secret_provider, settings):
    """A new key listed first encrypts; the old one, still listed, decrypts; ``rotate_provider_secrets``
    moves every stored secret to the new key, after which the old one can go. Rotated back at the end, so the
    other tests' gateways keep reading their providers."""
    from django.core.management import call_command

    from proxy.catalog.snapshot import provider_secret

    name, secret = secret_provider
    old, new = settings.FIELD_ENCRYPTION_KEY, Fernet.generate_key().decode()
    stored = Provider.objects.get(name=name).api_key_encrypted
    settings.FIELD_ENCRYPTION_KEY = f"{new}, {old}"
    assert provider_secret(encrypted=stored, env_name="") == secret  # the old key still opens it
    call_command("rotate_provider_secrets")
    rotated = Provider.objects.get(name=name).api_key_encrypted
    assert rotated != stored
    settings.FIELD_ENCRYPTION_KEY = new
    assert provider_secret(encrypted=rotated, env_name="") == secret
    settings.FIELD_ENCRYPTION_KEY = old
    assert provider_secret(encrypted=rotated, env_name="") is None  # the old key alone no longer opens it
    settings.FIELD_ENCRYPTION_KEY = f"{old},{new}"
    call_command("rotate_provider_secrets")
    settings.FIELD_ENCRYPTION_KEY = old
    assert provider_secret(encrypted=Provider.objects.get(name=name).api_key_encrypted, env_name="") == secret


def test_rotation_names_a_secret_no_listed_key_opens(secret_provider, settings):
    from django.core.management import CommandError, call_command

    name, _ = secret_provider
    stored = Provider.objects.get(name=name).api_key_encrypted
    stranger = Fernet(Fernet.generate_key()).encrypt(b"lost").decode()
    Provider.objects.filter(name=name).update(api_key_encrypted=stranger)
    try:
        with pytest.raises(CommandError, match=name):
            call_command("rotate_provider_secrets")
        assert Provider.objects.get(name=name).api_key_encrypted == stranger  # left as it was
    finally:  # a later rotation in this database must not trip over it
        Provider.objects.filter(name=name).update(api_key_encrypted=stored)
