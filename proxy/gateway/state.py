"""Everything one gateway process keeps between requests, created at startup and closed at shutdown."""

import asyncio
import contextlib
import logging
import os
import socket
import time
from dataclasses import replace
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal

import aiohttp
from django.conf import settings
from django.db import DatabaseError
from redis.exceptions import RedisError

from billing.credits import Credits, InsufficientCredits, Reservation, worst_case
from billing.settlement import Settler
from portal.accounts.limits import STALE, LimiterUnavailable, Quota, make_limiter
from portal.accounts.notify import versions_sync
from proxy.catalog.snapshot import Catalog, Circuits, ModelInfo, load_catalog
from proxy.gateway import accounting, catalog_cache, errors, tokens
from proxy.gateway.auth import KeyCache, KeyInfo, key_hash_from_header, load_key
from proxy.gateway.db import run_db

log = logging.getLogger("proxy")


class Gateway:
    def __init__(self) -> None:
        self.name = f"{socket.gethostname()}:{os.getpid()}"
        self.limiter = make_limiter()
        # Without a shared limiter another process can't tell us about a change, so don't trust a cache long.
        ttl = settings.KEY_CACHE_SECONDS if settings.REDIS_URL else min(settings.KEY_CACHE_SECONDS, 5.0)
        self.keys = KeyCache(ttl)
        self.catalog = Catalog({})
        self.circuits = Circuits()
        self.session: aiohttp.ClientSession | None = None
        self.credits = Credits(run_db, self.name, settings.HOLD_TIMEOUT_SECONDS)
        self.settler = Settler(run_db, settings.SETTLE_FLUSH_SECONDS, self.credits)
        self._tasks: list[asyncio.Task] = []
        self._limiter_was_down = False
        self._catalog_lock = asyncio.Lock()
        self._loading: dict[str, asyncio.Future] = {}

    async def start(self) -> None:
        tokens.count_text("warm up")  # loads the vocabulary now, not on the first request
        self.catalog = await run_db(load_catalog, await self._catalog_version())
        connector = aiohttp.TCPConnector(
            limit=settings.UPSTREAM_POOL_SIZE,
            limit_per_host=settings.UPSTREAM_POOL_SIZE,
            keepalive_timeout=30,
        )
        # No cookies, no proxies from the environment, no redirects (set per request): an upstream is an API.
        self.session = aiohttp.ClientSession(
            connector=connector, cookie_jar=aiohttp.DummyCookieJar(), trust_env=False, auto_decompress=True
        )
        self._tasks.append(asyncio.create_task(self._watch_catalog(), name="catalog-watch"))
        self.settler.start()

    async def stop(self) -> None:
        await self.settler.stop()
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        if self.session:
            await self.session.close()
        await self.limiter.close()

    async def _catalog_version(self) -> int:
        try:
            return await self.limiter.catalog_version()
        except LimiterUnavailable:
            return -1

    async def _watch_catalog(self) -> None:
        """Reload the snapshot every so often, for changes that bypassed the services (a raw SQL edit).

        Changes made through the services are seen sooner: every limiter check returns the catalog's change
        counter, and ``check`` reloads as soon as it moves.
        """
        while True:
            await asyncio.sleep(settings.CATALOG_REFRESH_SECONDS)
            try:
                await self.reload_catalog(await self._catalog_version(), force=True)
            except Exception:
                log.exception("catalog reload failed; serving the previous snapshot")

    async def resolve(self, name: str, allowed: frozenset[str] | None) -> ModelInfo:
        """The model by its public id. An unknown id first checks (one Redis read) for a newer catalog."""
        try:
            return catalog_cache.resolve(self.catalog, name, allowed)
        except errors.ApiError as err:
            if err.code != "model_not_found":
                raise
        version = await self._catalog_version()
        if version != self.catalog.version:
            await self.reload_catalog(version)
        return catalog_cache.resolve(
            self.catalog, name, allowed
        )  # another request may have reloaded it meanwhile

    async def reload_catalog(self, version: int, *, force: bool = False) -> None:
        async with self._catalog_lock:  # one reload at a time; the requests that queued behind it reuse it
            if force or self.catalog.version != version:
                self.catalog = await run_db(load_catalog, version)

    # --- who is calling, and may they ------------------------------------------------------------------------

    async def key_for(self, authorization: str | None) -> tuple[str, KeyInfo]:
        key_hash = key_hash_from_header(authorization)
        info = self.keys.get(key_hash)
        if info is None:
            info = await self._load_key(key_hash)
        refusal = info.refusal(time.time())
        if refusal is not None:
            raise refusal
        return key_hash, info

    async def _load_key(self, key_hash: str) -> KeyInfo:
        # One database read per key however many requests miss the cache at once.
        loading = self._loading.get(key_hash)
        if loading is None:
            loading = asyncio.ensure_future(run_db(load_key, key_hash, versions_sync))
            self._loading[key_hash] = loading
            loading.add_done_callback(lambda _: self._loading.pop(key_hash, None))
        try:
            info = await asyncio.shield(loading)
        except (DatabaseError, RedisError):
            log.warning("a key could not be looked up", exc_info=True)
            self._limiter_was_down = True  # changes made meanwhile may not have reached us
            raise errors.service_unavailable(
                "Keys can't be checked right now; nothing was charged. Please retry shortly.", retry_after=2
            ) from None
        if info is None:
            raise errors.invalid_api_key()
        if info.refusal(time.time()) is None or info.revoked:
            self.keys.put(key_hash, info)  # a revoked key stays revoked; other refusals may be lifted
        return info

    async def check(
        self, key_hash: str, info: KeyInfo, *, count: bool, token: str = ""
    ) -> tuple[KeyInfo, Quota]:
        """Check (and with ``count``, take) a slot in the key's limits. A stale cache entry is reloaded first."""
        for _ in range(3):
            try:
                quota = await self.limiter.check(
                    key_id=info.id, user_id=info.user_id, versions=info.versions, rpm=info.rpm, rpd=info.rpd,
                    count=count, token=token,
                )  # fmt: skip
            except LimiterUnavailable:
                self._limiter_was_down = True
                raise errors.service_unavailable(
                    "The rate limiter is unavailable; nothing was charged. Please retry shortly.",
                    retry_after=2,
                ) from None
            if self._limiter_was_down:
                # Changes made while the limiter was unreachable may not have bumped their counters.
                self._limiter_was_down = False
                self.keys.clear()
            if quota.catalog_version != self.catalog.version:
                await self.reload_catalog(quota.catalog_version)
            if quota.verdict != STALE:
                return info, quota
            self.keys.forget(key_hash)
            info = await self._load_key(key_hash)
            refusal = info.refusal(time.time())
            if refusal is not None:
                raise refusal
        raise errors.service_unavailable("The key is being changed; please retry.")

    async def reserve(self, *, key: KeyInfo, model: ModelInfo, request) -> Reservation | None:
        """Set aside the request's worst-case cost (402 when the account or the key's spend limit can't cover
        it). Free models need no credits."""
        if model.is_free:
            return None
        if request.prompt_tokens is None:
            request.prompt_tokens = tokens.count_messages(request.messages)
        need = worst_case(
            prompt_tokens=request.prompt_tokens, max_tokens=request.max_tokens, n=request.n, model=model
        )
        spend = await self._spend_reserve(key, need) if key.spend_limit is not None else None
        try:
            hold = await self.credits.reserve(account_id=key.account_id, amount=need)
        except InsufficientCredits as exc:
            self._spend_adjust(spend, 0)
            raise errors.insufficient_credits(
                f"Insufficient credits: this request needs up to {exc.needed.normalize()} USD and "
                f"{exc.available.normalize()} USD is available. Add credits on the billing page."
            ) from None
        except BaseException:
            self._spend_adjust(spend, 0)
            raise
        return replace(hold, key_spend=spend)

    async def _spend_reserve(self, key: KeyInfo, need: Decimal) -> tuple[int, int, int]:
        """Count the worst case against the key's spend limit, atomically across every gateway process."""
        units = nano_usd(need)
        ok, used = await self.limiter.spend_reserve(
            key_id=key.id, period=key.spend_period, base=nano_usd(key.spend_used), need=units,
            limit=nano_usd(key.spend_limit, up=False),
        )  # fmt: skip
        if not ok:
            spent = Decimal(used) / NANO
            raise errors.insufficient_credits(
                f"This key's spend limit of {key.spend_limit.normalize()} USD is reached: {spent.normalize()} USD "
                f"spent or in flight, and this request may cost up to {need.normalize()} USD."
            )
        return key.id, key.spend_period, units

    def _spend_adjust(self, spend: tuple[int, int, int] | None, cost: Decimal) -> None:
        """Replace a request's worst case by its real cost in the key's spend counter (off the response path)."""
        if spend is None:
            return
        key_id, period, units = spend
        delta = nano_usd(cost) - units
        if delta:
            task = asyncio.create_task(self.limiter.spend_adjust(key_id=key_id, period=period, delta=delta))
            task.add_done_callback(_log_failure)

    def settle(self, *, req, key: KeyInfo, model: ModelInfo, body, tally, hold, status: int) -> None:
        """Record the request exactly once and release its hold; the write itself is batched. Never fails to
        do either: the record is made whatever went wrong (proxy/gateway/accounting.py)."""
        record = accounting.finished(
            request_id=req.request_id, started=req.started, key=key, model=model, route=tally.route, body=body,
            tally=tally, status=status, hold=hold, raw_size=len(req.body),
        )  # fmt: skip
        try:
            if hold is not None:
                self.credits.settle(hold, record.cost)
                self._spend_adjust(hold.key_spend, record.cost)
        finally:
            self.settler.add(record)

    def check_recording(self) -> None:
        """Refuse new requests (503) while too many finished ones wait to be written: an admitted request must
        always be recordable, so the queue is bounded here, before admission, and never drops a record."""
        if self.settler.pending >= settings.SETTLE_MAX_PENDING:
            raise errors.service_unavailable(
                "Usage can't be recorded right now; nothing was charged. Please retry shortly.", retry_after=2
            )


NANO = Decimal(1_000_000_000)


def nano_usd(amount: Decimal, *, up: bool = True) -> int:
    """Whole nano-USD for the spend counters, rounded towards refusing: costs up, limits down."""
    return int((amount * NANO).to_integral_value(rounding=ROUND_CEILING if up else ROUND_FLOOR))


def _log_failure(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.warning("a spend counter was not adjusted: %s", task.exception())


GATEWAY: Gateway | None = None


def gateway() -> Gateway:
    assert GATEWAY is not None, "the gateway is started by the ASGI lifespan"
    return GATEWAY
