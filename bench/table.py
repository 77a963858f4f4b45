"""The human-readable summary printed at the end of a run (the JSON file has everything else)."""

from collections.abc import Callable

from bench import servers
from bench.report import BACKING_SERVICES
from bench.setup import CLAUDE_MODEL, EMBED_MODEL, FREE_MODEL, PAID_MODEL


def _row(
    label: str, direct: str = "", gateway: str = "", added: str = "", target: str = "", status: str = ""
) -> str:
    """label | direct | gateway | added (right-aligned numbers) | target | result."""
    line = f"{label:<30}{direct:>14}{gateway:>14}{added:>13}   {target:<22}{status}"
    return line.rstrip()


def _ms(value: float | None, sign: bool = False) -> str:
    if value is None:
        return "-"
    return f"{value:+.3f} ms" if sign else f"{value:.3f} ms"


def _target_text(verdict: dict | None) -> tuple[str, str]:
    if verdict is None:
        return "", ""
    limit = f"{verdict['limit']:,g}"
    unit = f" {verdict['unit']}" if verdict["unit"] else ""
    prefix = "added " if verdict["unit"] == "ms" else ""
    status = verdict["status"] + (f" ({verdict['note']})" if verdict["note"] else "")
    return f"{prefix}{verdict['op']} {limit}{unit}", status


def _with(verdicts: dict, key: str | None) -> tuple[str, str]:
    return _target_text(verdicts.get(key) if key else None)


def _latency(phase: dict, verdicts: dict, keys: tuple[str | None, str | None]) -> list[str]:
    d, g = phase["direct"], phase["gateway"]
    return [
        _row("  latency p50", _ms(d["p50_ms"]), _ms(g["p50_ms"]), _ms(phase["added_p50_ms"], True),
             *_with(verdicts, keys[0])),
        _row("  latency p99", _ms(d["p99_ms"]), _ms(g["p99_ms"]), _ms(phase["added_p99_ms"], True),
             *_with(verdicts, keys[1])),
        _row("  requests / non-2xx", f"{d['requests']:,} / {d['non_2xx']}", f"{g['requests']:,} / {g['non_2xx']}"),
    ]  # fmt: skip


def _share(value: float) -> str:
    return f"{value:.1f} %"


def _beyond(value: float) -> str:
    return _ms(value, True)


def _versus_chat(
    rows: list[str], verdicts: dict, key: str, label: str, shown: Callable[[float], str]
) -> list[str]:
    """A phase judged against chat's: its own rows, then the figure compared with chat's and its target."""
    verdict = verdicts.get(key)
    value = verdict["value"] if verdict else None
    return [*rows, _row(label, "", "", "-" if value is None else shown(value), *_target_text(verdict))]


def _throughput(phase: dict, verdicts: dict, keys: tuple[str | None, str | None]) -> list[str]:
    d, g = phase["direct"], phase["gateway"]
    ratio = f"({100 * phase['rps_ratio']:.1f}%)" if phase.get("rps_ratio") is not None else ""
    errors_d = f"{d['non_2xx']} / {d['socket_errors']}"
    errors_g = f"{g['non_2xx']} / {g['socket_errors']}"
    return [
        _row("  requests/s", f"{d['ok_rps']:,.0f}", f"{g['ok_rps']:,.0f}", ratio, *_with(verdicts, keys[0])),
        _row("  latency p50", _ms(d["p50_ms"]), _ms(g["p50_ms"]), _ms(g["p50_ms"] - d["p50_ms"], True)),
        _row("  latency p99", _ms(d["p99_ms"]), _ms(g["p99_ms"]), _ms(g["p99_ms"] - d["p99_ms"], True)),
        _row("  non-2xx / socket errors", errors_d, errors_g, "", *_with(verdicts, keys[1])),
        _row("  gateway CPU (% of a core)", "", f"{g['cpu_pct']['gateway']:.0f}%"),
    ]  # fmt: skip


def _ttfc(phase: dict, verdicts: dict, key: str | None) -> list[str]:
    d, g = phase["direct"], phase["gateway"]
    lines = [
        _row("  p50", _ms(d.get("p50_ms")), _ms(g.get("p50_ms")), _ms(phase.get("added_p50_ms"), True),
             *_with(verdicts, key)),
        _row("  p99", _ms(d.get("p99_ms")), _ms(g.get("p99_ms")), _ms(phase.get("added_p99_ms"), True)),
    ]  # fmt: skip
    if "content" in phase:  # chat's first content chunk, which a bridged Responses stream is judged against
        dc, gc = d.get("content", {}), g.get("content", {})
        lines.append(_row("  p50, first content chunk", _ms(dc.get("p50_ms")), _ms(gc.get("p50_ms")),
                          _ms(phase["content"].get("added_p50_ms"), True)))  # fmt: skip
    if d["errors"] or g["errors"]:
        lines.append(_row("  errors", str(d["errors"]), str(g["errors"])))
    return lines


