"""The catalog cache: the snapshot this process serves from, kept fresh, and a model looked up by its id.

The snapshot is rebuilt from the database when the catalog's change counter moves (every limiter check returns
it, and an unknown model id asks Redis once), and every ``CATALOG_REFRESH_SECONDS`` regardless, for changes
that bypassed the services (a raw SQL edit). So an operator's edit is live in every process at once.
"""

import asyncio
import logging

from django.conf import settings

from portal.accounts.limits import LimiterUnavailable
from proxy.catalog.snapshot import Catalog, ModelInfo, load_catalog
from proxy.gateway import errors
from proxy.gateway.db import run_db

log = logging.getLogger("proxy")


def resolve(catalog: Catalog, name: str, allowed: frozenset[str] | None) -> ModelInfo:
    """The model a request names: 404 when the snapshot has none by that id, 403 outside the key's list."""
    model = catalog.models.get(name)
    if model is None:
        raise errors.model_not_found(name)
    if allowed is not None and name not in allowed:
        raise errors.permission_denied(f"This API key is not allowed to use the model '{errors.clip(name)}'.")
    return model


class CatalogCache:
    def __init__(self, limiter) -> None:
        self.snapshot = Catalog({})
        self._limiter = limiter
        self._lock = asyncio.Lock()

    async def start(self) -> None:
        self.snapshot = await run_db(load_catalog, await self.version())

    async def version(self) -> int:
        try:
            return await self._limiter.catalog_version()
        except LimiterUnavailable:
            return -1

    async def watch(self) -> None:
        while True:
            await asyncio.sleep(settings.CATALOG_REFRESH_SECONDS)
            try:
                await self.reload(await self.version(), force=True)
            except Exception:
                log.exception("catalog reload failed; serving the previous snapshot")

    async def reload(self, version: int, *, force: bool = False) -> None:
        async with self._lock:  # one reload at a time; the requests that queued behind it reuse it
            if force or self.snapshot.version != version:
                self.snapshot = await run_db(load_catalog, version)

    async def resolve(self, name: str, allowed: frozenset[str] | None) -> ModelInfo:
        """The model by its public id. An unknown id first checks (one Redis read) for a newer catalog."""
        try:
            return resolve(self.snapshot, name, allowed)
        except errors.ApiError as err:
            if err.code != "model_not_found":
                raise
        version = await self.version()
        if version != self.snapshot.version:
            await self.reload(version)
        return resolve(self.snapshot, name, allowed)  # another request may have reloaded it meanwhile

    def resolve_now(self, name: str, allowed: frozenset[str] | None) -> ModelInfo:
        return resolve(self.snapshot, name, allowed)

    def listing(self, allowed: frozenset[str] | None, *, anthropic: bool = False) -> list[dict]:
        return self.snapshot.anthropic_listing(allowed) if anthropic else self.snapshot.listing(allowed)
