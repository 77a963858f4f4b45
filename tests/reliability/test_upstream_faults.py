"""Single upstream faults, each on its own, for what the chaos run can only show in bulk."""

import time
from decimal import Decimal

import aiohttp
import pytest

from billing import jobs
from billing.models import UsageRecord
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books, wait_until
from tests.reliability.client import assert_clean, chat_body, new_marker, send
from tests.reliability.conftest import import_paid_model


def wait_record(request_id: str, timeout: float = 10.0) -> UsageRecord:
    deadline = time.monotonic() + timeout
    while (record := UsageRecord.objects.filter(pk=request_id).first()) is None:
        assert time.monotonic() < deadline, f"no usage record for {request_id}"
        time.sleep(0.05)
    return record


@pytest.mark.parametrize(
    ("stream", "cut"),
    [
        pytest.param(False, "cut-after:2", id="plain-body-cut-halfway"),
        pytest.param(True, "cut-after:-1", id="stream-cut-before-its-first-event"),
    ],
)
async def test_an_answer_cut_before_anything_reached_the_client_fails_over(
    gateway, upstream, tmp_path, funded_key, stream, cut
):
    model = import_paid_model(tmp_path / "cut.toml", upstream, [cut, "echo"])
    _, raw, account_id = funded_key("1")
    text = f"cut then served {new_marker()}"
    async with aiohttp.ClientSession() as session:
        outcome = await send(session, gateway.base_url, raw, chat_body(model, text, stream=stream))
    record = wait_record(outcome.request_id)
    assert_books_balance(read_books(django_query, account_id), granted=Decimal(1))
    assert_clean(outcome)
    assert outcome.status == 200 and not outcome.error_event, outcome
    assert (record.status, record.error_code) == (200, "")
    assert record.completion_tokens == 2 + len(text.split()) and not record.tokens_estimated


@pytest.mark.parametrize("stream", [False, True], ids=["plain", "stream"])
async def test_an_upstream_that_over_reports_usage_cannot_overdraw_the_account(
    gateway, chaos_upstream, tmp_path, funded_key, stream
):
    """max_tokens=1000 at 300 USD per million output tokens holds 0.30 USD, all the account has; the upstream
    then claims a million completion tokens (300 USD)."""
    model = import_paid_model(tmp_path / "overbill.toml", chaos_upstream, ["overbill:1000000"])
    _, raw, account_id = funded_key("0.30")
    async with aiohttp.ClientSession() as session:
        outcome = await send(
            session, gateway.base_url, raw, chat_body(model, "bill me", stream=stream, max_tokens=1000)
        )
    assert outcome.status == 200
    record = wait_record(outcome.request_id)
    # The gateway returns its idle slice a few seconds later.
    wait_until(
        lambda: not read_books(django_query, account_id).holds, 20, "the idle slice was never returned"
    )
    books = read_books(django_query, account_id)
    assert record.cost <= Decimal("0.30"), f"charged {record.cost} USD against a 0.30 USD worst case"
    assert_books_balance(books, granted=Decimal("0.30"))
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
