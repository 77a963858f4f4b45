"""Per-key request limits, and the change counters that make revocation immediate.

One atomic step per request checks the key's change counters, then checks and counts both windows:
RPM is a sliding 60-second window (a sorted set of admission times), RPD is the UTC calendar day (a counter
that expires by itself). With Redis the step is one Lua script, so limits are exact across processes and hosts.
Without ``REDIS_URL`` an in-process twin with the same semantics serves a single process.

Change counters: every write that changes a key or its owner bumps a counter (``key_changed`` and
``user_changed``). A gateway caches key lookups together with the counters it saw, and the script refuses
(``STALE``) when they differ, so the gateway reloads the key before admitting the request. A revoked key is
therefore refused on the very next request in every process, without a database read per request.
"""

import hashlib
import logging
import math
import threading
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from functools import lru_cache

from django.conf import settings

from portal.accounts.redispipe import RedisPipe, RedisUnavailable

log = logging.getLogger("portal.accounts")

WINDOW_MS = 60_000
OK, RPM_EXCEEDED, RPD_EXCEEDED, STALE = 0, 1, 2, -1


class LimiterUnavailable(Exception):
    """The shared limiter can't be reached; the gateway answers 503 and charges nothing."""


@dataclass(frozen=True, slots=True)
class Quota:
    """The outcome of one check, with everything the rate-limit headers need."""

    verdict: int
    rpm: int
    rpd: int
    used_rpm: int
    used_rpd: int
    retry_after: int = 0  # whole seconds until a slot frees, when refused
    member: str = ""  # the admission's id, to refund it
    catalog_version: int = 0  # rides along for free, so a catalog change is seen on the very next request

    @property
    def remaining_rpm(self) -> int:
        return max(self.rpm - self.used_rpm, 0)

    @property
    def remaining_rpd(self) -> int:
        return max(self.rpd - self.used_rpd, 0)

    def headers(self) -> list[tuple[bytes, bytes]]:
        return [
            (b"x-ratelimit-limit-rpm", str(self.rpm).encode()),
            (b"x-ratelimit-limit-rpd", str(self.rpd).encode()),
            (b"x-ratelimit-remaining-rpm", str(self.remaining_rpm).encode()),
            (b"x-ratelimit-remaining-rpd", str(self.remaining_rpd).encode()),
        ]


def effective_limits(*, key_rpm, key_rpd, user_rpm, user_rpd, purchased: Decimal) -> tuple[int, int, bool]:
    """RPM, RPD and free-tier flag. A key's own limit applies, but never above its owner's: an operator who
    throttles an account throttles all of its keys. Without either, the tier rule and the defaults apply."""
    free_tier = purchased < Decimal(settings.TIER_THRESHOLD_USD)
    rpm = _lower(key_rpm, user_rpm) or settings.DEFAULT_RPM
    rpd = _lower(key_rpd, user_rpd) or (settings.DEFAULT_RPD if free_tier else settings.TIER_RPD)
    return rpm, rpd, free_tier


def _lower(a: int | None, b: int | None) -> int | None:
    return min(a, b) if a and b else a or b


DAY_MS = 86_400_000  # UTC days have no leap seconds in epoch time, so a day is a plain division


@lru_cache(maxsize=8)
def _stamp(day: int) -> str:
    return datetime.fromtimestamp(day * 86_400, UTC).strftime("%Y%m%d")


