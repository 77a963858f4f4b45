"""The gateway through PgBouncer in transaction-pooling mode (``DATABASE_POOLER=transaction``).

PgBouncer is the one from Debian's packages (``make test`` installs it), started here on a free port with a pool
of two server sessions, handed out round robin: consecutive transactions of one gateway connection land on
different PostgreSQL sessions, so anything that outlives its transaction (a WITH HOLD cursor, a prepared
statement, a session-level SET) fails here at once instead of now and then in production.
"""

import asyncio
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
from collections import Counter
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path

import openai
import psycopg
import pytest
import requests
from django.conf import settings

from billing import jobs, pricing
from billing.models import LedgerEntry, ReconcileRun, UsageRecord
from tests.conftest import unique, write_catalog
from tests.live import ROOT, free_port, start_gateway
from tests.reliability.books import assert_books_balance, django_query, drift_of, read_books

POOL_SIZE = 2  # fewer server sessions than the gateway's four database threads: pooling really happens
INPUT_PRICE, OUTPUT_PRICE = Decimal("100"), Decimal("300")  # USD per million tokens
GRANTED = Decimal(5)
PASSWORD = "pooled-Passw0rd!"


@dataclass
class PgBouncer:
    port: int
    proc: subprocess.Popen
    log_path: Path

    def admin(self, command: str) -> list[dict]:
        """A command on PgBouncer's admin console (the simple query protocol: a client-side binding cursor)."""
        with psycopg.connect(
            host="127.0.0.1", port=self.port, user="postgres", dbname="pgbouncer", autocommit=True,
            cursor_factory=psycopg.ClientCursor,
        ) as conn:  # fmt: skip
            cursor = conn.execute(command)
            names = [column.name for column in cursor.description]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]

    def url(self, db: dict) -> str:
        return f"postgres://{db['USER']}@127.0.0.1:{self.port}/{db['NAME']}"

    def backends_seen(self, db: dict, transactions: int = 6) -> set[int]:
        """The PostgreSQL sessions that one client's consecutive transactions ran on, once two are open."""
        params = {"host": "127.0.0.1", "port": self.port, "user": db["USER"], "dbname": db["NAME"]}
        with (
            psycopg.connect(**params, autocommit=True, prepare_threshold=None) as a,
            psycopg.connect(**params, autocommit=True, prepare_threshold=None) as b,
        ):
            with a.transaction(), b.transaction():  # two transactions at once need two server sessions
                a.execute("SELECT 1")
                b.execute("SELECT 1")
            return {a.execute("SELECT pg_backend_pid()").fetchone()[0] for _ in range(transactions)}

    def pool(self, dbname: str) -> dict:
        [row] = [row for row in self.admin("SHOW POOLS") if row["database"] == dbname]
        return row


def pgbouncer_binary() -> str:
    found = shutil.which("pgbouncer") or shutil.which("pgbouncer", path="/usr/sbin:/usr/local/sbin")
    if not found:
        pytest.fail("pgbouncer is not installed: `make test` installs it (apt-get install pgbouncer)")
    return found


def wait_for_port(port: int, proc: subprocess.Popen, log_path: Path, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            break
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.05)
    pytest.fail(f"pgbouncer did not listen on {port}:\n{log_path.read_text(errors='replace')}")


JOBS = """
import django, json
django.setup()
from billing import jobs
print(json.dumps([jobs.usage_aggregate(), jobs.holds_release_stale(), jobs.ledger_reconcile().pk]))
"""


