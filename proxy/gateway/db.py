"""Database work for the async gateway, run on a small thread pool.

The hot path never waits on the database per request: key lookups are cached, the catalog is a snapshot and
settlement is batched. What remains (a cache miss, a catalog reload, a settlement flush, a credit lease) goes
through the Django ORM here, so the Django models stay the one definition of the schema.
"""

import asyncio
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from functools import partial
from typing import TypeVar

from django.conf import settings
from django.db import DatabaseError, InterfaceError, connection

T = TypeVar("T")

# SQLite has one writer; more threads would only queue on its lock.
_WORKERS = 1 if settings.DATABASES["default"]["ENGINE"].endswith("sqlite3") else 4
_pool = ThreadPoolExecutor(max_workers=_WORKERS, thread_name_prefix="gateway-db")


def _call(fn: Callable[..., T], args: tuple, kwargs: dict) -> T:
    try:
        return fn(*args, **kwargs)
    except (DatabaseError, InterfaceError):
        # A broken connection (a database restart) must not poison this thread: reconnect next time.
        connection.close()
        raise


async def run_db(fn: Callable[..., T], *args, **kwargs) -> T:
    return await asyncio.get_running_loop().run_in_executor(_pool, partial(_call, fn, args, kwargs))