def day_stamp(now_ms: int) -> str:
    return _stamp(now_ms // DAY_MS)


def seconds_to_midnight(now_ms: int) -> int:
    return max(math.ceil((DAY_MS - now_ms % DAY_MS) / 1000), 1)


def now_ms() -> int:
    return int(time.time() * 1000)


# KEYS: rpm zset, rpd counter, key counter, user counter, catalog counter.
# ARGV: now_ms, rpm, rpd, key version, user version, member, day ttl, count (1) or peek (0).
# Returns: verdict, used this minute, used today, the score of the slot that frees next, catalog version.
_ADMIT_LUA = """
local kv = redis.call('GET', KEYS[3]) or '0'
local uv = redis.call('GET', KEYS[4]) or '0'
local cv = tonumber(redis.call('GET', KEYS[5]) or '0')
if kv ~= ARGV[4] or uv ~= ARGV[5] then return {-1, 0, 0, 0, cv} end
local now = tonumber(ARGV[1])
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now - 60000)
local used_m = redis.call('ZCARD', KEYS[1])
local used_d = tonumber(redis.call('GET', KEYS[2]) or '0')
if ARGV[8] == '0' then return {0, used_m, used_d, 0, cv} end
local rpm, rpd = tonumber(ARGV[2]), tonumber(ARGV[3])
if used_d >= rpd then return {2, used_m, used_d, 0, cv} end
if used_m >= rpm then
  local slot = redis.call('ZRANGE', KEYS[1], used_m - rpm, used_m - rpm, 'WITHSCORES')
  return {1, used_m, used_d, tonumber(slot[2]), cv}
end
redis.call('ZADD', KEYS[1], now, ARGV[6])
redis.call('PEXPIRE', KEYS[1], 60000)
redis.call('INCR', KEYS[2])
redis.call('EXPIRE', KEYS[2], ARGV[7])
return {0, used_m + 1, used_d + 1, 0, cv}
"""

_REFUND_LUA = """
if redis.call('ZREM', KEYS[1], ARGV[1]) == 1 and tonumber(redis.call('GET', KEYS[2]) or '0') > 0 then
  redis.call('DECR', KEYS[2])
end
return 0
"""


# Per-key spend limits, in whole nano-USD (Lua compares in doubles: exact up to 9 million USD).
# KEYS: the key's spend counter for its period. ARGV: spend already written (the base, if the counter is new),
# the request's worst case, the limit, the counter's lifetime.
_SPEND_LUA = """
local used = redis.call('GET', KEYS[1])
if not used then
  redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[4])
  used = ARGV[1]
end
used = tonumber(used)
if used + tonumber(ARGV[2]) > tonumber(ARGV[3]) then return {0, used} end
return {1, redis.call('INCRBY', KEYS[1], ARGV[2])}
"""

_SPEND_ADJUST_LUA = """
if redis.call('EXISTS', KEYS[1]) == 1 then redis.call('INCRBY', KEYS[1], ARGV[1]) end
return 0
"""

_ADMIT = (hashlib.sha1(_ADMIT_LUA.encode()).hexdigest().encode(), _ADMIT_LUA.encode())
_REFUND = (hashlib.sha1(_REFUND_LUA.encode()).hexdigest().encode(), _REFUND_LUA.encode())
_SPEND = (hashlib.sha1(_SPEND_LUA.encode()).hexdigest().encode(), _SPEND_LUA.encode())
_SPEND_ADJUST = (hashlib.sha1(_SPEND_ADJUST_LUA.encode()).hexdigest().encode(), _SPEND_ADJUST_LUA.encode())
SPEND_TTL = 40 * 86400  # longer than any spend period, so a counter never vanishes mid-period
CATALOG_VERSION = "isp:catalog:ver"


# --- the Redis key names: written here and in portal/accounts/notify.py, read by the site; nowhere else ---------


def key_version_name(key_id: int) -> str:
    # The hash tag keeps one key's names in one cluster slot.
    return f"isp:{{k{key_id}}}:ver"


def user_version_name(user_id: int) -> str:
    return f"isp:u{user_id}:ver"


def window_names(key_id: int, user_id: int, day: str) -> list[str]:
    """The names the admission script takes: the RPM window, the day's counter, then the change counters."""
    k = f"isp:{{k{key_id}}}"
    return [
        f"{k}:rpm",
        f"{k}:rpd:{day}",
        key_version_name(key_id),
        user_version_name(user_id),
        CATALOG_VERSION,
    ]


def spend_name(key_id: int, period: int) -> str:
    return f"isp:{{k{key_id}}}:spend:{period}"


def _quota(raw: list, rpm: int, rpd: int, now: int, member: str) -> Quota:
    verdict, used_m, used_d, slot, catalog = (int(x) for x in raw)
    retry = 0
    if verdict == RPM_EXCEEDED:
        retry = max(math.ceil((slot + WINDOW_MS - now) / 1000), 1)
    elif verdict == RPD_EXCEEDED:
        retry = seconds_to_midnight(now)
    return Quota(verdict, rpm, rpd, used_m, used_d, retry, member if verdict == OK else "", catalog)


@dataclass(slots=True)  # not frozen: built once per request, and a frozen __init__ costs twice as much
class Admission:
    """One check, as both limiters take it."""

    key_id: int
    user_id: int
    versions: tuple[int, int]  # the key's and its owner's change counters, as the caller's cache saw them
    rpm: int
    rpd: int
    count: bool  # take a slot in both windows, or only read them
    now: int  # epoch ms
    member: str  # the admission's id, for a refund


def member_day(member: str) -> str:
    """The day an admission counted against: its id starts with its time."""
    return day_stamp(int(member.split(":")[0]))


class Limiter:
    """What the shared limiter and its in-process twin have in common: how a check is asked for."""

    async def check(
        self,
        *,
        key_id: int,
        user_id: int,
        versions: tuple[int, int],
        rpm: int,
        rpd: int,
        count: bool,
        token: str,
        at: int | None = None,
    ) -> Quota:
        now = at or now_ms()  # ``at`` (epoch ms) lets a caller check a moment other than now
        # The time prefix tells a refund which day to give back (member_day).
        return await self._admit(Admission(key_id, user_id, versions, rpm, rpd, count, now, f"{now}:{token}"))

    async def _admit(self, ask: Admission) -> Quota:
        raise NotImplementedError

    async def refund(self, *, key_id: int, user_id: int, quota: Quota) -> None:
        raise NotImplementedError

    async def spend_reserve(
        self, *, key_id: int, period: int, base: int, need: int, limit: int
    ) -> tuple[bool, int]:
        """Count ``need`` against the key's spend limit for its period unless it would pass it. Atomic across
        processes. Returns (admitted, spend counted so far)."""
        raise NotImplementedError

    async def spend_adjust(self, *, key_id: int, period: int, delta: int) -> None:
        raise NotImplementedError

    async def catalog_version(self) -> int:
        raise NotImplementedError

    async def close(self) -> None:
        raise NotImplementedError


class RedisLimiter(Limiter):
    """The shared limiter: the script above over one pipelined connection (see portal/accounts/redispipe.py)."""

    def __init__(self, url: str) -> None:
        # Fail fast: a request waiting on a dead Redis should get its 503 quickly, and the next one retries.
        self.redis = RedisPipe(url, timeout=1.0, connect_timeout=0.5)

    async def _admit(self, ask: Admission) -> Quota:
        now, member = ask.now, ask.member
        args = [now, ask.rpm, ask.rpd, *ask.versions, member, seconds_to_midnight(now) + 3600, int(ask.count)]
        raw = await self._run(_ADMIT, window_names(ask.key_id, ask.user_id, day_stamp(now)), args)
        return _quota(raw, ask.rpm, ask.rpd, now, member)

    async def refund(self, *, key_id: int, user_id: int, quota: Quota) -> None:
        names = window_names(key_id, user_id, member_day(quota.member))
        await self._run(_REFUND, names[:2], [quota.member])

    async def spend_reserve(
        self, *, key_id: int, period: int, base: int, need: int, limit: int
    ) -> tuple[bool, int]:
        ok, used = await self._run(_SPEND, [spend_name(key_id, period)], [base, need, limit, SPEND_TTL])
        return bool(ok), int(used)

    async def spend_adjust(self, *, key_id: int, period: int, delta: int) -> None:
        await self._run(_SPEND_ADJUST, [spend_name(key_id, period)], [delta])

    async def catalog_version(self) -> int:
        try:
            return int(await self.redis.call(b"GET", CATALOG_VERSION) or 0)
        except RedisUnavailable as exc:
            raise LimiterUnavailable(str(exc)) from exc

    async def _run(self, script: tuple[bytes, bytes], keys: list[str], args: list):
        try:
            return await self.redis.evalsha(script[0], script[1], keys, args)
        except RedisUnavailable as exc:
            raise LimiterUnavailable(str(exc)) from exc

    async def close(self) -> None:
        await self.redis.close()


class LocalLimiter(Limiter):
    """The in-process twin of the Redis script, for a single process with no Redis."""

    def __init__(self) -> None:
        self._lock = threading.Lock()  # Django threads bump counters while the event loop reads them
        self._minute: dict[int, deque[tuple[int, str]]] = {}
        self._day: dict[tuple[int, str], int] = {}
        self._versions: dict[str, int] = {}
        self._spend: dict[tuple[int, int], int] = {}

    def bump(self, name: str) -> None:
        with self._lock:
            self._versions[name] = self._versions.get(name, 0) + 1

    async def _admit(self, ask: Admission) -> Quota:
        key_id, rpm, rpd, now, member = ask.key_id, ask.rpm, ask.rpd, ask.now, ask.member
        with self._lock:
            catalog = self._versions.get("catalog", 0)
            if ask.versions != self._current(key_id, ask.user_id):
                return Quota(STALE, rpm, rpd, 0, 0, catalog_version=catalog)
            window = self._minute.setdefault(key_id, deque())
            while window and window[0][0] <= now - WINDOW_MS:
                window.popleft()
            day = (key_id, day_stamp(now))
            used_m, used_d = len(window), self._day.get(day, 0)
            if not ask.count:
                return Quota(OK, rpm, rpd, used_m, used_d, catalog_version=catalog)
            if used_d >= rpd:
                return _quota([RPD_EXCEEDED, used_m, used_d, 0, catalog], rpm, rpd, now, member)
            if used_m >= rpm:
                slot = window[used_m - rpm][0]
                return _quota([RPM_EXCEEDED, used_m, used_d, slot, catalog], rpm, rpd, now, member)
            window.append((now, member))
            self._day[day] = used_d + 1
            return Quota(OK, rpm, rpd, used_m + 1, used_d + 1, 0, member, catalog)

    async def refund(self, *, key_id: int, user_id: int, quota: Quota) -> None:
        with self._lock:
            window = self._minute.get(key_id, deque())
            for item in window:
                if item[1] == quota.member:
                    window.remove(item)
                    day = (key_id, member_day(quota.member))
                    self._day[day] = max(self._day.get(day, 0) - 1, 0)
                    break

    def _current(self, key_id: int, user_id: int) -> tuple[int, int]:
        return self._versions.get(f"k{key_id}", 0), self._versions.get(f"u{user_id}", 0)

    async def spend_reserve(
        self, *, key_id: int, period: int, base: int, need: int, limit: int
    ) -> tuple[bool, int]:
        with self._lock:
            used = self._spend.setdefault((key_id, period), base)
            if used + need > limit:
                return False, used
            self._spend[(key_id, period)] = used + need
            return True, used + need

    async def spend_adjust(self, *, key_id: int, period: int, delta: int) -> None:
        with self._lock:
            if (key_id, period) in self._spend:
                self._spend[(key_id, period)] += delta

    async def catalog_version(self) -> int:
        return self._versions.get("catalog", 0)

    async def close(self) -> None:
        return None


LOCAL = LocalLimiter()  # one per process; services bump it directly when there is no Redis


def make_limiter() -> RedisLimiter | LocalLimiter:
    return RedisLimiter(settings.REDIS_URL) if settings.REDIS_URL else LOCAL


# --- reading a key's windows without counting (the dashboard and the management API) -------------------------


@lru_cache(maxsize=1)
def sync_redis():
    """The synchronous client, for the services' and the site's calls; the gateway has its own connection."""
    import redis  # only processes that write or read these counters synchronously pay for the import

    return redis.Redis.from_url(settings.REDIS_URL, socket_connect_timeout=1.0, socket_timeout=2.0)


def window_usage(*, key_id: int, user_id: int) -> tuple[int, int] | None:
    """(requests in the last 60 seconds, requests today UTC) for a key, or None if the limiter is unreachable.

    Reads the very names the admission script writes (``window_names``). Without Redis, this process's
    in-process limiter is asked: it knows only this process's requests, which is all there is then."""
    now = now_ms()
    if not settings.REDIS_URL:
        return _local_usage(key_id=key_id, user_id=user_id, now=now)
    rpm_name, rpd_name = window_names(key_id, user_id, day_stamp(now))[:2]
    try:
        pipe = sync_redis().pipeline(transaction=False)
        pipe.zcount(rpm_name, f"({now - WINDOW_MS}", "+inf")  # the script drops scores <= now - 60 s
        pipe.get(rpd_name)
        minute, day = pipe.execute()
    except Exception:  # redis-py raises several families (connection, timeout, response)
        log.warning("can't read the rate limit counters", exc_info=True)
        return None
    return int(minute), int(day or 0)


def _local_usage(*, key_id: int, user_id: int, now: int) -> tuple[int, int] | None:
    with LOCAL._lock:
        window = LOCAL._minute.get(key_id, ())
        return sum(1 for at, _ in window if at > now - WINDOW_MS), LOCAL._day.get((key_id, day_stamp(now)), 0)