def jobs_through(url: str) -> tuple[int, int, int]:
    """Run the Celery beat's billing jobs (what the tasks wrap) in a process whose database is ``url``."""
    env = {k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"}
    env.update(DJANGO_SETTINGS_MODULE="portal.settings", DATABASE_URL=url, DATABASE_POOLER="transaction",
               REDIS_URL=settings.REDIS_URL)  # fmt: skip
    done = subprocess.run(
        [sys.executable, "-c", JOBS], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr[-3000:]
    return tuple(json.loads(done.stdout.strip().splitlines()[-1]))


@pytest.fixture(scope="module")
def pgbouncer(live_database, tmp_path_factory):
    db = live_database
    root = tmp_path_factory.mktemp("pgbouncer")
    port = free_port()
    (root / "users.txt").write_text('"postgres" ""\n')
    (root / "pgbouncer.ini").write_text(
        f"[databases]\n{db['NAME']} = host={db['HOST']} port={db['PORT'] or 5432} dbname={db['NAME']}\n"
        "[pgbouncer]\n"
        f"listen_addr = 127.0.0.1\nlisten_port = {port}\nunix_socket_dir =\n"
        f"auth_type = trust\nauth_file = {root / 'users.txt'}\nadmin_users = postgres\n"
        f"pool_mode = transaction\ndefault_pool_size = {POOL_SIZE}\nmin_pool_size = {POOL_SIZE}\n"
        "reserve_pool_size = 0\n"
        "server_round_robin = 1\nmax_client_conn = 200\n"
    )
    # PgBouncer refuses to run as root; it reads its files first and then becomes the user given with -u.
    as_user = ["-u", "postgres"] if os.geteuid() == 0 else []
    log_path = root / "pgbouncer.log"
    with log_path.open("wb") as out:
        proc = subprocess.Popen(
            [pgbouncer_binary(), *as_user, str(root / "pgbouncer.ini")], stdout=out, stderr=subprocess.STDOUT
        )
    try:
        wait_for_port(port, proc, log_path)
        bouncer = PgBouncer(port, proc, log_path)
        # Round robin over sessions kept open: consecutive transactions of one client change session.
        assert len(bouncer.backends_seen(db)) == POOL_SIZE
        yield bouncer
    finally:
        proc.terminate()
        proc.wait(10)


@pytest.fixture
def pooled_gateway(pgbouncer, live_database, catalog, artifacts):
    gw = start_gateway(
        pgbouncer.url(live_database), settings.REDIS_URL, artifacts, TEST_UPSTREAM_KEY="upstream-secret-123",
        DATABASE_POOLER="transaction",
    )  # fmt: skip
    yield gw
    gw.stop()


@pytest.fixture(scope="module")
def paid_model(live_database, upstream, tmp_path_factory) -> str:
    from proxy.catalog.importer import catalog_import

    provider, model = unique("pgb"), unique("pgb-paid")
    providers = [
        {"name": provider, "base_url": upstream.url_for(provider), "api_key_env": "TEST_UPSTREAM_KEY"}
    ]
    route = {"provider": provider, "upstream_model": "echo"}
    models = [{"id": model, "owned_by": "test", "input_usd_per_mtok": str(INPUT_PRICE),
               "output_usd_per_mtok": str(OUTPUT_PRICE), "routes": [route]}]  # fmt: skip
    catalog_import(path=write_catalog(tmp_path_factory.mktemp("pgb") / "paid.toml", providers, models))
    return model


@pytest.fixture
def customer(make_user, make_key):
    """(user, raw inference key, raw management key, account id), the account holding GRANTED."""
    from billing.services import account_for, credits_grant

    user = make_user(password=PASSWORD)
    account = account_for(user=user)
    credits_grant(account=account, amount=GRANTED, reason="pgbouncer test funds", actor=None)
    _, raw = make_key(owner=user, rpm_limit=1000, rpd_limit=100_000)
    _, management = make_key(owner=user, name="ops", management=True)
    return user, raw, management, account.pk


async def one_request(api: openai.AsyncOpenAI, model: str, *, stream: bool, text: str) -> tuple[str, str]:
    """(request id, the answer's text)."""
    messages = [{"role": "user", "content": text}]
    raw = await api.chat.completions.with_raw_response.create(
        model=model, messages=messages, stream=stream, max_tokens=50
    )
    if stream:
        chunks = [chunk async for chunk in raw.parse()]
        answer = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    else:
        answer = raw.parse().choices[0].message.content
    return raw.headers["x-request-id"], answer


def wait_records(request_ids: list[str], timeout: float = 10.0) -> dict[str, UsageRecord]:
    deadline = time.monotonic() + timeout
    while (found := UsageRecord.objects.filter(pk__in=request_ids).count()) < len(request_ids):
        assert time.monotonic() < deadline, f"{found} of {len(request_ids)} usage records written"
        time.sleep(0.05)
    return {str(r.pk): r for r in UsageRecord.objects.filter(pk__in=request_ids)}


async def test_concurrent_plain_and_streamed_requests_are_recorded_and_charged_once_through_pgbouncer(
    pgbouncer, pooled_gateway, catalog, paid_model, customer
):
    user, raw, _, account_id = customer
    xacts_before = sum(row["total_xact_count"] for row in pgbouncer.admin("SHOW STATS"))
    kinds = [(model, stream) for model in (catalog["echo"], paid_model) for stream in (False, True)] * 5
    async with openai.AsyncOpenAI(base_url=pooled_gateway.base_url, api_key=raw, max_retries=0) as api:
        answers = await asyncio.gather(
            *(one_request(api, m, stream=s, text=f"pooled {i}") for i, (m, s) in enumerate(kinds))
        )
    assert [text for _, text in answers] == [f"You said: pooled {i}" for i in range(len(kinds))]
    ids = [rid for rid, _ in answers]
    records = wait_records(ids)

    # Exactly one record per request, and none besides.
    assert Counter(UsageRecord.objects.filter(user=user).values_list("pk", flat=True)) == Counter(
        UsageRecord.objects.filter(pk__in=ids).values_list("pk", flat=True)
    )
    assert len(records) == len(set(ids)) == 20
    for (model, stream), rid in zip(kinds, ids, strict=True):
        record = records[rid]
        assert (record.status, record.streamed, record.model.name) == (200, stream, model)
        expected = Decimal(0)
        if model == paid_model:
            expected = pricing.cost(
                prompt_tokens=record.prompt_tokens, completion_tokens=record.completion_tokens,
                input_price=INPUT_PRICE, output_price=OUTPUT_PRICE,
            )  # fmt: skip
            assert expected > 0
        assert record.cost == expected, rid

    # One debit per paid request, of its cost; the books balance while the gateway still holds its slice...
    debits = LedgerEntry.objects.filter(account_id=account_id, kind=LedgerEntry.Kind.USAGE)
    assert Counter(str(d.request_id) for d in debits) == Counter(rid for rid in ids if records[rid].cost > 0)
    assert all(-d.amount == records[str(d.request_id)].cost for d in debits)
    assert_books_balance(read_books(django_query, account_id), granted=GRANTED)
    assert not drift_of(jobs.ledger_reconcile(), {account_id})

    # ...through a pool of POOL_SIZE server sessions, which carried every transaction.
    pool = pgbouncer.pool(settings.DATABASES["default"]["NAME"])
    assert (pool["pool_mode"], pool["cl_waiting"]) == ("transaction", 0)
    assert (
        pool["sv_active"] + pool["sv_idle"] + pool["sv_used"] + pool["sv_tested"] + pool["sv_login"]
        <= POOL_SIZE
    )
    assert sum(row["total_xact_count"] for row in pgbouncer.admin("SHOW STATS")) > xacts_before

    # After a graceful stop the slice is back: nothing held, the balance is the grant minus the costs.
    pooled_gateway.stop()
    books = read_books(django_query, account_id)
    assert books.held == 0 and not books.holds
    assert books.balance == GRANTED - sum(r.cost for r in records.values())
    assert_books_balance(books, granted=GRANTED)
    assert not drift_of(jobs.ledger_reconcile(), {account_id})
    assert "Traceback" not in pooled_gateway.log()


def test_the_periodic_jobs_the_management_api_and_the_usage_export_work_through_pgbouncer(
    pgbouncer, pooled_gateway, live_database, paid_model, customer
):
    user, raw, management, account_id = customer
    api = openai.OpenAI(base_url=pooled_gateway.base_url, api_key=raw, max_retries=0)
    ids = [
        api.chat.completions.with_raw_response.create(
            model=paid_model, messages=[{"role": "user", "content": f"export {i}"}], max_tokens=50
        ).headers["x-request-id"]
        for i in range(3)
    ]
    records = wait_records(ids)
    spent = sum(r.cost for r in records.values())

    # The beat's jobs: the daily rollup, stale holds, and the reconciliation (one REPEATABLE READ snapshot).
    _, _, run_id = jobs_through(pgbouncer.url(live_database))
    assert not drift_of(ReconcileRun.objects.get(pk=run_id), {account_id})

    with requests.Session() as http:
        url, bearer = pooled_gateway.url, {"Authorization": f"Bearer {management}"}
        credits = http.get(f"{url}/api/v1/credits", headers=bearer, timeout=10)
        assert credits.status_code == 200, credits.text[:500]
        assert Decimal(credits.json()["total_used"]) == spent
        assert Decimal(credits.json()["balance"]) == GRANTED - spent
        generation = http.get(f"{url}/api/v1/generation", params={"id": ids[0]}, headers=bearer, timeout=10)
        assert generation.status_code == 200 and generation.json()["id"] == ids[0]
        usage = http.get(f"{url}/api/v1/usage", params={"group_by": "model"}, headers=bearer, timeout=10)
        assert usage.status_code == 200, usage.text[:500]
        [row] = usage.json()["data"]  # from the rollup the jobs just wrote
        assert (row["model"], row["requests"], Decimal(row["cost"])) == (paid_model, 3, spent)

        # The export reads through QuerySet.iterator(): a server-side cursor, unless the pooler setting is on.
        page = http.get(f"{url}/login", timeout=10).text
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page).group(1)
        login = http.post(
            f"{url}/login", data={"username": user.email, "password": PASSWORD, "csrfmiddlewaretoken": token},
            allow_redirects=False, timeout=10,
        )  # fmt: skip
        assert login.status_code == 302, login.text[:500]
        export = http.get(f"{url}/usage/export.csv", timeout=10)
        assert export.status_code == 200, export.text[:500]
    rows = export.text.splitlines()[1:]
    assert sorted(row.split(",")[1] for row in rows) == sorted(ids)
    assert "Traceback" not in pooled_gateway.log()
