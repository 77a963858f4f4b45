"""What each fault test tried and saw, written as JSON next to the other test artifacts.

docs/reliability.md's table is filled from these files; a test writes its file only after its assertions
passed, so a file on disk is a run that lost nothing.
"""

import json

from tests.live import ROOT

REPORT_DIR = ROOT / "test-artifacts" / "reliability"


def write_report(name: str, **observed) -> None:
    REPORT_DIR.mkdir(parents=True, exist_ok=True)
    (REPORT_DIR / f"{name}.json").write_text(
        json.dumps(observed, indent=2, sort_keys=True, default=str) + "\n"
    )
