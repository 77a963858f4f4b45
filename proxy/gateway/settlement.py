"""Settlement: a finished request's usage record, its reservation released and its real cost charged.

The record is made here (tokens, cost, timings) and handed to this process's batch writer
(billing/settlement.py), which writes it with its ledger debit soon after.

Settlement must never fail to record an admitted request: a request that goes unrecorded is served for free
and keeps its credit held. So each step that can fail is caught here, and the record is written all the same,
with a ``note`` saying what went wrong and an estimate that errs towards the customer:

- the local token count fails: tokens are estimated from the text's size, at 8 UTF-8 bytes a token (about
  half of what English text has per token, so the estimate is low, never high);
- the price can't be computed (a price missing, say): the request is recorded with its tokens and costs 0;
- anything else: the request is recorded with what is known for sure (who, what model, the status), no tokens
  and no charge.

A charge that would pass the request's reservation is capped at it (an upstream over-reporting its usage must
not overdraw). That means the worst-case estimate was wrong, so it is logged and noted as ``cost_capped``.
"""

import logging
import time
import uuid
from dataclasses import replace
from decimal import Decimal

import orjson
from django.conf import settings
from django.utils import timezone

from billing.credits import Reservation
from billing.models import UsageNote as Note
from billing.pricing import MILLION, to_money, usage_cost
from billing.settlement import Finished
from billing.usage import Usage
from proxy.catalog.snapshot import ModelInfo, RouteInfo
from proxy.gateway import errors, metrics, spend, tracing
from proxy.gateway.auth import KeyInfo
from proxy.gateway.endpoints.base import Endpoint, Request
from proxy.gateway.http import Incoming
from proxy.gateway.runtime import Runtime
from proxy.gateway.spend import SpendClaim
from proxy.gateway.streaming import Tally

log = logging.getLogger("proxy")

ROUGH_BYTES_PER_TOKEN = 8
MAX_TOKENS = 2**31 - 1  # what a usage record's token columns hold
MAX_RAW_USAGE_BYTES = 4096


def settle(
    rt: Runtime, req: Incoming, *, endpoint: Endpoint, key: KeyInfo, model: ModelInfo, request: Request,
    tally: Tally, reservation: Reservation | None, claim: SpendClaim | None, status: int,
) -> None:  # fmt: skip
    """Record the request exactly once and release its reservation; the write itself is batched. Never
    fails to do either: the record is made whatever went wrong."""
    record = finished(
        request_id=req.request_id, started=req.started, endpoint=endpoint, key=key, model=model,
        route=tally.route, request=request, tally=tally, status=status, reservation=reservation,
        raw_size=len(req.body),
    )  # fmt: skip
    req.settled = True
    try:
        if reservation is not None:
            rt.credits.settle(reservation, record.cost)
        spend.adjust(rt, claim, record.cost)
    finally:
        rt.settler.add(record)
        try:
            _observe(rt, req, record, key, model, tally)
        except Exception:  # the books are kept above; metrics and the log line must never fail a request
            log.exception("request %s could not be observed", req.request_id)


def _observe(
    rt: Runtime, req: Incoming, record: Finished, key: KeyInfo, model: ModelInfo, tally: Tally
) -> None:
    """The request in the metrics and the access log (never its prompt, its answer or its key)."""
    provider = tally.route.provider.name if tally.route else ""
    total = time.perf_counter() - req.started
    first_token = tally.first_token_at - req.started if record.streamed and tally.first_token_at else None
    cached = record.cache_read_tokens + record.cache_write_tokens + record.cache_write_1h_tokens
    metrics.finished(
        endpoint=record.endpoint, model=model.name, provider=provider, status=record.status, total=total,
        upstream=req.upstream_time, overhead=req.overhead if req.response_started else total - req.upstream_time,
        first_token=first_token, cost=float(record.cost), tokens=(
            ("input", max(record.prompt_tokens - cached, 0)), ("cache_read", record.cache_read_tokens),
            ("cache_write_5m", record.cache_write_tokens), ("cache_write_1h", record.cache_write_1h_tokens),
            ("output", record.completion_tokens), ("reasoning", record.reasoning_tokens),
        ),
    )  # fmt: skip
    tracing.describe(
        req.span, endpoint=record.endpoint, model=model.name, provider=provider, status=record.status
    )
    if rt.access is not None:
        # The display prefix without its "sk-", which the log's secret filter would mask as a key.
        rt.access.add(
            str(record.request_id), key.prefix.removeprefix("sk-"), record.endpoint, model.name, provider,
            record.status, record.latency_ms, record.prompt_tokens, record.completion_tokens,
        )  # fmt: skip


