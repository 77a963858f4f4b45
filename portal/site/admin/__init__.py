"""The admin pages of every app (portal/admin.py imports them for Django's autodiscovery)."""
