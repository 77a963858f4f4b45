"""The management API over HTTP on a live gateway process: both kinds of caller on every endpoint, isolation
between users, and the API and the /v1 gateway agreeing about keys, limits and requests."""

import time

import pytest
import requests

from billing.models import UsageRecord
from proxy.catalog.models import Model
from tests.api.conftest import error_of, http_key, http_session


def chat(gateway, raw: str, model: str) -> requests.Response:
    return requests.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}]},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )


@pytest.fixture(params=["session", "management_key"])
def http_caller(request, owner, mgmt_key) -> requests.Session:
    return http_session(owner) if request.param == "session" else http_key(mgmt_key[1])


def test_every_endpoint_answers_both_kinds_of_caller(gateway, catalog, http_caller, owner, make_key):
    api = f"{gateway.url}/api/v1"
    key, _ = make_key(owner=owner)
    model = Model.objects.get(name=catalog["echo"])
    record = UsageRecord.objects.create(user=owner, key=key, model=model, status=200)
    created = http_caller.post(f"{api}/keys", json={"name": "over http"})
    assert created.status_code == 201, created.text
    new_id = created.json()["id"]
    assert new_id in [k["id"] for k in http_caller.get(f"{api}/keys").json()]
    assert http_caller.get(f"{api}/keys/{new_id}").json()["name"] == "over http"
    assert http_caller.patch(f"{api}/keys/{new_id}", json={"name": "renamed"}).json()["name"] == "renamed"
    assert http_caller.delete(f"{api}/keys/{new_id}").json()["status"] == "revoked"
    assert http_caller.get(f"{api}/credits").json()["currency"] == "USD"
    assert http_caller.get(f"{api}/usage", params={"group_by": "model"}).json()["group_by"] == "model"
    assert http_caller.get(f"{api}/generation", params={"id": str(record.request_id)}).json()["status"] == 200
    describe = http_caller.get(f"{api}/key")
    if "Authorization" in http_caller.headers:
        assert describe.status_code == 200 and describe.json()["kind"] == "management"
    else:
        assert describe.status_code == 403 and error_of(describe)["code"] == "key_required"


def test_no_user_reaches_another_users_objects_over_http(gateway, catalog, http_caller, make_key, make_user):
    api = f"{gateway.url}/api/v1"
    theirs, their_raw = make_key(owner=make_user())
    model = Model.objects.get(name=catalog["echo"])
    record = UsageRecord.objects.create(user=theirs.owner, key=theirs, model=model, status=200)
    for answer in (
        http_caller.get(f"{api}/keys/{theirs.pk}"),
        http_caller.patch(f"{api}/keys/{theirs.pk}", json={"disabled": True}),
        http_caller.delete(f"{api}/keys/{theirs.pk}"),
        http_caller.get(f"{api}/generation", params={"id": str(record.request_id)}),
        http_caller.get(f"{api}/usage", params={"key": theirs.pk}),
    ):
        assert answer.status_code == 404, answer.text
        assert error_of(answer)["code"] == "not_found"
    assert theirs.pk not in [k["id"] for k in http_caller.get(f"{api}/keys").json()]
    assert chat(gateway, their_raw, catalog["echo"]).status_code == 200  # untouched


def test_a_session_write_without_the_csrf_token_is_refused(gateway, owner):
    session = http_session(owner)
    del session.headers["X-CSRFToken"]
    answer = session.post(f"{gateway.url}/api/v1/keys", json={"name": "forged"})
    assert answer.status_code == 403 and "CSRF" in error_of(answer)["message"]


def test_a_management_key_is_refused_by_the_inference_api(gateway, catalog, mgmt_key):
    answer = chat(gateway, mgmt_key[1], catalog["echo"])
    assert answer.status_code == 403 and answer.json()["error"]["code"] == "management_key"


def test_an_inference_key_is_refused_by_the_management_api(gateway, owner, make_key):
    _, raw = make_key(owner=owner)
    for path in ("/api/v1/keys", "/api/v1/credits", "/api/v1/usage"):
        answer = http_key(raw).get(f"{gateway.url}{path}")
        assert answer.status_code == 403 and error_of(answer)["code"] == "inference_key"
    assert http_key(raw).post(f"{gateway.url}/api/v1/keys", json={"name": "x"}).status_code == 403


def test_the_key_description_agrees_with_the_gateways_rate_limit_headers(gateway, catalog, owner, make_key):
    _, raw = make_key(owner=owner, rpm_limit=9, rpd_limit=30)
    for _ in range(3):
        last = chat(gateway, raw, catalog["echo"])
        assert last.status_code == 200
    body = http_key(raw).get(f"{gateway.url}/api/v1/key").json()
    assert body["limits"] == {"rpm": 9, "rpd": 30}
    assert body["remaining"] == {
        "rpm": int(last.headers["x-ratelimit-remaining-rpm"]),
        "rpd": int(last.headers["x-ratelimit-remaining-rpd"]),
    } == {"rpm": 6, "rpd": 27}  # fmt: skip


def test_a_request_made_on_the_gateway_can_be_looked_up_by_its_id(
    gateway, catalog, owner, make_key, mgmt_key
):
    _, raw = make_key(owner=owner)
    answer = chat(gateway, raw, catalog["echo"])
    request_id = answer.headers["x-request-id"]
    api = http_key(mgmt_key[1])
    deadline = time.monotonic() + 10  # settlement is batched: the record lands a few milliseconds later
    found = api.get(f"{gateway.url}/api/v1/generation", params={"id": request_id})
    while found.status_code == 404 and time.monotonic() < deadline:
        time.sleep(0.05)
        found = api.get(f"{gateway.url}/api/v1/generation", params={"id": request_id})
    body = found.json()
    assert found.status_code == 200, body
    assert (body["model"], body["status"], body["streamed"]) == (catalog["echo"], 200, False)
    assert body["prompt_tokens"] > 0 and body["completion_tokens"] > 0 and body["finish_reason"] == "stop"


def test_revoking_or_disabling_through_the_api_takes_effect_on_the_very_next_gateway_call(
    gateway, catalog, owner, make_key, mgmt_key
):
    api = http_key(mgmt_key[1])
    first, first_raw = make_key(owner=owner)
    second, second_raw = make_key(owner=owner)
    for raw in (first_raw, second_raw):
        assert chat(gateway, raw, catalog["echo"]).status_code == 200  # now cached in the gateway
    assert api.delete(f"{gateway.url}/api/v1/keys/{first.pk}").status_code == 200
    assert chat(gateway, first_raw, catalog["echo"]).status_code == 401
    assert api.patch(f"{gateway.url}/api/v1/keys/{second.pk}", json={"disabled": True}).status_code == 200
    assert chat(gateway, second_raw, catalog["echo"]).status_code == 401
    assert api.patch(f"{gateway.url}/api/v1/keys/{second.pk}", json={"disabled": False}).status_code == 200
    assert chat(gateway, second_raw, catalog["echo"]).status_code == 200


def test_unknown_api_urls_answer_json_over_http(gateway):
    answer = requests.get(f"{gateway.url}/api/v2/keys", timeout=10)
    assert answer.status_code == 404 and answer.headers["content-type"].startswith("application/json")
    assert error_of(answer)["code"] == "not_found"
