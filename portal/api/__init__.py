"""The management API (DRF, mounted at /api/v1/ by portal/api_urls.py): keys, credits, usage, generations.

Callers authenticate with a dashboard session or a management key (``Authorization: Bearer sk-mgmt-...``).
An inference key may only read ``GET /api/v1/key``, which describes the calling key itself. Every error has
one shape, ``{"error": {"message", "code"}}`` (see errors.py). A user only ever sees their own objects: anything
else is a 404, exactly like something that doesn't exist.
"""
