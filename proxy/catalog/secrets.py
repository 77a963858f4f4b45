"""Provider secrets at rest: Fernet under ``FIELD_ENCRYPTION_KEY``, which may list several keys.

The first key encrypts; every listed key decrypts. Rotating is: put a new key first (the old one stays
listed, so what it encrypted still reads), re-encrypt every stored secret under the new key
(``manage.py rotate_provider_secrets``), then drop the old key.
"""

from functools import lru_cache

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from django.conf import settings

__all__ = ["InvalidToken", "decrypt", "encrypt", "reencrypt"]


@lru_cache(maxsize=4)
def _fernet(keys: str) -> MultiFernet:
    return MultiFernet([Fernet(key.strip().encode()) for key in keys.split(",") if key.strip()])


def encrypt(secret: str) -> str:
    return _fernet(settings.FIELD_ENCRYPTION_KEY).encrypt(secret.encode()).decode()


def decrypt(token: str) -> str:
    """The secret; ``InvalidToken`` when no listed key opens it."""
    return _fernet(settings.FIELD_ENCRYPTION_KEY).decrypt(token.encode()).decode()


def reencrypt(token: str) -> str:
    """The same secret under the first key (``InvalidToken`` when no listed key opens it)."""
    return _fernet(settings.FIELD_ENCRYPTION_KEY).rotate(token.encode()).decode()
