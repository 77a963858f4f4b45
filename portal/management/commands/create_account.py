from decimal import Decimal, InvalidOperation

from django.core.exceptions import ValidationError
from django.core.management.base import BaseCommand, CommandError
from django.core.validators import validate_email

from billing.services import account_for, credits_grant, customer_create
from portal.accounts.models import User


class Command(BaseCommand):
    help = "Create a user account, optionally with starting credits and staff rights."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument(
            "--password", default=None, help="Without it the account cannot log in until reset"
        )
        parser.add_argument("--credits", default=None, help="Starting credits in USD, e.g. 5.00")
        parser.add_argument("--staff", action="store_true", help="Staff and superuser: can use the admin")

    def handle(self, *args, email: str, password, credits, staff: bool, **options):
        try:
            validate_email(email)
        except ValidationError:
            raise CommandError(f"'{email}' is not a valid email address") from None
        if User.objects.filter(email__iexact=email).exists():
            raise CommandError(f"an account for {email} already exists")
        amount = _usd(credits) if credits is not None else None
        user = customer_create(email=email, password=password, is_staff=staff)
        if amount:
            credits_grant(
                account=account_for(user=user), amount=amount, reason="starting credits", actor=None
            )
        self.stdout.write(f"Created {'staff ' if staff else ''}account {user.email}.")


def _usd(text: str) -> Decimal:
    try:
        amount = Decimal(text)
    except InvalidOperation:
        raise CommandError(f"'{text}' is not an amount in USD") from None
    if not amount.is_finite() or amount < 0:
        raise CommandError("the amount must be zero or more")
    return amount
