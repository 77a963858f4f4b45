"""A logging filter that masks anything that looks like a secret before a record is written anywhere."""

import logging
import re

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