def _rss(phase: dict, verdicts: dict) -> list[str]:
    return [
        _row("  RSS before -> after", f"{phase['rss_before_mb']:.1f} MB", f"{phase['rss_after_mb']:.1f} MB",
             f"{phase['growth_pct']:+.2f} %", *_with(verdicts, "rss_growth_pct")),
    ]  # fmt: skip


def _times(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}x"


def _us(value: float | None) -> str:
    return "-" if value is None else f"{value:,.0f} µs"


def _curve_row(label: str, *cells: str) -> str:
    """workers | req/s | 1 worker just before | N / 1 | per worker | CPU | each worker | CPU/request | p50 | p99
    | busy cores."""
    widths = (9, 10, 7, 11, 7, 21, 10, 11, 11, 7)
    return (
        f"    {label:<10}" + "".join(f"{cell:>{width}}" for cell, width in zip(cells, widths, strict=True))
    ).rstrip()


def _curve_model(phase: dict, model: str) -> list[str]:
    """One model's curve: the one-process gateway (the mean of its runs beside each count), then each count."""
    runs = [
        (n, g["models"][model])
        for n, g in phase["counts"].items()
        if "error" not in g and model in g["models"]
    ]
    failed = [f"    {n} workers: could not measure: {run['error']}" for n, run in runs if "error" in run]
    runs = [(n, run) for n, run in runs if "error" not in run]
    lines = [f"  {model}"]
    if runs:
        ones = [run["one_worker"] for _, run in runs]

        def mean(figure: Callable[[dict], float]) -> float:
            return sum(figure(one) for one in ones) / len(ones)

        cpu = sum(run["cpu_us_per_request"][0] or 0 for _, run in runs) / len(runs)
        rps = mean(lambda one: one["ok_rps"])
        label = "1" if len(ones) == 1 else f"1 (x{len(ones)})"
        lines.append(_curve_row(label, f"{rps:,.0f}", "", "", f"{rps:,.0f}",
                                f"{mean(lambda one: one['cpu_pct']['gateway']):.0f}%", "", _us(cpu),
                                _ms(mean(lambda one: one["p50_ms"])), _ms(mean(lambda one: one["p99_ms"])),
                                f"{mean(lambda one: one['machine_busy_cores']):.2f}"))  # fmt: skip
    for n, run in runs:
        one, many = run["one_worker"], run["several"]
        each = " / ".join(f"{pct:.0f}" for pct in many.get("worker_cpu_pct", []))
        lines.append(_curve_row(n, f"{many['ok_rps']:,.0f}", f"{one['ok_rps']:,.0f}", _times(run["rps_ratio"]),
                                f"{run['rps_per_worker'][1]:,.0f}", f"{many['cpu_pct']['gateway']:.0f}%", each,
                                _us(run["cpu_us_per_request"][1]), _ms(many["p50_ms"]), _ms(many["p99_ms"]),
                                f"{many['machine_busy_cores']:.2f}"))  # fmt: skip
        if many["non_2xx"] or many["socket_errors"]:
            lines.append(
                f"      {n} workers: {many['non_2xx']} non-2xx, {many['socket_errors']} socket errors"
            )
    directs = " / ".join(f"{run['direct']['ok_rps']:,.0f}" for _, run in runs)
    if directs:
        lines.append(f"    the upstream alone, just before each count: {directs} req/s")
    return lines + failed


def _neighbours_of(phase: dict) -> list[str]:
    lines = []
    for n, gateway in phase["counts"].items():
        for model, run in gateway.get("models", {}).items():
            for label in ("direct", "one_worker", "several"):
                for proc in run.get(label, {}).get("other_processes", []):
                    if not proc["cmd"].startswith(BACKING_SERVICES) and proc["cpu_pct"] >= 20:
                        lines.append(f"    busy neighbour ({model}, {n} workers, {label}): "
                                     f"{proc['cpu_pct']:.0f}% of a core, {proc['cmd'][:60]}")  # fmt: skip
    return lines


def _bookkeeping(workers: str, gateway: dict) -> list[str]:
    """An N-worker gateway's own account after its graceful stop: records against requests, and money."""
    how = "gracefully" if gateway.get("graceful_stop") else "NOT gracefully (killed)"
    log = gateway.get("log", {})
    logged = sum(item["count"] for item in log.get("records", []) + log.get("exceptions", []))
    stopped = (
        f"    stopped {how}, exit code {gateway.get('exit_code')}; {logged} warnings or errors in "
        f"bench/results/gateway-workers-{workers}.log"
    )
    return [*servers.account_lines(f"{workers} workers'", gateway), stopped]


