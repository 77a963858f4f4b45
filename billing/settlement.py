"""Batched settlement: finished requests are written together, a few milliseconds after they finish.

Each gateway process queues what its requests produced and flushes the queue every ``SETTLE_FLUSH_SECONDS``
as one transaction: the usage records, the ledger debits and the balance updates together. The request id is
the usage record's primary key, so a flush that is retried after an unknown outcome can never count twice.
A graceful stop flushes everything before the process exits. The one accepted loss is a hard crash, which can
leave at most one flush interval unrecorded: the operator's loss, never the customer's.
"""

import asyncio
import contextlib
import logging
import uuid
from dataclasses import dataclass
from datetime import datetime
from decimal import Decimal

from django.db import transaction
from django.utils import timezone

log = logging.getLogger("billing.settlement")


@dataclass(slots=True)
class Finished:
    """What one admitted request produced and cost."""

    request_id: uuid.UUID
    user_id: int
    key_id: int
    model_id: int
    provider_id: int | None
    prompt_tokens: int
    completion_tokens: int
    tokens_estimated: bool
    cost: Decimal
    status: int
    error_code: str
    latency_ms: int
    ttft_ms: int | None
    streamed: bool
    finish_reason: str
    client_disconnected: bool
    created_at: datetime


def write_batch(batch: list[Finished]) -> int:
    """Write a batch in one transaction; rows already written by an earlier try are skipped. Sync."""
    from billing.models import UsageRecord
    from portal.models import ApiKey

    with transaction.atomic():
        done = set(
            UsageRecord.objects.filter(pk__in=[f.request_id for f in batch]).values_list("pk", flat=True)
        )
        fresh = [f for f in batch if f.request_id not in done]
        UsageRecord.objects.bulk_create([
            UsageRecord(
                request_id=f.request_id, user_id=f.user_id, key_id=f.key_id, model_id=f.model_id,
                provider_id=f.provider_id, prompt_tokens=f.prompt_tokens, completion_tokens=f.completion_tokens,
                tokens_estimated=f.tokens_estimated, cost=f.cost, status=f.status, error_code=f.error_code,
                latency_ms=f.latency_ms, ttft_ms=f.ttft_ms, streamed=f.streamed, finish_reason=f.finish_reason,
                client_disconnected=f.client_disconnected, created_at=f.created_at,
            )
            for f in fresh
        ])  # fmt: skip
        if fresh:
            ApiKey.objects.filter(pk__in={f.key_id for f in fresh}).update(last_used_at=timezone.now())
    return len(fresh)


class Settler:
    """The per-process queue of finished requests and its flusher task."""

    def __init__(self, run_db, flush_every: float) -> None:
        self._run_db = run_db
        self._flush_every = flush_every
        self._queue: list[Finished] = []
        self._task: asyncio.Task | None = None
        self._wake = asyncio.Event()

    def add(self, item: Finished) -> None:
        self._queue.append(item)

    @property
    def pending(self) -> int:
        return len(self._queue)

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="settler")

    async def stop(self) -> None:
        if self._task:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for attempt in range(10):  # a graceful stop records everything it can
            if not self._queue or not await self.flush():
                break
            await asyncio.sleep(min(0.1 * 2**attempt, 2))
        if self._queue:
            log.error("stopping with %d finished requests unrecorded", len(self._queue))

    async def _loop(self) -> None:
        delay = self._flush_every
        while True:
            await asyncio.sleep(delay)
            failed = await self.flush()
            delay = min(delay * 2, 2.0) if failed else self._flush_every

    async def flush(self) -> bool:
        """Write what is queued. Returns True when the write failed (the batch is kept for the next try)."""
        if not self._queue:
            return False
        batch, self._queue = self._queue, []
        try:
            await self._run_db(write_batch, batch)
        except asyncio.CancelledError:
            self._queue[:0] = batch
            raise
        except Exception:
            log.exception("settlement flush of %d requests failed; will retry", len(batch))
            self._queue[:0] = batch
            return True
        return False
