"""Authentication: the bearer key, looked up by its hash through an in-process cache.

A cached entry carries the change counters it was loaded under; the limiter's script compares them on every
request (see portal/accounts/limits.py), so a revoked key or a disabled account is refused at once in every
process (admission reloads a stale entry before it admits the request).
"""

import asyncio
import logging
import time
from dataclasses import dataclass
from decimal import Decimal

from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from billing.models import Account
from portal.accounts import keys
from portal.accounts.limits import effective_limits
from portal.accounts.models import ApiKey
from portal.accounts.notify import versions_sync
from portal.accounts.services import key_rehash
from proxy.gateway import errors
from proxy.gateway.db import run_db

log = logging.getLogger("proxy")


@dataclass(frozen=True, slots=True)
class KeyInfo:
    id: int
    user_id: int
    account_id: int
    prefix: str
    management: bool
    revoked: bool
    disabled: bool
    user_active: bool
    expires_at: float | None
    allowed_models: frozenset[str] | None
    rpm: int
    rpd: int
    free_tier: bool
    spend_limit: Decimal | None
    spend_used: Decimal
    spend_period: int  # epoch seconds of the current spend period's start: names its counter in the limiter
    versions: tuple[int, int]

    def refusal(self, now: float) -> errors.ApiError | None:
        """Why this key may not call inference right now, or None."""
        if self.revoked:
            return errors.invalid_api_key("This API key has been revoked.")
        if self.disabled:
            return errors.invalid_api_key("This API key is disabled.")
        if self.expires_at is not None and self.expires_at <= now:
            return errors.invalid_api_key("This API key has expired.")
        if not self.user_active:
            return errors.permission_denied("This account is disabled.", code="account_disabled")
        if self.management:
            return errors.permission_denied(
                "Management keys cannot call the inference API.", code="management_key"
            )
        return None


def load_key(key_hash: str, versions_of) -> KeyInfo | None:
    """Read one key from the database (sync; runs on the db pool). ``versions_of`` reads the change counters
    *before* the row, so a change committed after this read always shows up as a stale counter."""
    row = ApiKey.objects.filter(hash=key_hash).values_list("id", "owner_id").first()
    if row is None:
        return None
    versions = versions_of(row[0], row[1])
    key = ApiKey.objects.select_related("owner", "owner__account").get(id=row[0])
    user = key.owner
    account = Account.objects.get_or_create(user=user)[0]
    purchased = account.total_purchased
    rpm, rpd, free_tier = effective_limits(
        key_rpm=key.rpm_limit, key_rpd=key.rpd_limit, user_rpm=user.rpm_limit, user_rpd=user.rpd_limit,
        purchased=purchased,
    )  # fmt: skip
    return KeyInfo(
        id=key.id,
        user_id=user.id,
        account_id=account.id,
        prefix=key.prefix,
        management=key.kind == ApiKey.Kind.MANAGEMENT,
        revoked=key.revoked_at is not None,
        disabled=key.disabled,
        user_active=user.is_active,
        expires_at=key.expires_at.timestamp() if key.expires_at else None,
        allowed_models=frozenset(key.allowed_models) if key.allowed_models else None,
        rpm=rpm,
        rpd=rpd,
        free_tier=free_tier,
        spend_limit=key.spend_limit,
        spend_used=key.spend_used,
        spend_period=int(key.spend_period_start.timestamp()),
        versions=versions,
    )


class KeyCache:
    """hash -> KeyInfo for a few seconds; bounded, oldest entries go first."""

    def __init__(self, ttl: float, size: int = 100_000) -> None:
        self.ttl, self.size = ttl, size
        self._items: dict[str, tuple[KeyInfo, float]] = {}

    def get(self, key_hash: str) -> KeyInfo | None:
        item = self._items.get(key_hash)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def put(self, key_hash: str, info: KeyInfo) -> None:
        if len(self._items) >= self.size:
            del self._items[next(iter(self._items))]
        self._items[key_hash] = (info, time.monotonic() + self.ttl)

    def forget(self, key_hash: str) -> None:
        self._items.pop(key_hash, None)

    def clear(self) -> None:
        self._items.clear()


def key_hash_from_header(authorization: str | None) -> str:
    """The hash of a well-formed bearer key, or a 401 that says what is missing."""
    token = keys.bearer_token(authorization)
    if token is None:
        raise errors.invalid_api_key(
            "You didn't provide an API key. Send it as 'Authorization: Bearer sk-...' (or as 'x-api-key')."
        )
    if not keys.key_is_well_formed(token):
        raise errors.invalid_api_key()
    return keys.key_hash(token)


class Keys:
    """The keys this process knows: a cache in front of one database read per key, however many requests
    miss the cache at once."""

    def __init__(self, ttl: float) -> None:
        self.cache = KeyCache(ttl)
        self._loading: dict[str, asyncio.Future] = {}
        # Set while the database or the limiter was unreachable: changes made meanwhile may not have bumped
        # their counters where this process could see them, so admission empties the cache once it is back.
        self.maybe_stale = False

    async def authenticate(self, authorization: str | None) -> tuple[str, KeyInfo]:
        """The caller's key hash and key, or 401 / 403."""
        key_hash = key_hash_from_header(authorization)
        info = self.cache.get(key_hash)
        if info is None:
            try:
                info = await self.load(key_hash)
            except errors.ApiError as err:
                if err.status != 401 or not await self._rehashed(authorization):
                    raise
                info = await self.load(key_hash)
        _refuse(info)
        return key_hash, info

    async def _rehashed(self, authorization: str | None) -> bool:
        """While KEY_HASH_SECRET is rotated, a key unknown under the new secret may be one stored under the old."""
        if not settings.KEY_HASH_SECRET_PREVIOUS:
            return False
        token = keys.bearer_token(authorization)
        return token is not None and await run_db(key_rehash, raw=token)

    async def reload(self, key_hash: str) -> KeyInfo:
        """A fresh read of a key whose cached entry went stale, or its refusal."""
        self.cache.forget(key_hash)
        info = await self.load(key_hash)
        _refuse(info)
        return info

    async def load(self, key_hash: str) -> KeyInfo:
        loading = self._loading.get(key_hash)
        if loading is None:
            loading = asyncio.ensure_future(run_db(load_key, key_hash, versions_sync))
            self._loading[key_hash] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key_hash, None))
        try:
            info = await asyncio.shield(loading)
        except (DatabaseError, RedisError):
            log.warning("a key could not be looked up", exc_info=True)
            self.maybe_stale = True
            raise errors.service_unavailable(
                "Keys can't be checked right now; nothing was charged. Please retry shortly.", retry_after=2
            ) from None
        if info is None:
            raise errors.invalid_api_key()
        if info.refusal(time.time()) is None or info.revoked:
            self.cache.put(key_hash, info)  # a revoked key stays revoked; other refusals may be lifted
        return info


def _refuse(info: KeyInfo) -> None:
    refusal = info.refusal(time.time())
    if refusal is not None:
        raise refusal
