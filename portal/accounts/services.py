"""Writes about users and keys. Views, forms, commands and the admin call these; they hold the rules."""

from collections.abc import Iterable
from datetime import date, datetime
from decimal import Decimal
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from portal.accounts import keys, notify
from portal.accounts.models import ApiKey, AuditEntry, User


def user_create(*, email: str, password: str | None = None, is_staff: bool = False) -> User:
    """A new user, without a credit account: billing.services.customer_create makes both."""
    if is_staff:
        return User.objects.create_superuser(email=email, password=password)
    return User.objects.create_user(email=email, password=password)


def key_create(
    *, owner: User, name: str, management: bool = False, expires_at: datetime | None = None,
    allowed_models: list[str] | None = None, rpm_limit: int | None = None, rpd_limit: int | None = None,
    spend_limit: Decimal | None = None, spend_reset: str = ApiKey.SpendReset.NEVER,
) -> tuple[ApiKey, str]:  # fmt: skip
    """Mint a key. Returns the row and the raw key, which is never stored and must be shown to the user once."""
    raw = keys.key_generate(management=management)
    key = ApiKey.objects.create(
        owner=owner,
        kind=ApiKey.Kind.MANAGEMENT if management else ApiKey.Kind.INFERENCE,
        name=name,
        prefix=keys.key_display_prefix(raw),
        hash=keys.key_hash(raw),
        expires_at=expires_at,
        allowed_models=sorted(set(allowed_models or [])),
        rpm_limit=rpm_limit,
        rpd_limit=rpd_limit,
        spend_limit=spend_limit,
        spend_reset=spend_reset,
    )
    return key, raw


def key_rehash(*, raw: str) -> bool:
    """While ``KEY_HASH_SECRET`` is being rotated: store a key found under the previous secret under the
    current one. Returns whether there was such a key (the caller then looks it up again)."""
    previous = keys.key_hash_previous(raw)
    if previous is None:
        return False
    current = keys.key_hash(raw)
    # Concurrent first uses race to move it: the ones that lose find it moved already.
    return (
        ApiKey.objects.filter(hash=previous).update(hash=current) > 0
        or ApiKey.objects.filter(hash=current).exists()
    )


def key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke for good. Every gateway refuses the key from its next request on."""
    with transaction.atomic():
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
            notify.key_changed(key.pk)
    return key


# --- Audited changes: the admin and the management API call these -------------------------------------------
# Every change to money or access writes an AuditEntry (who, what, when, before and after) in the same transaction
# as the change, and tells the gateways after the commit (portal/accounts/notify.py).

USER_AUDITED_FIELDS = ("email", "is_active", "is_staff", "is_superuser", "rpm_limit", "rpd_limit")


class Unset:
    """The type of UNSET: 'leave this field alone', as opposed to None, which clears a field."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET = Unset()


class KeyRevoked(ValueError):
    """A revoked key is final: it can't be changed any more."""


def audit_value(value: Any) -> Any:
    """A field's value as JSON, for an audit entry."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, date):  # datetimes too
        return value.isoformat()
    if isinstance(value, models.Model):
        return value.pk
    return value


def snapshot(*, obj: models.Model, fields: Iterable[str]) -> dict[str, Any]:
    """The named fields of a row as JSON values, for an audit entry's before and after."""
    return {name: audit_value(getattr(obj, name)) for name in fields}


def audit_record(
    *, actor: User | None, action: str, target: models.Model | tuple[str, str], before: dict[str, Any],
    after: dict[str, Any],
) -> AuditEntry:  # fmt: skip
    """``target`` is a row, or (type, id) for something that isn't one row, such as a batch of codes."""
    target_type, target_id = (
        (target._meta.label_lower, str(target.pk)) if isinstance(target, models.Model) else target
    )
    return AuditEntry.objects.create(
        actor=actor, action=action, target_type=target_type, target_id=target_id, before=before, after=after
    )


def audit_changes(
    *, actor: User | None, action: str, target: models.Model, before: dict[str, Any], after: dict[str, Any]
) -> AuditEntry | None:
    """Record only what differs between ``before`` and ``after``; nothing when nothing changed."""
    changed = [name for name in after if before.get(name) != after[name]]
    if not changed:
        return None
    return audit_record(
        actor=actor, action=action, target=target, before={n: before.get(n) for n in changed},
        after={n: after[n] for n in changed},
    )  # fmt: skip


