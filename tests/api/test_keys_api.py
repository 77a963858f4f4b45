"""Managing keys through the API (DRF's test client): list, create, read, change, revoke, with both kinds of
caller, and never another user's keys."""

from decimal import Decimal

import pytest
from django.conf import settings

from portal.accounts import keys
from portal.accounts.models import ApiKey, AuditEntry
from portal.accounts.notify import versions_sync
from tests.api.conftest import error_of, key_client, session_client
from tests.conftest import unique


def test_create_returns_the_raw_key_once_and_never_again(caller, owner):
    answer = caller.post("/api/v1/keys", {"name": "ci", "rpm_limit": 5}, format="json")
    assert answer.status_code == 201, answer.json()
    body = answer.json()
    raw = body["key"]
    assert raw.startswith("sk-") and not raw.startswith("sk-mgmt-") and keys.key_is_well_formed(raw)
    assert (body["name"], body["kind"], body["status"], body["rpm_limit"]) == ("ci", "inference", "active", 5)
    row = ApiKey.objects.get(pk=body["id"])
    assert row.owner == owner and keys.key_matches(raw, row.hash) and body["prefix"] == raw[: len(row.prefix)]
    for later in (caller.get(f"/api/v1/keys/{row.pk}"), caller.get("/api/v1/keys")):
        assert raw not in later.content.decode() and row.hash not in later.content.decode()
        assert "key" not in (later.json() if isinstance(later.json(), dict) else later.json()[0])


def test_list_shows_only_the_callers_keys_newest_first(caller, owner, make_key, make_user):
    first, _ = make_key(owner=owner, name="first")
    second, _ = make_key(owner=owner, name="second")
    theirs, _ = make_key(owner=make_user(), name="theirs")
    listed = caller.get("/api/v1/keys").json()
    ids = [k["id"] for k in listed]
    assert ids.index(second.pk) < ids.index(first.pk) and theirs.pk not in ids
    assert {k["id"] for k in listed} == set(ApiKey.objects.filter(owner=owner).values_list("pk", flat=True))


def test_rename_limit_disable_and_enable_are_audited_and_reach_the_gateways(caller, owner, make_key):
    key, _ = make_key(owner=owner)
    version = versions_sync(key.pk, owner.pk)[0]
    change = {"name": "renamed", "rpm_limit": 3, "rpd_limit": 10, "disabled": True, "spend_limit": "1.50",
              "spend_reset": "daily", "allowed_models": []}  # fmt: skip
    answer = caller.patch(f"/api/v1/keys/{key.pk}", change, format="json")
    assert answer.status_code == 200, answer.json()
    body = answer.json()
    assert (body["name"], body["rpm_limit"], body["status"], body["spend_reset"]) == (
        "renamed",
        3,
        "disabled",
        "daily",
    )
    assert Decimal(body["spend_limit"]) == Decimal("1.5")
    assert versions_sync(key.pk, owner.pk)[0] > version
    audit = AuditEntry.objects.filter(action="key.change", target_id=str(key.pk)).latest("pk")
    assert audit.actor == owner and audit.after["disabled"] is True and audit.before["name"] == "test"
    enabled = caller.patch(f"/api/v1/keys/{key.pk}", {"disabled": False}, format="json").json()
    assert enabled["status"] == "active"
    assert caller.patch(f"/api/v1/keys/{key.pk}", {}, format="json").status_code == 200  # nothing to change


def test_delete_revokes_for_good_and_a_revoked_key_cant_change(caller, owner, make_key):
    key, _ = make_key(owner=owner)
    gone = caller.delete(f"/api/v1/keys/{key.pk}")
    assert gone.status_code == 200 and gone.json()["status"] == "revoked" and gone.json()["revoked_at"]
    assert caller.delete(f"/api/v1/keys/{key.pk}").status_code == 200  # again: still revoked, nothing new
    assert AuditEntry.objects.filter(action="key.revoke", target_id=str(key.pk)).count() == 1
    refused = caller.patch(f"/api/v1/keys/{key.pk}", {"disabled": False}, format="json")
    assert refused.status_code == 409 and error_of(refused)["code"] == "key_revoked"
    assert caller.get(f"/api/v1/keys/{key.pk}").json()["status"] == "revoked"


