"""Users and their API keys. Business rules live in services.py; these classes only describe the data."""

from typing import ClassVar

from django.contrib.auth.models import AbstractBaseUser, BaseUserManager, PermissionsMixin
from django.db import models
from django.utils import timezone


class UserManager(BaseUserManager["User"]):
    use_in_migrations = True

    def create_user(self, email: str, password: str | None = None, **extra) -> "User":
        if not email:
            raise ValueError("an email address is required")
        user = self.model(email=self.normalize_email(email).lower(), **extra)
        user.set_password(password)  # None gives an unusable password
        user.save(using=self._db)
        return user

    def create_superuser(self, email: str, password: str | None = None, **extra) -> "User":
        extra.update(is_staff=True, is_superuser=True)
        return self.create_user(email, password, **extra)


class User(AbstractBaseUser, PermissionsMixin):
    """A person with a login. ``is_active=False`` disables the account: its keys get 403 at once."""

    email = models.EmailField(unique=True)
    name = models.CharField(max_length=120, blank=True)
    is_active = models.BooleanField(default=True)
    is_staff = models.BooleanField(default=False)
    date_joined = models.DateTimeField(default=timezone.now)
    # Per-user limits override the site defaults; per-key limits override these.
    rpm_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per minute; empty = default"
    )
    rpd_limit = models.PositiveIntegerField(
        null=True, blank=True, help_text="Requests per day; empty = default"
    )

    objects = UserManager()

    USERNAME_FIELD = "email"
    EMAIL_FIELD = "email"
    REQUIRED_FIELDS: ClassVar[list[str]] = []

    def __str__(self) -> str:
        return self.email


class ApiKey(models.Model):
    """An API key. Only its keyed hash and a short display prefix are stored; the raw key is shown once."""

    class Kind(models.TextChoices):
        INFERENCE = "inference", "Inference"
        MANAGEMENT = "management", "Management"

    class SpendReset(models.TextChoices):
        DAILY = "daily", "Daily"
        WEEKLY = "weekly", "Weekly"
        MONTHLY = "monthly", "Monthly"
        NEVER = "never", "Never"

    owner = models.ForeignKey(User, on_delete=models.CASCADE, related_name="api_keys")
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.INFERENCE)
    name = models.CharField(max_length=64)
    prefix = models.CharField(max_length=16, help_text="The first characters of the key, for recognising it")
    hash = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(default=timezone.now)
    last_used_at = models.DateTimeField(null=True, blank=True)
    expires_at = models.DateTimeField(null=True, blank=True)
    revoked_at = models.DateTimeField(null=True, blank=True)
    disabled = models.BooleanField(default=False, help_text="A disabled key is refused until enabled again")
    allowed_models = models.JSONField(
        default=list, blank=True, help_text="Model ids; empty allows every model"
    )
    rpm_limit = models.PositiveIntegerField(null=True, blank=True)
    rpd_limit = models.PositiveIntegerField(null=True, blank=True)
    spend_limit = models.DecimalField(max_digits=24, decimal_places=12, null=True, blank=True)
    spend_reset = models.CharField(max_length=8, choices=SpendReset.choices, default=SpendReset.NEVER)
    spend_used = models.DecimalField(max_digits=24, decimal_places=12, default=0)
    spend_period_start = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["owner", "created_at"])]

    def __str__(self) -> str:
        return f"{self.name} ({self.prefix}…)"

    @property
    def status(self) -> str:
        if self.revoked_at:
            return "revoked"
        if self.disabled:
            return "disabled"
        if self.expires_at and self.expires_at <= timezone.now():
            return "expired"
        return "active"


class AuditEntry(models.Model):
    """Who changed money or access, when, and the state before and after. Append-only."""

    actor = models.ForeignKey(User, null=True, blank=True, on_delete=models.SET_NULL, related_name="+")
    action = models.CharField(max_length=64)
    target_type = models.CharField(max_length=64)
    target_id = models.CharField(max_length=64)
    before = models.JSONField(default=dict, blank=True)
    after = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now, db_index=True)

    class Meta:
        verbose_name_plural = "audit entries"
        ordering = ["-created_at"]

    def __str__(self) -> str:
        return f"{self.action} {self.target_type}:{self.target_id}"