def check_capacity(rt: Runtime) -> None:
    """Refuse new requests (503) while too many finished ones wait to be written: an admitted request must
    always be recordable, so the queue is bounded here, before admission, and never drops a record."""
    if rt.settler.pending >= settings.SETTLE_MAX_PENDING:
        raise errors.service_unavailable(
            "Usage can't be recorded right now; nothing was charged. Please retry shortly.", retry_after=2
        )


def token_counts(endpoint: Endpoint, request: Request, tally: Tally) -> tuple[Usage, bool]:
    """The request's usage: the upstream's, else a local count of input and output (flagged as estimated)."""
    if tally.usage is not None:
        return tally.usage, False
    output = endpoint.count_output(tally)
    if tally.input_usage is not None:  # the upstream's input, cache buckets and all; the output counted here
        return replace(tally.input_usage, output=output, reasoning=0), True
    prompt = request.prompt_tokens if request.prompt_tokens is not None else endpoint.count_input(request)
    return Usage(input=prompt, output=output), True


def rough_counts(tally: Tally, raw_size: int) -> tuple[Usage, bool]:
    """A usage that needs no tokenizer: the upstream's where it sent one, else from the text's size."""
    if tally.usage is not None:
        return tally.usage, False
    prompt = raw_size // ROUGH_BYTES_PER_TOKEN
    completion = sum(len(p.encode("utf-8", "replace")) for p in tally.pieces) // ROUGH_BYTES_PER_TOKEN
    return Usage(input=prompt, output=completion), True


def finished(
    *, request_id: uuid.UUID, started: float, endpoint: Endpoint, key: KeyInfo, model: ModelInfo,
    route: RouteInfo | None, request: Request, tally: Tally, status: int, reservation: Reservation | None,
    raw_size: int = 0,
) -> Finished:  # fmt: skip
    """The record of one admitted request. Nothing produced means nothing charged. Never raises."""
    try:
        return _record(request_id, started, endpoint, key, model, route, request, tally, status, reservation,
                       raw_size)  # fmt: skip
    except Exception:
        log.exception("request %s could not be accounted; recorded without tokens or charge", request_id)
        return _bare_record(request_id, started, endpoint, key, model, route, request, status, reservation)


def _record(
    request_id, started, endpoint, key, model, route, request, tally, status, reservation, raw_size
) -> Finished:
    produced = route is not None and (tally.first_token_at is not None or tally.usage is not None)
    note = Note.NONE
    usage, estimated = Usage(), False
    if produced:
        try:
            usage, estimated = token_counts(endpoint, request, tally)
        except Exception:
            log.exception(
                "request %s: tokens could not be counted; estimated from the text's size", request_id
            )
            usage, estimated = rough_counts(tally, raw_size)
            note = Note.COUNT_FAILED
    usage = usage.clamped()
    amount = Decimal(0)
    if produced and reservation is not None:
        amount, charge_note = _charge(request_id, model, usage, reservation)
        note = note or charge_note
    ttft = _elapsed_ms(started, tally.first_token_at) if tally.first_token_at else None
    return Finished(
        request_id=request_id, user_id=key.user_id, account_id=key.account_id,
        hold_id=reservation.hold_id if reservation else None, key_id=key.id, model_id=model.id,
        provider_id=route.provider.id if route else None, prompt_tokens=min(usage.prompt, MAX_TOKENS),
        completion_tokens=usage.output, tokens_estimated=estimated, cost=amount, status=status,
        error_code=clean_text(tally.error_code, 64), latency_ms=_elapsed_ms(started), ttft_ms=ttft,
        streamed=request.stream, finish_reason=clean_text(tally.finish_reason, 32),
        client_disconnected=tally.client_disconnected, created_at=timezone.now(), note=note,
        endpoint=endpoint.name, cache_read_tokens=usage.cache_read, cache_write_tokens=usage.cache_write_5m,
        cache_write_1h_tokens=usage.cache_write_1h, reasoning_tokens=usage.reasoning,
        usage_raw=None if estimated else audit_copy(tally.raw_usage),
    )  # fmt: skip


