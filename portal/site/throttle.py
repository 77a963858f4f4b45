"""Sign-in throttling: repeated failures lock an account, and a client address, out for a while.

Failures are counted in the Django cache (Redis when ``REDIS_URL`` is set, so every process shares them) in a
fixed window that starts at the first failure. Two counters, because they stop different attacks: the
per-account one stops guessing one person's password from many addresses; the per-address one stops one
client from trying a few passwords against many accounts. A success clears only the account's counter: an
attacker who owns one account must not be able to reset the counter of the address they attack from.
"""

import hashlib
from dataclasses import dataclass

from django.conf import settings
from django.core.cache import cache


@dataclass(frozen=True, slots=True)
class Lockout:
    scope: str  # "account" or "address"
    minutes: int

    @property
    def message(self) -> str:
        wait = f"{self.minutes} minute{'s' if self.minutes != 1 else ''}"
        if self.scope == "account":
            return (
                f"Too many failed sign-in attempts for this account. Try again in {wait}, "
                "or reset your password to get in now."
            )
        return f"Too many failed sign-in attempts from your network. Try again in {wait}."


def client_address(request) -> str:
    """The address failures are counted against: the peer, or the proxy's last X-Forwarded-For entry when the
    site runs behind one (``LOGIN_TRUST_X_FORWARDED_FOR``); the leftmost entries are whatever the client sent."""
    if settings.LOGIN_TRUST_X_FORWARDED_FOR:
        forwarded = [a.strip() for a in request.META.get("HTTP_X_FORWARDED_FOR", "").split(",") if a.strip()]
        if forwarded:
            return forwarded[-1]
    return request.META.get("REMOTE_ADDR") or "unknown"


def _account_key(email: str) -> str:
    # Hashed so the cache never holds email addresses.
    return "login-fail:acct:" + hashlib.sha256(email.strip().lower().encode()).hexdigest()


def _address_key(address: str) -> str:
    return f"login-fail:ip:{address}"


def login_lockout_get(*, email: str, address: str) -> Lockout | None:
    """Whether sign-in must be refused before the password is even checked."""
    minutes = max(1, -(-settings.LOGIN_LOCKOUT_SECONDS // 60))
    counts = cache.get_many([_account_key(email), _address_key(address)])
    if counts.get(_account_key(email), 0) >= settings.LOGIN_FAILURES_PER_ACCOUNT:
        return Lockout("account", minutes)
    if counts.get(_address_key(address), 0) >= settings.LOGIN_FAILURES_PER_IP:
        return Lockout("address", minutes)
    return None


def login_failure_record(*, email: str, address: str) -> None:
    for key in (_account_key(email), _address_key(address)):
        # add() starts the window only if there is none; incr() is atomic in Redis and in local memory.
        cache.add(key, 0, timeout=settings.LOGIN_LOCKOUT_SECONDS)
        try:
            cache.incr(key)
        except ValueError:  # expired between add() and incr(): start a new window
            cache.add(key, 1, timeout=settings.LOGIN_LOCKOUT_SECONDS)


def login_success_record(*, email: str) -> None:
    cache.delete(_account_key(email))
