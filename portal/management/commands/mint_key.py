from django.core.management.base import BaseCommand, CommandError

from portal.accounts.models import User
from portal.accounts.services import key_create


class Command(BaseCommand):
    help = "Create an API key for an account. The raw key is printed alone on the last line, once."

    def add_arguments(self, parser):
        parser.add_argument("email")
        parser.add_argument("--name", default="cli")
        parser.add_argument("--rpm", type=int, default=None, help="Requests per minute for this key")
        parser.add_argument("--rpd", type=int, default=None, help="Requests per day for this key")

    def handle(self, *args, email: str, name: str, rpm, rpd, **options):
        for flag, value in (("--rpm", rpm), ("--rpd", rpd)):
            if value is not None and value < 1:
                raise CommandError(f"{flag} must be at least 1")
        user = User.objects.filter(email__iexact=email).first()
        if user is None:
            raise CommandError(f"no account for {email}; create it with create_account")
        key, raw = key_create(owner=user, name=name, rpm_limit=rpm, rpd_limit=rpd)
        self.stdout.write(f"Key '{key.name}' for {user.email} (shown once, store it now):")
        self.stdout.write(raw)
