"""One account's books, read with plain SQL so the same checks run on the shared test database (through
Django's connection) and on a private cluster (through psycopg).

``assert_books_balance`` is the money half of every fault test: the cached balance is the ledger's sum, the
cached held amount is the open holds' sum, nothing is overdrawn, and usage records and usage debits pair up one
to one with equal amounts (no debit without its record, no record of a charge without its debit, no request
charged twice).
"""

import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal

ZERO = Decimal(0)


@dataclass
class Books:
    account_id: int
    user_id: int
    balance: Decimal
    held: Decimal
    holds: list[tuple[int, Decimal, str]]  # (id, amount, owner)
    ledger: list[tuple[str, Decimal, str | None]]  # (kind, amount, request id)
    usage: dict[str, tuple[Decimal, int, str]]  # request id -> (cost, status, error code)

    @property
    def ledger_sum(self) -> Decimal:
        return sum((amount for _, amount, _ in self.ledger), ZERO)

    @property
    def granted(self) -> Decimal:
        return sum((amount for kind, amount, _ in self.ledger if kind != "usage"), ZERO)

    @property
    def debits(self) -> dict[str, Decimal]:
        return {rid: -amount for kind, amount, rid in self.ledger if kind == "usage"}

    @property
    def usage_cost(self) -> Decimal:
        return sum((cost for cost, _, _ in self.usage.values()), ZERO)


def django_query(sql: str, params: tuple = ()) -> list[tuple]:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchall()


def read_books(query, account_id: int) -> Books:
    """``query(sql, params) -> rows``: Django's connection or a private cluster's."""
    [(user_id, balance, held)] = query(
        "SELECT user_id, balance, held FROM billing_account WHERE id = %s", (account_id,)
    )
    holds = query(
        "SELECT id, amount, owner FROM billing_hold WHERE account_id = %s ORDER BY id", (account_id,)
    )
    ledger = query(
        "SELECT kind, amount, request_id::text FROM billing_ledgerentry WHERE account_id = %s ORDER BY id",
        (account_id,),
    )
    usage = query(
        "SELECT request_id::text, cost, status, error_code FROM billing_usagerecord WHERE user_id = %s",
        (user_id,),
    )
    return Books(
        account_id, user_id, balance, held, [tuple(h) for h in holds], [tuple(row) for row in ledger],
        {rid: (cost, status, code) for rid, cost, status, code in usage},
    )  # fmt: skip


def assert_books_balance(books: Books, *, granted: Decimal) -> None:
    assert books.granted == granted, f"credits granted changed: {books.granted} != {granted}"
    assert books.balance == books.ledger_sum, f"balance {books.balance} != ledger sum {books.ledger_sum}"
    assert books.held == sum((a for _, a, _ in books.holds), ZERO), (
        f"held {books.held} != holds {books.holds}"
    )
    assert books.balance >= 0 and books.held >= 0 and books.balance - books.held >= 0, books
    usage_ids = Counter(rid for kind, _, rid in books.ledger if kind == "usage")
    twice = [rid for rid, n in usage_ids.items() if n > 1]
    assert not twice, f"requests debited twice: {twice}"
    debits = books.debits
    orphans = [rid for rid in debits if rid not in books.usage]
    assert not orphans, f"usage debits without a usage record: {orphans}"
    for rid, (cost, _, _) in books.usage.items():
        if cost > 0:
            assert debits.get(rid) == cost, f"request {rid} cost {cost} but was debited {debits.get(rid)}"
        else:
            assert cost == 0 and rid not in debits, f"request {rid}: cost {cost}, debit {debits.get(rid)}"
    assert books.usage_cost == sum(debits.values(), ZERO)


def wait_until(condition, timeout: float, what: str) -> None:
    """Poll ``condition`` until it holds; fail with ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"{what} (waited {timeout} s)"
        time.sleep(0.1)


def drift_of(run, account_ids: set[int]) -> list[dict]:
    """A reconcile run's drift on these accounts (the shared test database has other tests' accounts,
    some of them with drift made on purpose)."""
    return [d for d in run.drift if d["account"] in account_ids]
