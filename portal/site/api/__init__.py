"""The management API (DRF, mounted at /api/v1/ by portal/site/api/urls.py): keys, credits, usage, generations.

Callers authenticate with a dashboard session or a management key (``Authorization: Bearer sk-mgmt-...``).
An inference key may only read ``GET /api/v1/key``, which describes the calling key itself. Every error has
one shape, ``{"error": {"message", "code"}}`` (see errors.py). A user only ever sees their own objects: anything
else is a 404, exactly like something that doesn't exist.

Decisions worth knowing:
- Money is an exact decimal string ("12.500000000000"), in and out; JSON numbers are refused for money.
- A key's RPM/RPD may be set below what the account gets anyway, never above (an operator raises a user's
  limits in the admin). A management key can't create management keys: a leaked one can't mint its successor.
- DELETE /api/v1/keys/{id} revokes: the key stays listed, revoked, and the answer is the revoked key (200).
- Usage comes from the daily rollups (``aggregate_usage``, every minute); a generation from its usage record,
  written a few milliseconds after the response ends.
- Each account may make ``DEFAULT_THROTTLE_RATES["management"]`` calls (env ``MANAGEMENT_API_RATE``, default
  600/min) before a 429 with Retry-After.
"""
