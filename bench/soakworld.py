"""The soak run's world: 20 models (10 free, 10 paid) on the fake upstream, and 1,000 keys with credits.

The catalog goes through ``manage.py import_catalog`` like an operator's; the users and keys are minted in one
``manage.py shell`` with the project's own services (``customer_create``, ``key_create``, ``credits_grant``), so
the keys hash under the secret the gateways check them with. Minting 1,000 keys through ``mint_key`` would
start 1,000 Python processes; one shell does it in seconds.
"""

import json
import secrets
from dataclasses import dataclass
from pathlib import Path

from bench import setup
from bench.setup import PROVIDER, BenchError

FREE_MODELS = [f"soak-free-{n:02d}" for n in range(10)]
PAID_MODELS = [f"soak-paid-{n:02d}" for n in range(10)]
KEYS_PER_USER = 4
CREDITS_USD = "100000"

MINT = """
import json
from decimal import Decimal
from billing.services import account_for, credits_grant
from portal.accounts.models import User
from portal.accounts.services import key_create
from billing.services import customer_create

out = []
for u in range(USERS):
    user = customer_create(email=f"{PREFIX}-{u:04d}@example.com")
    User.objects.filter(pk=user.pk).update(rpm_limit=10**8, rpd_limit=10**9)  # the bench, not the limiter
    credits_grant(account=account_for(user=user), amount=Decimal(CREDITS), reason="soak credits", actor=None)
    for k in range(PER_USER):
        _, raw = key_create(owner=user, name=f"soak-{k}", rpm_limit=10**8, rpd_limit=10**9)
        out.append(raw)
with open(OUT, "w") as fh:
    json.dump(out, fh)
print(len(out))
"""


@dataclass(frozen=True)
class World:
    env: dict[str, str]
    prefix: str  # every user of this run has an email starting with it
    keys: list[str]


def catalog_toml(upstream_base_url: str) -> str:
    """One provider (the fake upstream) and 20 models routed to its ``echo`` model."""
    text = f"""# Written by the soak benchmark for one run.

[[providers]]
name = "{PROVIDER}"
kind = "openai"
base_url = "{upstream_base_url}/v1"
circuit_threshold = 100000
"""
    for name in FREE_MODELS + PAID_MODELS:
        paid = name in PAID_MODELS
        price_in, price_out = ("0.50", "1.50") if paid else ("0", "0")
        text += setup.model_toml(name, price_in, price_out)
    return text


def prepare(database_url: str, redis_url: str, upstream_base: str, workdir: Path, keys: int) -> World:
    """Database, migrations, empty Redis db, the 20-model catalog, and ``keys`` keys over keys/4 users."""
    setup.check_targets(database_url, redis_url)
    created = setup.ensure_database(database_url)
    print(f"  database {'created' if created else 'exists'}; migrating", flush=True)
    env = setup.service_env(database_url, redis_url)
    setup.manage(env, "migrate", "--noinput")
    setup.flush_redis(redis_url)
    catalog = workdir / "catalog.soak.toml"
    catalog.write_text(catalog_toml(upstream_base), encoding="utf-8")
    setup.manage(env, "import_catalog", str(catalog))
    prefix = f"soak-{secrets.token_hex(3)}"
    out = workdir / "keys.json"
    users = max(1, keys // KEYS_PER_USER)
    script = (
        f"USERS = {users}\nPER_USER = {KEYS_PER_USER}\nPREFIX = {prefix!r}\n"
        f"CREDITS = {CREDITS_USD!r}\nOUT = {str(out)!r}\n{MINT}"
    )
    setup.manage(env, "shell", "-c", script, timeout=600)
    minted = json.loads(out.read_text())
    if len(minted) != users * KEYS_PER_USER:
        raise BenchError(f"minted {len(minted)} keys, expected {users * KEYS_PER_USER}")
    return World(env=env, prefix=prefix, keys=minted)
