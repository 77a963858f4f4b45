"""Two servers in one run (``--server both``): the gateway served by uvicorn and by granian, phase by phase.

Both serve ``portal.asgi:application`` with the same environment. The run's own gateway is uvicorn's, the
project's default; a second gateway, served by granian with its fastest documented settings
(bench/procs.py: uvloop, HTTP/1 only, no websockets, no access log), starts beside it with an account of its
own and stays up for the whole run. Each of the compared phases (1 and 32 connections, free and paid model)
runs on uvicorn's gateway and right after it on granian's, each after its own direct run, so drift on the
machine weighs on both alike. At the end the granian gateway gets SIGTERM like the other, and its account's
usage records are counted against the requests it was sent: the settlement it flushes at shutdown depends on
the server running the ASGI lifespan's shutdown to its end.

The gateway relies on the lifespan's ``state`` (``scope["state"]``): its runtime is kept there at startup and
reaches every request through it. A server that did not hand the state to requests would fail the probe
before any load: every /v1 request would answer 500.
"""

from collections import Counter
from dataclasses import dataclass, replace
from importlib import metadata
from pathlib import Path

from bench import accounting, gatewaylog, phases, procs, setup, workers
from bench.setup import FREE_MODEL, PAID_MODEL

SECOND = "granian"
COMPARED = ("free_1c", "free_32c", "paid_1c", "paid_32c")  # the phases run on both servers


def phase_name(name: str) -> str:
    """The second server's phase beside ``name``: ``free_1c`` -> ``free_1c_granian``."""
    return f"{name}_{SECOND}"


@dataclass
class Second:
    """The second gateway: its process, the context its phases load it with, and its own account."""

    service: procs.Service
    ctx: phases.Ctx
    email: str
    started_in: float


def start(ctx: phases.Ctx, env: dict[str, str], log_path: Path, cpus: str | None) -> Second:
    """Start the granian gateway beside the running one, on an account and scripts of its own."""
    email, key = setup.account(env)
    port = procs.free_port()
    served = setup.gateway_env(env, ctx.scripts / f"metrics-{SECOND}")  # not the first gateway's
    service = procs.start_gateway(port, served, log_path, cpus, name=f"{SECOND} gateway", server=SECOND)
    other = replace(
        ctx, gateway=f"http://127.0.0.1:{port}", key=key, gateway_pid=service.pid, sent=Counter(),
        scripts=ctx.scripts / SECOND,  # its scripts carry its own key
    )  # fmt: skip
    other.scripts.mkdir(exist_ok=True)
    try:
        started_in = procs.wait_ready(
            service, f"{other.gateway}/v1/models", {"Authorization": f"Bearer {key}"}
        )
        other.gateway_workers = procs.serving_pids(service, port)
    except BaseException:
        service.stop()
        raise
    return Second(service, other, email, started_in)


def probes(second: Second, with_paid: bool) -> dict:
    """One request per model before any load: a 200 proves the lifespan's state reached the request."""
    out = {f"{SECOND}_free": phases.probe(second.ctx, "gateway", FREE_MODEL)}
    if with_paid:
        out[f"{SECOND}_paid"] = phases.probe(second.ctx, "gateway", PAID_MODEL)
    return out


def finish(second: Second, env: dict[str, str], timeline: list[dict]) -> dict:
    """Stop the second gateway gracefully, read its log and count its account's usage records."""
    alive = second.service.alive()
    exit_code = second.service.stop()  # SIGTERM to the supervisor, which passes it on to its worker
    acc = accounting.check(env, second.email, dict(second.ctx.sent))
    try:
        version = metadata.version(SECOND)
    except metadata.PackageNotFoundError:
        version = None
    return {
        "server": SECOND, "version": version, "started_in_s": round(second.started_in, 2),
        "workers": list(second.ctx.gateway_workers), "alive_at_end": alive, "exit_code": exit_code,
        "graceful_stop": not second.service.killed, "log": gatewaylog.scan(second.service.log_path, timeline),
        "accounting": acc, "complete": workers.complete(acc),
    }  # fmt: skip


# --- the table ---------------------------------------------------------------------------------------------


def _ratio(a: float | None, b: float | None) -> str:
    return f"{b / a:.2f}x" if a and b is not None else "-"


