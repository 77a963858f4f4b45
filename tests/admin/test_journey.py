"""An operator's journey through the admin, checked against a live gateway: a provider and a paid model with a
route, credits for a user, a revoked key, a disabled account. Every step leaves an audit entry."""

from decimal import Decimal

import requests

from billing.models import Account, LedgerEntry
from portal.accounts.models import ApiKey, AuditEntry
from proxy.catalog.models import Model, Provider
from proxy.catalog.snapshot import provider_secret
from tests.admin.conftest import run_action
from tests.conftest import unique

USERS = "/admin/portal/user/"
KEYS = "/admin/portal/apikey/"


def chat(gateway, raw: str, model: str) -> requests.Response:
    return requests.post(
        f"{gateway.base_url}/chat/completions",
        json={"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 16},
        headers={"Authorization": f"Bearer {raw}"},
        timeout=30,
    )


def audit(action: str, target) -> AuditEntry:
    return AuditEntry.objects.filter(action=action, target_id=str(target.pk)).latest("pk")


def provider_form(name: str, base_url: str, **extra) -> dict:
    return {
        "name": name, "kind": "openai", "base_url": base_url, "enabled": "on", "api_key_env": "",
        "connect_timeout": "5", "first_byte_timeout": "10", "idle_timeout": "10", "stream_usage": "on",
        "circuit_threshold": "1000", "circuit_cooldown": "30", **extra,
    }  # fmt: skip


def model_form(name: str, routes: list[dict], **extra) -> dict:
    data = {
        "name": name, "owned_by": "ops", "description": "", "enabled": "on", "input_usd_per_mtok": "1",
        "output_usd_per_mtok": "2", "context_length": "", "max_output_tokens": "",
        "routes-TOTAL_FORMS": str(len(routes)), "routes-INITIAL_FORMS": "0", "routes-MIN_NUM_FORMS": "0",
        "routes-MAX_NUM_FORMS": "1000", **extra,
    }  # fmt: skip
    for i, route in enumerate(routes):
        data.update({f"routes-{i}-{field}": value for field, value in route.items()})
    return data


def test_an_operator_runs_the_service_from_the_admin(gateway, upstream, ops, operator, make_user, make_key):
    # A provider, with its secret entered in the admin: stored encrypted, sent upstream, never shown back.
    name, secret = unique("ops-up"), "upstream-secret-" + unique("s")
    answer = ops.post(
        "/admin/proxy/provider/add/", provider_form(name, upstream.url_for(name), secret=secret)
    )
    assert answer.status_code == 302, answer.content
    provider = Provider.objects.get(name=name)
    assert provider.api_key_encrypted and secret not in provider.api_key_encrypted
    assert provider_secret(encrypted=provider.api_key_encrypted, env_name="") == secret
    page = ops.get(f"/admin/proxy/provider/{provider.pk}/change/").content.decode()
    assert secret not in page and provider.api_key_encrypted not in page and "stored (encrypted)" in page
    assert audit("catalog.provider", provider).after["secret"] == "set"

    # A paid model routed to it.
    model_name = unique("ops-model")
    route = {"provider": provider.pk, "upstream_model": "echo", "priority": "1", "enabled": "on"}
    answer = ops.post("/admin/proxy/model/add/", model_form(model_name, [route]))
    assert answer.status_code == 302, answer.content
    model = Model.objects.get(name=model_name)
    assert model.routes.count() == 1 and not model.is_free
    assert audit("catalog.model", model).after["input_usd_per_mtok"] == "1.000000"

    # A user without credits can't call it; a grant in the admin fixes that.
    user = make_user()
    key, raw = make_key(owner=user)
    assert chat(gateway, raw, model_name).status_code == 402
    answer = run_action(ops, USERS, "grant_credits", [user], amount="5", reason="onboarding call")
    assert answer.status_code == 302
    account = Account.objects.get(user=user)
    assert account.balance == Decimal(5)
    grant = LedgerEntry.objects.get(account=account, kind="grant")
    assert (grant.amount, grant.memo, grant.actor) == (Decimal(5), "onboarding call", operator)
    assert audit("credits.grant", account).actor == operator
    ok = chat(gateway, raw, model_name)
    assert ok.status_code == 200, ok.text
    assert upstream.find(prefix=name)[-1].headers["authorization"] == f"Bearer {secret}"

    # Revoking the key in the admin: the very next call is refused.
    run_action(ops, KEYS, "revoke_keys", [key])
    assert ApiKey.objects.get(pk=key.pk).status == "revoked"
    assert chat(gateway, raw, model_name).status_code == 401
    entry = audit("key.revoke", key)
    assert (entry.actor, entry.before["revoked_at"]) == (operator, None) and entry.after["revoked_at"]

    # Disabling the account: its other keys are refused at once with 403, and enabling it lets them back in.
    _, other = make_key(owner=user)
    assert chat(gateway, other, model_name).status_code == 200
    run_action(ops, USERS, "disable_accounts", [user])
    refused = chat(gateway, other, model_name)
    assert refused.status_code == 403 and refused.json()["error"]["code"] == "account_disabled"
    assert audit("user.disable", user).before == {"is_active": True}
    run_action(ops, USERS, "enable_accounts", [user])
    assert chat(gateway, other, model_name).status_code == 200
    assert audit("user.enable", user).after == {"is_active": True}


def test_the_ledger_admin_refuses_adding_changing_and_deleting_even_for_superusers(ops, make_user):
    from billing.services import account_for, credits_grant

    entry = credits_grant(account=account_for(user=make_user()), amount=Decimal(1), reason="x", actor=None)
    base = "/admin/billing/ledgerentry/"
    assert ops.get(base).status_code == 200
    page = ops.get(f"{base}{entry.pk}/change/")
    assert page.status_code == 200 and b'name="_save"' not in page.content  # a read-only view
    assert ops.post(f"{base}{entry.pk}/change/", {"memo": "rewritten"}).status_code == 403
    assert ops.get(f"{base}{entry.pk}/delete/").status_code == 403
    assert ops.post(f"{base}{entry.pk}/delete/", {"post": "yes"}).status_code == 403
    assert ops.get(f"{base}add/").status_code == 403
    answer = run_action(ops, base, "delete_selected", [entry])
    assert answer.status_code in (200, 302)  # the action doesn't exist for this admin: nothing happens
    entry.refresh_from_db()
    assert entry.memo == "x"