def _workers(phase: dict, cores: int) -> list[str]:
    """The scale-out curve per model, then each N-worker gateway's own bookkeeping."""
    header = _curve_row("workers", "req/s", "1 before", "N / 1", "per worker", "CPU", "each (% core)",
                        "CPU/req", "p50", "p99", "cores")  # fmt: skip
    lines = [header]
    models = list(dict.fromkeys(m for g in phase["counts"].values() for m in g.get("models", {})))
    for model in models:
        lines += _curve_model(phase, model)
    for n, gateway in phase["counts"].items():
        if "error" in gateway:
            lines.append(f"  {n} workers: could not start: {gateway['error'][:200]}")
        else:
            lines += _bookkeeping(n, gateway)
    lines += _neighbours_of(phase)
    lines.append("  1 before: the one-process gateway measured just before; CPU: all the gateway's processes, "
                 "% of a core; cores: the machine's busy cores")  # fmt: skip
    shared = (
        f"  this machine's {cores} cores are shared by the load generator, the upstream, PostgreSQL, Redis"
    )
    limit = ": more workers cannot multiply throughput here" if cores <= 2 else ""
    return [*lines, shared, f"  and the gateway{limit}"]


def _section(results: dict, name: str, title: str, body) -> list[str]:
    phase = results["phases"].get(name)
    if phase is None:
        return []
    lines = [title]
    if "error" in phase:
        return [*lines, f"  could not measure: {phase['error']}"]
    return lines + body(phase)


def render(results: dict) -> str:
    m, o = results["machine"], results["options"]
    verdicts = {v["key"]: v for v in results["targets"]}
    header = (
        f"Inference Space benchmark: {m['cpu_count']} CPUs, Python {m['python']}, {m['wrk']}; "
        f"{o['seconds']} s per measured run after {o['warmup']} s warm-up; pinning: {results['pinning']['mode']}"
    )
    quiet = results.get("before_start", {})
    lines = [header]
    if quiet:
        lines.append(f"other processes before the start: {quiet['neighbours_cpu_pct']:.0f}% of a core")
    lines += ["", _row("", "direct", "gateway", "added", "target", "result")]
    rss = results["phases"].get("rss", {})
    sections = (
        ("free_1c", f"free model ({FREE_MODEL}), 1 connection", lambda p: _latency(p, verdicts, (
            "free_added_p50_1c", "free_added_p99_1c"))),
        ("free_32c", "free model, 32 connections", lambda p: _throughput(p, verdicts, (
            "free_rps_32c", "free_non2xx_32c"))),
        ("responses_1c", f"Responses, bridged ({FREE_MODEL}; direct: chat completions), 1 connection",
         lambda p: _versus_chat(_latency(p, verdicts, (None, None)), verdicts,
                                "responses_vs_chat_added_p50_1c", "  added p50 - chat's", _beyond)),
        ("responses_stored_1c", "Responses, bridged and stored (store: true), 1 connection",
         lambda p: _versus_chat(_latency(p, verdicts, (None, None)), verdicts,
                                "responses_stored_vs_chat_added_p50_1c", "  added p50 - chat's", _beyond)),
        ("messages_1c", f"Messages, translated ({FREE_MODEL}; direct: chat completions), 1 connection",
         lambda p: _versus_chat(_latency(p, verdicts, (None, None)), verdicts,
                                "messages_vs_chat_added_p50_1c", "  added p50 - chat's", _beyond)),
        ("messages_native_1c", f"Messages, passed through ({CLAUDE_MODEL}; direct: /v1/messages), 1 connection",
         lambda p: _versus_chat(_latency(p, verdicts, (None, None)), verdicts,
                                "messages_native_vs_chat_added_p50_1c", "  added p50 - chat's", _beyond)),
        ("embed_1c", f"embeddings ({EMBED_MODEL}), 1 connection",
         lambda p: _versus_chat(_latency(p, verdicts, (None, None)), verdicts,
                                "embed_vs_chat_added_p50_1c", "  added p50 / chat's", _share)),
        ("embed_32c", "embeddings, 32 connections", lambda p: _throughput(p, verdicts, (None, None))),
        ("stream_ttfc", f"stream, time to first chunk ({o['ttfc_requests']} sequential)",
         lambda p: _ttfc(p, verdicts, "ttfc_added_p50")),
        ("responses_ttfe", "Responses stream, bridged, time to first text event (direct: chat's first content"
         " chunk)", lambda p: _versus_chat(_ttfc(p, verdicts, None), verdicts, "responses_ttfe_vs_chat_p50",
                                           "  p50 - chat's first chunk", _beyond)),
        ("rss", f"gateway memory, {rss.get('requests', 0):,} requests after {rss.get('warmup_requests', 0):,}",
         lambda p: _rss(p, verdicts)),
        ("paid_1c", f"paid model ({PAID_MODEL}), 1 connection", lambda p: _latency(p, verdicts, (
            "paid_added_p50_1c", None))),
        ("paid_32c", "paid model, 32 connections", lambda p: _throughput(p, verdicts, (
            "paid_rps_32c", "paid_non2xx_32c"))),
        ("workers_32c", f"gateway workers, 32 connections: {o.get('server', 'uvicorn').replace('both', 'uvicorn')} "
         "--workers N beside one process, back to back", lambda p: _workers(p, m["cpu_count"])),
    )  # fmt: skip
    for name, title, body in sections:
        lines += _section(results, name, title, body)
    lines += servers.render(results)
    passed = sum(v["status"] == "PASS" for v in results["targets"])
    counted = sum(v["status"] != "SKIP" for v in results["targets"])
    lines += ["", f"targets met: {passed} of {counted}", *notes(results)]
    return "\n".join(lines)


