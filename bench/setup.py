"""Preparing a clean, dedicated world for one run: database, Redis db, catalog, account and key.

Everything goes through the project's own management commands (run as subprocesses with the gateway's
environment), so the benchmark exercises the same code paths an operator uses, and a key minted here hashes
under the same secret the gateway will check it with.
"""

import os
import secrets
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import redis
from psycopg import sql

ROOT = Path(__file__).resolve().parent.parent
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/inference_space_bench"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/14"
SECRET = "bench-secret-not-for-production"
PROVIDER = "bench-upstream"
CLAUDE_PROVIDER = "bench-claude-upstream"
FREE_MODEL = "bench-free"
PAID_MODEL = "bench-paid"
EMBED_MODEL = "bench-embed"
CLAUDE_MODEL = "bench-claude"  # on an Anthropic-style provider: Messages requests pass through
UPSTREAM_MODEL = "echo"
CREDITS_USD = "1000000"


class BenchError(RuntimeError):
    """The benchmark itself cannot go on (as opposed to the gateway missing a target)."""


@dataclass(frozen=True)
class Fixture:
    """What the measurements need from the setup."""

    env: dict[str, str]
    email: str
    key: str


PROMPT = "hello there"  # the user's text of every chat and Responses request


def chat_body(model: str, *, stream: bool = False) -> dict:
    """The request every phase sends: short, so the numbers are about the gateway, not about the payload."""
    body: dict = {"model": model, "messages": [{"role": "user", "content": PROMPT}], "max_tokens": 16}
    if stream:
        body["stream"] = True
    return body


def responses_body(model: str, *, stream: bool = False, store: bool = False) -> dict:
    """Chat's text as a Responses request, not stored unless asked: the plain phases measure the translation to
    chat completions and back, and a stored phase what keeping the response adds to that."""
    body: dict = {"model": model, "input": PROMPT, "store": store}
    if stream:
        body["stream"] = True
    return body


def messages_body(model: str, *, stream: bool = False) -> dict:
    """Chat's text as an Anthropic Messages request (``max_tokens`` is required there)."""
    body: dict = {"model": model, "max_tokens": 16, "messages": [{"role": "user", "content": PROMPT}]}
    if stream:
        body["stream"] = True
    return body


def embeddings_body(model: str) -> dict:
    """One short input as floats: what the gateway adds to an embedding, not what encoding it costs."""
    return {"model": model, "input": "a short sentence to embed", "encoding_format": "float"}


def service_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of the gateway and of the management commands: production-like (DEBUG off)."""
    env = dict(os.environ)
    env.update(
        DJANGO_SETTINGS_MODULE="portal.settings",
        DEBUG="false",
        SECRET_KEY=SECRET,
        ALLOWED_HOSTS="127.0.0.1,localhost",
        SECURE_SSL_REDIRECT="false",
        DATABASE_URL=database_url,
        REDIS_URL=redis_url,
        PYTHONUNBUFFERED="1",
        BENCH_UPSTREAM_KEY="bench-upstream-key",  # an Anthropic-style upstream wants a key
    )
    return env


def gateway_env(env: dict[str, str], metrics_dir: Path) -> dict[str, str]:
    """A gateway's environment with a metrics directory of its own, empty at its start as prometheus_client's
    multiprocess mode wants it: the default (var/metrics) is shared by every gateway started from this tree,
    and a scrape adds up all the files it finds there."""
    metrics_dir.mkdir(parents=True, exist_ok=True)
    return {**env, "PROMETHEUS_MULTIPROC_DIR": str(metrics_dir)}


def check_targets(database_url: str, redis_url: str) -> None:
    """Refuse URLs that look like real data: the run adds accounts to the database and wipes the Redis db."""
    name = urlsplit(database_url).path.lstrip("/")
    if "bench" not in name:
        raise BenchError(f"DATABASE_URL names database '{name}'; the benchmark only uses a *bench* database")
    db_index = urlsplit(redis_url).path.lstrip("/")
    if not db_index.isdigit() or db_index == "0":
        raise BenchError("REDIS_URL must name a dedicated Redis db other than 0 (it is flushed), e.g. /14")


def ensure_database(database_url: str) -> bool:
    """Create the bench database when missing; True if it was created. Connects to the server's 'postgres'."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    admin_url = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    try:
        with psycopg.connect(admin_url, autocommit=True, connect_timeout=5) as conn:
            exists = conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone()
            if exists:
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
            return True
    except psycopg.OperationalError as exc:
        raise BenchError(f"PostgreSQL is not reachable ({exc}); start it with: bash .ci/services") from exc


