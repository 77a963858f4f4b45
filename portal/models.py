"""Django looks for an app's models here; they live in portal/accounts/models.py."""

from portal.accounts.models import ApiKey, AuditEntry, User, UserManager

__all__ = ["ApiKey", "AuditEntry", "User", "UserManager"]
