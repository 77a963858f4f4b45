"""What every bench command shares: stopping cleanly on Ctrl-C or SIGTERM, and short paths in its output."""

import contextlib
import signal
import sys
from collections.abc import Callable
from pathlib import Path

from bench.setup import BenchError


def shown(path: Path) -> str:
    """A path as short as it can be shown: relative to the working directory when inside it."""
    with contextlib.suppress(ValueError):
        return str(path.resolve().relative_to(Path.cwd()))
    return str(path)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt  # so SIGTERM unwinds like Ctrl-C: the servers are stopped on the way out


def main(name: str, run: Callable, parse_args: Callable, argv: list[str] | None) -> int:
    signal.signal(signal.SIGTERM, _terminate)
    try:
        return run(parse_args(argv))
    except BenchError as exc:
        print(f"\n{name} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("\ninterrupted: servers stopped, no results written", file=sys.stderr)
        return 130
