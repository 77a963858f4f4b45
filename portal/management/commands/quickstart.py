import secrets
from decimal import Decimal

from django.core.management.base import BaseCommand

from billing.services import account_for, credits_grant, customer_create
from portal.accounts.models import User
from portal.accounts.services import key_create

DEMO_EMAIL = "demo@localhost"
# Enough to try the paid demo model a few thousand times; a grant like any other, in the ledger and the audit.
DEMO_CREDITS = Decimal("5")


class Command(BaseCommand):
    help = "First run only: create the demo account (staff) and an API key, and print both once."

    def handle(self, *args, **options):
        if User.objects.filter(email=DEMO_EMAIL).exists():
            self.stdout.write(
                f"The demo account {DEMO_EMAIL} exists; its key was printed on the first run. "
                f"Mint another with: .venv/bin/python manage.py mint_key {DEMO_EMAIL}"
            )
            return
        password = secrets.token_urlsafe(12)
        user = customer_create(email=DEMO_EMAIL, password=password, is_staff=True)
        _, raw = key_create(owner=user, name="quickstart")
        credits_grant(
            account=account_for(user=user), amount=DEMO_CREDITS, reason="quickstart demo credits", actor=None
        )
        self.stdout.write(
            "\n".join(
                [
                    "Demo account created (shown once, store it now):",
                    f"  dashboard and admin login: {DEMO_EMAIL} / {password}",
                    f"  API key:                   {raw}",
                    f"  credits:                   {DEMO_CREDITS} USD, to try the paid demo model",
                    "  try: curl http://127.0.0.1:8000/v1/models -H 'Authorization: Bearer <API key>'",
                ]
            )
        )
