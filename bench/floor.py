"""``python -m bench.floor``: the gateway beside the floor of its stack, in one run on one machine.

Three targets behind the same wrk load and the same fake upstream: the upstream directly, a bare relay
(bench/bare.py: uvicorn + one aiohttp session, nothing else) and the gateway (free and paid model). For each:
requests/s at 32 connections, p50 at 1 connection, and the relay's CPU time per request. The bare relay's CPU
per request is what the server and the client library cost; the rest of the gateway's is its own work (auth,
the limiter's Redis round trip, validation, usage capture and settlement).

``--baseline REV`` adds the gateway at git revision REV, checked out in a temporary worktree and served from
there beside the current one, each measurement right after the current gateway's, with the ratio of the two.

Uses the standard bench's database and Redis db (``DATABASE_URL``, ``REDIS_URL``; see bench/setup.py).
"""

import argparse
import contextlib
import os
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import NamedTuple

from bench import cli, gatewaylog, procs, setup, wrk
from bench.phases import DIRECT_KEY, PATH
from bench.setup import FREE_MODEL, PAID_MODEL, ROOT, UPSTREAM_MODEL, BenchError

FIGURES = ("ok_rps", "p50_1c_ms", "cpu_us_per_request")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.floor", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=10, help="seconds per measured wrk run (10)")
    parser.add_argument("--rounds", type=int, default=2, help="times each target is measured (2)")
    parser.add_argument(
        "--baseline", metavar="REV", help="also measure the gateway at git revision REV, in the same run"
    )
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


def git(*args: str) -> str:
    done = subprocess.run(["git", *args], cwd=ROOT, capture_output=True, text=True)
    if done.returncode != 0:
        raise BenchError(f"git {' '.join(args)} failed: {(done.stderr or done.stdout).strip()[-800:]}")
    return done.stdout.strip()


@contextlib.contextmanager
def worktree(rev: str, parent: Path) -> Iterator[tuple[Path, str]]:
    """A detached checkout of ``rev`` under ``parent`` (outside the repository), removed whatever happens."""
    commit = git("rev-parse", "--verify", "--short", f"{rev}^{{commit}}")
    path = parent / f"baseline-{commit}"
    git("worktree", "add", "--detach", str(path), commit)
    try:
        yield path, commit
    finally:
        removed = subprocess.run(
            ["git", "worktree", "remove", "--force", str(path)], cwd=ROOT, capture_output=True, text=True
        )
        if removed.returncode != 0:
            print(f"  could not remove the worktree {path}: {removed.stderr.strip()}", file=sys.stderr)


def check_own_code(tree: Path, env: dict[str, str]) -> None:
    """The baseline must import its own packages, not the current ones the editable install points to.

    ``python -m`` puts the working directory first on sys.path, and the editable install's finder only comes
    after sys.path, so a child started in the worktree should import the worktree's code; this makes sure.
    """
    code = "import billing, portal, proxy; print(billing.__file__, portal.__file__, proxy.__file__)"
    done = subprocess.run([sys.executable, "-c", code], cwd=tree, env=env, capture_output=True, text=True)
    files = done.stdout.split()
    if done.returncode != 0 or len(files) != 3:
        raise BenchError(
            f"the baseline's packages don't import: {(done.stderr or done.stdout).strip()[-800:]}"
        )
    foreign = [f for f in files if not Path(f).resolve().is_relative_to(tree.resolve())]
    if foreign:
        raise BenchError(f"the baseline would import code from outside its worktree: {', '.join(foreign)}")


class Target(NamedTuple):
    name: str
    port: int
    model: str
    key: str
    pid: int | None  # whose CPU time is counted per request; None for the upstream itself
    versus: str | None = None  # a baseline: the name of the current gateway's target it is compared with


def ratios(current: list[dict], baseline: list[dict]) -> dict[str, float | None]:
    """current / baseline for each figure, from the means of the rows given."""
    out: dict[str, float | None] = {}
    for figure in FIGURES:
        now = [row[figure] for row in current if row[figure]]
        then = [row[figure] for row in baseline if row[figure]]
        out[figure] = (sum(now) / len(now)) / (sum(then) / len(then)) if now and then else None
    return out


def _line(width: int, name: str, rps: str, p50: str, cpu: str, extra: str = "") -> str:
    return f"{name:{width}} {rps:>16} {p50:>11} {cpu:>12}{extra}"


def _figures(row: dict) -> tuple[str, str, str]:
    cpu = f"{row['cpu_us_per_request']:,.0f} µs" if row["cpu_us_per_request"] else "-"
    return f"{row['ok_rps']:,.0f}", f"{row['p50_1c_ms']:.3f} ms", cpu


def _ratios(ratio: dict[str, float | None]) -> tuple[str, str, str]:
    rps, p50, cpu = ("-" if ratio[figure] is None else f"{ratio[figure]:.3f}" for figure in FIGURES)
    return rps, p50, cpu


def start_baseline(
    stack: contextlib.ExitStack, tree: Path, commit: str, env: dict[str, str], log: Path, auth: dict
) -> tuple[procs.Service, int]:
    """The gateway at the baseline revision and its port, started in its worktree to serve its own code."""
    check_own_code(tree, env)
    port = procs.free_port()
    service = procs.start_gateway(port, env, log, None, cwd=tree, name=f"gateway at {commit}")
    stack.callback(service.stop)
    procs.wait_ready(service, f"http://127.0.0.1:{port}/v1/models", auth)
    return service, port