def flush_redis(redis_url: str) -> None:
    """Start from empty limiter counters and caches, so earlier runs can't change this one."""
    try:
        client = redis.Redis.from_url(redis_url, socket_connect_timeout=5)
        client.flushdb()
        client.close()
    except redis.RedisError as exc:
        raise BenchError(f"Redis is not reachable ({exc}); start it with: bash .ci/services") from exc


def model_toml(
    model_id: str, price_in: str, price_out: str, description: str = "", mode: str = "chat",
    provider: str = PROVIDER,
) -> str:  # fmt: skip
    """One bench model on the fake upstream's ``echo`` model, as a catalog [[models]] table.

    ``mode`` is the catalog's (chat, embedding or completion); an embedding produces no tokens, so it gets no
    output limit.
    """
    about = f'description = "{description}"\n' if description else ""
    kind = f'mode = "{mode}"\n' if mode != "chat" else ""
    limit = "max_output_tokens = 1024\n" if mode != "embedding" else ""
    return f"""
[[models]]
id = "{model_id}"
{kind}owned_by = "bench"
{about}input_usd_per_mtok = "{price_in}"
output_usd_per_mtok = "{price_out}"
context_length = 8192
{limit}routes = [{{ provider = "{provider}", upstream_model = "{UPSTREAM_MODEL}", priority = 1 }}]
"""


def catalog_toml(upstream_base_url: str) -> str:
    """A catalog like catalog.demo.toml, but with an OpenAI-kind provider pointing at the fake upstream.

    The circuit threshold is high so that a burst of errors during a run can't open the circuit and turn the
    rest of the measurement into instant 503s.
    """
    models = model_toml(FREE_MODEL, "0", "0", "Benchmark model, free: the pipeline without money")
    models += model_toml(
        PAID_MODEL, "0.50", "1.50", "Benchmark model, paid: the full pipeline, with reserve and settle"
    )
    models += model_toml(
        EMBED_MODEL, "0", "0", "Benchmark embedding model, free: the pipeline of /v1/embeddings", "embedding"
    )
    models += model_toml(
        CLAUDE_MODEL, "0", "0", "Benchmark model on Anthropic's Messages API, free", provider=CLAUDE_PROVIDER
    )
    return f"""# Written by the benchmark for one run.

[[providers]]
name = "{PROVIDER}"
kind = "openai"
base_url = "{upstream_base_url}/v1"
circuit_threshold = 1000

[[providers]]
name = "{CLAUDE_PROVIDER}"
kind = "anthropic"
base_url = "{upstream_base_url}/v1"
api_key_env = "BENCH_UPSTREAM_KEY"
circuit_threshold = 1000
{models}"""


def manage(env: dict[str, str], *args: str, timeout: float = 300) -> str:
    """Run one management command; its stdout, or a BenchError carrying its stderr."""
    cmd = [sys.executable, "manage.py", *args]
    try:
        done = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"manage.py {args[0]} took more than {timeout:.0f} s") from exc
    if done.returncode != 0:
        detail = (done.stderr or done.stdout).strip()[-2000:]
        raise BenchError(f"manage.py {' '.join(args)} failed (exit {done.returncode}):\n{detail}")
    return done.stdout


def prepare(database_url: str, redis_url: str, upstream_base_url: str, workdir: Path) -> Fixture:
    """Database, migrations, empty Redis db, catalog, an account with credits and a key with huge limits."""
    check_targets(database_url, redis_url)
    created = ensure_database(database_url)
    print(f"  database {'created' if created else 'exists'}; migrating", flush=True)
    env = service_env(database_url, redis_url)
    manage(env, "migrate", "--noinput")
    flush_redis(redis_url)
    catalog = workdir / "catalog.bench.toml"
    catalog.write_text(catalog_toml(upstream_base_url), encoding="utf-8")
    manage(env, "import_catalog", str(catalog))
    email, key = account(env)
    return Fixture(env=env, email=email, key=key)


def account(env: dict[str, str]) -> tuple[str, str]:
    """A new user with credits and a key with huge limits: its email and raw key. A phase with its own account
    can have its requests counted apart from the others' (bench/accounting.py counts by user)."""
    email = f"bench-{secrets.token_hex(4)}@example.com"
    manage(env, "create_account", email, "--credits", CREDITS_USD)
    out = manage(env, "mint_key", email, "--name", "bench", "--rpm", "100000000", "--rpd", "1000000000")
    lines = out.strip().splitlines()
    if not lines or not lines[-1].startswith("sk-"):
        raise BenchError(f"mint_key printed no key on its last line:\n{out}")
    return email, lines[-1].strip()
