"""Turning what a request produced into its usage record: tokens, cost, timings. Pure."""

import time
import uuid
from decimal import Decimal

from django.utils import timezone

from billing.credits import Reservation
from billing.pricing import cost as price_of
from billing.settlement import Finished
from proxy import tokens
from proxy.auth import KeyInfo
from proxy.routing import ModelInfo, RouteInfo
from proxy.schemas import ChatRequest
from proxy.streaming import Tally


def token_counts(body: ChatRequest, tally: Tally) -> tuple[int, int, bool]:
    """Prompt and completion tokens: the upstream's usage, else a local count (flagged as estimated)."""
    if tally.prompt_tokens is not None and tally.completion_tokens is not None:
        return tally.prompt_tokens, tally.completion_tokens, False
    return tokens.count_messages(body.messages), tokens.count_completion(tally.pieces), True


def finished(
    *, request_id: uuid.UUID, started: float, key: KeyInfo, model: ModelInfo, route: RouteInfo | None,
    body: ChatRequest, tally: Tally, status: int, hold: Reservation | None,
) -> Finished:  # fmt: skip
    """The record of one admitted request. Nothing produced means nothing charged."""
    produced = route is not None and (tally.first_token_at is not None or tally.completion_tokens is not None)
    prompt, completion, estimated = token_counts(body, tally) if produced else (0, 0, False)
    amount = Decimal(0)
    if produced and hold is not None:
        amount = price_of(
            prompt_tokens=prompt, completion_tokens=completion,
            input_price=model.input_price, output_price=model.output_price,
        )  # fmt: skip
        # Never more than was set aside for it: an upstream over-reporting its usage must not overdraw.
        amount = min(amount, hold.amount)
    ttft = round((tally.first_token_at - started) * 1000) if tally.first_token_at else None
    return Finished(
        request_id=request_id, user_id=key.user_id, account_id=key.account_id,
        hold_id=hold.hold_id if hold else None, key_id=key.id, model_id=model.id,
        provider_id=route.provider.id if route else None, prompt_tokens=prompt, completion_tokens=completion,
        tokens_estimated=estimated, cost=amount, status=status, error_code=tally.error_code,
        latency_ms=round((time.perf_counter() - started) * 1000), ttft_ms=ttft, streamed=body.stream,
        finish_reason=tally.finish_reason[:32], client_disconnected=tally.client_disconnected,
        created_at=timezone.now(),
    )  # fmt: skip
