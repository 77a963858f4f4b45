"""Writes and checks on the catalog made by operators in the admin: provider secrets, connection tests, and the
one call every catalog write ends with, so each gateway process rebuilds its snapshot at once."""

from dataclasses import dataclass
from typing import Any

import requests
from django.db import transaction

from portal.accounts import notify
from portal.accounts.services import audit_changes, audit_value, snapshot
from proxy.catalog import secrets
from proxy.catalog.models import Model, Provider
from proxy.catalog.snapshot import provider_secret

PROVIDER_AUDITED_FIELDS = (
    "name", "kind", "base_url", "api_key_env", "enabled", "connect_timeout", "first_byte_timeout", "idle_timeout",
)  # fmt: skip
MODEL_AUDITED_FIELDS = (
    "name", "input_usd_per_mtok", "output_usd_per_mtok", "cached_input_usd_per_mtok", "cache_write_usd_per_mtok",
    "cache_write_1h_usd_per_mtok", "request_usd", "max_output_tokens", "enabled",
)  # fmt: skip


def catalog_saved() -> None:
    """Every catalog write ends here: after the commit, every gateway process reloads its snapshot."""
    notify.catalog_changed()


def provider_secret_encrypt(*, secret: str) -> str:
    return secrets.encrypt(secret)


def provider_secrets_rotate() -> tuple[int, list[str]]:
    """Re-encrypt every stored provider secret under the first ``FIELD_ENCRYPTION_KEY``. Returns how many were
    re-encrypted and the names of providers whose secret no listed key opens (left as they are)."""
    done, unreadable = 0, []
    with transaction.atomic():
        for provider in Provider.objects.select_for_update().exclude(api_key_encrypted=""):
            try:
                provider.api_key_encrypted = secrets.reencrypt(provider.api_key_encrypted)
            except secrets.InvalidToken:
                unreadable.append(provider.name)
                continue
            provider.save(update_fields=["api_key_encrypted"])
            done += 1
        transaction.on_commit(catalog_saved)
    return done, unreadable


def provider_snapshot(*, provider: Provider) -> dict[str, Any]:
    """What the audit trail records about a provider. The secret appears only as set or not, never its value."""
    return snapshot(obj=provider, fields=PROVIDER_AUDITED_FIELDS) | {
        "secret": "set" if provider.api_key_encrypted else "none"
    }


def provider_save(
    *, provider: Provider, secret: str = "", clear_secret: bool = False, before: dict | None, actor
) -> Provider:
    """Save a provider edited in the admin. A non-empty ``secret`` replaces the stored one (encrypted);
    ``clear_secret`` removes it (the provider then falls back to its environment variable, if any)."""
    if clear_secret:
        provider.api_key_encrypted = ""
    elif secret:
        provider.api_key_encrypted = provider_secret_encrypt(secret=secret)
    with transaction.atomic():
        provider.save()
        after = provider_snapshot(provider=provider)
        if secret and not clear_secret:
            after["secret"] = "replaced" if before and before["secret"] == "set" else "set"
        audit_changes(
            actor=actor, action="catalog.provider", target=provider, before=before or {}, after=after
        )
        catalog_saved()
    return provider


def model_saved(*, model: Model, initial: dict | None, actor) -> None:
    """After an operator saved a model and its routes: record price or state changes, reload the gateways.

    ``initial`` holds the model's field values before the change (None for a new model)."""
    before = {name: audit_value(initial.get(name)) for name in MODEL_AUDITED_FIELDS} if initial else {}
    # The stored values, so a price typed as "0.27" compares equal to the "0.270000" read back.
    model.refresh_from_db(fields=MODEL_AUDITED_FIELDS)
    after = snapshot(obj=model, fields=MODEL_AUDITED_FIELDS)
    audit_changes(actor=actor, action="catalog.model", target=model, before=before, after=after)
    catalog_saved()


@dataclass(frozen=True)
class ConnectionCheck:
    ok: bool
    message: str


def provider_connection_test(*, provider: Provider, timeout: float = 10.0) -> ConnectionCheck:
    """GET the provider's ``/models`` with its secret, the way the gateway would call it: no redirects, no
    proxies from the environment, a bounded wait. The message never contains the secret."""
    if provider.kind == Provider.Kind.DEMO:
        return ConnectionCheck(True, "the demo provider answers in-process; there is nothing to connect to")
    url = provider.base_url.rstrip("/") + "/models"
    secret = provider_secret(encrypted=provider.api_key_encrypted, env_name=provider.api_key_env)
    if provider.kind == Provider.Kind.ANTHROPIC:  # Anthropic's Models API, with its own headers
        headers = {"anthropic-version": "2023-06-01", **({"x-api-key": secret} if secret else {})}
    else:
        headers = {"Authorization": f"Bearer {secret}"} if secret else {}
    with requests.Session() as session:
        session.trust_env = False
        try:
            response = session.get(
                url, headers=headers, timeout=(provider.connect_timeout, timeout), allow_redirects=False
            )
        except requests.Timeout:
            return ConnectionCheck(False, f"{url}: no answer within the timeout")
        except requests.RequestException as exc:
            return ConnectionCheck(False, f"{url}: could not connect ({type(exc).__name__})")
    return _connection_verdict(url, response, has_secret=bool(secret))


def _connection_verdict(url: str, response: requests.Response, *, has_secret: bool) -> ConnectionCheck:
    if response.is_redirect:
        return ConnectionCheck(False, f"{url}: HTTP {response.status_code}, a redirect (not followed)")
    if response.status_code in (401, 403):
        hint = "the secret was refused" if has_secret else "no secret is set"
        return ConnectionCheck(False, f"{url}: HTTP {response.status_code}, {hint}")
    if response.status_code != 200:
        return ConnectionCheck(False, f"{url}: HTTP {response.status_code}")
    try:
        count = len(response.json()["data"])
    except (ValueError, KeyError, TypeError):
        return ConnectionCheck(False, f"{url}: HTTP 200, but not a model list")
    return ConnectionCheck(True, f"{url}: HTTP 200, {count} models listed")
