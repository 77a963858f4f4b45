"""``python -m bench.soak``: a long run at a steady rate through two gateway processes, then a count of the money.

1. Setup (bench/soakworld.py): 20 models (10 free, 10 paid) on the fake upstream, 1,000 keys over 250 users.
2. The fake upstream and two uvicorn gateway processes (sharing PostgreSQL and Redis) on two ports.
3. Capacity: a closed-loop run at 32 connections with the soak's mix, to pick a rate the machine sustains
   (``--rate-share`` of it, 60% by default) unless ``--rate`` is given.
4. Baseline: the same open-loop schedule straight at the upstream, for ``--baseline-seconds``.
5. Soak: ``--minutes`` at that rate, requests spread over both gateways, the RSS of each sampled every 5 s.
6. Both gateways get SIGTERM; then every 2xx request id is looked up among the usage records and
   ``ledger_reconcile`` proves balance == ledger sum (bench/soakcheck.py).

Writes ``bench/results/soak.json``, ``soak-rss.png`` and ``soak-requests.csv.gz``, and prints a table.
"""

import argparse
import contextlib
import json
import os
import sys
import tempfile
import threading
import time
from datetime import UTC, datetime
from pathlib import Path

from bench import cli, procs, report, rssplot, soakcheck, soakload, soakreport, soakworld
from bench.phases import DIRECT_KEY
from bench.setup import UPSTREAM_MODEL, BenchError

RESULTS_DIR = Path(__file__).resolve().parent / "results"
DEFAULT_DATABASE_URL = "postgres://postgres@127.0.0.1:5432/inference_space_bench_soak"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/5"
GATEWAYS = 2


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench.soak", description=__doc__.splitlines()[0])
    parser.add_argument("--minutes", type=float, default=10.0, help="length of the soak (10)")
    parser.add_argument("--rate", type=float, default=None, help="requests/s; default: a share of capacity")
    parser.add_argument("--rate-share", type=float, default=0.6, help="share of measured capacity (0.6)")
    parser.add_argument("--warmup-seconds", type=float, default=20.0, help="closed-loop warm-up (20)")
    parser.add_argument("--capacity-seconds", type=float, default=10.0)
    parser.add_argument(
        "--baseline-seconds", type=float, default=None, help="direct baseline (60; <=1 min: 15)"
    )
    parser.add_argument("--keys", type=int, default=1000)
    parser.add_argument("--stream-share", type=float, default=0.3, help="share of streamed requests (0.3)")
    parser.add_argument("--max-in-flight", type=int, default=256)
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "soak.json")
    return parser.parse_args(argv)


class RssSampler(threading.Thread):
    """Every ``every`` seconds, the RSS (MiB) of each named process, until stopped."""

    def __init__(self, pids: dict[str, int], every: float = 5.0) -> None:
        super().__init__(daemon=True)
        self.pids, self.every = pids, every
        self.samples: dict[str, list[tuple[float, float]]] = {name: [] for name in pids}
        self.t0 = time.monotonic()
        self._stop_event = threading.Event()

    def sample(self) -> None:
        now = time.monotonic() - self.t0
        for name, pid in self.pids.items():
            with contextlib.suppress(
                Exception
            ):  # a process that is gone has no RSS; the gap shows in the plot
                self.samples[name].append((round(now, 1), procs.rss_bytes(pid) / 2**20))

    def run(self) -> None:
        while not self._stop_event.is_set():
            self.sample()
            self._stop_event.wait(self.every)

    def stop(self) -> None:
        self._stop_event.set()
        self.join(10)
        self.sample()


def start_servers(
    stack: contextlib.ExitStack, world_env: dict, ports: list[int], upstream: procs.Service
) -> list:
    gateways = []
    for n, port in enumerate(ports, 1):
        gateway = procs.start_gateway(port, world_env, RESULTS_DIR / f"soak-gateway-{n}.log", None)
        stack.callback(gateway.stop)
        gateway.name = f"gateway {n}"
        gateways.append(gateway)
    return gateways


