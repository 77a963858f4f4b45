"""API keys: generation, hashing and parsing. Pure functions; the database only ever sees the hash."""

import hashlib
import hmac
import re
import secrets

from django.conf import settings

PREFIX = "sk-"
MANAGEMENT_PREFIX = "sk-mgmt-"
DISPLAY_CHARS = 12  # "sk-" plus 9 characters: enough to tell keys apart, far too few to guess the rest
_TOKEN_BYTES = 32  # 256 bits of randomness
_SHAPE = re.compile(r"sk-(?:mgmt-)?[A-Za-z0-9_\-]{43}")


def key_generate(*, management: bool = False) -> str:
    return (MANAGEMENT_PREFIX if management else PREFIX) + secrets.token_urlsafe(_TOKEN_BYTES)


def key_hash(raw: str) -> str:
    # Keys are high-entropy, so a fast keyed hash is enough; a slow KDF would cost us on every request.
    return hmac.new(settings.KEY_HASH_SECRET, raw.encode(), hashlib.sha256).hexdigest()


def key_hash_previous(raw: str) -> str | None:
    """The key's hash under ``KEY_HASH_SECRET_PREVIOUS`` while a rotation is under way, else None."""
    if not settings.KEY_HASH_SECRET_PREVIOUS:
        return None
    return hmac.new(settings.KEY_HASH_SECRET_PREVIOUS, raw.encode(), hashlib.sha256).hexdigest()


def key_display_prefix(raw: str) -> str:
    return raw[: len(MANAGEMENT_PREFIX) + 4] if raw.startswith(MANAGEMENT_PREFIX) else raw[:DISPLAY_CHARS]


def key_is_well_formed(raw: str) -> bool:
    """Cheap shape check, so garbage never reaches a cache or the database."""
    return _SHAPE.fullmatch(raw) is not None


def key_is_management(raw: str) -> bool:
    return raw.startswith(MANAGEMENT_PREFIX)


def key_matches(raw: str, stored_hash: str) -> bool:
    return hmac.compare_digest(key_hash(raw), stored_hash)


def bearer_token(authorization: str | None) -> str | None:
    """The token from an ``Authorization: Bearer ...`` header, or None when there is none."""
    if not authorization:
        return None
    scheme, _, token = authorization.strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None
