"""``python -m bench``: set up, start the servers, run every phase, report, and always stop the servers.

A phase that fails (say the paid model answers with errors, or a client raises) is recorded with its error and
the run goes on; only a failure of the benchmark's own machinery (no database, a server that won't start)
ends it early with a non-zero exit code.
"""

import argparse
import contextlib
import os
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path

from bench import (
    accounting,
    cli,
    gatewaylog,
    phases,
    procs,
    pyspy,
    report,
    servers,
    setup,
    table,
    workers,
    wrk,
)
from bench.setup import CLAUDE_MODEL, EMBED_MODEL, FREE_MODEL, PAID_MODEL, UPSTREAM_MODEL

RESULTS_DIR = Path(__file__).resolve().parent / "results"


def _curve(text: str) -> tuple[int, ...]:
    try:
        return workers.parse_curve(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__.splitlines()[0])
    parser.add_argument("--duration", type=int, default=None, help="seconds per measured run (10; quick: 3)")
    parser.add_argument(
        "--warmup", type=int, default=None, help="seconds of warm-up before each (3; quick: 1)"
    )
    parser.add_argument("--quick", action="store_true", help="short phases and 20,000 RSS requests")
    parser.add_argument("--rss-requests", type=int, default=None, help="requests between RSS readings")
    parser.add_argument(
        "--rss-warmup", type=int, default=10_000, help="requests before the first RSS reading"
    )
    parser.add_argument("--ttfc-requests", type=int, default=None, help="streamed requests (500; quick: 100)")
    parser.add_argument(
        "--pin",
        choices=("none", "split"),
        default="none",
        help="none: let the scheduler place processes; split: gateway on CPU 1, upstream and load on CPU 0",
    )
    parser.add_argument(
        "--wait-quiet",
        type=float,
        default=0,
        metavar="S",
        help="before the run and each phase, wait up to S seconds until other processes use under 15%% of a core",
    )
    parser.add_argument("--profile", action="store_true", help="also profile the gateway with py-spy")
    parser.add_argument("--skip-paid", action="store_true", help="don't measure the paid model")
    parser.add_argument("--skip-embeddings", action="store_true", help="don't measure POST /v1/embeddings")
    parser.add_argument("--skip-responses", action="store_true", help="don't measure POST /v1/responses")
    parser.add_argument("--skip-messages", action="store_true", help="don't measure POST /v1/messages")
    parser.add_argument(
        "--server",
        choices=(*procs.SERVERS, "both"),
        default="uvicorn",
        help="what serves the gateway; both: the 1- and 32-connection free and paid phases on uvicorn and then "
        "granian, phase by phase, in one run (the other phases on uvicorn)",
    )
    parser.add_argument(
        "--workers-curve",
        type=_curve,
        default=workers.DEFAULT_CURVE,
        metavar="N,N,...",
        help="worker processes of the scale-out phase, each count above 1 a gateway of its own beside the "
        "one-process gateway (1,2,4)",
    )
    parser.add_argument(
        "--skip-workers", action="store_true", help="don't measure the gateway with several worker processes"
    )
    parser.add_argument("--output", type=Path, default=RESULTS_DIR / "latest.json")
    return parser.parse_args(argv)


def resolve(args: argparse.Namespace) -> dict:
    quick = args.quick
    return {
        "quick": quick,
        "seconds": args.duration or (3 if quick else 10),
        "warmup": args.warmup if args.warmup is not None else (1 if quick else 3),
        "rss_requests": args.rss_requests or (20_000 if quick else 100_000),
        "rss_warmup": args.rss_warmup,
        "ttfc_requests": args.ttfc_requests or (100 if quick else 500),
        "ttfc_warmup": 20 if quick else 50,
        "profile": args.profile,
        "skip_paid": args.skip_paid,
        "skip_embeddings": args.skip_embeddings,
        "skip_responses": args.skip_responses,
        "skip_messages": args.skip_messages,
        "skip_workers": args.skip_workers or args.workers_curve == (1,),
        "server": args.server,
        "workers_curve": list(args.workers_curve),
        "wait_quiet": args.wait_quiet,
    }


def pinning(mode: str) -> dict:
    """CPU sets for each process. The load generator includes this process (the streaming client)."""
    if mode == "split" and (os.cpu_count() or 1) >= 2:
        plan = {"mode": "split", "gateway": "1", "upstream": "0", "load": "0"}
        os.sched_setaffinity(0, {0})
        return plan
    return {"mode": "none", "gateway": None, "upstream": None, "load": None}


