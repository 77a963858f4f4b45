"""Who may call the management API, and the one error shape every refusal has."""

from datetime import timedelta

import pytest
from django.test import override_settings
from django.utils import timezone
from rest_framework.test import APIClient

from portal.accounts.services import key_revoke, key_update, user_set_active
from tests.api.conftest import error_of, key_client, session_client

ENDPOINTS = ["/api/v1/keys", "/api/v1/credits", "/api/v1/usage", "/api/v1/key"]


@pytest.mark.parametrize("path", ENDPOINTS)
def test_no_credentials_is_a_401_that_names_the_scheme(live_db, path):
    answer = APIClient().get(path)
    assert answer.status_code == 401
    assert answer["WWW-Authenticate"] == 'Bearer realm="api"'
    assert error_of(answer)["code"] == "not_authenticated"


@pytest.mark.parametrize(
    "header", ["Bearer", "Bearer not-a-key", "Bearer sk-" + "x" * 43, "Bearer sk-mgmt-" + "y" * 43]
)
def test_a_malformed_or_unknown_key_is_a_401(live_db, header):
    client = APIClient()
    client.credentials(HTTP_AUTHORIZATION=header)
    answer = client.get("/api/v1/keys")
    assert answer.status_code == 401 and error_of(answer)["code"] == "invalid_api_key"


def test_revoked_disabled_and_expired_management_keys_are_refused(owner, make_key):
    revoked, raw_revoked = make_key(owner=owner, management=True)
    key_revoke(key=revoked)
    disabled, raw_disabled = make_key(owner=owner, management=True)
    key_update(key=disabled, actor=None, disabled=True)
    _, raw_expired = make_key(owner=owner, management=True, expires_at=timezone.now() - timedelta(seconds=1))
    for raw, word in ((raw_revoked, "revoked"), (raw_disabled, "disabled"), (raw_expired, "expired")):
        answer = key_client(raw).get("/api/v1/keys")
        assert answer.status_code == 401, word
        assert error_of(answer) == {"message": f"This API key is {word}.", "code": "invalid_api_key"}


def test_a_disabled_accounts_management_key_gets_403_and_its_session_ends(owner, mgmt_key):
    client = session_client(owner)
    user_set_active(user=owner, active=False, actor=None)
    answer = key_client(mgmt_key[1]).get("/api/v1/keys")
    assert answer.status_code == 403 and error_of(answer)["code"] == "account_disabled"
    assert client.get("/api/v1/keys").status_code == 401


@pytest.mark.parametrize(
    ("method", "path"),
    [("get", "/api/v1/keys"), ("post", "/api/v1/keys"), ("get", "/api/v1/keys/1"), ("patch", "/api/v1/keys/1"),
     ("delete", "/api/v1/keys/1"), ("get", "/api/v1/credits"), ("get", "/api/v1/usage"),
     ("get", "/api/v1/generation?id=00000000-0000-4000-8000-000000000000")],
)  # fmt: skip
def test_an_inference_key_is_refused_everywhere_but_its_own_description(owner, make_key, method, path):
    _, raw = make_key(owner=owner)
    answer = getattr(key_client(raw), method)(path, {}, format="json")
    assert answer.status_code == 403 and error_of(answer)["code"] == "inference_key"


def test_an_inference_key_may_read_its_own_description(owner, make_key):
    key, raw = make_key(owner=owner)
    answer = key_client(raw).get("/api/v1/key")
    assert answer.status_code == 200 and answer.json()["id"] == key.pk


def test_a_session_has_no_key_to_describe(owner):
    answer = session_client(owner).get("/api/v1/key")
    assert answer.status_code == 403 and error_of(answer)["code"] == "key_required"


def test_another_authorization_scheme_falls_through_to_the_session(owner):
    client = session_client(owner)
    client.credentials(HTTP_AUTHORIZATION="Basic dXNlcjpwYXNz")
    assert client.get("/api/v1/keys").status_code == 200


def test_unknown_urls_wrong_methods_and_bad_bodies_answer_in_the_same_shape(caller):
    unknown = caller.get("/api/v1/nothing-here")
    assert unknown.status_code == 404 and error_of(unknown)["code"] == "not_found"
    assert caller.get("/api/v1/keys/abc").status_code == 404
    wrong = caller.put("/api/v1/keys", {}, format="json")
    assert wrong.status_code == 405 and error_of(wrong)["code"] == "method_not_allowed"
    form = caller.post("/api/v1/keys", {"name": "x"})  # form-encoded, not JSON
    assert form.status_code == 415 and error_of(form)["code"] == "unsupported_media_type"
    broken = caller.generic("POST", "/api/v1/keys", "{not json", content_type="application/json")
    assert broken.status_code == 400 and error_of(broken)["code"] == "parse_error"


def test_too_many_calls_are_a_429_with_retry_after(owner):
    client = session_client(owner)
    rest = {"DEFAULT_THROTTLE_RATES": {"management": "3/day"}}  # a day: no window boundary mid-test
    from django.conf import settings

    with override_settings(REST_FRAMEWORK={**settings.REST_FRAMEWORK, **rest}):
        answers = [client.get("/api/v1/credits") for _ in range(5)]
    assert [a.status_code for a in answers] == [200, 200, 200, 429, 429]
    assert error_of(answers[-1])["code"] == "throttled"
    assert 1 <= int(answers[-1]["Retry-After"]) <= 86400


def test_the_management_key_records_when_it_was_last_used(mgmt_key):
    key, raw = mgmt_key
    assert key.last_used_at is None
    key_client(raw).get("/api/v1/keys")
    key.refresh_from_db()
    assert key.last_used_at is not None
