"""Settlement never fails to record: each fault that can strike between an answer and its usage record still
ends with the record written, an estimate that errs towards the customer, a note saying why, and the request's
reservation released. (The queue of unwritten requests being full is refused at admission instead: see
tests/reliability/test_money_path.py.)"""

import time
import uuid
from dataclasses import replace
from decimal import Decimal

import bpe_openai
import pytest
from django.utils import timezone

from billing.credits import Credits
from billing.models import Account, LedgerEntry, UsageRecord
from billing.services import account_for, credits_grant
from billing.settlement import Finished, Settler
from portal.accounts import keys
from portal.accounts.notify import versions_sync
from proxy.catalog.prices import Prices
from proxy.catalog.snapshot import load_catalog
from proxy.gateway import settlement, tokens
from proxy.gateway.auth import load_key
from proxy.gateway.db import run_db
from proxy.gateway.endpoints.chat import CHAT
from proxy.gateway.schemas import ChatRequest
from proxy.gateway.streaming import Tally

PRICE = Decimal(2)  # USD per million tokens, in and out


@pytest.fixture
def paid(make_user, make_key, catalog):
    """(KeyInfo, a paid ModelInfo on the echo route, this test's Credits) for a funded account."""
    user = make_user()
    credits_grant(account=account_for(user=user), amount=Decimal(10), reason="test funds", actor=None)
    _, raw = make_key(owner=user)
    key = load_key(keys.key_hash(raw), versions_sync)
    model = replace(load_catalog().models[catalog["echo"]], prices=Prices.of(input=PRICE, output=PRICE))
    return key, model, Credits(run_db, f"test-{uuid.uuid4().hex[:6]}", 120)


def chat(messages: list) -> ChatRequest:
    return ChatRequest(model="m", messages=messages, stream=False, include_usage=False, max_tokens=None, n=1,
                       body={})  # fmt: skip


def answered(*pieces: str) -> Tally:
    return Tally(pieces=list(pieces), first_token_at=time.perf_counter())


async def settle(
    key, model, credits: Credits, body: ChatRequest, tally: Tally, raw_size: int = 0
) -> Finished:
    """What the gateway does with a finished request: make its record, settle its reservation, write it."""
    hold = await credits.reserve(account_id=key.account_id, amount=Decimal("0.5"))
    tally.route = model.routes[0]
    record = settlement.finished(
        request_id=uuid.uuid4(), started=time.perf_counter() - 1, endpoint=CHAT, key=key, model=model,
        route=tally.route, request=body, tally=tally, status=200, reservation=hold, raw_size=raw_size,
    )  # fmt: skip
    credits.settle(hold, record.cost)
    settler = Settler(run_db, 3600, credits)
    settler.add(record)
    assert await settler.flush(everything=True) is False
    return record


def account_of(key) -> Account:
    return Account.objects.get(pk=key.account_id)


def test_a_text_the_tokenizer_refuses_whole_is_counted_in_pieces():
    for text in ("x " * 1_000_000, "\U0001f600" * 975_000, "helloworld " * 100_000):
        with pytest.raises(ValueError):
            bpe_openai.get_encoding("o200k_base").encode_ordinary(text)
        pieces = list(tokens.pieces(text))
        assert "".join(pieces) == text and all(len(p) <= tokens.PIECE_CHARS for p in pieces)
        # Cut before spaces, each piece counts exactly what it holds in the whole text.
        assert tokens.count_text(text) == sum(tokens.count_text(p) for p in pieces) > 200_000


async def test_a_prompt_that_cannot_be_counted_is_recorded_at_an_estimate_from_its_size(paid):
    key, model, credits = paid
    # tool_calls that are not a list: the local count fails (the validator would never let this in).
    body = chat([{"role": "assistant", "content": "x", "tool_calls": 5}])
    record = await settle(key, model, credits, body, answered("a" * 800), raw_size=1600)
    row = UsageRecord.objects.get(pk=record.request_id)
    assert (row.note, row.tokens_estimated) == ("count_failed", True)
    assert (row.prompt_tokens, row.completion_tokens) == (200, 100)  # 8 bytes a token
    assert row.cost == Decimal(300) * PRICE / 1_000_000
    assert LedgerEntry.objects.get(request_id=record.request_id).amount == -row.cost
    assert account_of(key).held == 0  # the reservation was released and its slice returned


