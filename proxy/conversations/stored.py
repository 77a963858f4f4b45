"""Stored responses as the gateway keeps and reads them: in Redis at once, in the database soon after.

``keep`` writes a response to Redis in one round trip, before its answer (or its stream's last event) goes
out: its copy, named by its account and expiring after ``RESPONSES_COPY_SECONDS`` (an hour), and its id in
a pending set scored by time. A batch writer in the process then inserts what is queued every
``RESPONSES_FLUSH_SECONDS`` (0.2 s), or as soon as ``FLUSH_AT`` responses wait, on the database pool, and
takes their ids out of the pending set; their copies stay ``WARM_SECONDS`` (five minutes) more. Reads (a
retrieval, its input items, the walk along a conversation for ``previous_response_id``) take the Redis copy
first, then the database, so a follow-up sent the instant an answer ended finds it, in any process. The
copy's name holds the account: another account's id is simply not there, and reads exactly like one that
never existed.

A deletion writes a tombstone (kept a day past the copy's expiry), drops the copy and deletes the row. A
writer looks for tombstones among its batch after its insert committed, and deletes what it finds: a
deletion before the commit left its tombstone, one after it finds the row, so a late write never brings a
deleted response back. A read that finds a tombstone answers "not found" without asking the database.

What survives a crash: a process that dies with responses queued leaves their copies and pending ids in
Redis. Every process sweeps, every ``RESPONSES_SWEEP_SECONDS`` (30 s), the pending ids older than that, and
writes them from their copies (the insert skips a row already there, so two sweeps, or a sweep and a late
flush, are harmless). A response whose copy expires before any process could write it (the database away
for longer than the copy lives) is lost.

Without Redis (``REDIS_URL`` unset: a single process, on a SQLite file by default) there is no other process
to share a copy with, and ``keep`` writes the row to the database before the answer goes out, as it does
when the Redis write fails. The dashboard reads the database only: a response may show there up to a flush
interval late.
"""

import asyncio
import contextlib
import hashlib
import logging
import time
import uuid
from datetime import datetime
from functools import partial

import orjson
from django.db import connection, transaction
from django.utils import timezone

from billing.settlement import REFUSED
from portal.accounts.redispipe import RedisPipe, RedisUnavailable
from proxy.conversations.models import StoredResponse
from proxy.conversations.services import (
    conversation,
    response_delete,
    response_get,
    response_store,
    responses_remove,
)

log = logging.getLogger("proxy.conversations")

FLUSH_AT = 200  # responses queued that trigger a write before the timer
MAX_QUEUED = 10_000  # past this (the database away), new ones are left to the sweep, which reads their copies
SWEEP_AT = 500  # pending ids a sweep takes at a time
SWEEP_ROUNDS = 20  # batches per sweep: a dead process's backlog is written within a few sweeps
TOMBSTONE_EXTRA = 86_400  # a deletion outlives the copy by a day: a write held up that long still sees it
# A written response's copy is kept this long more, for the follow-ups that come soon after, instead of the
# hour that covers a crash: at a thousand stored responses a second, an hour of copies would be gigabytes.
WARM_SECONDS = 300

# --- the Redis names: written and read here only ------------------------------------------------------------

PENDING = b"isp:resp:pending"  # "{account}:{response id}", scored by the time it was kept (epoch ms)


def member(account_id: int, response_id: str) -> bytes:
    return f"{account_id}:{response_id}".encode()


def owner_and_id(name: bytes) -> tuple[int, str]:
    account_id, _, response_id = name.decode().partition(":")
    return int(account_id), response_id


def copy_name(name: bytes) -> bytes:
    return b"isp:resp:" + name


def tombstone_name(name: bytes) -> bytes:
    return b"isp:resp:" + name + b":gone"


# KEYS: the copy, the pending set. ARGV: the row, the copy's lifetime (s), now (ms), the member.
_KEEP_LUA = """
redis.call('SET', KEYS[1], ARGV[1], 'EX', ARGV[2])
redis.call('ZADD', KEYS[2], ARGV[3], ARGV[4])
return 0
"""

