"""Bulk history for the scale run: users, 1 million keys, 10 million usage records and their daily rollups.

Rows are generated in Python as text and streamed to PostgreSQL with COPY (psycopg), in batches that each
commit, so a run cut short by its time budget keeps everything seeded so far and reports the exact count.
Two bulk-load habits keep it fast on a small machine, and neither changes the final schema:

- the usage table's secondary indexes are dropped before the COPY and rebuilt after it from their own
  definitions (``pg_indexes.indexdef``); the primary key stays, so a duplicate request id still fails;
- foreign-key triggers are skipped (``session_replication_role = replica``) during the COPY; every row
  references real users, keys and models by construction, and a check at the end proves it.

The shape of the data: one "heavy" user (the one whose pages are timed) owns 20 keys and 10% of the records;
the rest belong to ordinary users with 100 keys each, where 80% of the traffic comes from 10,000 active keys
and 20% is spread over all keys. Timestamps are uniform over the last 90 days, 2% of records are upstream
errors (502), and the paid model's records carry the cost its prices give.
"""

import random
import time
from dataclasses import dataclass
from datetime import UTC, datetime

import psycopg

DAYS = 90
KEYS_PER_USER = 100
HEAVY_KEYS = 20
ACTIVE_KEYS = 10_000
BATCH = 250_000  # rows per COPY (and per commit)
USAGE_COLUMNS = (
    "request_id, user_id, key_id, model_id, provider_id, prompt_tokens, completion_tokens, tokens_estimated, cost, "
    "status, error_code, latency_ms, ttft_ms, streamed, finish_reason, client_disconnected, created_at"
)


@dataclass
class Seeded:
    heavy_user_id: int
    heavy_email: str
    users: int
    keys: int
    usage_rows: int
    heavy_rows: int
    daily_rows: int
    timings_s: dict
    cut_short: bool


def _conn(database_url: str) -> psycopg.Connection:
    return psycopg.connect(database_url.replace("postgres://", "postgresql://", 1), autocommit=False)


def _copy(conn: psycopg.Connection, statement: str, lines) -> None:
    with conn.cursor() as cur, cur.copy(statement) as copy:
        chunk: list[str] = []
        for line in lines:
            chunk.append(line)
            if len(chunk) >= 10_000:
                copy.write("".join(chunk))
                chunk.clear()
        if chunk:
            copy.write("".join(chunk))
    conn.commit()


def seed_users_and_keys(conn: psycopg.Connection, keys: int, tag: str) -> tuple[int, list[int], list[int]]:
    """The heavy user (first) and enough ordinary users for ``keys`` keys; accounts for all of them.

    Returns the heavy user's id, the heavy user's key ids and the ordinary key ids (in creation order).
    """
    now = datetime.now(UTC).isoformat()
    users = 1 + max(1, (keys - HEAVY_KEYS) // KEYS_PER_USER)
    with conn.cursor() as cur:
        first_user = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM portal_user").fetchone()[0]
        first_key = cur.execute("SELECT coalesce(max(id), 0) + 1 FROM portal_apikey").fetchone()[0]
    _copy(
        conn,
        "COPY portal_user (id, password, is_superuser, email, name, is_active, is_staff, date_joined) FROM STDIN",
        (f"{first_user + u}\t!\tf\tscale-{tag}-{u:06d}@example.com\t\tt\tf\t{now}\n" for u in range(users)),
    )

    def key_lines():
        for k in range(keys):
            owner = first_user if k < HEAVY_KEYS else first_user + 1 + (k - HEAVY_KEYS) // KEYS_PER_USER
            owner = min(owner, first_user + users - 1)
            kid = first_key + k
            yield (
                f"{kid}\tinference\tseed-{k}\tsk-seed\t{tag}{kid:058x}\t{now}\tf\t[]\tnever\t0\t{now}\t{owner}\n"
            )

    _copy(
        conn,
        "COPY portal_apikey (id, kind, name, prefix, hash, created_at, disabled, allowed_models, spend_reset, "
        "spend_used, spend_period_start, owner_id) FROM STDIN",
        key_lines(),
    )
    with conn.cursor() as cur:
        cur.execute(
            "INSERT INTO billing_account (user_id, balance, held, total_purchased, updated_at) "
            "SELECT id, 0, 0, 0, now() FROM portal_user WHERE id >= %s",
            (first_user,),
        )
        for table in ("portal_user", "portal_apikey", "billing_account"):
            cur.execute(
                f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), (SELECT max(id) FROM {table}))"
            )
    conn.commit()
    key_ids = list(range(first_key, first_key + keys))
    return first_user, key_ids[:HEAVY_KEYS], key_ids[HEAVY_KEYS:]


def usage_lines(
    count: int, heavy: int, heavy_keys: list[int], keys: list[int], owner_of, models, provider, seed
):
    """``count`` usage records as COPY text lines. ``models`` is [(id, input price, output price)] per Mtok.

    Request ids are 128 random bits from a per-batch generator, written as 32 hex digits (PostgreSQL reads a
    uuid without dashes); the ``uuid`` module's urandom call per row would cost more than everything else.
    """
    rng = random.Random(seed)
    rand, randrange, bits = rng.random, rng.randrange, rng.getrandbits
    now = time.time()
    span = DAYS * 86_400
    active, n_active, n_keys, n_heavy = (
        keys[:ACTIVE_KEYS],
        min(ACTIVE_KEYS, len(keys)),
        len(keys),
        len(heavy_keys),
    )
    stamp = datetime.fromtimestamp
    for i in range(count):
        if i % 10 == 0:
            user, key = heavy, heavy_keys[randrange(n_heavy)]
        else:
            key = active[randrange(n_active)] if rand() < 0.8 else keys[randrange(n_keys)]
            user = owner_of(key)
        model_id, price_in, price_out = (
            models[key % len(models)] if rand() < 0.9 else models[randrange(len(models))]
        )
        ok = rand() >= 0.02
        pt, ct = 10 + randrange(491), (5 + randrange(696) if ok else 0)
        nano = pt * price_in + ct * price_out  # price in micro-USD per Mtok, so this is 1e-12 USD
        cost = f"{nano // 10**12}.{nano % 10**12:012d}"
        status, code, finish = (200, "", "stop") if ok else (502, "upstream_error", "")
        streamed = "t" if rand() < 0.3 else "f"
        when = stamp(now - rand() * span, UTC).isoformat()
        yield (
            f"{bits(128):032x}\t{user}\t{key}\t{model_id}\t{provider}\t{pt}\t{ct}\tf\t{cost}\t{status}\t{code}\t"
            f"{80 + randrange(2421)}\t\\N\t{streamed}\t{finish}\tf\t{when}\n"
        )