async def test_a_request_that_cannot_be_priced_is_recorded_with_its_tokens_and_no_charge(paid):
    key, model, credits = paid
    unpriced = replace(model, prices=replace(model.prices, input=None))
    record = await settle(
        key, unpriced, credits, chat([{"role": "user", "content": "hi"}]), answered("hello")
    )
    row = UsageRecord.objects.get(pk=record.request_id)
    assert (row.note, row.cost) == ("price_failed", 0)
    assert row.prompt_tokens > 0 and row.completion_tokens == 1
    assert not LedgerEntry.objects.filter(request_id=record.request_id).exists()
    assert account_of(key).balance == 10 and account_of(key).held == 0


async def test_a_request_that_cannot_be_accounted_at_all_is_still_recorded_bare(paid):
    key, model, credits = paid
    tally = answered("hello")
    tally.first_token_at = "soon"  # not a time: the record itself can't be made from this
    record = await settle(key, model, credits, chat([{"role": "user", "content": "hi"}]), tally)
    row = UsageRecord.objects.get(pk=record.request_id)
    assert (row.note, row.status, row.cost, row.prompt_tokens) == ("record_failed", 200, 0, 0)
    assert row.key_id == key.id and row.model_id == model.id
    assert account_of(key).held == 0


async def test_records_the_database_refuses_do_not_hold_back_their_batch(paid):
    key, model, credits = paid
    hold = await credits.reserve(account_id=key.account_id, amount=Decimal(4))

    def item(**fields) -> Finished:
        good = Finished(
            request_id=uuid.uuid4(), user_id=key.user_id, account_id=key.account_id, hold_id=hold.hold_id,
            key_id=key.id, model_id=model.id, provider_id=model.routes[0].provider.id, prompt_tokens=1,
            completion_tokens=1, tokens_estimated=False, cost=Decimal("0.25"), status=200, error_code="",
            latency_ms=1, ttft_ms=1, streamed=False, finish_reason="stop", client_disconnected=False,
            created_at=timezone.now(),
        )  # fmt: skip
        return replace(good, **fields)

    batch = [
        item(),
        item(finish_reason="st\x00p"),
        item(provider_id=2**31 - 7),
        item(completion_tokens=2**40),
    ]
    settler = Settler(run_db, 3600, credits)
    for f in batch:
        credits.settle(replace(hold, amount=Decimal(1)), f.cost)
        settler.add(f)
    assert await settler.flush(everything=True) is False
    rows = {r.pk: r for r in UsageRecord.objects.filter(pk__in=[f.request_id for f in batch])}
    assert len(rows) == 4 and settler.pending == 0
    assert [rows[f.request_id].note for f in batch] == ["", "record_failed", "record_failed", "record_failed"]
    assert rows[batch[2].request_id].provider_id is None
    assert rows[batch[3].request_id].completion_tokens == 2**31 - 1
    assert LedgerEntry.objects.filter(request_id__in=rows).count() == 4
    account = account_of(key)
    assert (account.balance, account.held) == (Decimal(9), 0)


def chat_record(key, model, **fields) -> Finished:
    """A free chat completion's record, with ``fields`` changed."""
    chat = Finished(
        request_id=uuid.uuid4(), user_id=key.user_id, account_id=key.account_id, hold_id=None, key_id=key.id,
        model_id=model.id, provider_id=None, prompt_tokens=1, completion_tokens=1, tokens_estimated=False,
        cost=Decimal(0), status=200, error_code="", latency_ms=1, ttft_ms=1, streamed=False, finish_reason="stop",
        client_disconnected=False, created_at=timezone.now(),
    )  # fmt: skip
    return replace(chat, **fields)


async def test_each_record_names_its_endpoint_and_a_bare_one_keeps_it(paid):
    key, model, credits = paid
    batch = [
        chat_record(key, model),
        chat_record(key, model, endpoint="embeddings"),
        chat_record(key, model, endpoint="completions", finish_reason="st\x00p"),
    ]
    settler = Settler(run_db, 3600, credits)
    for f in batch:
        settler.add(f)
    assert await settler.flush(everything=True) is False
    rows = {r.pk: r for r in UsageRecord.objects.filter(pk__in=[f.request_id for f in batch])}
    assert [rows[f.request_id].endpoint for f in batch] == ["chat.completions", "embeddings", "completions"]
    assert rows[batch[2].request_id].note == "record_failed"  # refused, then written bare: still a completion


def test_a_raw_insert_that_leaves_the_endpoint_out_records_a_chat_completion(paid):
    """What a bulk load without the column (COPY on PostgreSQL) gets: the database's default."""
    from billing.settlement import _usage_row, insert_rows

    key, model, _ = paid
    record = chat_record(key, model, endpoint="embeddings")
    row = _usage_row(record)
    del row["endpoint"]
    insert_rows(UsageRecord, [row])
    assert UsageRecord.objects.get(pk=record.request_id).endpoint == "chat.completions"
