"""Tell every gateway process that something it caches has changed. Called by services after a commit.

With Redis the change counters live there (see proxy/limits.py); without it, in this process's limiter.
"""

from functools import cache

from django.conf import settings
from django.db import transaction

from proxy.limits import CATALOG_VERSION, LOCAL


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)


def _bump(redis_name: str, local_name: str) -> None:
    if settings.REDIS_URL:
        _redis().incr(redis_name)
    else:
        LOCAL.bump(local_name)


def key_changed(key_id: int) -> None:
    transaction.on_commit(lambda: _bump(f"isp:{{k{key_id}}}:ver", f"k{key_id}"))


def user_changed(user_id: int) -> None:
    transaction.on_commit(lambda: _bump(f"isp:u{user_id}:ver", f"u{user_id}"))


def catalog_changed() -> None:
    transaction.on_commit(lambda: _bump(CATALOG_VERSION, "catalog"))


def versions_sync(key_id: int, user_id: int) -> tuple[int, int]:
    """The change counters of a key and its owner, read synchronously (on the gateway's db pool)."""
    if not settings.REDIS_URL:
        return LOCAL._current(key_id, user_id)
    kv, uv = _redis().mget(f"isp:{{k{key_id}}}:ver", f"isp:u{user_id}:ver")
    return int(kv or 0), int(uv or 0)


def catalog_version_sync() -> int:
    if not settings.REDIS_URL:
        return LOCAL._versions.get("catalog", 0)
    return int(_redis().get(CATALOG_VERSION) or 0)
