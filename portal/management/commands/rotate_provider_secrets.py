from django.core.management.base import BaseCommand, CommandError

from proxy.catalog.services import provider_secrets_rotate


class Command(BaseCommand):
    help = (
        "Re-encrypt every provider secret stored in the database under the first FIELD_ENCRYPTION_KEY "
        "(list the new key first and keep the old one until this has run)."
    )

    def handle(self, *args, **options):
        done, unreadable = provider_secrets_rotate()
        self.stdout.write(f"Re-encrypted {done} provider secrets under the first key.")
        if unreadable:
            raise CommandError(
                "No listed key opens the secret of: "
                + ", ".join(unreadable)
                + ". Add the key they were encrypted with to FIELD_ENCRYPTION_KEY, or set them again in the admin."
            )