def measure_rounds(binary: str, workdir: Path, targets: list[Target], rounds: int, seconds: int) -> dict:
    """Every target once per round, in order; a baseline's row is followed by its ratio to the one before."""
    width = max(16, *(len(target.name) for target in targets))
    print(_line(width, "target", "req/s (32 conn)", "p50 1 conn", "CPU/request"))
    rows: dict[str, list[dict]] = {}
    for _ in range(rounds):
        for target in targets:
            body = setup.chat_body(target.model)
            script = wrk.write_script(
                workdir, target.name.replace(" ", "-").replace(",", ""), body, target.key
            )
            row = measure(binary, f"http://127.0.0.1:{target.port}{PATH}", script, target.pid, seconds)
            rows.setdefault(target.name, []).append(row)
            errors = f" ({row['non_2xx']} non-2xx)" if row["non_2xx"] else ""
            print(_line(width, target.name, *_figures(row), errors), flush=True)
            if target.versus:  # the current gateway's row of this round was measured just before
                print(_line(width, "  current/baseline", *_ratios(ratios(rows[target.versus][-1:], [row]))))
    if any(target.versus for target in targets):
        print(f"\ncurrent / baseline, means over {rounds} round(s): req/s above 1 and p50 or CPU/request below 1"
              " mean the current gateway is faster")  # fmt: skip
        for target in targets:
            if target.versus:
                print(
                    _line(width, f"  {target.name}", *_ratios(ratios(rows[target.versus], rows[target.name])))
                )
    return rows


def log_problems(gateways: list[procs.Service]) -> None:
    """What each gateway logged, after its graceful stop (which flushes settlement): errors wrk can't see.

    A baseline serves a database migrated by newer code, so a write it can no longer make shows up here.
    """
    for service in gateways:
        service.stop()
        found = gatewaylog.scan(service.log_path, [])
        records = [
            f"{r['count']} x {r['level']} {r['logger']}: {r['message'][:90]}" for r in found["records"]
        ]
        records += [f"{e['count']} x {e['exception'][:110]}" for e in found["exceptions"]]
        if records:
            print(f"\n{service.name} logged:", *(f"  {line}" for line in records[:6]), sep="\n")


def run(args: argparse.Namespace) -> int:
    database_url = os.environ.get("DATABASE_URL") or setup.DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or setup.DEFAULT_REDIS_URL
    binary = wrk.ensure_wrk()
    # The stack exits last-in first-out: the servers stop, then the worktree goes, then the temporary files.
    with contextlib.ExitStack() as stack:
        workdir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="bench-floor-")))
        # Checked out before anything starts, so a revision that doesn't exist fails at once.
        baseline = stack.enter_context(worktree(args.baseline, workdir)) if args.baseline else None
        up_port, gw_port, bare_port = procs.free_port(), procs.free_port(), procs.free_port()
        upstream_base = f"http://127.0.0.1:{up_port}"
        # The current code migrates; a baseline is only served against the result, it never migrates it.
        fixture = setup.prepare(database_url, redis_url, upstream_base, workdir)
        auth = {"Authorization": f"Bearer {fixture.key}"}
        upstream = procs.start_upstream(up_port, fixture.env, workdir / "upstream.log", None)
        stack.callback(upstream.stop)
        bare = procs.start_uvicorn("bare relay", "bench.bare:app", bare_port,
                                   {**fixture.env, "BARE_UPSTREAM": upstream_base}, workdir / "bare.log", None)  # fmt: skip
        stack.callback(bare.stop)
        gateway = procs.start_gateway(gw_port, fixture.env, workdir / "gateway.log", None)
        stack.callback(gateway.stop)
        procs.wait_ready(upstream, f"{upstream_base}/v1/models", {})
        procs.wait_ready(gateway, f"http://127.0.0.1:{gw_port}/v1/models", auth)
        procs.wait_ready(bare, f"http://127.0.0.1:{bare_port}/v1/models", {})
        if baseline is not None:
            tree, commit = baseline
            log = workdir / "gateway-baseline.log"
            old, old_port = start_baseline(stack, tree, commit, fixture.env, log, auth)
            subject = textwrap.shorten(git("log", "-1", "--format=%s", commit), 80, placeholder=" ...")
            print(f"baseline: the gateway at {commit} ({subject})")
        targets = [
            Target("direct", up_port, UPSTREAM_MODEL, DIRECT_KEY, None),
            Target("bare relay", bare_port, UPSTREAM_MODEL, DIRECT_KEY, bare.pid),
        ]
        for kind, model in (("free", FREE_MODEL), ("paid", PAID_MODEL)):
            current = Target(f"gateway, {kind}", gw_port, model, fixture.key, gateway.pid)
            targets.append(current)
            # The baseline right after the current gateway (current, baseline, current, baseline, ...), so
            # drift on the machine weighs on both alike.
            if baseline is not None:
                name = f"gateway at {commit}, {kind}"
                targets.append(Target(name, old_port, model, fixture.key, old.pid, versus=current.name))
        measure_rounds(binary, workdir, targets, args.rounds, args.duration)
        log_problems([gateway, old] if baseline is not None else [gateway])
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("floor", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