def guarded(results: dict, name: str, fn: Callable[[], dict]) -> dict | None:
    """Run one phase; an exception becomes the phase's recorded error instead of ending the run."""
    print(f"[{name}] ...", flush=True)
    started, span = time.monotonic(), {"phase": name, "start": gatewaylog.now()}
    results["timeline"].append(span)
    try:
        results["phases"][name] = fn()
    except KeyboardInterrupt:
        raise
    except Exception as exc:
        results["phases"][name] = {"error": f"{type(exc).__name__}: {exc}", "trace": traceback.format_exc()}
        print(f"[{name}] failed: {type(exc).__name__}: {exc}", flush=True)
        return None
    finally:
        span["end"] = gatewaylog.now()
    print(
        f"[{name}] done in {time.monotonic() - started:.0f} s: {_brief(results['phases'][name])}", flush=True
    )
    return results["phases"][name]


def _brief(phase: dict) -> str:
    if "direct" in phase and "ok_rps" in phase["direct"]:
        d, g = phase["direct"], phase["gateway"]
        return (
            f"p50 {d['p50_ms']:.3f} -> {g['p50_ms']:.3f} ms, p99 {d['p99_ms']:.3f} -> {g['p99_ms']:.3f} ms, "
            f"{d.get('ok_rps', 0):,.0f} -> {g.get('ok_rps', 0):,.0f} ok req/s, non-2xx {g.get('non_2xx', '-')}"
        )
    if "counts" in phase:
        return workers.brief(phase)
    if "added_p50_ms" in phase:
        return f"added p50 {phase['added_p50_ms']:+.3f} ms, p99 {phase['added_p99_ms']:+.3f} ms"
    if "growth_pct" in phase:
        return f"RSS {phase['rss_before_mb']} -> {phase['rss_after_mb']} MB ({phase['growth_pct']:+.2f}%)"
    return "ok"


def run_phases(
    ctx: phases.Ctx, opts: dict, results: dict, gateway: procs.Service, fixture: setup.Fixture,
    second: servers.Second | None = None,
) -> None:  # fmt: skip
    """Every phase in order; once the gateway process is gone, the remaining ones are marked as such. With a
    second server, each compared phase is followed by the same phase on it."""

    def rate() -> float:  # the free model's measured rate sizes the RSS runs
        return (results["phases"].get("free_32c") or {}).get("gateway", {}).get("rps", 1000.0)

    def unless(skip: str, name: str, fn: Callable[[], dict]) -> list[tuple[str, Callable[[], dict]]]:
        """A phase of another endpoint, run right after chat's counterpart and judged against it; none with the
        option ``skip``."""
        return [] if opts[skip] else [(name, fn)]

    def compare(model: str, connections: int, threads: int, endpoint: str = "chat") -> Callable[[], dict]:
        return lambda: phases.compare(ctx, model, connections, threads, endpoint)

    def stream(endpoint: str) -> Callable[[], dict]:
        return lambda: phases.stream_ttfc(ctx, opts["ttfc_requests"], opts["ttfc_warmup"], endpoint)

    plan = [
        ("free_1c", compare(FREE_MODEL, 1, 1)),
        *unless("skip_responses", "responses_1c", compare(FREE_MODEL, 1, 1, "responses")),
        *unless("skip_responses", "responses_stored_1c", compare(FREE_MODEL, 1, 1, "responses_stored")),
        *unless("skip_messages", "messages_1c", compare(FREE_MODEL, 1, 1, "messages")),
        *unless("skip_messages", "messages_native_1c", compare(CLAUDE_MODEL, 1, 1, "messages_native")),
        *unless("skip_embeddings", "embed_1c", compare(EMBED_MODEL, 1, 1, "embeddings")),
        ("free_32c", compare(FREE_MODEL, 32, 2)),
        *unless("skip_embeddings", "embed_32c", compare(EMBED_MODEL, 32, 2, "embeddings")),
        ("stream_ttfc", stream("chat")),
        *unless("skip_responses", "responses_ttfe", stream("responses")),
        ("rss", lambda: phases.rss_growth(ctx, opts["rss_warmup"], opts["rss_requests"], rate())),
    ]
    if not opts["skip_paid"]:
        plan += [("paid_1c", compare(PAID_MODEL, 1, 1)), ("paid_32c", compare(PAID_MODEL, 32, 2))]
    if not opts["skip_workers"]:  # last: more gateways on the machine must not disturb the other phases
        models = [FREE_MODEL] + ([] if opts["skip_paid"] else [PAID_MODEL])
        curve, cpus = tuple(opts["workers_curve"]), results["pinning"]["gateway"]
        server = results["gateway"]["server"]
        plan.append(
            ("workers_32c", lambda: workers.phase(ctx, fixture.env, models, curve, RESULTS_DIR, cpus, server))
        )
    if second is not None:
        plan = interleave(plan, second.ctx)
    for name, fn in plan:
        serving = second.service if second is not None and name.endswith(servers.phase_name("")) else gateway
        if not serving.alive():
            results["phases"][name] = {
                "error": f"the {serving.name} exited (code {serving.proc.returncode}) earlier"
            }
            continue
        if opts["wait_quiet"]:  # neighbours come and go: wait again before every phase
            results["quiet_waits"][name] = procs.wait_quiet(opts["wait_quiet"])
        guarded(results, name, fn)


