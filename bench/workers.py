"""The gateway with two worker processes beside the one-process gateway: how throughput scales with workers.

``uvicorn --workers 2`` is a supervisor and two processes that accept on its socket. The processes share only
PostgreSQL and Redis, which is why more than one needs Redis: limits stay exact and revocation immediate
across them. The phase starts such a gateway with the one-process gateway's environment and options, on an
account of its own, so that after its graceful stop its usage records can be counted apart from the rest of
the run's. Then, for each model, it sends the 32-connection load of the throughput phases three times, back to
back: to the upstream directly, to the one-process gateway, and to the two-worker gateway.

Two cores are shared here by the load generator, the upstream, PostgreSQL, Redis and the gateway. A second
worker can't double throughput on such a machine. It can only take what the rest leaves of the cores, which
``machine_busy_cores`` shows. With ``--pin split`` both workers share the gateway's one CPU, so the phase then
measures no scaling at all.
"""

from collections import Counter
from dataclasses import replace
from pathlib import Path

from bench import accounting, gatewaylog, phases, procs, setup
from bench.setup import UPSTREAM_MODEL

WORKERS = 2
CONNECTIONS, THREADS = 32, 2  # as the free_32c and paid_32c phases


def cpu_us_per_request(run: dict) -> float | None:
    """The gateway's CPU time per request (all its processes), in µs: % of a core over requests/s."""
    return round(1e4 * run["cpu_pct"]["gateway"] / run["rps"], 1) if run.get("rps") else None


def scaling(one: phases.Ctx, two: phases.Ctx, model: str) -> dict:
    """The same load on the upstream, the one-process gateway and the two-worker gateway, back to back."""
    direct = phases.measure(one, "direct", UPSTREAM_MODEL, CONNECTIONS, THREADS)
    single = phases.measure(one, "gateway", model, CONNECTIONS, THREADS)
    double = phases.measure(two, "gateway", model, CONNECTIONS, THREADS)
    rps_1, rps_2 = single["ok_rps"], double["ok_rps"]
    return {
        "model": model, "connections": CONNECTIONS, "threads": THREADS,
        "direct": direct, "one_worker": single, "two_workers": double,
        "rps_ratio": round(rps_2 / rps_1, 3) if rps_1 else None,
        "rps_per_worker": [rps_1, round(rps_2 / WORKERS, 1)],
        "cpu_us_per_request": [cpu_us_per_request(single), cpu_us_per_request(double)],
    }  # fmt: skip


def complete(acc: dict) -> bool | None:
    """Every request recorded (wrk's abandoned ones make "recorded" exceed "completed" a little), the balance
    equal to the ledger sum and no hold left open; None when the check itself failed."""
    if "per_model" not in acc:
        return None
    recorded = all(c["recorded"] >= c["sent_completed"] for c in acc["per_model"].values())
    return recorded and acc["balance_matches_ledger"] and acc["open_holds"] == 0


def phase(ctx: phases.Ctx, env: dict[str, str], models: list[str], log_path: Path, cpus: str | None) -> dict:
    """Start the two-worker gateway, measure each model against the running one-process gateway (``ctx``),
    stop it gracefully and check its account's usage records against what it was sent."""
    email, key = setup.account(env)
    port = procs.free_port()
    started = gatewaylog.now()
    served = setup.gateway_env(env, ctx.scripts / "metrics-workers")  # not the one-process gateway's
    gateway = procs.start_gateway(port, served, log_path, cpus, name="two-worker gateway", workers=WORKERS)
    out: dict = {"workers": WORKERS, "models": {}}
    two = replace(ctx, gateway=f"http://127.0.0.1:{port}", key=key, gateway_pid=gateway.pid, sent=Counter())
    try:
        procs.wait_ready(gateway, f"{two.gateway}/v1/models", {"Authorization": f"Bearer {key}"})
        two.gateway_workers = tuple(procs.worker_pids(gateway, port, WORKERS))
        two.scripts = ctx.scripts / "workers"  # its scripts carry its own key
        two.scripts.mkdir(exist_ok=True)
        for model in models:
            try:
                out["models"][model] = scaling(ctx, two, model)
            except Exception as exc:  # the next model and the count of the records still run
                out["models"][model] = {"error": f"{type(exc).__name__}: {exc}"}
    finally:
        out["exit_code"] = gateway.stop()  # graceful: each worker flushes its settlement queue
    out["graceful_stop"] = not gateway.killed
    out["log"] = gatewaylog.scan(
        log_path, [{"phase": "workers_32c", "start": started, "end": gatewaylog.now()}]
    )
    out["accounting"] = accounting.check(env, email, dict(two.sent))
    out["complete"] = complete(out["accounting"])
    return out


def brief(phase: dict) -> str:
    """One line for the progress output."""
    parts = []
    for model, run in phase["models"].items():
        if "error" in run:
            parts.append(f"{model} failed")
            continue
        one, two = run["one_worker"]["ok_rps"], run["two_workers"]["ok_rps"]
        parts.append(f"{model} {one:,.0f} -> {two:,.0f} ok req/s ({run['rps_ratio']:.2f}x)")
    recorded = {True: "every request recorded", False: "NOT every request recorded", None: "no usage check"}
    return "; ".join([*parts, recorded[phase.get("complete")]])
