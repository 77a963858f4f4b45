"""Admission: a slot in the key's limits, taken (or only read) in one Redis round trip.

The same round trip compares the key's change counters with the ones its cached entry was loaded under: a
stale entry is reloaded and the check asked again, so a key changed in another process is seen here on its
very next request. It also returns the catalog's change counter, so a catalog edit is picked up at once.
Every answer carries the limit headers; a refusal is a 429 with ``Retry-After``.
"""

from portal.accounts.limits import STALE, LimiterUnavailable, Quota
from proxy.gateway import errors
from proxy.gateway.auth import KeyInfo
from proxy.gateway.http import Incoming
from proxy.gateway.runtime import Runtime


async def admit(rt: Runtime, req: Incoming, key_hash: str, key: KeyInfo) -> tuple[KeyInfo, Quota]:
    """Take a slot in the key's limits, or refuse with 429."""
    key, quota = await _check(rt, key_hash, key, count=True, token=req.request_id.hex)
    req.headers_out += quota.headers()
    if quota.retry_after:
        message = limit_message(quota.verdict, key)
        raise errors.rate_limited(message, retry_after=quota.retry_after, retry=quota.verdict == 1)
    return key, quota


async def peek(rt: Runtime, req: Incoming, key_hash: str, key: KeyInfo) -> KeyInfo:
    """Read the key's limits for the headers, counting nothing (the model listing and ``/v1/key``)."""
    key, quota = await _check(rt, key_hash, key, count=False)
    req.headers_out += quota.headers()
    return key


async def refund(rt: Runtime, key: KeyInfo, quota: Quota) -> None:
    """Give the slot back: the request was refused after admission, so it never counted."""
    await rt.limiter.refund(key_id=key.id, user_id=key.user_id, quota=quota)


async def _check(
    rt: Runtime, key_hash: str, key: KeyInfo, *, count: bool, token: str = ""
) -> tuple[KeyInfo, Quota]:
    for _ in range(3):
        try:
            quota = await rt.limiter.check(
                key_id=key.id, user_id=key.user_id, versions=key.versions, rpm=key.rpm, rpd=key.rpd,
                count=count, token=token,
            )  # fmt: skip
        except LimiterUnavailable:
            rt.keys.maybe_stale = True
            raise errors.service_unavailable(
                "The rate limiter is unavailable; nothing was charged. Please retry shortly.", retry_after=2
            ) from None
        if rt.keys.maybe_stale:
            rt.keys.maybe_stale = False
            rt.keys.cache.clear()
        if quota.catalog_version != rt.catalog.snapshot.version:
            await rt.catalog.reload(quota.catalog_version)
        if quota.verdict != STALE:
            return key, quota
        key = await rt.keys.reload(key_hash)
    raise errors.service_unavailable("The key is being changed; please retry.")


def limit_message(verdict: int, key: KeyInfo) -> str:
    if verdict == 1:
        return f"Rate limit reached: {key.rpm} requests per minute for this key. Retry after the Retry-After delay."
    return f"Daily limit reached: {key.rpd} requests per day for this key. It resets at 00:00 UTC."
