"""How much of a key's RPM and RPD windows is used right now, read without counting anything.

This is a synchronous reader of the very Redis keys the gateway's limiter script writes (proxy/limits.py:
``_names`` builds them, so the two can't drift apart): the RPM window is a sorted set of admission times (the
members of the last 60 s count), the RPD window a counter per UTC day. Without Redis the gateway's in-process
limiter (``proxy.limits.LOCAL``) is asked instead; it only knows this process's requests, as documented there.
"""

import logging
from functools import cache

from asgiref.sync import async_to_sync
from django.conf import settings

from proxy import limits, notify

log = logging.getLogger("portal.api")


@cache
def _redis():
    import redis

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)


def key_window_usage(*, key_id: int, user_id: int) -> tuple[int, int] | None:
    """(requests in the last 60 seconds, requests today UTC) for a key, or None if the limiter is unreachable."""
    now = limits.now_ms()
    if not settings.REDIS_URL:
        return _local_usage(key_id=key_id, user_id=user_id, now=now)
    rpm_name, rpd_name = limits._names(key_id, user_id, limits.day_stamp(now))[:2]
    try:
        pipe = _redis().pipeline(transaction=False)
        pipe.zcount(rpm_name, f"({now - limits.WINDOW_MS}", "+inf")  # the script drops scores <= now - 60 s
        pipe.get(rpd_name)
        minute, day = pipe.execute()
    except Exception:  # redis-py raises several families (connection, timeout, response)
        log.warning("can't read the rate limit counters", exc_info=True)
        return None
    return int(minute), int(day or 0)


def _local_usage(*, key_id: int, user_id: int, now: int) -> tuple[int, int] | None:
    versions = notify.versions_sync(key_id, user_id)
    quota = async_to_sync(limits.LOCAL.check)(
        key_id=key_id, user_id=user_id, versions=versions, rpm=1, rpd=1, count=False, token="", at=now
    )
    if quota.verdict == limits.STALE:  # a change landed between the two reads; the next call will see it
        return None
    return quota.used_rpm, quota.used_rpd