def secondary_indexes(conn: psycopg.Connection, table: str) -> list[tuple[str, str]]:
    """(name, definition) of the indexes that no constraint owns (so they can be dropped and rebuilt)."""
    return conn.execute(
        "SELECT indexname, indexdef FROM pg_indexes WHERE tablename = %s AND indexname NOT IN "
        "(SELECT conname FROM pg_constraint WHERE conrelid = %s::regclass)",
        (table, table),
    ).fetchall()


def seed(database_url: str, *, rows: int, keys: int, budget_s: float, tag: str) -> Seeded:
    """Users and keys, then usage records in committed batches until ``rows`` or ``budget_s`` (COPY time)."""
    timings: dict[str, float] = {}
    with _conn(database_url) as conn:
        started = time.monotonic()
        heavy, heavy_keys, keys_list = seed_users_and_keys(conn, keys, tag)
        timings["users_keys"] = round(time.monotonic() - started, 1)
        first_key = keys_list[0]
        last_user = conn.execute("SELECT max(id) FROM portal_user").fetchone()[0]

        def owner_of(key: int) -> int:
            return min(heavy + 1 + (key - first_key) // KEYS_PER_USER, last_user)

        models = [
            (mid, int(pin * 1_000_000), int(pout * 1_000_000))
            for mid, pin, pout in conn.execute(
                "SELECT id, input_usd_per_mtok, output_usd_per_mtok FROM proxy_model ORDER BY id"
            ).fetchall()
        ]
        provider = conn.execute("SELECT min(id) FROM proxy_provider").fetchone()[0]
        indexes = secondary_indexes(conn, "billing_usagerecord")
        for name, _ in indexes:
            conn.execute(f'DROP INDEX "{name}"')
        conn.commit()
        conn.execute("SET session_replication_role = replica")
        started, done, batch_no, cut = time.monotonic(), 0, 0, False
        while done < rows:
            if time.monotonic() - started > budget_s:
                cut = True
                break
            n = min(BATCH, rows - done)
            lines = usage_lines(n, heavy, heavy_keys, keys_list, owner_of, models, provider, seed=batch_no)
            _copy(conn, f"COPY billing_usagerecord ({USAGE_COLUMNS}) FROM STDIN", lines)
            done += n
            batch_no += 1
            if batch_no % 4 == 0 or done == rows:
                rate = done / (time.monotonic() - started)
                print(f"    {done:,} usage rows ({rate:,.0f} rows/s)", flush=True)
        conn.execute("SET session_replication_role = DEFAULT")
        timings["usage_copy"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        for _, definition in indexes:
            conn.execute(definition)
        conn.commit()
        timings["usage_indexes"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        daily = rollup(conn)
        timings["daily_rollup"] = round(time.monotonic() - started, 1)
        started = time.monotonic()
        conn.autocommit = True
        conn.execute("ANALYZE")
        timings["analyze"] = round(time.monotonic() - started, 1)
        check_references(conn)
        heavy_rows = conn.execute(
            "SELECT count(*) FROM billing_usagerecord WHERE user_id = %s", (heavy,)
        ).fetchone()[0]
        email = conn.execute("SELECT email FROM portal_user WHERE id = %s", (heavy,)).fetchone()[0]
        users = conn.execute("SELECT count(*) FROM portal_user").fetchone()[0]
    return Seeded(heavy, email, users, keys, done, heavy_rows, daily, timings, cut)


def rollup(conn: psycopg.Connection) -> int:
    """DailyUsage rebuilt from every usage record, grouped as ``billing.jobs.usage_aggregate`` groups them."""
    conn.execute("DELETE FROM billing_dailyusage")
    cur = conn.execute(
        "INSERT INTO billing_dailyusage (user_id, key_id, model_id, day, requests, prompt_tokens, "
        "completion_tokens, cost) SELECT user_id, key_id, model_id, (created_at AT TIME ZONE 'UTC')::date, "
        "count(*), sum(prompt_tokens), sum(completion_tokens), coalesce(sum(cost), 0) "
        "FROM billing_usagerecord GROUP BY 1, 2, 3, 4"
    )
    conn.commit()
    return cur.rowcount


def check_references(conn: psycopg.Connection) -> None:
    """Every seeded usage record points at a real user, key and model (the COPY skipped the FK triggers)."""
    bad = conn.execute(
        "SELECT count(*) FROM billing_usagerecord u WHERE NOT EXISTS (SELECT 1 FROM portal_user p WHERE p.id = u.user_id) "
        "OR NOT EXISTS (SELECT 1 FROM portal_apikey k WHERE k.id = u.key_id) "
        "OR NOT EXISTS (SELECT 1 FROM proxy_model m WHERE m.id = u.model_id)"
    ).fetchone()[0]
    if bad:
        raise RuntimeError(f"{bad} seeded usage records reference missing rows")
