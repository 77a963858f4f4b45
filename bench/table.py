"""The human-readable summary printed at the end of a run (the JSON file has everything else)."""

from collections.abc import Callable

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


def _scaling(run: dict) -> list[str]:
    """One model's runs: the one-process gateway, the two-worker gateway, and the second over the first."""
    one, two, direct = run["one_worker"], run["two_workers"], run["direct"]
    per_worker = run["rps_per_worker"]
    lines = [
        _row("    requests/s", f"{one['ok_rps']:,.0f}", f"{two['ok_rps']:,.0f}", _times(run["rps_ratio"])),
        _row("    requests/s per worker", f"{per_worker[0]:,.0f}", f"{per_worker[1]:,.0f}",
             _times(per_worker[1] / per_worker[0] if per_worker[0] else None)),
        _row("    gateway CPU (% of a core)", f"{one['cpu_pct']['gateway']:.0f}%", f"{two['cpu_pct']['gateway']:.0f}%"),
        _row("    each worker (% of a core)", "", " / ".join(f"{pct:.0f}%" for pct in two.get("worker_cpu_pct", []))),
        _row("    gateway CPU per request", *map(_us, run["cpu_us_per_request"])),
        _row("    latency p50", _ms(one["p50_ms"]), _ms(two["p50_ms"])),
        _row("    latency p99", _ms(one["p99_ms"]), _ms(two["p99_ms"])),
        _row("    non-2xx / socket errors", f"{one['non_2xx']} / {one['socket_errors']}",
             f"{two['non_2xx']} / {two['socket_errors']}"),
        _row("    machine CPU busy (cores)", f"{one['machine_busy_cores']:.2f}", f"{two['machine_busy_cores']:.2f}"),
        f"    the upstream alone, just before: {direct['ok_rps']:,.0f} req/s "
        f"({direct['machine_busy_cores']:.2f} cores busy)",
    ]  # fmt: skip
    for label, side in (("upstream alone", direct), ("1 worker", one), ("2 workers", two)):
        for proc in side.get("other_processes", []):
            if not proc["cmd"].startswith(BACKING_SERVICES) and proc["cpu_pct"] >= 20:
                lines.append(
                    f"    busy neighbour during {label}: {proc['cpu_pct']:.0f}% of a core, {proc['cmd'][:60]}"
                )
    return lines


def _bookkeeping(phase: dict) -> list[str]:
    """The two-worker gateway's own account after its graceful stop: records against requests, and money."""
    how = "gracefully" if phase.get("graceful_stop") else "NOT gracefully (killed)"
    log = phase.get("log", {})
    logged = sum(item["count"] for item in log.get("records", []) + log.get("exceptions", []))
    stopped = (
        f"    stopped {how}, exit code {phase.get('exit_code')}; {logged} warnings or errors in "
        "bench/results/gateway-workers.log"
    )
    acc = phase.get("accounting") or {}
    if "per_model" not in acc:
        return [f"  2 workers' usage check failed: {acc.get('error', 'not run')[:200]}", stopped]
    counts = ", ".join(
        f"{model} {c['recorded']:,} recorded / {c['sent_completed']:,} completed"
        for model, c in acc["per_model"].items()
    )
    verdict = {True: "yes", False: "NO", None: "unknown"}[phase.get("complete")]
    matches = "yes" if acc.get("balance_matches_ledger") else "NO"
    return [
        f"  2 workers' usage records (own account): {counts}",
        f"    every request recorded: {verdict}; balance equals ledger sum: {matches}; "
        f"open holds after stop: {acc.get('open_holds')}",
        stopped,
    ]


def _workers(phase: dict, cores: int) -> list[str]:
    """The two-worker gateway beside the one-process gateway, per model, then its own bookkeeping."""
    lines = [_row("", "1 worker", "2 workers", "2 / 1")]
    for model, run in phase["models"].items():
        lines.append(f"  {model}")
        lines += [f"    could not measure: {run['error']}"] if "error" in run else _scaling(run)
    shared = (
        f"  this machine's {cores} cores are shared by the load generator, the upstream, PostgreSQL, Redis"
    )
    limit = ": two workers cannot double throughput here" if cores <= 2 else ""
    return [*lines, *_bookkeeping(phase), shared, f"  and the gateway{limit}"]


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
        ("workers_32c", "gateway workers, 32 connections: uvicorn --workers 2 beside one process, back to back",
         lambda p: _workers(p, m["cpu_count"])),
    )  # fmt: skip
    for name, title, body in sections:
        lines += _section(results, name, title, body)
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
        out.append(f"  - gateway {how}; exit code {gateway['exit_code']} (-15: uvicorn re-raises SIGTERM)")
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