# KEYS: the copy, its tombstone. Returns 0 for a deleted response, nil for one Redis doesn't hold, else the copy.
_READ_LUA = """
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
return redis.call('GET', KEYS[1])
"""

# KEYS: the copy, its tombstone, the pending set. ARGV: the tombstone's lifetime (s), the member.
# Returns -1 when it was deleted before, else how many copies went (0 or 1).
_FORGET_LUA = """
local before = redis.call('EXISTS', KEYS[2])
redis.call('SET', KEYS[2], '1', 'EX', ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[2])
local copies = redis.call('DEL', KEYS[1])
if before == 1 then return -1 end
return copies
"""


# KEYS: the pending set, then the copies of its members in ARGV. ARGV: the copies' new lifetime (s), then the
# members written.
_WRITTEN_LUA = """
for i = 2, #ARGV do redis.call('ZREM', KEYS[1], ARGV[i]) end
for i = 2, #KEYS do redis.call('EXPIRE', KEYS[i], ARGV[1]) end
return 0
"""


def _script(source: str) -> tuple[bytes, bytes]:
    return hashlib.sha1(source.encode()).hexdigest().encode(), source.encode()


_KEEP, _READ, _FORGET, _WRITTEN = map(_script, (_KEEP_LUA, _READ_LUA, _FORGET_LUA, _WRITTEN_LUA))


# The copy is the row as JSON, its keys the table's column names (every one of them): the database reads a
# batch of copies as they are (``copies_insert``).
COLUMNS = (
    "id", "request_id", "account_id", "key_id", "previous_id", "provider_id", "input_items", "response",
    "created_at",
)  # fmt: skip


def decode(raw: bytes) -> StoredResponse:
    """The row a Redis copy holds, unsaved: the same object a database read gives."""
    data = orjson.loads(raw)
    return StoredResponse(
        id=data["id"], request_id=uuid.UUID(data["request_id"]) if data["request_id"] else None,
        account_id=data["account_id"], key_id=data["key_id"], previous_id=data["previous_id"],
        provider_id=data["provider_id"], input_items=data["input_items"], response=data["response"],
        created_at=datetime.fromisoformat(data["created_at"]),
    )  # fmt: skip


def copies_insert(copies: list[bytes]) -> None:
    """Write rows from their Redis copies, in one statement; a row already written (by another process's
    sweep, or an earlier try whose outcome was lost) is left as it is. Sync.

    On PostgreSQL the copies go as one JSON array that the database itself turns into rows: measured here,
    building model instances for ``bulk_create`` cost 0.3 ms of CPU per row (their JSON fields encoded again),
    beside the event loop, against 0.01 ms. Elsewhere (SQLite), the ORM's bulk insert."""
    if connection.vendor != "postgresql":
        with transaction.atomic():
            StoredResponse.objects.bulk_create(map(decode, copies), ignore_conflicts=True)
        return
    names = ", ".join(map(connection.ops.quote_name, COLUMNS))
    table = connection.ops.quote_name(StoredResponse._meta.db_table)
    sql = (
        f"INSERT INTO {table} ({names}) SELECT {names} FROM json_populate_recordset(NULL::{table}, %s::json) "
        "ON CONFLICT DO NOTHING"
    )
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(sql, [(b"[" + b",".join(copies) + b"]").decode()])


def now_ms() -> int:
    return int(time.time() * 1000)


