"""Logging: a filter that masks anything that looks like a secret before a record is written anywhere, and
the JSON formatter of ``LOG_FORMAT=json`` (one object per line, for log shippers)."""

import logging
import re
from datetime import UTC, datetime

import orjson

# sk- keys (ours and most providers'), bearer tokens, and Stripe-style secrets.
_SECRET = re.compile(
    r"(sk-[A-Za-z0-9_\-]{6})[A-Za-z0-9_\-]+|(Bearer\s+)\S+|((?:whsec|rk_live|sk_live|sk_test)_)\w+"
)


def redact(text: str) -> str:
    return _SECRET.sub(lambda m: (m.group(1) or m.group(2) or m.group(3)) + "[redacted]", text)


class RedactSecrets(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


class JsonFormatter(logging.Formatter):
    """A record as one JSON object: time (UTC), level, logger, message, the access line's fields, and the
    traceback when there is one."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname, "logger": record.name, "message": record.getMessage(),
        }  # fmt: skip
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            out.update(fields)
        if record.exc_info:
            out["exception"] = redact(self.formatException(record.exc_info))
        return orjson.dumps(out, default=str).decode()
