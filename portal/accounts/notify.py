"""Tell every gateway process that something it caches has changed. Called by services after a commit.

With Redis the change counters live there (see portal/accounts/limits.py); without it, in this process's limiter.
"""

from django.conf import settings
from django.db import transaction

from portal.accounts.limits import CATALOG_VERSION, LOCAL, key_version_name, sync_redis, user_version_name


def _bump(redis_name: str, local_name: str) -> None:
    if settings.REDIS_URL:
        sync_redis().incr(redis_name)
    else:
        LOCAL.bump(local_name)


def key_changed(key_id: int) -> None:
    transaction.on_commit(lambda: _bump(key_version_name(key_id), f"k{key_id}"))


def user_changed(user_id: int) -> None:
    transaction.on_commit(lambda: _bump(user_version_name(user_id), f"u{user_id}"))


def catalog_changed() -> None:
    transaction.on_commit(lambda: _bump(CATALOG_VERSION, "catalog"))


def versions_sync(key_id: int, user_id: int) -> tuple[int, int]:
    """The change counters of a key and its owner, read synchronously (on the gateway's db pool)."""
    if not settings.REDIS_URL:
        return LOCAL._current(key_id, user_id)
    kv, uv = sync_redis().mget(key_version_name(key_id), user_version_name(user_id))
    return int(kv or 0), int(uv or 0)


def catalog_version_sync() -> int:
    if not settings.REDIS_URL:
        return LOCAL._versions.get("catalog", 0)
    return int(sync_redis().get(CATALOG_VERSION) or 0)
