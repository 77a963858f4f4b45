"""Writes about users and keys. Views, forms, commands and the admin call these; they hold the rules."""

from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

from billing.services import account_for
from portal import keys
from portal.models import ApiKey, User
from proxy import notify


def user_create(*, email: str, password: str | None = None, is_staff: bool = False) -> User:
    with transaction.atomic():
        if is_staff:
            user = User.objects.create_superuser(email=email, password=password)
        else:
            user = User.objects.create_user(email=email, password=password)
        account_for(user=user)
    return user


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


def key_revoke(*, key: ApiKey) -> ApiKey:
    """Revoke for good. Every gateway refuses the key from its next request on."""
    with transaction.atomic():
        if key.revoked_at is None:
            key.revoked_at = timezone.now()
            ApiKey.objects.filter(pk=key.pk, revoked_at__isnull=True).update(revoked_at=key.revoked_at)
            notify.key_changed(key.pk)
    return key
