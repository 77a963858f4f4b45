"""The access log: one line per admitted /v1 request, for operators, written a batch at a time.

A line says who (the key's display prefix, never the key), what, where, how it went and what it used; never
the prompt or the answer. Lines go to the ``proxy.access`` logger's stream handler (stderr, unless the logging
config says otherwise) in the same format as every other line, plain or ``LOG_FORMAT=json``, but written
together every ``FLUSH_SECONDS`` or ``FLUSH_AT`` lines: one write per batch instead of a log record, a format
and a write per request, which cost about a fifth of the gateway's throughput (docs/performance.md). A
graceful stop writes what is left; a crash can lose the last fraction of a second of lines (the usage records
are the books, not this log).
"""

import asyncio
import logging
import time

from portal.logs import json_line

FLUSH_SECONDS = 0.2
FLUSH_AT = 500
FIELDS = (
    "request_id", "key_prefix", "endpoint", "model", "provider", "status", "latency_ms", "prompt_tokens",
    "completion_tokens",
)  # fmt: skip

logger = logging.getLogger("proxy.access")


class AccessLog:
    def __init__(self, *, json: bool) -> None:
        self._json = json
        self._lines: list[tuple[float, tuple]] = []
        self._task: asyncio.Task | None = None

    @staticmethod
    def enabled() -> bool:
        return logger.isEnabledFor(logging.INFO)

    def add(self, *values) -> None:
        """One request's line: its values in the order of ``FIELDS``."""
        self._lines.append((time.time(), values))
        if len(self._lines) >= FLUSH_AT:
            self.flush()

    def flush(self) -> None:
        lines, self._lines = self._lines, []
        if not lines:
            return
        handler = next((h for h in logger.handlers if isinstance(h, logging.StreamHandler)), None)
        if handler is None:  # a logging config without a stream: a record per line, as any logger
            for _created, values in lines:
                fields = dict(zip(FIELDS, values, strict=True))
                logger.info(_message(values), extra={"fields": fields})
            return
        text = "".join(self._line(created, values) + "\n" for created, values in lines)
        with handler.lock:  # type: ignore[union-attr]  # a handler's lock exists once it is configured
            handler.stream.write(text)
            handler.flush()

    def _line(self, created: float, values: tuple) -> str:
        if self._json:
            return json_line(
                created, "INFO", logger.name, _message(values), dict(zip(FIELDS, values, strict=True))
            )
        stamp = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(created))
        return f"{stamp},{int(created * 1000) % 1000:03d} INFO {logger.name} {_message(values)}"

    def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="access-log")

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_SECONDS)
            self.flush()

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        self.flush()


def _message(values: tuple) -> str:
    return " ".join(f"{name}={value}" for name, value in zip(FIELDS, values, strict=True))
