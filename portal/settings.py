"""The one settings module. Everything that differs between machines comes from the environment.

With no environment at all the site runs for development: SQLite under ``var/``, DEBUG on, a generated secret
kept in ``var/``, an in-process limiter and a filesystem Celery broker. Production (``DEBUG=false``) refuses to
start without ``SECRET_KEY`` and switches on the secure cookie and transport settings.
"""

import base64
import hashlib
import os
import secrets
from pathlib import Path

import environ
from celery.schedules import crontab
from django.core.exceptions import ImproperlyConfigured

BASE_DIR = Path(__file__).resolve().parent.parent
VAR_DIR = Path(environ.Env().str("VAR_DIR", default=str(BASE_DIR / "var")))

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    env.read_env(BASE_DIR / ".env")

DEBUG = env.bool("DEBUG", default=True)


def _dev_secret() -> str:
    """A per-checkout secret for development, generated once so sessions survive restarts."""
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    path = VAR_DIR / "dev-secret-key"
    if not path.exists():
        path.write_text(secrets.token_urlsafe(50))
        path.chmod(0o600)
    return path.read_text().strip()


SECRET_KEY = env.str("SECRET_KEY", default="")
if not SECRET_KEY:
    if not DEBUG:
        raise ImproperlyConfigured("SECRET_KEY must be set when DEBUG is off.")
    SECRET_KEY = _dev_secret()


def _derived(purpose: str) -> bytes:
    # Separate secrets per purpose, so a leak of one derived value says nothing about SECRET_KEY.
    return hashlib.sha256(f"{purpose}:{SECRET_KEY}".encode()).digest()


# API keys are stored as HMAC-SHA256 under this secret. Changing it alone invalidates every key; to rotate it,
# name the old one in KEY_HASH_SECRET_PREVIOUS: a key the new secret doesn't know is looked up under the old
# one and, if found, stored under the new (portal/accounts/services.py key_rehash), so keys move over as used.
KEY_HASH_SECRET = env.str("KEY_HASH_SECRET", default="").encode() or _derived("api-key-hash")
KEY_HASH_SECRET_PREVIOUS = env.str("KEY_HASH_SECRET_PREVIOUS", default="").encode()
# Fernet keys for provider secrets stored in the database, comma-separated: the first encrypts, every one
# decrypts, so a key can be rotated (put the new one first, run `manage.py rotate_provider_secrets`, then drop
# the old one; proxy/catalog/secrets.py).
FIELD_ENCRYPTION_KEY = (
    env.str("FIELD_ENCRYPTION_KEY", default="")
    or base64.urlsafe_b64encode(_derived("field-encryption")).decode()
)

ALLOWED_HOSTS = env.list("ALLOWED_HOSTS", default=["127.0.0.1", "localhost", "[::1]"] if DEBUG else [])
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])
PUBLIC_BASE_URL = env.str("PUBLIC_BASE_URL", default="http://127.0.0.1:8000").rstrip("/")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "portal",
    "proxy",
    "billing",
    "proxy.conversations",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "portal.urls"
ASGI_APPLICATION = "portal.asgi.application"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

