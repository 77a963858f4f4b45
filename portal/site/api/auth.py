"""Who calls the management API, what they may do, and how often."""

import logging
import time
from datetime import timedelta

from django.core.cache import cache
from django.utils import timezone
from drf_spectacular.extensions import OpenApiAuthenticationExtension
from rest_framework import exceptions
from rest_framework.authentication import BaseAuthentication
from rest_framework.permissions import BasePermission
from rest_framework.settings import api_settings
from rest_framework.throttling import BaseThrottle

from portal.accounts import keys
from portal.accounts.models import ApiKey
from portal.accounts.services import key_rehash

log = logging.getLogger("portal.site.api")
_TOUCH_EVERY = timedelta(minutes=1)  # last_used_at for management keys, without a write per request


class BearerKeyAuthentication(BaseAuthentication):
    """``Authorization: Bearer sk-...``, looked up by its keyed hash. Revoked, disabled and expired keys get 401.

    There is no cache here (unlike the /v1 gateway): every call reads the key, so a change is seen at once.
    """

    def authenticate(self, request):
        header = request.META.get("HTTP_AUTHORIZATION", "")
        if not header:
            return None
        if header.split(" ", 1)[0].lower() != "bearer":
            return None  # another scheme is not ours to judge
        token = keys.bearer_token(header)
        if token is None or not keys.key_is_well_formed(token):
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        key = ApiKey.objects.select_related("owner").filter(hash=keys.key_hash(token)).first()
        if key is None and key_rehash(raw=token):  # a key hashed under the previous secret, moved over
            key = ApiKey.objects.select_related("owner").filter(hash=keys.key_hash(token)).first()
        if key is None:
            raise exceptions.AuthenticationFailed("Invalid API key.", code="invalid_api_key")
        if key.status != "active":
            raise exceptions.AuthenticationFailed(f"This API key is {key.status}.", code="invalid_api_key")
        if key.kind == ApiKey.Kind.MANAGEMENT:
            _touch(key)
        return key.owner, key

    def authenticate_header(self, request) -> str:
        return 'Bearer realm="api"'


def _touch(key: ApiKey) -> None:
    now = timezone.now()
    if key.last_used_at is None or now - key.last_used_at > _TOUCH_EVERY:
        ApiKey.objects.filter(pk=key.pk).update(last_used_at=now)


def calling_key(request) -> ApiKey | None:
    return request.auth if isinstance(request.auth, ApiKey) else None


class ManagementAccess(BasePermission):
    """A session or a management key of an active account. Inference keys are refused (403)."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False  # DRF answers 401, since the key authenticator names a scheme
        if not user.is_active:
            raise exceptions.PermissionDenied("This account is disabled.", code="account_disabled")
        key = calling_key(request)
        if key is not None and key.kind != ApiKey.Kind.MANAGEMENT:
            raise exceptions.PermissionDenied(
                "Inference keys can't use the management API. Use a management key (sk-mgmt-...) or the "
                "dashboard.",
                code="inference_key",
            )
        return True


class KeyCaller(BasePermission):
    """Any active key of an active account: for the endpoint that describes the calling key."""

    def has_permission(self, request, view) -> bool:
        user = request.user
        if not (user and user.is_authenticated):
            return False
        if not user.is_active:
            raise exceptions.PermissionDenied("This account is disabled.", code="account_disabled")
        if calling_key(request) is None:
            raise exceptions.PermissionDenied(
                "This endpoint describes the API key that calls it: send 'Authorization: Bearer sk-...'.",
                code="key_required",
            )
        return True


class ManagementThrottle(BaseThrottle):
    """A fixed window per account in the shared Django cache: ``DEFAULT_THROTTLE_RATES["management"]``.

    If the cache is unreachable the request goes through (logged): the throttle guards against runaway
    scripts, and refusing everyone because of it would be worse.
    """

    scope = "management"

    def __init__(self) -> None:
        self.wait_seconds: float | None = None

    def allow_request(self, request, view) -> bool:
        rate = api_settings.DEFAULT_THROTTLE_RATES.get(self.scope)
        if not rate or not request.user.is_authenticated:
            return True
        allowed, period = _parse_rate(rate)
        now = time.time()
        window = int(now // period)
        name = f"isp:api-throttle:u{request.user.pk}:{window}"
        try:
            cache.add(name, 0, timeout=period + 1)
            count = cache.incr(name)
        except Exception:  # the cache backend's own errors vary (Redis, memcached...)
            log.warning(
                "management API throttle: cache unavailable, letting the request through", exc_info=True
            )
            return True
        if count > allowed:
            self.wait_seconds = (window + 1) * period - now
            return False
        return True

    def wait(self) -> float | None:
        return self.wait_seconds


def _parse_rate(rate: str) -> tuple[int, int]:
    count, period = rate.split("/")
    return int(count), {"s": 1, "m": 60, "h": 3600, "d": 86400}[period[0]]


class BearerKeyScheme(OpenApiAuthenticationExtension):
    target_class = "portal.site.api.auth.BearerKeyAuthentication"
    name = "managementKey"

    def get_security_definition(self, auto_schema):
        return {
            "type": "http",
            "scheme": "bearer",
            "description": "A management key (sk-mgmt-...). An inference key (sk-...) may only call GET /api/v1/key.",
        }
