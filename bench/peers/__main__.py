"""``python -m bench.peers``: this gateway beside LiteLLM's proxy and Portkey's gateway, side by side, in one run.

Installs the peers at pinned versions (bench/peers/install.py), prepares a bench world like ``make bench``
(bench/setup.py: database, Redis db, catalog, an account with credits, a key), starts the fake upstream, the
bare relay, this gateway and both peers, each pointed at the same upstream (bench/peers/targets.py), probes
each once and checks the answer, then measures every target in interleaved rounds with the same wrk load
(bench/peers/measure.py). At the end this gateway gets SIGTERM and its usage records are counted against the
requests it was sent (bench/accounting.py), as in ``make bench``.

Writes bench/results/peers.json (git-ignored; the table is in it too) and the chart docs/peers.png. Uses its
own database and Redis db (``DATABASE_URL``, ``REDIS_URL``; the Makefile's ``bench-peers`` target sets
``inference_space_bench_peers`` and db 7). Exits 0 when it measured, whatever the numbers; non-zero only when
it cannot run.
"""

import argparse
import contextlib
import os
import sys
import tempfile
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from bench import accounting, cli, gatewaylog, procs, report, setup, wrk
from bench.peers import chart, install, measure, targets
from bench.peers import report as peers_report
from bench.peers.targets import Target
from bench.setup import FREE_MODEL, ROOT, BenchError

RESULTS_DIR = ROOT / "bench" / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/inference_space_bench_peers"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/7"
NAMES = ("direct", "bare_relay", "gateway_free", "gateway_paid", "litellm", "portkey")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.peers", description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3, help="rounds; each loads every target once (3)")
    parser.add_argument(
        "--duration", type=int, default=10, help="seconds at 32 connections per target and round"
    )
    parser.add_argument(
        "--one-duration", type=int, default=None, help="seconds at 1 connection (duration / 2)"
    )
    parser.add_argument(
        "--warmup", type=int, default=2, help="seconds of warm-up before each target's runs (2)"
    )
    parser.add_argument("--only", default=",".join(NAMES), help=f"targets to measure, of: {','.join(NAMES)}")
    parser.add_argument(
        "--litellm-workers", type=int, default=os.cpu_count() or 1, help="LiteLLM's workers (one per core)"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "peers.json")
    parser.add_argument("--chart", type=Path, default=ROOT / "docs" / "peers.png")
    args = parser.parse_args(argv)
    unknown = set(args.only.split(",")) - set(NAMES)
    if unknown:
        parser.error(f"unknown targets: {', '.join(sorted(unknown))}")
    return args