DATABASES = {"default": env.db("DATABASE_URL", default=f"sqlite:///{VAR_DIR / 'dev.sqlite3'}")}
if DATABASES["default"]["ENGINE"].endswith("postgresql"):
    # Under ASGI every Django request runs on a thread of its own, so a connection kept past its request is never
    # used again: it stays open until garbage collection (measured: 4 clients of the management API held 46
    # sessions, 16 ran PostgreSQL out of its 100). So each request closes its own, as Django advises for ASGI.
    # The gateway's database threads (proxy/gateway/db.py) live as long as the process and keep theirs anyway.
    DATABASES["default"]["CONN_MAX_AGE"] = env.int("CONN_MAX_AGE", default=0)
    DATABASES["default"]["CONN_HEALTH_CHECKS"] = True
    # DATABASE_POOLER=transaction when DATABASE_URL points at a pooler in transaction mode (PgBouncer's
    # pool_mode = transaction): consecutive transactions of one connection may then run on different server
    # sessions, so nothing may outlive its transaction. The one thing that did is a server-side cursor outside
    # a transaction (QuerySet.iterator(), the usage CSV export): Django declares it WITH HOLD and fetches from
    # it later, perhaps on a session that never heard of it. Everything else already fits: Django's psycopg 3
    # backend binds parameters client-side and never prepares statements (prepare_threshold None), SET
    # TRANSACTION and COPY run inside their transaction, there are no advisory locks, LISTEN/NOTIFY or temporary
    # tables (cache changes travel through Redis), and PgBouncer tracks the TimeZone Django may SET at connect and
    # sets it again on whichever server session serves that client.
    DATABASE_POOLER = env.str("DATABASE_POOLER", default="")
    if DATABASE_POOLER not in ("", "session", "transaction"):
        raise ImproperlyConfigured("DATABASE_POOLER must be empty, 'session' or 'transaction'.")
    DATABASES["default"]["DISABLE_SERVER_SIDE_CURSORS"] = DATABASE_POOLER == "transaction"
else:
    # SQLite: wait for the writer lock instead of failing at once; the settle flusher and the admin share it.
    DATABASES["default"].setdefault("OPTIONS", {})["timeout"] = 20
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_USER_MODEL = "portal.User"
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "landing"
# Sign-in throttling (portal/site/throttle.py): failures counted per account and per client address in the cache.
LOGIN_FAILURES_PER_ACCOUNT = env.int("LOGIN_FAILURES_PER_ACCOUNT", default=5)
LOGIN_FAILURES_PER_IP = env.int("LOGIN_FAILURES_PER_IP", default=20)
LOGIN_LOCKOUT_SECONDS = env.int("LOGIN_LOCKOUT_SECONDS", default=15 * 60)
# Behind a reverse proxy every client arrives from the proxy's address: count per the address the proxy saw
# (the last X-Forwarded-For entry, which it appends). Never trust the header without such a proxy.
LOGIN_TRUST_X_FORWARDED_FOR = env.bool(
    "LOGIN_TRUST_X_FORWARDED_FOR", default=env.bool("BEHIND_TLS_PROXY", False)
)

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATICFILES_DIRS = [BASE_DIR / "static"]
STATIC_ROOT = VAR_DIR / "staticfiles"

