"""After both gateways stopped gracefully: is every admitted request in the database exactly once?

The client's records are the truth of what was answered. Every 2xx answer carries an ``x-request-id``; each
must be the primary key of exactly one UsageRecord (the primary key makes "more than one" impossible, so the
check is "present"). Records for non-2xx answers that the gateway admitted (say an upstream error) are counted
too, and so are records the client never saw an id for (answers cut by the client's timeout). Then
``billing.jobs.ledger_reconcile()`` proves balance == ledger sum (and held == open holds, and usage costs ==
usage debits) for every account, and the run's own accounts are checked directly as well.
"""

import json
from pathlib import Path

from bench.setup import BenchError, manage
from bench.soakload import Sent

SCRIPT = """
import json
from django.db.models import Sum
from billing.jobs import ledger_reconcile
from billing.models import Account, Hold, LedgerEntry, UsageRecord

ids = json.load(open(IDS))
ok_ids, other_ids = set(ids["ok"]), set(ids["other"])
recorded = {}
rows = UsageRecord.objects.filter(user__email__startswith=PREFIX).values_list("request_id", "status")
for rid, status in rows.iterator(chunk_size=20000):
    recorded[str(rid)] = status
accounts = list(Account.objects.filter(user__email__startswith=PREFIX).values("id", "balance", "held"))
sums = dict(LedgerEntry.objects.filter(account__user__email__startswith=PREFIX).values("account_id")
            .annotate(s=Sum("amount")).values_list("account_id", "s"))
mismatch = [a["id"] for a in accounts if a["balance"] != (sums.get(a["id"]) or 0)]
run = ledger_reconcile()
missing = sorted(ok_ids - set(recorded))
statuses = {}
for rid, status in recorded.items():
    if rid in ok_ids:
        continue
    what = "non_2xx_answer" if rid in other_ids else "no_answer_seen"
    statuses.setdefault(what, {}).setdefault(str(status), 0)
    statuses[what][str(status)] += 1
print(json.dumps({
    "client_2xx": len(ok_ids),
    "client_2xx_recorded": len(ok_ids) - len(missing),
    "missing": len(missing),
    "missing_sample": missing[:20],
    "records_total": len(recorded),
    "records_not_2xx": statuses,
    "accounts": len(accounts),
    "balance_ne_ledger": len(mismatch),
    "open_holds": Hold.objects.filter(account__user__email__startswith=PREFIX).count(),
    "reconcile_ok": run.ok,
    "reconcile_accounts": run.accounts_checked,
    "reconcile_drift": run.drift[:20],
}))
"""


def check(env: dict[str, str], prefix: str, records: list[Sent], workdir: Path) -> dict:
    """Compare the client's answered requests with the usage records of the run's users."""
    ok = [r.request_id for r in records if 200 <= r.status < 300]
    if None in ok:
        raise BenchError("a 2xx answer came without an x-request-id header")
    other = [r.request_id for r in records if r.request_id and not 200 <= r.status < 300]
    if len(set(ok)) != len(ok):
        raise BenchError("two 2xx answers carried the same x-request-id")
    ids = workdir / "ids.json"
    ids.write_text(json.dumps({"ok": ok, "other": other}))
    out = manage(env, "shell", "-c", f"IDS = {str(ids)!r}\nPREFIX = {prefix!r}\n{SCRIPT}", timeout=600)
    data = json.loads(out.strip().splitlines()[-1])
    data["lost"] = data["missing"]
    data["ok"] = data["missing"] == 0 and data["balance_ne_ledger"] == 0 and data["reconcile_ok"]
    return data
