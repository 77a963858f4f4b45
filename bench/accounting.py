"""After the gateway's graceful stop: was every request the benchmark sent recorded, and does money add up?

A throughput number is worthless if the gateway got it by dropping its bookkeeping, so the run ends by
counting the usage records of the benchmark's account (through the ORM, in a ``manage.py shell``) and putting
them next to the requests sent. wrk abandons the requests in flight when a run ends (up to one per connection),
and the gateway records those as client disconnects, so "recorded" may exceed "completed" a little.
"""

import json
from decimal import Decimal

from bench.setup import BenchError, manage

SCRIPT = """
import json
from decimal import Decimal
from django.db.models import Count, Sum
from billing.models import Account, Hold, LedgerEntry, UsageRecord
from portal.accounts.models import User

user = User.objects.get(email__iexact=EMAIL)
account = Account.objects.get(user=user)
rows = (UsageRecord.objects.filter(user=user).values("model__name", "status", "client_disconnected")
        .annotate(n=Count("pk"), cost=Sum("cost")).order_by("model__name", "status"))
ledger = LedgerEntry.objects.filter(account=account).aggregate(total=Sum("amount"), n=Count("pk"))
print(json.dumps({
    "usage": [{**row, "cost": str(row["cost"])} for row in rows],
    "balance": str(account.balance),
    "held": str(account.held),
    "ledger_sum": str(ledger["total"] or Decimal(0)),
    "ledger_entries": ledger["n"],
    "open_holds": Hold.objects.filter(account=account).count(),
}))
"""


def check(env: dict[str, str], email: str, sent: dict[str, int]) -> dict:
    """Usage records per model next to the requests sent per model; balance against the ledger sum."""
    try:
        out = manage(env, "shell", "-c", f"EMAIL = {email!r}\n{SCRIPT}", timeout=120)
        data = json.loads(out.strip().splitlines()[-1])
    except (BenchError, ValueError, IndexError) as exc:
        return {"error": str(exc)[-1500:]}
    recorded: dict[str, int] = {}
    for row in data["usage"]:
        recorded[row["model__name"]] = recorded.get(row["model__name"], 0) + row["n"]
    data["per_model"] = {
        model: {"sent_completed": sent.get(model, 0), "recorded": recorded.get(model, 0)}
        for model in sorted(set(sent) | set(recorded))
    }
    data["balance_matches_ledger"] = Decimal(data["balance"]) == Decimal(data["ledger_sum"])
    return data