# --- Redis, limits and the /v1 gateway -------------------------------------------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
DEFAULT_RPM = env.int("DEFAULT_RPM", default=20)
DEFAULT_RPD = env.int("DEFAULT_RPD", default=50)
TIER_RPD = env.int("TIER_RPD", default=1000)
TIER_THRESHOLD_USD = env.str("TIER_THRESHOLD_USD", default="10")
MAX_BODY_BYTES = env.int("MAX_BODY_BYTES", default=4 * 1024 * 1024)
# How long a key lookup stays in a process's memory. Every change made through the services (revocation,
# limits, owner) is seen on the next request anyway (change counters, see portal/accounts/limits.py), so this only bounds
# edits that bypass them; long enough that a key used every few minutes stays cached (the soak bench showed a
# 60 s cache sending most requests of a 1,000-key workload to the database).
KEY_CACHE_SECONDS = env.float("KEY_CACHE_SECONDS", default=600.0)
CATALOG_REFRESH_SECONDS = env.float("CATALOG_REFRESH_SECONDS", default=30.0)
# A stream that waits this long for its first token gets an SSE comment, so proxies keep it open.
STREAM_KEEPALIVE_SECONDS = env.float("STREAM_KEEPALIVE_SECONDS", default=15.0)
# After SIGTERM, /readyz answers 503 and the process keeps serving this long before it stops listening, so a
# load balancer takes it out of rotation first (behind one, a few seconds more than its probe interval).
DRAIN_SECONDS = env.float("DRAIN_SECONDS", default=0.0)
# One access line per /v1 request at INFO (proxy/gateway/access.py), written a batch at a time; off, the usage
# records remain.
ACCESS_LOG = env.bool("ACCESS_LOG", default=True)
# GET /metrics (proxy/gateway/metrics.py): with a token set, only with it as a bearer token. Without one it is
# open only when METRICS_OPEN says so, which is the default only in DEBUG (the metrics show traffic and cost).
METRICS_TOKEN = env.str("METRICS_TOKEN", default="")
METRICS_OPEN = env.bool("METRICS_OPEN", default=DEBUG)
# prometheus_client's multiprocess mode: every worker writes its samples here and a scrape adds them up. It is
# read when prometheus_client is imported, so it is set here, before anything imports it.
METRICS_DIR = Path(env.str("PROMETHEUS_MULTIPROC_DIR", default=str(VAR_DIR / "metrics")))
os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(METRICS_DIR)
# OpenTelemetry traces (proxy/gateway/tracing.py), sent by OTLP over HTTP when an endpoint is set; the exporter
# reads the other standard OTEL_* variables itself.
OTEL_EXPORTER_OTLP_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_ENDPOINT", default="")
OTEL_EXPORTER_OTLP_TRACES_ENDPOINT = env.str("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT", default="")
OTEL_SERVICE_NAME = env.str("OTEL_SERVICE_NAME", default="inference-space")
UPSTREAM_POOL_SIZE = env.int("UPSTREAM_POOL_SIZE", default=256)
# Settlement is batched: finished requests are written together at most this often (see billing/settlement.py).
SETTLE_FLUSH_SECONDS = env.float("SETTLE_FLUSH_SECONDS", default=0.2)
# Finished requests a process may hold unwritten (the database is down, say) before it admits no more: past
# this, new requests get 503 instead of being served with no way to record them (about 40 s at full speed).
SETTLE_MAX_PENDING = env.int("SETTLE_MAX_PENDING", default=50_000)
HOLD_TIMEOUT_SECONDS = env.int("HOLD_TIMEOUT_SECONDS", default=120)
# Stored responses (the Responses API's store: true) are deleted this many days after they were made.
RESPONSES_RETENTION_DAYS = env.int("RESPONSES_RETENTION_DAYS", default=30)
# With Redis, a stored response is kept there before its answer goes out and written to the database in batches,
# at most RESPONSES_FLUSH_SECONDS apart (see proxy/conversations/stored.py). Every process sweeps, every
# RESPONSES_SWEEP_SECONDS, the responses pending longer than that (their process died) and writes them from their
# Redis copies, which live RESPONSES_COPY_SECONDS (five minutes once written): long enough to outlast a crash.
RESPONSES_FLUSH_SECONDS = env.float("RESPONSES_FLUSH_SECONDS", default=0.2)
RESPONSES_SWEEP_SECONDS = env.float("RESPONSES_SWEEP_SECONDS", default=30.0)
RESPONSES_COPY_SECONDS = env.int("RESPONSES_COPY_SECONDS", default=3600)

# The Django cache holds the sign-in throttle's counters, so it must be shared by every process: Redis when there
# is one, otherwise process memory (fine for the single process of `make run`).
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_PREFIX": "isp-web",
        }
    }
else:
    CACHES = {"default": {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}}

# --- Celery ----------------------------------------------------------------------------------------------------
if REDIS_URL:
    CELERY_BROKER_URL = REDIS_URL
    CELERY_RESULT_BACKEND = REDIS_URL
else:
    # A filesystem broker works across the processes of one machine with nothing else installed.
    _celery_dir = VAR_DIR / "celery"
    for sub in ("in", "processed", "results", "control"):
        (_celery_dir / sub).mkdir(parents=True, exist_ok=True)
    CELERY_BROKER_URL = "filesystem://"
    CELERY_BROKER_TRANSPORT_OPTIONS = {
        "data_folder_in": str(_celery_dir / "in"),
        "data_folder_out": str(_celery_dir / "in"),
        "processed_folder": str(_celery_dir / "processed"),
        "store_processed": False,
        # The exchange tables; kombu's default is ./control, which every worker would write into the checkout.
        "control_folder": str(_celery_dir / "control"),
    }
    CELERY_RESULT_BACKEND = f"file://{_celery_dir / 'results'}"