def _line(label: str, first: str, second: str, ratio: str = "") -> str:
    return f"  {label:<30}{first:>17}{second:>17}{ratio:>18}".rstrip()


def _ms(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f} ms" if sign else f"{value:.3f} ms"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} µs"


def _pair(first: dict, second: dict, connections: int) -> list[str]:
    a, b = first["gateway"], second["gateway"]
    cpu_a, cpu_b = workers.cpu_us_per_request(a), workers.cpu_us_per_request(b)
    lines = [
        _line("added p50", _ms(first["added_p50_ms"], True), _ms(second["added_p50_ms"], True),
              _ratio(first["added_p50_ms"], second["added_p50_ms"])),
        _line("added p99", _ms(first["added_p99_ms"], True), _ms(second["added_p99_ms"], True)),
        _line("latency p50 / direct p50", f"{a['p50_ms']:.3f} / {first['direct']['p50_ms']:.3f}",
              f"{b['p50_ms']:.3f} / {second['direct']['p50_ms']:.3f}"),
        _line("ok requests/s", f"{a['ok_rps']:,.0f}", f"{b['ok_rps']:,.0f}", _ratio(a["ok_rps"], b["ok_rps"])),
        _line("gateway CPU (% of a core)", f"{a['cpu_pct']['gateway']:.0f}%", f"{b['cpu_pct']['gateway']:.0f}%"),
        _line("gateway CPU per request", _us(cpu_a), _us(cpu_b), _ratio(cpu_a, cpu_b)),
        _line("non-2xx / socket errors", f"{a['non_2xx']} / {a['socket_errors']}",
              f"{b['non_2xx']} / {b['socket_errors']}"),
    ]  # fmt: skip
    if connections > 1:
        lines.append(_line("upstream alone, just before", f"{first['direct']['ok_rps']:,.0f}",
                           f"{second['direct']['ok_rps']:,.0f}"))  # fmt: skip
    return lines


def _bookkeeping(info: dict) -> list[str]:
    how = "gracefully" if info.get("graceful_stop") else "NOT gracefully (killed)"
    log = info.get("log", {})
    logged = sum(item["count"] for item in log.get("records", []) + log.get("exceptions", []))
    lines = [
        f"  {SECOND} {info.get('version')}: stopped {how}, exit code {info.get('exit_code')}; {logged} warnings "
        f"or errors in bench/results/gateway-{SECOND}.log"
    ]
    return [*lines, *account_lines(f"{SECOND}'s", info)]


def render(results: dict) -> list[str]:
    """uvicorn's and granian's figures side by side, phase by phase; nothing when only one server ran."""
    info = results.get("servers")
    if not info:
        return []
    lines = ["", f"servers, phase by phase (uvicorn, then {SECOND}, each after its own direct run)",
             _line("", "uvicorn", SECOND, f"{SECOND}/uvicorn")]  # fmt: skip
    for name in COMPARED:
        first, second = results["phases"].get(name), results["phases"].get(phase_name(name))
        if first is None and second is None:
            continue
        connections = (first or second or {}).get("connections", 0)
        lines.append(f"  {name}")
        failed = [(p or {}).get("error", "not run") for p in (first, second) if not p or "error" in p]
        if failed:
            lines.append(f"    could not compare: {failed[0][:160]}")
            continue
        lines += ["  " + line for line in _pair(first, second, connections)]
    return lines + _bookkeeping(info)


def account_lines(whose: str, gateway: dict) -> list[str]:
    """A gateway's own account after its stop: records against requests sent, and the money."""
    acc = gateway.get("accounting") or {}
    if "per_model" not in acc:
        return [f"  {whose} usage check failed: {acc.get('error', 'not run')[:200]}"]
    counts = ", ".join(
        f"{model} {c['recorded']:,} recorded / {c['sent_completed']:,} completed"
        for model, c in acc["per_model"].items()
    )
    verdict = {True: "yes", False: "NO", None: "unknown"}[gateway.get("complete")]
    matches = "yes" if acc.get("balance_matches_ledger") else "NO"
    return [
        f"  {whose} usage records (own account): {counts}",
        f"    every request recorded: {verdict}; balance equals ledger sum: {matches}; "
        f"open holds after stop: {acc.get('open_holds')}",
    ]
