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
        fields = getattr(record, "fields", None)
        extra = dict(fields) if isinstance(fields, dict) else {}
        if record.exc_info:
            extra["exception"] = redact(self.formatException(record.exc_info))
        return json_line(record.created, record.levelname, record.name, record.getMessage(), extra)


def json_line(created: float, level: str, logger: str, message: str, fields: dict) -> str:
    """One log line as JSON: time (UTC, milliseconds), level, logger, message, then the fields."""
    out: dict = {
        "time": datetime.fromtimestamp(created, UTC).isoformat(timespec="milliseconds"),
        "level": level, "logger": logger, "message": message, **fields,
    }  # fmt: skip
    return orjson.dumps(out, default=str).decode()