def audit_copy(raw: dict | None) -> dict | None:
    """The upstream's usage object as it came, for audits: only a small one, and none PostgreSQL's JSON
    would refuse (a NUL escape), so a hostile upstream can't bloat or break the record."""
    if not raw:
        return None
    try:
        text = orjson.dumps(raw)
    except TypeError:
        return None
    return raw if len(text) <= MAX_RAW_USAGE_BYTES and b"\\u0000" not in text else None


def cost_report(model: ModelInfo, tally: Tally) -> dict:
    """The cost fields of a usage object, for a client that asked for them (``"usage": {"include": true}``,
    as OpenRouter's clients send it): the request's cost in USD, as its usage record has it (unless the
    upstream reported more than the reservation covered: the charge then stops there), and its parts. Empty
    until the upstream has said what was used. JSON numbers, as OpenRouter sends them; the exact Decimal is
    the usage record's (the generation API)."""
    usage = tally.usage
    if usage is None:
        return {}
    usage = usage.clamped()
    prices = model.prices
    parts = {
        "input": usage.input * prices.input, "cache_read": usage.cache_read * prices.cached_input,
        "cache_write": usage.cache_write_5m * prices.cache_write,
        "cache_write_1h": usage.cache_write_1h * prices.cache_write_1h, "output": usage.output * prices.output,
    }  # fmt: skip
    details = {name: float(to_money(value / MILLION)) for name, value in parts.items()}
    details["request"] = float(prices.request)
    return {"cost": float(usage_cost(usage, prices)), "cost_details": details}


def wants_cost(body: dict) -> bool:
    option = body.get("usage")
    return isinstance(option, dict) and option.get("include") is True


def _charge(request_id, model: ModelInfo, usage: Usage, reservation: Reservation):
    """The request's cost and why it is not the plain price, if it isn't: never more than was reserved."""
    try:
        amount = usage_cost(usage, model.prices)
    except Exception:
        log.exception("request %s could not be priced; recorded at no charge", request_id)
        return Decimal(0), Note.PRICE_FAILED
    if amount > reservation.amount:
        log.warning(
            "request %s on model %s cost %s USD, more than its reservation of %s USD: charged the reservation",
            request_id, model.name, amount, reservation.amount,
        )  # fmt: skip
        return reservation.amount, Note.COST_CAPPED
    return amount, Note.NONE


def _bare_record(request_id, started, endpoint, key, model, route, request, status, reservation) -> Finished:
    return Finished(
        request_id=request_id, user_id=key.user_id, account_id=key.account_id,
        hold_id=reservation.hold_id if reservation else None, key_id=key.id, model_id=model.id,
        provider_id=route.provider.id if route else None, prompt_tokens=0, completion_tokens=0,
        tokens_estimated=True, cost=Decimal(0), status=status, error_code="", latency_ms=_elapsed_ms(started),
        ttft_ms=None, streamed=bool(getattr(request, "stream", False)), finish_reason="", client_disconnected=False,
        created_at=timezone.now(), note=Note.RECORD_FAILED, endpoint=endpoint.name,
    )  # fmt: skip


def _elapsed_ms(started: float, until: float | None = None) -> int:
    elapsed = (time.perf_counter() if until is None else until) - started
    return max(0, min(round(elapsed * 1000), MAX_TOKENS))


def clean_text(value: object, limit: int) -> str:
    """A short text column's value from whatever an upstream sent: a string, without NUL (which PostgreSQL
    refuses in text), clipped to the column."""
    return str(value).replace("\x00", "")[:limit] if value else ""