def measure(args: argparse.Namespace, results: dict, stack: contextlib.ExitStack, workdir: Path) -> None:
    database_url = os.environ.get("DATABASE_URL") or DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or DEFAULT_REDIS_URL
    up_port, ports = procs.free_port(), [procs.free_port() for _ in range(GATEWAYS)]
    upstream_base = f"http://127.0.0.1:{up_port}"
    print(f"setup: database, catalog (20 models), {args.keys} keys", flush=True)
    started = time.monotonic()
    world = soakworld.prepare(database_url, redis_url, upstream_base, workdir, args.keys)
    results["world"] = {
        "keys": len(world.keys),
        "models": 20,
        "setup_s": round(time.monotonic() - started, 1),
    }
    upstream = procs.start_upstream(up_port, world.env, RESULTS_DIR / "soak-upstream.log", None)
    stack.callback(upstream.stop)
    gateways = start_servers(stack, world.env, ports, upstream)
    procs.wait_ready(upstream, f"{upstream_base}/v1/models", {})
    for gateway, port in zip(gateways, ports, strict=True):
        procs.wait_ready(
            gateway, f"http://127.0.0.1:{port}/v1/models", {"Authorization": f"Bearer {world.keys[0]}"}
        )
    bases = [f"http://127.0.0.1:{port}" for port in ports]
    models = soakworld.FREE_MODELS + soakworld.PAID_MODELS
    plan = soakload.Plan(bases, world.keys, models, stream_share=args.stream_share)
    direct = soakload.Plan([upstream_base], [DIRECT_KEY], [UPSTREAM_MODEL], stream_share=args.stream_share)
    admitted: list[soakload.Sent] = []  # every request sent to a gateway, for the accounting check

    # Warm-up long enough for every key to be looked up once by each process (cold caches are not the soak's
    # subject), then the capacity with this mix, which sets the rate.
    print("warm-up and capacity (closed loop, 32 connections)", flush=True)
    admitted += soakload.run(soakload.run_closed(plan, 32, args.warmup_seconds))["records"]
    cap = soakload.run(soakload.run_closed(plan, 32, args.capacity_seconds))
    admitted += cap["records"]
    rate = args.rate or max(10.0, round(cap["ok_rps"] * args.rate_share / 10) * 10)
    results["capacity"] = {
        "ok_rps": round(cap["ok_rps"], 1),
        "connections": 32,
        "seconds": args.capacity_seconds,
    }
    print(f"  capacity {cap['ok_rps']:.0f} ok req/s; soak rate {rate:.0f} req/s", flush=True)

    baseline_s = args.baseline_seconds or (15.0 if args.minutes <= 1 else 60.0)
    print(f"direct baseline: {baseline_s:.0f} s at {rate:.0f} req/s", flush=True)
    baseline = soakload.run(soakload.run_open(direct, rate, baseline_s, max_in_flight=args.max_in_flight))

    pids = {g.name: g.pid for g in gateways}
    sampler = RssSampler(pids)
    sampler.start()
    machine, cpu0 = procs.cpu_snapshot(), {name: procs.cpu_seconds(pid) for name, pid in pids.items()}
    seconds = args.minutes * 60

    def tick(at: float) -> None:
        if int(at) % 60 == 0:
            rss = ", ".join(f"{n} {s[-1][1]:.0f} MiB" for n, s in sampler.samples.items() if s)
            print(f"  {at / 60:.0f}/{args.minutes:g} min; RSS {rss}", flush=True)

    print(f"soak: {args.minutes:g} min at {rate:.0f} req/s over {GATEWAYS} gateways", flush=True)
    load = soakload.run(
        soakload.run_open(plan, rate, seconds, max_in_flight=args.max_in_flight, on_tick=tick)
    )
    sampler.stop()
    took = time.monotonic() - sampler.t0
    results["cpu_pct"] = {n: round(100 * (procs.cpu_seconds(p) - cpu0[n]) / took, 1) for n, p in pids.items()}
    results["other_processes"] = procs.busiest(
        machine, procs.cpu_snapshot(), took, {*pids.values(), os.getpid()}
    )
    admitted += load["records"]

    print("stopping both gateways (SIGTERM)", flush=True)
    results["gateways"] = []
    for gateway in gateways:
        code = gateway.stop(grace=30)
        results["gateways"].append({"name": gateway.name, "exit_code": code, "graceful": not gateway.killed})
    results["soak"] = soakreport.summarise(load, baseline)
    results["rss"] = soakreport.rss_summary(sampler.samples)
    results["rss_samples"] = sampler.samples
    plot = rssplot.plot(
        sampler.samples,
        RESULTS_DIR / "soak-rss.png",
        f"Gateway RSS during a {args.minutes:g}-minute soak at {rate:.0f} req/s",
    )
    results["rss_plot"] = cli.shown(plot)
    soakreport.write_records(load["records"], RESULTS_DIR / "soak-requests.csv.gz")
    print("checking usage records and the ledger", flush=True)
    try:
        results["accounting"] = soakcheck.check(world.env, world.prefix, admitted, workdir)
    except BenchError as exc:
        results["accounting"] = {"error": str(exc)[-1500:]}
    results["accounting"]["requests_sent_to_gateways"] = len(admitted)


def run(args: argparse.Namespace) -> int:
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()},
        "machine": report.machine("aiohttp open-loop client"),
        "before_start": procs.wait_quiet(0),
    }
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-soak-") as tmp:
        measure(args, results, stack, Path(tmp))
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2, default=str) + "\n")
    print()
    print(soakreport.render(results))
    print(f"\nfull results: {cli.shown(args.output)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("soak", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
