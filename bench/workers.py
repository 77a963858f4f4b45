"""The scale-out curve: the gateway with 1, 2, 4 ... worker processes, each count beside the one-process gateway.

``uvicorn --workers N`` (or ``granian --workers N``) is a supervisor and N processes that accept on its socket.
The processes share only PostgreSQL and Redis, which is why more than one needs Redis: limits stay exact and
revocation immediate across them. For each count above 1 the phase starts such a gateway with the one-process
gateway's environment and options, on an account of its own, so that after its graceful stop its usage records
can be counted apart from the rest of the run's; then it stops it before the next count starts. For each model
it sends the 32-connection load of the throughput phases three times, back to back: to the upstream directly,
to the one-process gateway (the run's own, so 1 on the curve is measured again next to every other count) and
to the N-worker gateway.

Two cores are shared here by the load generator, the upstream, PostgreSQL, Redis and the gateway. More workers
can't multiply throughput on such a machine. They can only take what the rest leaves of the cores, which
``machine_busy_cores`` shows. With ``--pin split`` every worker shares the gateway's one CPU, so the phase then
measures no scaling at all.
"""

from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import accounting, gatewaylog, phases, procs, setup
from bench.setup import UPSTREAM_MODEL

DEFAULT_CURVE = (1, 2, 4)
CONNECTIONS, THREADS = 32, 2  # as the free_32c and paid_32c phases


def parse_curve(text: str) -> tuple[int, ...]:
    """``1,2,4`` -> (1, 2, 4): sorted, without repeats; 1 (the one-process gateway) is always on the curve."""
    try:
        counts = {int(part) for part in text.split(",") if part.strip()}
    except ValueError:
        raise ValueError(
            f"--workers-curve wants counts separated by commas, like 1,2,4 (got {text!r})"
        ) from None
    if not counts or min(counts) < 1:
        raise ValueError(f"--workers-curve wants counts of at least 1 (got {text!r})")
    return tuple(sorted(counts | {1}))


def cpu_us_per_request(run: dict) -> float | None:
    """The gateway's CPU time per request (all its processes), in µs: % of a core over requests/s."""
    return round(1e4 * run["cpu_pct"]["gateway"] / run["rps"], 1) if run.get("rps") else None


def scaling(one: phases.Ctx, many: phases.Ctx, model: str, workers: int) -> dict:
    """The same load on the upstream, the one-process gateway and the ``workers``-process one, back to back."""
    direct = phases.measure(one, "direct", UPSTREAM_MODEL, CONNECTIONS, THREADS)
    single = phases.measure(one, "gateway", model, CONNECTIONS, THREADS)
    several = phases.measure(many, "gateway", model, CONNECTIONS, THREADS)
    rps_1, rps_n = single["ok_rps"], several["ok_rps"]
    return {
        "model": model, "connections": CONNECTIONS, "threads": THREADS, "workers": workers,
        "direct": direct, "one_worker": single, "several": several,
        "rps_ratio": round(rps_n / rps_1, 3) if rps_1 else None,
        "rps_per_worker": [rps_1, round(rps_n / workers, 1)],
        "cpu_us_per_request": [cpu_us_per_request(single), cpu_us_per_request(several)],
    }  # fmt: skip


def complete(acc: dict) -> bool | None:
    """Every request recorded (wrk's abandoned ones make "recorded" exceed "completed" a little), the balance
    equal to the ledger sum and no hold left open; None when the check itself failed."""
    if "per_model" not in acc:
        return None
    recorded = all(c["recorded"] >= c["sent_completed"] for c in acc["per_model"].values())
    return recorded and acc["balance_matches_ledger"] and acc["open_holds"] == 0


def log_name(workers: int) -> str:
    return f"gateway-workers-{workers}.log"


def count(
    ctx: phases.Ctx, env: dict[str, str], models: list[str], workers: int, log_path: Path, cpus: str | None,
    server: str,
) -> dict:  # fmt: skip
    """Start the ``workers``-process gateway, measure each model against the running one-process gateway
    (``ctx``), stop it gracefully and check its account's usage records against what it was sent."""
    email, key = setup.account(env)
    port = procs.free_port()
    started = gatewaylog.now()
    served = setup.gateway_env(env, ctx.scripts / f"metrics-workers-{workers}")  # not another gateway's
    name = f"{workers}-worker gateway"
    gateway = procs.start_gateway(port, served, log_path, cpus, name=name, workers=workers, server=server)
    out: dict = {"workers": workers, "server": server, "models": {}}
    many = replace(ctx, gateway=f"http://127.0.0.1:{port}", key=key, gateway_pid=gateway.pid, sent=Counter())
    try:
        procs.wait_ready(gateway, f"{many.gateway}/v1/models", {"Authorization": f"Bearer {key}"})
        many.gateway_workers = tuple(procs.worker_pids(gateway, port, workers))
        many.scripts = ctx.scripts / f"workers-{workers}"  # its scripts carry its own key
        many.scripts.mkdir(exist_ok=True)
        for model in models:
            try:
                out["models"][model] = scaling(ctx, many, model, workers)
            except Exception as exc:  # the next model and the count of the records still run
                out["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        out["exit_code"] = gateway.stop()  # graceful: each worker flushes its settlement queue
    out["graceful_stop"] = not gateway.killed
    out["log"] = gatewaylog.scan(
        log_path, [{"phase": f"workers_32c ({workers})", "start": started, "end": gatewaylog.now()}]
    )
    out["accounting"] = accounting.check(env, email, dict(many.sent))
    out["complete"] = complete(out["accounting"])
    return out


def phase(
    ctx: phases.Ctx, env: dict[str, str], models: list[str], curve: tuple[int, ...], log_dir: Path,
    cpus: str | None, server: str = "uvicorn",
) -> dict:  # fmt: skip
    """Every count of the curve above 1, one gateway at a time; a count that fails to start is recorded with
    its error and the next one still runs."""
    out: dict = {"server": server, "curve": list(curve), "counts": {}}
    for workers in (n for n in curve if n > 1):
        try:
            out["counts"][str(workers)] = count(
                ctx, env, models, workers, log_dir / log_name(workers), cpus, server
            )
        except Exception as exc:
            out["counts"][str(workers)] = {"workers": workers, "error": f"{type(exc).__name__}: {exc}"}
    return out


def brief(phase: dict) -> str:
    """One line for the progress output."""
    parts = []
    for workers, gateway in phase["counts"].items():
        if "error" in gateway:
            parts.append(f"{workers} workers failed")
            continue
        for model, run in gateway["models"].items():
            if "error" in run:
                parts.append(f"{workers} workers, {model} failed")
                continue
            one, many = run["one_worker"]["ok_rps"], run["several"]["ok_rps"]
            parts.append(
                f"{model} 1 -> {workers}: {one:,.0f} -> {many:,.0f} ok req/s ({run['rps_ratio']:.2f}x)"
            )
        recorded = {True: "all recorded", False: "NOT all recorded", None: "no usage check"}
        parts.append(f"{workers} workers: {recorded[gateway.get('complete')]}")
    return "; ".join(parts) or "no count above 1 worker"
