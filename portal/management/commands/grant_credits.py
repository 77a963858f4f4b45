from django.core.management.base import BaseCommand, CommandError

from billing.services import account_for, credits_grant
from portal.accounts.models import User
from portal.management.commands.create_account import _usd


class Command(BaseCommand):
    help = "Add credits to an account, with a reason, as a ledger entry."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("usd")
        parser.add_argument("--reason", required=True)

    def handle(self, *args, email: str, usd: str, reason: str, **options):
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"no account for {email}")
        amount = _usd(usd)
        if amount == 0:
            raise CommandError("the amount must be more than zero")
        if not reason.strip():
            raise CommandError("--reason must say why")
        credits_grant(account=account_for(user=user), amount=amount, reason=reason, actor=None)
        balance = account_for(user=user).balance
        self.stdout.write(f"Granted {amount} USD to {user.email}; balance is now {balance.normalize()} USD.")