class StoredResponses:
    """One process's way to its stored responses: Redis first when there is one, and the writer behind it."""

    def __init__(
        self, run_db, redis: RedisPipe | None, *, flush_every: float, sweep_every: float, copy_seconds: int
    ) -> None:
        self._run_db = run_db
        self.redis = redis
        self._flush_every, self._sweep_every, self._copy_seconds = flush_every, sweep_every, copy_seconds
        self._queue: list[tuple[bytes, bytes]] = []  # (member, copy), to be written
        self._stopping = asyncio.Event()
        self._wake = asyncio.Event()
        self._tasks: list[asyncio.Task] = []

    # --- the hot path ---------------------------------------------------------------------------------------

    async def keep(
        self, *, response_id: str, account_id: int, key_id: int | None, previous_id: str, input_items: list[dict],
        response: dict, provider_id: int | None, request_id: uuid.UUID | None,
    ) -> None:  # fmt: skip
        """Keep a finished response where every process finds it. Without Redis, or when the Redis write
        fails, the row is written to the database now (raising what the database raises)."""
        row = {
            "id": response_id, "request_id": request_id, "account_id": account_id, "key_id": key_id,
            "previous_id": previous_id, "provider_id": provider_id, "input_items": input_items,
            "response": response, "created_at": timezone.now(),
        }  # fmt: skip
        if self.redis is None:
            await self._run_db(response_store, StoredResponse(**row))
            return
        try:
            raw = orjson.dumps(row)
        except TypeError:  # a value the copy can't hold (an integer past 64 bits): the ORM's encoder can
            await self._run_db(response_store, StoredResponse(**row))
            return
        name = member(account_id, response_id)
        # Queued before the Redis write, not after: a request cancelled while it waits (its client left) has
        # its copy kept all the same, and is written by this process, not left to a sweep.
        if len(self._queue) < MAX_QUEUED:  # else the sweep writes it from its copy, once the database is back
            self._queue.append((name, raw))
            if len(self._queue) >= FLUSH_AT:
                self._wake.set()
        try:
            await self.redis.evalsha(
                *_KEEP, [copy_name(name), PENDING], [raw, self._copy_seconds, now_ms(), name]
            )
        except RedisUnavailable as exc:
            log.warning(
                "response %s has no Redis copy (%s); writing it to the database now", response_id, exc
            )
            await self._run_db(copies_insert, [raw])  # its queued twin then inserts nothing

    async def get(self, account_id: int, response_id: str) -> StoredResponse | None:
        """The account's response by id, or None: never stored, deleted, expired, or another account's."""
        if self.redis is not None:
            name = member(account_id, response_id)
            try:
                found = await self.redis.evalsha(*_READ, [copy_name(name), tombstone_name(name)], [])
            except RedisUnavailable as exc:
                log.warning("reading a stored response from Redis failed (%s); asking the database", exc)
            else:
                if found == 0:
                    return None  # deleted: its row may still be on its way in, and must not be seen
                if found is not None:
                    return decode(found)
        return await self._run_db(response_get, account_id=account_id, response_id=response_id)

    async def conversation(self, account_id: int, response_id: str) -> tuple[list[dict], int | None] | None:
        """The conversation up to this response (see proxy/conversations/services.py), each turn read as
        ``get`` reads it."""
        return await conversation(response_id=response_id, read=partial(self.get, account_id))

    async def delete(self, account_id: int, response_id: str) -> bool:
        """Delete the account's response; False when it had none by that id. Raises RedisUnavailable when
        the tombstone can't be written: a write on its way could then bring the response back."""
        forgot = 0
        if self.redis is not None:
            name = member(account_id, response_id)
            names = [copy_name(name), tombstone_name(name), PENDING]
            forgot = await self.redis.evalsha(*_FORGET, names, [self._copy_seconds + TOMBSTONE_EXTRA, name])
        deleted = await self._run_db(response_delete, account_id=account_id, response_id=response_id)
        return forgot == 1 or (forgot == 0 and deleted)

    # --- the writer -----------------------------------------------------------------------------------------

    def start(self) -> None:
        if self.redis is not None:
            self._tasks = [
                asyncio.create_task(self._flushing(), name="stored-responses-flush"),
                asyncio.create_task(self._sweeping(), name="stored-responses-sweep"),
            ]

    async def stop(self) -> None:
        """Let a write in progress finish, then write everything queued."""
        self._stopping.set()
        self._wake.set()
        for task in self._tasks:
            await task
        for attempt in range(5):
            if not await self.flush():
                break
            await asyncio.sleep(min(0.1 * 2**attempt, 1.0))
        if self._queue:
            log.error(
                "stopping with %d stored responses not in the database; another process's sweep writes them "
                "from Redis", len(self._queue),
            )  # fmt: skip

    async def _flushing(self) -> None:
        delay = self._flush_every
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), delay)
            self._wake.clear()
            failed = await self.flush()
            delay = min(delay * 2, 2.0) if failed else self._flush_every

    async def _sweeping(self) -> None:
        while not self._stopping.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), self._sweep_every)
            if self._stopping.is_set():
                return
            try:
                await self.sweep()
            except Exception as exc:
                log.warning("sweeping pending stored responses failed (%s); will retry", type(exc).__name__)

    async def flush(self) -> bool:
        """Write what is queued. Returns True when the write failed (the batch is kept for the next try)."""
        if not self._queue:
            return False
        batch, self._queue = self._queue, []
        try:
            await self._persist(batch, [name for name, _ in batch])
        except BaseException as exc:
            self._queue[:0] = batch  # inserting one already written is a no-op, so the whole batch retries
            del self._queue[MAX_QUEUED:]
            if isinstance(exc, asyncio.CancelledError):
                raise
            log.warning("writing %d stored responses failed (%s); will retry", len(batch), type(exc).__name__)
            return True
        return False

    async def sweep(self) -> int:
        """Write the responses their process never wrote (it died, say): pending ids older than a sweep
        interval, from their Redis copies. Returns how many it wrote."""
        assert self.redis is not None
        written = 0
        for _ in range(SWEEP_ROUNDS):
            before = now_ms() - int(self._sweep_every * 1000)
            names = await self.redis.call(b"ZRANGEBYSCORE", PENDING, b"-inf", before, b"LIMIT", 0, SWEEP_AT)
            if not names:
                break
            copies = await self.redis.call(b"MGET", *map(copy_name, names))
            found = [(name, raw) for name, raw in zip(names, copies, strict=True) if raw is not None]
            await self._persist(found, names)  # a copy that expired or was deleted leaves only its id to drop
            written += len(found)
            if len(names) < SWEEP_AT:
                break
        if written:
            log.info("swept %d stored responses another process had not written", written)
        return written

    async def _persist(self, copies: list[tuple[bytes, bytes]], names: list[bytes]) -> None:
        """Insert the rows of ``copies`` (member, copy), delete those deleted meanwhile, then drop ``names``
        from the pending set, their copies kept only ``WARM_SECONDS`` more.

        Tombstones are looked for after the insert committed: a deletion before it left one, and a deletion
        after it found the row."""
        assert self.redis is not None
        if copies:
            await self._insert(copies)
            marks = await self.redis.call(b"MGET", *(tombstone_name(name) for name, _ in copies))
            gone = [owner_and_id(name) for (name, _), mark in zip(copies, marks, strict=True) if mark]
            if gone:
                await self._run_db(responses_remove, gone=gone)
        if names:
            await self.redis.evalsha(*_WRITTEN, [PENDING, *map(copy_name, names)], [WARM_SECONDS, *names])

    async def _insert(self, copies: list[tuple[bytes, bytes]]) -> None:
        """One insert for the batch; when the database refuses it, one per row, so that one it can't take
        (its account deleted meanwhile, a text it can't store) holds back no other. Only the error's kind is
        logged: the database's message may quote the row."""
        try:
            await self._run_db(copies_insert, [raw for _, raw in copies])
            return
        except REFUSED as exc:
            log.warning(
                "the database refused %d stored responses (%s); writing them one by one", len(copies),
                type(exc).__name__,
            )  # fmt: skip
        for name, raw in copies:
            try:
                await self._run_db(copies_insert, [raw])
            except REFUSED as exc:
                log.error(
                    "stored response %s was refused by the database (%s); it is not kept",
                    owner_and_id(name)[1], type(exc).__name__,
                )  # fmt: skip
