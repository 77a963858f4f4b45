"""Commands run in a Django process of their own, against a private database named by ``DATABASE_URL``.

The test process's ORM is bound to the shared test database, so the fault tests that run a private PostgreSQL
set it up and check it through here: ``python -m tests.reliability.privctl COMMAND JSON-ARGS``. The last line
of stdout is the JSON answer.
"""

import json
import os
import sys


def catalog(*, path: str) -> dict:
    from proxy.catalog.importer import catalog_import

    summary = catalog_import(path=path)
    return {"models": summary.models}


def funded_key(*, usd: str, email: str) -> dict:
    from decimal import Decimal

    from billing.services import account_for, credits_grant, customer_create
    from portal.accounts.services import key_create

    user = customer_create(email=email)
    account = account_for(user=user)
    credits_grant(account=account, amount=Decimal(usd), reason="reliability test funds", actor=None)
    key, raw = key_create(owner=user, name="reliability", rpm_limit=100_000, rpd_limit=100_000)
    return {"raw": raw, "key_id": key.pk, "user_id": user.pk, "account_id": account.pk}


def reconcile() -> dict:
    from billing.jobs import ledger_reconcile

    run = ledger_reconcile()
    return {"ok": run.ok, "drift": run.drift, "accounts_checked": run.accounts_checked}


COMMANDS = {"catalog": catalog, "funded_key": funded_key, "reconcile": reconcile}


def main() -> None:
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "portal.settings")
    import django

    django.setup()
    command, args = sys.argv[1], json.loads(sys.argv[2]) if len(sys.argv) > 2 else {}
    print(json.dumps(COMMANDS[command](**args)))


if __name__ == "__main__":
    main()
