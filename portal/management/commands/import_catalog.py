from django.core.management.base import BaseCommand, CommandError

from proxy.catalog.importer import CatalogError, catalog_import


class Command(BaseCommand):
    help = "Create or update providers, models, prices and routes from a TOML catalog file (idempotent)."

    def add_arguments(self, parser):
        parser.add_argument("file")

    def handle(self, *args, file: str, **options):
        try:
            summary = catalog_import(path=file)
        except CatalogError as exc:
            raise CommandError(str(exc)) from None
        self.stdout.write(
            f"Catalog imported: {summary.providers} providers, {summary.models} models, {summary.routes} routes."
        )
