"""The product bugs these suites found, one reason string each, for the strict xfails that document them.

A fix turns its tests into XPASS, which fails the run (the marks are strict): remove the mark and the entry.
"""

CUT_BEFORE_FIRST_BYTE = (
    "bug: proxy/pipeline.py _relay_plain.attempt and _relay_stream.attempt catch (TimeoutError, ValueError, "
    "OSError) around the first read of an upstream's answer, but a connection aborted mid-body raises "
    "aiohttp.ClientPayloadError (a ClientError, not an OSError): it escapes first_answer, so there is no failover "
    "and proxy/app.py answers 500 internal_error for an upstream fault"
)

DATABASE_DOWN_IS_500 = (
    "bug: a key cache miss while the database is down (proxy/state.py Gateway._load_key -> run_db(load_key)) "
    "raises OperationalError, which nothing turns into an ApiError, so proxy/app.py answers 500 internal_error; "
    "DESIGN.md's error table says a database outage is 503 service_unavailable with Retry-After (the credit "
    "reservation path already answers that way)"
)

REDIS_DOWN_ON_KEY_MISS_IS_500 = (
    "bug: a key cache miss reads the key's change counters with redis-py (proxy/notify.py versions_sync, "
    "called from proxy/auth.py load_key via proxy/state.py _load_key); its redis.exceptions.ConnectionError is not "
    "turned into LimiterUnavailable, so proxy/app.py answers 500 internal_error instead of 503 + Retry-After"
)

USAGE_NOT_CAPPED_BY_THE_HOLD = (
    "bug: the charge is the upstream's reported usage with no cap (proxy/accounting.py finished -> "
    "billing.pricing.cost), so an upstream that reports more tokens than max_tokens allows is charged beyond the "
    "worst case that was held: the balance goes negative, the hold row goes negative and the cached held amount "
    "(floored at zero by billing/services.py held_minus) no longer equals the open holds"
)

UPSTREAM_400_MESSAGE_CAN_CARRY_THE_SECRET = (
    "bug: proxy/upstream.py _refusal passes an upstream's 4xx error message to the client verbatim; an upstream "
    "that quotes the request's Authorization header in it (as some do) hands the provider's secret to every "
    "client. The gateway knows the secret it sent (ProviderInfo.secret) and could scrub it from what it relays"
)