CELERY_TIMEZONE = "UTC"
CELERY_TASK_ACKS_LATE = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_BEAT_SCHEDULE = {
    "aggregate-usage": {"task": "billing.tasks.aggregate_usage", "schedule": 60.0},
    "release-stale-holds": {"task": "billing.tasks.release_stale_holds", "schedule": 60.0},
    "reconcile-ledger": {"task": "billing.tasks.reconcile_ledger", "schedule": crontab(minute=7)},
    "reset-daily-quotas": {"task": "billing.tasks.reset_daily_quotas", "schedule": crontab(minute=0, hour=0)},
    "expire-responses": {
        "task": "proxy.conversations.tasks.expire_responses",
        "schedule": crontab(minute=23),
    },
}

# --- Stripe (card purchases are disabled when these are empty) ---------------------------------------------------
STRIPE_SECRET_KEY = env.str("STRIPE_SECRET_KEY", default="")
STRIPE_WEBHOOK_SECRET = env.str("STRIPE_WEBHOOK_SECRET", default="")

# --- Email -----------------------------------------------------------------------------------------------------
EMAIL_BACKEND = env.str("EMAIL_BACKEND", default="django.core.mail.backends.console.EmailBackend")
if env.str("EMAIL_URL", default=""):
    vars().update(env.email_url("EMAIL_URL"))
DEFAULT_FROM_EMAIL = env.str("DEFAULT_FROM_EMAIL", default="Inference Space <noreply@localhost>")

# --- The management API (DRF under /api/v1/, see portal/site/api/) -----------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "portal.site.api.auth.BearerKeyAuthentication",  # first, so a missing or bad key answers 401, not 403
        "rest_framework.authentication.SessionAuthentication",
    ],
    "DEFAULT_PERMISSION_CLASSES": ["portal.site.api.auth.ManagementAccess"],
    "DEFAULT_THROTTLE_CLASSES": ["portal.site.api.auth.ManagementThrottle"],
    # Per account, across every process (the Django cache); a guard against runaway scripts, not a quota.
    "DEFAULT_THROTTLE_RATES": {"management": env.str("MANAGEMENT_API_RATE", default="600/min")},
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "EXCEPTION_HANDLER": "portal.site.api.errors.api_exception_handler",
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Inference Space management API",
    "DESCRIPTION": "Manage API keys and read credits and usage. Authenticate with a dashboard session or a "
    "management key (`Authorization: Bearer sk-mgmt-...`). The inference API itself is OpenAI's, under /v1.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    "COMPONENT_SPLIT_REQUEST": True,
    "ENUM_NAME_OVERRIDES": {"SpendResetEnum": "portal.accounts.models.ApiKey.SpendReset"},
}

# --- Production hardening --------------------------------------------------------------------------------------
if not DEBUG:
    SECURE_SSL_REDIRECT = env.bool("SECURE_SSL_REDIRECT", default=True)
    SECURE_HSTS_SECONDS = env.int("SECURE_HSTS_SECONDS", default=31536000)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    if env.bool("BEHIND_TLS_PROXY", default=False):
        SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"

LOG_FORMAT = env.str("LOG_FORMAT", default="plain")  # "json": every line one JSON object, for a log shipper
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "filters": {"redact": {"()": "portal.logs.RedactSecrets"}},
    "formatters": {
        "plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"},
        "json": {"()": "portal.logs.JsonFormatter"},
    },
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "filters": ["redact"],
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        },
        # The access line holds only fields the gateway writes itself (a key's display prefix, never a key):
        # it skips the secret filter, which would otherwise run a regex over every request's line.
        "access": {
            "class": "logging.StreamHandler",
            "formatter": "json" if LOG_FORMAT == "json" else "plain",
        },
    },
    "root": {"handlers": ["console"], "level": env.str("LOG_LEVEL", default="INFO")},
    "loggers": {
        "django.db.backends": {"level": "WARNING"},
        "proxy.access": {"handlers": ["access"], "propagate": False},
    },
}