def options(args: argparse.Namespace) -> dict:
    return {
        "rounds": args.rounds,
        "seconds": args.duration,
        "one_seconds": args.one_duration or max(3, args.duration // 2),
        "warmup": args.warmup,
        "litellm_workers": args.litellm_workers,
        "only": args.only.split(","),
    }


def start_litellm(
    stack: contextlib.ExitStack, found: install.Installed, opts: dict, workdir: Path, base: dict
) -> Callable[[], Target]:
    """LiteLLM's proxy, started; what waits until all its workers accept and returns its target."""
    workers, port = opts["litellm_workers"], int(base["litellm"].rsplit(":", 1)[1])
    log = RESULTS_DIR / "peers-litellm.log"
    service, master_key = targets.start_litellm(
        found, port, base["upstream"], FREE_MODEL, workdir, log, workers
    )
    stack.callback(service.stop)

    def ready() -> Target:
        waited = procs.wait_ready(service, f"{base['litellm']}/health/liveliness", {}, timeout=240)
        if workers > 1:  # one answer proves one worker: wait until every worker accepts
            procs.worker_pids(service, port, workers, timeout=240)
        print(f"  LiteLLM's {workers} workers up after {waited:.0f} s", flush=True)
        return targets.litellm(service, base["litellm"], master_key, found, workers)

    return ready


def start_portkey(
    stack: contextlib.ExitStack, found: install.Installed, workdir: Path, base: dict
) -> Callable[[], Target]:
    """Portkey's gateway, started; what waits until it answers and returns its target."""
    port = int(base["portkey"].rsplit(":", 1)[1])
    service = targets.start_portkey(found, port, workdir, RESULTS_DIR / "peers-portkey.log")
    stack.callback(service.stop)

    def ready() -> Target:
        procs.wait_ready(service, f"{base['portkey']}/", {})
        return targets.portkey(service, base["portkey"], base["upstream"], found)

    return ready


def start_all(stack: contextlib.ExitStack, found: install.Installed, opts: dict, workdir: Path) -> dict:
    """The world and every server, each stopped on the way out; the fixture and the targets, in table order."""
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    ports = {name: procs.free_port() for name in ("upstream", "bare", "gateway", "litellm", "portkey")}
    base = {name: f"http://127.0.0.1:{port}" for name, port in ports.items()}
    logs = {name: RESULTS_DIR / f"peers-{name}.log" for name in ("upstream", "bare", "gateway")}
    # The peers first: LiteLLM takes the longest to start, and boots while the database is migrated.
    peers = []
    if "litellm" in opts["only"]:
        peers.append(start_litellm(stack, found, opts, workdir, base))
    if "portkey" in opts["only"]:
        peers.append(start_portkey(stack, found, workdir, base))
    print("setup: database, migrations, Redis db, catalog, account, key", flush=True)
    fixture = setup.prepare(database_url, redis_url, base["upstream"], workdir)
    upstream = procs.start_upstream(ports["upstream"], fixture.env, logs["upstream"], None)
    stack.callback(upstream.stop)
    relay_env = {**fixture.env, "BARE_UPSTREAM": base["upstream"]}
    relay = procs.start_uvicorn("bare relay", "bench.bare:app", ports["bare"], relay_env, logs["bare"], None)
    stack.callback(relay.stop)
    gateway_env = setup.gateway_env(fixture.env, workdir / "metrics")
    gateway = procs.start_gateway(ports["gateway"], gateway_env, logs["gateway"], None)
    stack.callback(gateway.stop)
    procs.wait_ready(upstream, f"{base['upstream']}/v1/models", {})
    procs.wait_ready(relay, f"{base['bare']}/v1/models", {})
    procs.wait_ready(gateway, f"{base['gateway']}/v1/models", {"Authorization": f"Bearer {fixture.key}"})
    direct = targets.direct(upstream, base["upstream"])
    everything = [
        direct,
        targets.bare(relay, base["bare"]),
        targets.gateway(gateway, base["gateway"], fixture.key, paid=False),
        targets.gateway(gateway, base["gateway"], fixture.key, paid=True),
        *(ready() for ready in peers),
    ]
    chosen = [t for t in everything if t.name in opts["only"]]
    print("servers up", flush=True)
    return {"fixture": fixture, "targets": chosen, "gateway": gateway, "upstream": upstream, "direct": direct}


def probe_all(direct: Target, chosen: list[Target], sent: Counter) -> tuple[dict, list[Target]]:
    """Every target's probe, and the targets that passed it: only those are measured. The upstream's own
    answer comes first: each answer after it must be a new one from the same upstream process."""
    first = targets.probe(direct)
    if not first["ok"]:
        raise BenchError(f"the upstream's own answer is not as expected: {first.get('error')}")
    probes, passed, last = {}, [], first["upstream_id"]
    for target in chosen:
        result = targets.probe(target, after=last)
        last = result.get("upstream_id") or last
        probes[target.name] = result
        if target.counted and "status" in result:
            sent[target.model] += 1
        verdict = "ok" if result["ok"] else f"FAILED: {result.get('error')}"
        print(f"  probe {target.label}: {verdict}", flush=True)
        if result["ok"]:
            passed.append(target)
    return probes, passed


def finish(results: dict, world: dict, sent: Counter) -> None:
    """This gateway's graceful stop, then its bookkeeping against what it was sent, and what it logged."""
    gateway = world["gateway"]
    results["gateway"] = {"alive_at_end": gateway.alive(), "exit_code": gateway.stop()}
    results["gateway"]["graceful_stop"] = not gateway.killed
    results["gateway"]["log"] = gatewaylog.scan(gateway.log_path, [])
    if any(t.counted for t in world["targets"]):
        print("checking the usage records against the requests sent", flush=True)
        fixture = world["fixture"]
        results["accounting"] = accounting.check(fixture.env, fixture.email, dict(sent))


def write(results: dict, chosen: list[Target], args: argparse.Namespace) -> None:
    results["table"] = peers_report.render(results, chosen)
    m, o = results["machine"], results["options"]
    footnote = (
        f"One run, {peers_report.when(results['started_at'])}, on {m['cpu_count']} cores shared by wrk, the upstream,"
        f" PostgreSQL, Redis and each target; medians of {o['rounds']} interleaved rounds."
    )
    title = "Inference Space and its peers, behind the same fake upstream"
    drawn = chart.draw(chosen, results["summary"], args.chart, RESULTS_DIR / "peers.svg", title, footnote)
    results["chart"] = cli.shown(drawn)
    report.write_json(results, args.output)
    print(f"\n{results['table']}\n\nchart: {cli.shown(drawn)}\nfull results: {cli.shown(args.output)}")
    if drawn.suffix != ".png":
        print("  (no working ImageMagick: the chart was left as SVG)")


def run(args: argparse.Namespace) -> int:
    opts = options(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    binary = wrk.ensure_wrk()
    print("peers: checking the pinned installs in .peers/", flush=True)
    found = install.install()
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": opts,
        "machine": report.machine(wrk.wrk_version(binary)),
        "versions": {
            "litellm": found.litellm_version,
            "portkey": found.portkey_version,
            "node": found.node_version,
        },
    }
    sent: Counter = Counter()
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-peers-") as tmp:
        world = start_all(stack, found, opts, Path(tmp))
        chosen = world["targets"]
        results["targets"] = {t.name: {"label": t.label, "processes": t.processes, "config": t.config,
                                       "version": t.version, "url": t.url, "model": t.model} for t in chosen}  # fmt: skip
        results["probes"], passed = probe_all(world["direct"], chosen, sent)
        if not passed:
            raise BenchError("no target answered its probe; see bench/results/peers-*.log")
        results["rows"] = measure.rounds(binary, passed, Path(tmp), opts, world["upstream"].pid, sent)
        finish(results, world, sent)
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["summary"] = measure.summarise(chosen, results["rows"])
    results["ratios"] = peers_report.ratios(results["summary"])
    write(results, chosen, args)
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("peers", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