def user_set_active(*, user: User, active: bool, actor: User | None) -> User:
    """Enable or disable an account. A disabled account's keys get 403 on their next request."""
    if not active and actor is not None and actor.pk == user.pk:
        raise ValueError("you can't disable your own account")  # it would lock the operator out mid-action
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        if user.is_active != active:
            User.objects.filter(pk=user.pk).update(is_active=active)
            audit_record(
                actor=actor, action="user.enable" if active else "user.disable", target=user,
                before={"is_active": user.is_active}, after={"is_active": active},
            )  # fmt: skip
            user.is_active = active
            notify.user_changed(user.pk)
    return user


def user_set_limits(*, user: User, rpm_limit: int | None, rpd_limit: int | None, actor: User | None) -> User:
    """Per-user RPM/RPD overrides (None: the site default). Keys with their own limits keep them."""
    for value in (rpm_limit, rpd_limit):
        if value is not None and value < 1:
            raise ValueError("a limit must be at least 1, or empty for the default")
    with transaction.atomic():
        user = User.objects.select_for_update().get(pk=user.pk)
        before = snapshot(obj=user, fields=("rpm_limit", "rpd_limit"))
        user.rpm_limit, user.rpd_limit = rpm_limit, rpd_limit
        user.save(update_fields=["rpm_limit", "rpd_limit"])
        if audit_changes(
            actor=actor, action="user.limits", target=user, before=before,
            after=snapshot(obj=user, fields=("rpm_limit", "rpd_limit")),
        ):  # fmt: skip
            notify.user_changed(user.pk)
    return user


def user_edit_record(*, user: User, before: dict[str, Any], actor: User | None) -> AuditEntry | None:
    """After an operator saved a user's form: audit what changed about access and tell the gateways.

    ``before`` is ``snapshot(obj=..., fields=USER_AUDITED_FIELDS)`` of the row as it was before the save.
    Call inside the transaction that saved the row.
    """
    entry = audit_changes(
        actor=actor, action="user.change", target=user, before=before,
        after=snapshot(obj=user, fields=USER_AUDITED_FIELDS),
    )  # fmt: skip
    if entry is not None:
        notify.user_changed(user.pk)
    return entry


def key_update(
    *, key: ApiKey, actor: User | None, name: str | Unset = UNSET, disabled: bool | Unset = UNSET,
    expires_at: datetime | Unset | None = UNSET, allowed_models: list[str] | Unset = UNSET,
    rpm_limit: int | Unset | None = UNSET, rpd_limit: int | Unset | None = UNSET,
    spend_limit: Decimal | Unset | None = UNSET, spend_reset: str | Unset = UNSET,
) -> ApiKey:  # fmt: skip
    """Change a key's name, state or limits; fields left UNSET stay as they are. Raises KeyRevoked."""
    changes = {
        "name": name, "disabled": disabled, "expires_at": expires_at, "allowed_models": allowed_models,
        "rpm_limit": rpm_limit, "rpd_limit": rpd_limit, "spend_limit": spend_limit, "spend_reset": spend_reset,
    }  # fmt: skip
    changes = {field: value for field, value in changes.items() if value is not UNSET}
    if "allowed_models" in changes:
        changes["allowed_models"] = sorted(set(allowed_models if isinstance(allowed_models, list) else []))
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is not None:
            raise KeyRevoked("this key is revoked; a revoked key can't be changed")
        before = snapshot(obj=key, fields=changes)
        for field, value in changes.items():
            setattr(key, field, value)
        key.save(update_fields=list(changes))
        key.refresh_from_db(fields=list(changes))  # the stored values (decimal places) for the audit entry
        after = snapshot(obj=key, fields=changes)
        if audit_changes(actor=actor, action="key.change", target=key, before=before, after=after):
            notify.key_changed(key.pk)
    return key


def key_revoke_audited(*, key: ApiKey, actor: User | None) -> ApiKey:
    """``key_revoke`` with an audit entry naming who did it. Revoking twice changes (and records) nothing."""
    with transaction.atomic():
        key = ApiKey.objects.select_for_update().get(pk=key.pk)
        if key.revoked_at is None:
            key_revoke(key=key)
            audit_record(
                actor=actor, action="key.revoke", target=key, before={"revoked_at": None},
                after={"revoked_at": audit_value(key.revoked_at)},
            )  # fmt: skip
    return key
