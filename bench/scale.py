"""``python -m bench.scale``: does the hot path stay fast on a big database, and do the pages?

1. Seeds a separate bench database (``DATABASE_URL``) with 10 million usage records, 1 million keys and the
   daily rollups (bench/seed.py), within a time budget; the exact count seeded is printed and reported.
2. Prepares an empty bench database next to it (same name + ``_empty``; its gateway uses Redis db 5).
3. Runs the standard bench's 1- and 32-connection phases (bench/phases.py, wrk) for the free and the paid
   model through a gateway on each database, interleaved (each phase on the empty one, then at once on the
   seeded one) with one shared upstream, and reports the change in %.
4. Times the dashboard, usage pages and management API of the user with the most records (bench/pagetime.py).

Writes ``bench/results/scale.json`` and prints a table. ``--pages-only`` does step 4 alone, on the database an
earlier run seeded, and writes ``scale-pages.json``: about a minute, for checking a change to the pages.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import time
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
from psycopg import sql

from bench import cli, pagetime, phases, procs, report, scaletable, seed, setup, wrk
from bench.setup import FREE_MODEL, PAID_MODEL, BenchError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/inference_space_bench_scale"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/6"
PHASES = [("free_1c", FREE_MODEL, 1, 1), ("free_32c", FREE_MODEL, 32, 2), ("paid_1c", PAID_MODEL, 1, 1),
          ("paid_32c", PAID_MODEL, 32, 2)]  # fmt: skip


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.scale", description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=10_000_000, help="usage records to seed (10,000,000)")
    parser.add_argument("--keys", type=int, default=1_000_000, help="keys to seed (1,000,000)")
    parser.add_argument("--seed-minutes", type=float, default=15.0, help="time budget of the usage COPY (15)")
    parser.add_argument("--reuse", action="store_true", help="keep an already seeded database")
    parser.add_argument(
        "--pages-only", action="store_true", help="only time the pages, on an already seeded database"
    )
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (10)")
    parser.add_argument("--warmup", type=int, default=3, help="seconds of warm-up before each (3)")
    parser.add_argument(
        "--empty-redis-db", type=int, default=5, help="Redis db of the empty database's gateway (5; flushed)"
    )
    parser.add_argument(
        "--output", type=Path, help="default: scale.json (scale-pages.json with --pages-only)"
    )
    args = parser.parse_args(argv)
    args.output = args.output or RESULTS_DIR / ("scale-pages.json" if args.pages_only else "scale.json")
    return args


def recreate(database_url: str) -> None:
    """Drop and create a bench database (only a name containing "bench")."""
    parts = urlsplit(database_url)
    name = parts.path.lstrip("/")
    if "bench" not in name:
        raise BenchError(f"refusing to recreate database '{name}': not a bench database")
    admin = urlunsplit(parts._replace(scheme="postgresql", path="/postgres"))
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))


def seeded_state(database_url: str) -> dict | None:
    """What an earlier run left in the seeded database (for --reuse), or None."""
    url = database_url.replace("postgres://", "postgresql://", 1)
    with contextlib.suppress(psycopg.Error), psycopg.connect(url) as conn:
        row = conn.execute(
            "SELECT user_id, count(*) FROM billing_usagerecord GROUP BY user_id ORDER BY 2 DESC LIMIT 1"
        ).fetchone()
        if row:
            email = conn.execute("SELECT email FROM portal_user WHERE id = %s", (row[0],)).fetchone()[0]
            counts = conn.execute(
                "SELECT (SELECT count(*) FROM billing_usagerecord), (SELECT count(*) FROM portal_apikey), "
                "(SELECT count(*) FROM billing_dailyusage)"
            ).fetchone()
            return {"heavy_email": email, "heavy_rows": row[1], "usage_rows": counts[0], "keys": counts[1],
                    "daily_rows": counts[2], "reused": True}  # fmt: skip
    return None


def seed_database(args: argparse.Namespace, database_url: str, redis_url: str, workdir: Path) -> dict:
    if args.reuse and (state := seeded_state(database_url)):
        print(f"  reusing the seeded database: {state['usage_rows']:,} usage records", flush=True)
        return state
    recreate(database_url)
    setup.prepare(
        database_url, redis_url, "http://127.0.0.1:9", workdir
    )  # schema and catalog; URL fixed later
    print(
        f"  seeding {args.keys:,} keys and up to {args.rows:,} usage records ({args.seed_minutes:g} min)",
        flush=True,
    )
    done = seed.seed(database_url, rows=args.rows, keys=args.keys, budget_s=args.seed_minutes * 60, tag="s")
    if done.cut_short:
        print(
            f"  SEEDING CUT SHORT by the time budget: {done.usage_rows:,} of {args.rows:,} records",
            flush=True,
        )
    return asdict(done)


def start_stack(
    label: str, database_url: str, redis_url: str, upstream, workdir: Path, args, stack
) -> phases.Ctx:
    """Prepare a database (catalog on the shared upstream, an account, a key) and start a gateway on it."""
    fixture = setup.prepare(database_url, redis_url, upstream["base"], workdir)
    port = procs.free_port()
    gateway = procs.start_gateway(port, fixture.env, RESULTS_DIR / f"scale-gateway-{label}.log", None)
    stack.callback(gateway.stop)
    procs.wait_ready(
        gateway, f"http://127.0.0.1:{port}/v1/models", {"Authorization": f"Bearer {fixture.key}"}
    )
    scripts = workdir / label
    scripts.mkdir(exist_ok=True)
    return phases.Ctx(
        wrk_bin=upstream["wrk"], scripts=scripts, direct=upstream["base"], gateway=f"http://127.0.0.1:{port}",
        key=fixture.key, seconds=args.duration, warmup=args.warmup, load_cpus=None,
        gateway_pid=gateway.pid, upstream_pid=upstream["pid"],
    )  # fmt: skip


def run_phases(ctxs: dict[str, phases.Ctx], results: dict) -> None:
    """Each phase on the empty database, then at once on the seeded one: neighbours drift less in between."""
    for name, model, connections, threads in PHASES:
        for label, ctx in ctxs.items():
            print(f"[{name} {label}] ...", flush=True)
            try:
                out = phases.compare(ctx, model, connections, threads)
            except BenchError as exc:
                out = {"error": str(exc)}
            for side in ("direct", "gateway"):
                if side in out:
                    out[side].pop("raw", None)
            results["phases"].setdefault(name, {})[label] = out
            if "error" not in out:
                g = out["gateway"]
                print(
                    f"  p50 {g['p50_ms']:.3f} ms, p99 {g['p99_ms']:.3f} ms, {g['ok_rps']:,.0f} ok req/s",
                    flush=True,
                )


def measure(args, results: dict, urls: dict[str, tuple[str, str]], workdir: Path, wrk_bin: str) -> None:
    """One upstream, a gateway per database (each with its own Redis db), phases interleaved."""
    with contextlib.ExitStack() as stack:
        up_port = procs.free_port()
        env = setup.service_env(*urls["seeded"])
        upstream = procs.start_upstream(up_port, env, RESULTS_DIR / "scale-upstream.log", None)
        stack.callback(upstream.stop)
        base = f"http://127.0.0.1:{up_port}"
        procs.wait_ready(upstream, f"{base}/v1/models", {})
        info = {"base": base, "pid": upstream.pid, "wrk": wrk_bin}
        ctxs = {
            label: start_stack(label, *urls[label], info, workdir, args, stack)
            for label in ("empty", "seeded")
        }
        results["before_phases"] = procs.wait_quiet(0)
        run_phases(ctxs, results)


def with_db(redis_url: str, db: int) -> str:
    return urlunsplit(urlsplit(redis_url)._replace(path=f"/{db}"))


def time_pages(database_url: str, redis_url: str, email: str) -> list[dict] | dict:
    print("timing the pages of the user with the most records", flush=True)
    try:
        return pagetime.measure(setup.service_env(database_url, redis_url), email)
    except BenchError as exc:
        return {"error": str(exc)[-2000:]}


def write(args: argparse.Namespace, results: dict) -> None:
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(scaletable.render(results))
    print(f"\nfull results: {args.output.name} in bench/results/")


def run_pages_only(args: argparse.Namespace, results: dict, database_url: str, redis_url: str) -> int:
    results["seed"] = seeded_state(database_url)
    if results["seed"] is None:
        raise BenchError("nothing seeded yet: run python -m bench.scale once without --pages-only")
    results["pages"] = time_pages(database_url, redis_url, results["seed"]["heavy_email"])
    write(args, results)
    return 0


def run(args: argparse.Namespace) -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    empty_url = database_url + "_empty"
    setup.check_targets(database_url, redis_url)
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
    }
    if args.pages_only:
        return run_pages_only(args, results, database_url, redis_url)
    wrk_bin = wrk.ensure_wrk()
    results.update(machine=report.machine(wrk.wrk_version(wrk_bin)), phases={})
    with tempfile.TemporaryDirectory(prefix="bench-scale-") as tmp:
        workdir = Path(tmp)
        print("seeding the scale database", flush=True)
        started = time.monotonic()
        results["seed"] = seed_database(args, database_url, redis_url, workdir)
        results["seed"]["total_s"] = round(time.monotonic() - started, 1)
        recreate(empty_url)
        urls = {
            "empty": (empty_url, with_db(redis_url, args.empty_redis_db)),
            "seeded": (database_url, redis_url),
        }
        if urls["empty"][1] == redis_url:
            raise BenchError("--empty-redis-db must differ from the Redis db in REDIS_URL")
        measure(args, results, urls, workdir, wrk_bin)
        results["pages"] = time_pages(database_url, redis_url, results["seed"]["heavy_email"])
    results["changes"] = scaletable.changes(results["phases"])
    write(args, results)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("scale", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