def interleave(
    plan: list[tuple[str, Callable[[], dict]]], other: phases.Ctx
) -> list[tuple[str, Callable[[], dict]]]:
    """Each compared phase followed by the same phase on the second server's gateway."""
    specs = {"free_1c": (FREE_MODEL, 1, 1), "free_32c": (FREE_MODEL, 32, 2),
             "paid_1c": (PAID_MODEL, 1, 1), "paid_32c": (PAID_MODEL, 32, 2)}  # fmt: skip
    out = []
    for name, fn in plan:
        out.append((name, fn))
        if name in servers.COMPARED:
            model, connections, threads = specs[name]
            out.append(
                (servers.phase_name(name), lambda s=(model, connections, threads): phases.compare(other, *s))
            )
    return out


def run_profiles(ctx: phases.Ctx, opts: dict, results: dict) -> None:
    binary = pyspy.find()
    if binary is None:
        results["profile"] = {"error": "py-spy is not installed (pip install py-spy)"}
        print("  --profile: py-spy is not installed, skipping", flush=True)
        return
    seconds = min(opts["seconds"], 10)
    models = [("", FREE_MODEL)] + ([] if opts["skip_paid"] else [("-paid", PAID_MODEL)])
    results["profile"] = {}
    # A supervisor only passes signals on: the worker runs the application.
    ctx = replace(ctx, gateway_pid=ctx.gateway_workers[0]) if ctx.gateway_workers else ctx
    for tag, model in models:
        guarded(
            results,
            f"profile{tag}",
            lambda m=model, t=tag: pyspy.profile(binary, ctx, m, RESULTS_DIR, seconds, t),
        )
        results["profile"][model] = results["phases"].pop(f"profile{tag}", None)


def probes(
    ctx: phases.Ctx, with_paid: bool, with_embeddings: bool, with_responses: bool, with_messages: bool
) -> dict:
    out = {
        "direct": phases.probe(ctx, "direct", UPSTREAM_MODEL),
        "gateway_free": phases.probe(ctx, "gateway", FREE_MODEL),
        "gateway_free_stream": phases.probe(ctx, "gateway", FREE_MODEL, stream=True),
    }
    if with_paid:
        out["gateway_paid"] = phases.probe(ctx, "gateway", PAID_MODEL)
    if with_embeddings:
        out["direct_embeddings"] = phases.probe(ctx, "direct", UPSTREAM_MODEL, endpoint="embeddings")
        out["gateway_embeddings"] = phases.probe(ctx, "gateway", EMBED_MODEL, endpoint="embeddings")
    if with_responses:  # its direct side is chat's, probed above
        out["gateway_responses"] = phases.probe(ctx, "gateway", FREE_MODEL, endpoint="responses")
        out["gateway_responses_stream"] = phases.probe(
            ctx, "gateway", FREE_MODEL, stream=True, endpoint="responses"
        )
    if with_messages:
        out["gateway_messages"] = phases.probe(ctx, "gateway", FREE_MODEL, endpoint="messages")
        out["direct_messages"] = phases.probe(ctx, "direct", UPSTREAM_MODEL, endpoint="messages_native")
        out["gateway_messages_native"] = phases.probe(
            ctx, "gateway", CLAUDE_MODEL, endpoint="messages_native"
        )
    for name, probe in out.items():
        print(f"  probe {name}: HTTP {probe.get('status', probe.get('error'))}", flush=True)
    return out


