"""Reading the gateway's log after a run: which errors happened, how often, and in which phase.

The gateway runs at log level warning, so every line is worth a look. A 500 that wrk never saw (because the
run ended while the request was stuck) still shows up here, which is why the log is part of the report.
"""

import re
from collections import Counter
from datetime import datetime
from pathlib import Path

STAMP = "%Y-%m-%d %H:%M:%S"
_RECORD = re.compile(r"^(\d{4}-\d\d-\d\d \d\d:\d\d:\d\d),\d+ (CRITICAL|ERROR|WARNING) (\S+) (.*)$")
_EXCEPTION = re.compile(r"^([A-Za-z_][\w.]*(?:Error|Exception|Detected|Violation|Timeout)\w*): ?(.*)$")


def _normalise(message: str) -> str:
    """The same error with a different request id or count is the same error."""
    message = re.sub(r"\b[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}\b", "<id>", message)
    return re.sub(r"\b\d+\b", "N", message).strip()


def _phase_at(when: str, timeline: list[dict]) -> str:
    for phase in timeline:
        if phase["start"] <= when <= phase["end"]:
            return phase["phase"]
    return "between phases"


def scan(path: Path, timeline: list[dict]) -> dict:
    """Counts of log records (by phase, logger and message) and of exception lines (by type and message)."""
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return {"lines": 0, "records": [], "exceptions": []}
    records: Counter = Counter()
    exceptions: Counter = Counter()
    for line in lines:
        record = _RECORD.match(line)
        if record:
            when, level, logger, message = record.groups()
            records[(_phase_at(when, timeline), level, logger, _normalise(message))] += 1
            continue
        exception = _EXCEPTION.match(line)
        if exception:
            exceptions[f"{exception.group(1)}: {_normalise(exception.group(2))}"[:200]] += 1
    return {
        "lines": len(lines),
        "records": [
            {"phase": phase, "level": level, "logger": logger, "message": message, "count": count}
            for (phase, level, logger, message), count in records.most_common()
        ],
        "exceptions": [{"exception": text, "count": count} for text, count in exceptions.most_common()],
    }


def now() -> str:
    """A timestamp in the log's own format and clock (local time, second precision)."""
    return datetime.now().strftime(STAMP)