def test_another_users_keys_are_not_found_for_every_method(caller, make_key, make_user):
    theirs, _ = make_key(owner=make_user())
    for answer in (
        caller.get(f"/api/v1/keys/{theirs.pk}"),
        caller.patch(f"/api/v1/keys/{theirs.pk}", {"name": "mine now"}, format="json"),
        caller.delete(f"/api/v1/keys/{theirs.pk}"),
    ):
        assert answer.status_code == 404 and error_of(answer)["code"] == "not_found"
    theirs.refresh_from_db()
    assert (theirs.name, theirs.revoked_at) == ("test", None)
    missing = caller.get("/api/v1/keys/999999999")
    assert missing.status_code == 404 and missing.json() == {"error": error_of(missing)}


def test_limits_can_be_lowered_but_never_raised_above_the_accounts(caller, owner):
    over = caller.post(
        "/api/v1/keys", {"name": "greedy", "rpm_limit": settings.DEFAULT_RPM + 1}, format="json"
    )
    assert over.status_code == 400
    error = error_of(over)
    assert error["code"] == "invalid_request" and "rpm_limit" in error["fields"]
    assert error["message"].startswith("rpm_limit: at most")
    ok = caller.post("/api/v1/keys", {"name": "modest", "rpd_limit": settings.DEFAULT_RPD}, format="json")
    assert ok.status_code == 201
    owner.rpd_limit = 500  # an operator raised this user's limit
    owner.save()
    key_id = ok.json()["id"]
    assert caller.patch(f"/api/v1/keys/{key_id}", {"rpd_limit": 500}, format="json").status_code == 200
    assert caller.patch(f"/api/v1/keys/{key_id}", {"rpd_limit": 501}, format="json").status_code == 400


@pytest.mark.parametrize(
    "body",
    [
        {"name": 123},
        {"name": ""},
        {"name": "   "},
        {"name": "x" * 65},
        {"name": "ok", "rpm_limit": "5"},
        {"name": "ok", "rpm_limit": 0},
        {"name": "ok", "rpm_limit": True},
        {"name": "ok", "spend_limit": 5},
        {"name": "ok", "spend_limit": "-1"},
        {"name": "ok", "spend_reset": "hourly"},
        {"name": "ok", "kind": "admin"},
        {"name": "ok", "allowed_models": "gpt-4"},
        {"name": "ok", "allowed_models": ["no-such-model-anywhere"]},
        {"name": "ok", "expires_at": "2001-01-01T00:00:00Z"},
        {"name": "ok", "expires_at": "tomorrow"},
        [],
    ],
)
def test_invalid_input_is_a_400_saying_which_field(caller, body):
    answer = caller.post("/api/v1/keys", body, format="json")
    assert answer.status_code == 400, answer.json()
    error = error_of(answer)
    assert error["code"] == "invalid_request" and error["fields"]


def test_disabled_must_be_a_boolean(caller, owner, make_key):
    key, _ = make_key(owner=owner)
    answer = caller.patch(f"/api/v1/keys/{key.pk}", {"disabled": "true"}, format="json")
    assert answer.status_code == 400 and "disabled" in error_of(answer)["fields"]


def test_allowed_models_and_expiry_are_kept(caller, catalog):
    body = {"name": "scoped", "allowed_models": [catalog["echo"]], "expires_at": "2999-01-01T00:00:00Z"}
    created = caller.post("/api/v1/keys", body, format="json").json()
    assert created["allowed_models"] == [catalog["echo"]] and created["expires_at"].startswith("2999-01-01")


def test_only_a_session_creates_management_keys(owner, mgmt_key):
    by_key = key_client(mgmt_key[1]).post("/api/v1/keys", {"name": "m", "kind": "management"}, format="json")
    assert by_key.status_code == 403 and error_of(by_key)["code"] == "session_required"
    by_session = session_client(owner).post(
        "/api/v1/keys", {"name": "m", "kind": "management"}, format="json"
    )
    assert by_session.status_code == 201 and by_session.json()["key"].startswith("sk-mgmt-")


def test_a_session_must_send_the_csrf_token_for_writes(owner):
    from rest_framework.test import APIClient

    client = APIClient(enforce_csrf_checks=True)
    client.force_login(owner)
    answer = client.post("/api/v1/keys", {"name": unique("k")}, format="json")
    assert answer.status_code == 403 and "CSRF" in error_of(answer)["message"]
    assert client.get("/api/v1/keys").status_code == 200
