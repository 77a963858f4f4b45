"""``python -m bench.floor``: the gateway beside the floor of its stack, in one run on one machine.

Three targets behind the same wrk load and the same fake upstream: the upstream directly, a bare relay
(bench/bare.py: uvicorn + one aiohttp session, nothing else) and the gateway (free and paid model). For each:
requests/s at 32 connections, p50 at 1 connection, and the relay's CPU time per request. The bare relay's CPU
per request is what the server and the client library cost; the rest of the gateway's is its own work (auth,
the limiter's Redis round trip, validation, usage capture and settlement).

Uses the standard bench's database and Redis db (``DATABASE_URL``, ``REDIS_URL``; see bench/setup.py).
"""

import argparse
import os
import sys
import tempfile
from pathlib import Path

from bench import cli, procs, setup, wrk
from bench.phases import DIRECT_KEY, PATH
from bench.setup import FREE_MODEL, PAID_MODEL, UPSTREAM_MODEL


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="times each target is measured (2)")
    return parser.parse_args(argv)


def measure(binary: str, url: str, script: Path, pid: int | None, seconds: int) -> dict:
    wrk.run(binary, url, script, connections=32, threads=2, seconds=2, cpus=None)  # warm-up
    one = wrk.run(binary, url, script, connections=1, threads=1, seconds=max(3, seconds // 2), cpus=None)
    used = procs.cpu_seconds(pid) if pid else 0.0
    many = wrk.run(binary, url, script, connections=32, threads=2, seconds=seconds, cpus=None)
    cpu_us = (procs.cpu_seconds(pid) - used) / many.requests * 1e6 if pid and many.requests else None
    return {
        "ok_rps": many.ok_rps,
        "non_2xx": many.non_2xx,
        "p50_1c_ms": one.p50_ms,
        "cpu_us_per_request": cpu_us,
    }


def run(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL") or setup.DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or setup.DEFAULT_REDIS_URL
    binary = wrk.ensure_wrk()
    with tempfile.TemporaryDirectory(prefix="bench-floor-") as tmp:
        workdir = Path(tmp)
        up_port, gw_port, bare_port = procs.free_port(), procs.free_port(), procs.free_port()
        upstream_base = f"http://127.0.0.1:{up_port}"
        fixture = setup.prepare(database_url, redis_url, upstream_base, workdir)
        services = [
            procs.start_upstream(up_port, fixture.env, workdir / "upstream.log", None),
            procs.start_gateway(gw_port, fixture.env, workdir / "gateway.log", None),
            procs.start_uvicorn("bare relay", "bench.bare:app", bare_port,
                                {**fixture.env, "BARE_UPSTREAM": upstream_base}, workdir / "bare.log", None),
        ]  # fmt: skip
        upstream, gateway, bare = services
        try:
            procs.wait_ready(upstream, f"{upstream_base}/v1/models", {})
            procs.wait_ready(
                gateway, f"http://127.0.0.1:{gw_port}/v1/models", {"Authorization": f"Bearer {fixture.key}"}
            )
            procs.wait_ready(bare, f"http://127.0.0.1:{bare_port}/v1/models", {})
            targets = [
                ("direct", up_port, UPSTREAM_MODEL, DIRECT_KEY, None),
                ("bare relay", bare_port, UPSTREAM_MODEL, DIRECT_KEY, bare.pid),
                ("gateway, free", gw_port, FREE_MODEL, fixture.key, gateway.pid),
                ("gateway, paid", gw_port, PAID_MODEL, fixture.key, gateway.pid),
            ]
            print(f"{'target':16} {'req/s (32 conn)':>16} {'p50 1 conn':>11} {'CPU/request':>12}")
            for _ in range(args.rounds):
                for name, port, model, key, pid in targets:
                    script = wrk.write_script(workdir, name.replace(" ", "-").replace(",", ""),
                                              setup.chat_body(model), key)  # fmt: skip
                    row = measure(binary, f"http://127.0.0.1:{port}{PATH}", script, pid, args.duration)
                    cpu = f"{row['cpu_us_per_request']:,.0f} µs" if row["cpu_us_per_request"] else "-"
                    errors = f" ({row['non_2xx']} non-2xx)" if row["non_2xx"] else ""
                    print(f"{name:16} {row['ok_rps']:>16,.0f} {row['p50_1c_ms']:>8.3f} ms {cpu:>12}{errors}",
                          flush=True)  # fmt: skip
        finally:
            for service in (gateway, bare, upstream):
                service.stop()
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("floor", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
