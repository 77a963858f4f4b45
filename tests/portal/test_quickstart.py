"""``manage.py quickstart``: the first run's demo account can use both demo models, the paid one included."""

from decimal import Decimal
from io import StringIO

import pytest
from django.core.management import call_command

from billing.models import Account, LedgerEntry
from portal.accounts.keys import key_hash
from portal.accounts.models import ApiKey, User
from portal.management.commands.quickstart import DEMO_EMAIL


@pytest.mark.django_db
def test_quickstart_prints_a_working_key_once_and_funds_the_demo_account():
    out = StringIO()
    call_command("quickstart", stdout=out)
    raw = next(word for word in out.getvalue().split() if word.startswith("sk-"))
    user = User.objects.get(email=DEMO_EMAIL)
    assert ApiKey.objects.get(hash=key_hash(raw)).owner == user
    account = Account.objects.get(user=user)
    assert account.balance == Decimal("5")
    assert LedgerEntry.objects.filter(account=account, kind="grant").count() == 1
    assert "5 USD" in out.getvalue()

    again = StringIO()
    call_command("quickstart", stdout=again)  # a second run changes nothing and shows no secret
    assert "sk-" not in again.getvalue().replace("mint_key", "")
    assert Account.objects.get(user=user).balance == Decimal("5")
