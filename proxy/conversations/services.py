"""Stored responses: kept, read, continued and deleted, always within the account that made them. Sync (the
gateway runs these on its database pool), but for the walk along a conversation, which takes its reads as an
async function: the gateway reads each turn from Redis first (proxy/conversations/stored.py)."""

import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from proxy.conversations.models import StoredResponse

MAX_TURNS = 200  # how far back previous_response_id is followed: far more than any client sends


def response_store(row: StoredResponse) -> None:
    row.save(force_insert=True)


def responses_remove(*, gone: list[tuple[int, str]]) -> int:
    """Delete responses by (account id, response id): those deleted while their write was on its way."""
    if not gone:
        return 0
    match = Q()
    for account_id, response_id in gone:
        match |= Q(account_id=account_id, pk=response_id)
    deleted, _ = StoredResponse.objects.filter(match).delete()
    return deleted


def response_of_request(*, account_id: int, request_id: uuid.UUID) -> StoredResponse | None:
    """The stored response a request made, if it made one that is still kept. The database only: one kept in
    the last flush interval (proxy/conversations/stored.py) may not be there yet."""
    return StoredResponse.objects.filter(account_id=account_id, request_id=request_id).first()


def response_get(*, account_id: int, response_id: str) -> StoredResponse | None:
    return StoredResponse.objects.filter(account_id=account_id, pk=response_id).first()


def response_delete(*, account_id: int, response_id: str) -> bool:
    deleted, _ = StoredResponse.objects.filter(account_id=account_id, pk=response_id).delete()
    return bool(deleted)


async def conversation(
    *, response_id: str, read: Callable[[str], Awaitable[StoredResponse | None]]
) -> tuple[list[dict], int | None] | None:
    """Every item of the conversation up to and including this response, oldest first (each turn's input
    items, then its output), and the provider that made the response itself, if one did. None when there is
    no such response. ``read`` reads one response by id, within the caller's account."""
    turns: list[StoredResponse] = []
    wanted = response_id
    while wanted and len(turns) < MAX_TURNS:
        turn = await read(wanted)
        if turn is None:
            break  # an older turn was deleted: what is left still reads
        turns.append(turn)
        wanted = turn.previous_id
    if not turns:
        return None
    return _items(turns), turns[0].provider_id


def _items(turns: list[StoredResponse]) -> list[dict]:
    items: list[dict] = []
    for turn in reversed(turns):
        items += turn.input_items
        items += turn.response.get("output") or []
    return items


def responses_expire(*, days: int) -> int:
    """Delete stored responses older than ``days``. Returns how many went."""
    deleted, _ = StoredResponse.objects.filter(created_at__lt=timezone.now() - timedelta(days=days)).delete()
    return deleted


def items_page(items: list[dict], query: dict[str, str]) -> dict:
    """One page of input items, as OpenAI lists them: ``order`` desc (the default) or asc, ``limit`` 1 to
    100 (20), ``after`` an item id. Pure."""
    ordered = list(reversed(items)) if query.get("order", "desc") != "asc" else list(items)
    after = query.get("after")
    if after:
        ids = [item.get("id") for item in ordered]
        ordered = ordered[ids.index(after) + 1 :] if after in ids else []
    try:
        limit = min(max(int(query.get("limit", 20)), 1), 100)
    except ValueError:
        limit = 20
    page = ordered[:limit]
    return {
        "object": "list", "data": page, "has_more": len(ordered) > limit,
        "first_id": page[0]["id"] if page else "", "last_id": page[-1]["id"] if page else "",
    }  # fmt: skip


def conversation_texts(stored: StoredResponse) -> list[tuple[str, str]]:
    """(who, text) for what a stored response was given and what it answered, as a page shows them: each
    message's text, a function call's name and arguments, a tool's output."""
    return [
        turn
        for item in [*stored.input_items, *(stored.response.get("output") or [])]
        if (turn := _text_of(item))
    ]


def _text_of(item: dict) -> tuple[str, str] | None:
    kind = item.get("type", "message")
    if kind == "message":
        content = item.get("content")
        parts = (
            [content]
            if isinstance(content, str)
            else [p.get("text", "") for p in content or [] if isinstance(p, dict)]
        )
        return str(item.get("role", "user")), " ".join(p for p in parts if p)
    if kind == "function_call":
        return "function call", f"{item.get('name')}({item.get('arguments', '')})"
    if kind == "function_call_output":
        return "function output", str(item.get("output", ""))
    return None