def serve_and_measure(opts: dict, results: dict, stack: contextlib.ExitStack, workdir: Path) -> None:
    database_url = os.environ.get("DATABASE_URL") or setup.DEFAULT_DATABASE_URL
    redis_url = os.environ.get("REDIS_URL") or setup.DEFAULT_REDIS_URL
    plan = results["pinning"]
    upstream_port, gateway_port = procs.free_port(), procs.free_port()
    upstream_base = f"http://127.0.0.1:{upstream_port}"
    print("setup: database, migrations, Redis db, catalog, account, key", flush=True)
    fixture = setup.prepare(database_url, redis_url, upstream_base, workdir)
    upstream = procs.start_upstream(
        upstream_port, fixture.env, RESULTS_DIR / "upstream.log", plan["upstream"]
    )
    stack.callback(upstream.stop)
    env = setup.gateway_env(fixture.env, workdir / "metrics")
    server = "granian" if opts["server"] == "granian" else "uvicorn"  # "both": uvicorn's is the run's own
    gateway = procs.start_gateway(
        gateway_port, env, RESULTS_DIR / "gateway.log", plan["gateway"], server=server
    )
    stack.callback(gateway.stop)
    auth = {"Authorization": f"Bearer {fixture.key}"}
    procs.wait_ready(upstream, f"{upstream_base}/v1/models", {})
    started_in = procs.wait_ready(gateway, f"http://127.0.0.1:{gateway_port}/v1/models", auth)
    print(f"servers up ({server} gateway answered after {started_in:.1f} s)", flush=True)
    ctx = phases.Ctx(
        wrk_bin=results["wrk_bin"], scripts=workdir, direct=upstream_base, gateway=f"http://127.0.0.1:{gateway_port}",
        key=fixture.key, seconds=opts["seconds"], warmup=opts["warmup"], load_cpus=plan["load"],
        gateway_pid=gateway.pid, upstream_pid=upstream.pid,
        gateway_workers=procs.serving_pids(gateway, gateway_port),
    )  # fmt: skip
    second = None
    if opts["server"] == "both":
        second = servers.start(
            ctx, fixture.env, RESULTS_DIR / f"gateway-{servers.SECOND}.log", plan["gateway"]
        )
        stack.callback(second.service.stop)
        print(f"{servers.SECOND} gateway up (answered after {second.started_in:.1f} s)", flush=True)
    skipped = (opts["skip_paid"], opts["skip_embeddings"], opts["skip_responses"], opts["skip_messages"])
    results["probes"] = probes(ctx, *(not skip for skip in skipped))
    if second is not None:
        results["probes"].update(servers.probes(second, not opts["skip_paid"]))
    results["gateway"] = {"server": server, "rss_at_start_mb": round(ctx.gateway_rss() / 2**20, 2)}
    run_phases(ctx, opts, results, gateway, fixture, second)
    if opts["profile"]:
        run_profiles(ctx, opts, results)
    results["gateway"]["alive_at_end"] = gateway.alive()
    results["gateway"]["exit_code"] = gateway.stop()  # graceful: flushes settlement before the check below
    results["gateway"]["graceful_stop"] = not gateway.killed
    results["gateway"]["log"] = gatewaylog.scan(gateway.log_path, results["timeline"])
    print("checking the usage records against the requests sent", flush=True)
    results["accounting"] = accounting.check(fixture.env, fixture.email, dict(ctx.sent))
    if second is not None:
        print(f"stopping the {servers.SECOND} gateway and checking its usage records", flush=True)
        results["servers"] = servers.finish(second, fixture.env, results["timeline"])


def run(args: argparse.Namespace) -> int:
    opts = resolve(args)
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    wrk_bin = wrk.ensure_wrk()
    quiet = procs.wait_quiet(args.wait_quiet)
    results: dict = {
        "started_at": datetime.now(UTC).isoformat(timespec="seconds"),
        "options": opts,
        "machine": report.machine(wrk.wrk_version(wrk_bin)),
        "before_start": quiet,
        "pinning": pinning(args.pin),
        "wrk_bin": wrk_bin,
        "phases": {},
        "timeline": [],
        "quiet_waits": {},
    }
    with contextlib.ExitStack() as stack, tempfile.TemporaryDirectory(prefix="bench-") as tmp:
        serve_and_measure(opts, results, stack, Path(tmp))
    results["finished_at"] = datetime.now(UTC).isoformat(timespec="seconds")
    results["targets"] = report.verdicts(results["phases"])
    report.write_json(results, args.output)
    print()
    print(table.render(results))
    print(f"\nfull results: {cli.shown(args.output)}")
    return 0


def main(argv: list[str] | None = None) -> int:
    return cli.main("bench", run, parse_args, argv)


if __name__ == "__main__":
    sys.exit(main())
