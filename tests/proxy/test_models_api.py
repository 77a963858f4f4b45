"""/v1/models through the official openai SDK against a live gateway process."""

from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from portal.accounts.services import key_revoke
from tests.spec import validator_for


def client(gateway, raw: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=gateway.base_url, api_key=raw, max_retries=0)


def test_list_and_retrieve_models_with_the_sdk(gateway, catalog, make_key):
    _, raw = make_key()
    api = client(gateway, raw)
    listed = api.models.list()
    ids = {m.id for m in listed.data}
    assert set(catalog.values()) <= ids
    echo = api.models.retrieve(catalog["echo"])
    assert (echo.id, echo.object, echo.owned_by) == (catalog["echo"], "model", "test")
    assert isinstance(echo.created, int) and echo.created > 1_600_000_000


def test_the_list_matches_openais_schema_and_carries_limit_headers(gateway, catalog, make_key):
    _, raw = make_key(rpm_limit=7)
    response = client(gateway, raw).models.with_raw_response.list()
    validator_for("ListModelsResponse").validate(response.http_response.json())
    headers = response.headers
    assert headers["x-ratelimit-limit-rpm"] == "7"
    assert headers["x-ratelimit-remaining-rpm"] == "7"  # listing models does not count
    assert headers["x-ratelimit-limit-rpd"] == "50"
    assert "x-request-id" in headers and headers["server-timing"].startswith("gateway;dur=")


def test_an_allow_list_narrows_the_listing(gateway, catalog, make_key):
    _, raw = make_key(allowed_models=[catalog["echo"]])
    api = client(gateway, raw)
    assert [m.id for m in api.models.list().data] == [catalog["echo"]]
    with pytest.raises(openai.PermissionDeniedError):
        api.models.retrieve(catalog["hang"])


def test_an_unknown_model_is_404_in_openai_shape(gateway, catalog, make_key):
    _, raw = make_key()
    with pytest.raises(openai.NotFoundError) as info:
        client(gateway, raw).models.retrieve("no-such-model")
    assert info.value.body == {
        "message": "The model 'no-such-model' does not exist.",
        "type": "invalid_request_error",
        "param": "model",
        "code": "model_not_found",
    }


@pytest.mark.parametrize(
    "raw",
    ["", "sk-short", "not-a-key", "sk-" + "A" * 43, "sk-mgmt-" + "B" * 43],
    ids=["empty", "short", "shape", "unknown", "unknown-mgmt"],
)
def test_missing_malformed_or_unknown_keys_get_401(gateway, raw):
    with pytest.raises(openai.AuthenticationError) as info:
        client(gateway, raw or "x").models.list()
    assert info.value.status_code == 401
    assert info.value.body["code"] == "invalid_api_key"
    assert info.value.body["type"] == "invalid_request_error"


def test_a_revoked_key_is_refused_on_the_next_request_even_when_cached(gateway, make_key):
    key, raw = make_key()
    api = client(gateway, raw)
    api.models.list()  # warms the gateway's cache
    api.models.list()
    key_revoke(key=key)
    with pytest.raises(openai.AuthenticationError, match="revoked"):
        api.models.list()


def test_an_expired_key_is_refused(gateway, make_key):
    _, raw = make_key(expires_at=timezone.now() - timedelta(seconds=1))
    with pytest.raises(openai.AuthenticationError, match="expired"):
        client(gateway, raw).models.list()


def test_a_management_key_cannot_call_inference(gateway, make_key):
    _, raw = make_key(management=True)
    with pytest.raises(openai.PermissionDeniedError):
        client(gateway, raw).models.list()


def test_unknown_paths_and_methods_answer_in_openai_shape(gateway, make_key):
    import urllib.error
    import urllib.request

    for method, path, status in [("GET", "/v1/nothing", 404), ("DELETE", "/v1/models", 405)]:
        request = urllib.request.Request(gateway.url + path, method=method)
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request)
        assert info.value.code == status
        assert set(__import__("json").loads(info.value.read())["error"]) == {
            "message",
            "type",
            "param",
            "code",
        }