def _neighbours(results: dict) -> list[str]:
    worst: dict[str, float] = {}
    for phase in results["phases"].values():
        for side in ("direct", "gateway"):
            for proc in (phase.get(side) or {}).get("other_processes", []) if isinstance(phase, dict) else []:
                if not proc["cmd"].startswith(BACKING_SERVICES):
                    worst[proc["cmd"]] = max(worst.get(proc["cmd"], 0.0), proc["cpu_pct"])
    return [
        f"  - busy neighbour (up to {pct:.0f}% of a core during a measured run): {cmd[:90]}"
        for cmd, pct in sorted(worst.items(), key=lambda item: -item[1])[:3]
        if pct >= 20
    ]


def _accounting(results: dict) -> list[str]:
    acc = results.get("accounting") or {}
    if "error" in acc:
        return [f"  - usage check failed: {acc['error'][:200]}"]
    if "per_model" not in acc:
        return []
    counts = ", ".join(
        f"{model} {c['recorded']:,} recorded / {c['sent_completed']:,} completed"
        for model, c in acc["per_model"].items()
    )
    statuses = ", ".join(f"{r['model__name']} HTTP {r['status']}: {r['n']:,}" for r in acc["usage"])
    matches = "yes" if acc.get("balance_matches_ledger") else "NO"
    return [
        f"  - usage records: {counts}",
        f"    by status: {statuses}",
        f"    balance equals ledger sum: {matches}; open holds after stop: {acc.get('open_holds')}",
    ]


def notes(results: dict) -> list[str]:
    """What else a reader should know before trusting the numbers: neighbours, gateway log, bookkeeping."""
    out = ["", "notes:"]
    gateway = results.get("gateway", {})
    log = gateway.get("log", {})
    out.append(f"  - gateway log: {log.get('lines', 0)} lines (bench/results/gateway.log)")
    for record in log.get("records", [])[:8]:
        out.append(
            f"    {record['count']:>5} x {record['level']} {record['logger']} during {record['phase']}: "
            f"{record['message'][:80]}"
        )
    for item in log.get("exceptions", [])[:6]:
        out.append(f"    {item['count']:>5} x {item['exception'][:110]}")
    if "exit_code" in gateway:
        how = "stopped gracefully" if gateway.get("graceful_stop") else "did NOT stop on SIGTERM (killed)"
        server = gateway.get("server", "uvicorn")
        why = " (-15: uvicorn re-raises SIGTERM)" if server == "uvicorn" else ""
        out.append(f"  - {server} gateway {how}; exit code {gateway['exit_code']}{why}")
    for phase_name, phase in results["phases"].items():
        for side in ("direct", "gateway"):
            warm = (phase.get(side) or {}).get("warmup", {}) if isinstance(phase, dict) else {}
            if warm.get("non_2xx"):
                out.append(f"  - {phase_name} {side} warm-up: {warm['non_2xx']} non-2xx responses")
    out += _accounting(results)
    out += _neighbours(results)
    return out + profile_lines(results)


def profile_lines(results: dict) -> list[str]:
    """The py-spy summary (with --profile): where the gateway's time goes under 32 connections."""
    out = []
    for model, prof in (results.get("profile") or {}).items():
        if not isinstance(prof, dict) or "top_gil" not in prof:
            out += ["", f"profile of {model}: {(prof or {}).get('error', 'failed')}"]
            continue
        split = ", ".join(f"{kind} {pct:.0f}%" for kind, pct in prof["threads"].items())
        out += ["", f"profile, {model} at 32 connections ({prof['seconds']} s; active samples: {split})"]
        out.append(f"  {'own%':>6} {'total%':>7}  top functions by own time while holding the GIL")
        out += [f"  {t['own_pct']:>6.1f} {t['total_pct']:>7.1f}  {t['function']}" for t in prof["top_gil"]]
    return out
