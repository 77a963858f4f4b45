"""Django's admin autodiscovery imports this module: every app's admin pages are registered by the site."""

from portal.site.admin import accounts, billing, catalog

__all__ = ["accounts", "billing", "catalog"]
