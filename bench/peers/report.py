"""The peers run's summary: a text table (printed and kept in the JSON), the ratios, and the bookkeeping check."""

from bench.peers.targets import Target

FREE = "gateway_free"  # the target the ratios are taken from
PEERS = ("litellm", "portkey")


def ratios(summary: dict[str, dict]) -> dict[str, float | None]:
    """This gateway's free-model requests/s over each other target's (medians over the rounds)."""
    ours = summary.get(FREE, {}).get("ok_rps")
    out: dict[str, float | None] = {}
    for name, row in summary.items():
        if name != FREE:
            theirs = row.get("ok_rps")
            out[name] = round(ours / theirs, 2) if ours and theirs else None
    return out


def when(stamp: str) -> str:
    """An ISO time in UTC as the table and the chart show it: 2026-12-08 05:40 UTC."""
    return stamp.replace("T", " ")[:16] + " UTC"


def _ms(value: float | None) -> str:
    return "-" if value is None else f"{value:.3f} ms"


def _row(cells: tuple[str, ...], widths: tuple[int, ...], text_columns: int = 2) -> str:
    """The first ``text_columns`` cells left-aligned, the numbers after them right-aligned."""
    parts = [
        f"{cell:<{width}}" if n < text_columns else f"{cell:>{width}}"
        for n, (cell, width) in enumerate(zip(cells, widths, strict=True))
    ]
    return "  ".join(parts).rstrip()


def table_rows(targets: list[Target], summary: dict[str, dict]) -> list[tuple[str, ...]]:
    head = (
        "target",
        "processes",
        "req/s, 32 conn (range)",
        "p50, 1 conn",
        "p99, 1 conn",
        "CPU/request",
        "non-2xx",
    )
    rows = [head]
    for target in targets:
        s = summary.get(target.name, {})
        if not s.get("rounds"):
            rows.append((target.label, target.processes, "not measured", "", "", "", ""))
            continue
        rate = f"{s['ok_rps']:,.0f} ({s['ok_rps_min']:,.0f}-{s['ok_rps_max']:,.0f})"
        cpu = "-" if s["cpu_us_per_request"] is None else f"{s['cpu_us_per_request']:,.0f} µs"
        errors = f"{s['non_2xx']}" + (f" (+{s['socket_errors']} socket)" if s["socket_errors"] else "")
        rows.append(
            (target.label, target.processes, rate, _ms(s["p50_1c_ms"]), _ms(s["p99_1c_ms"]), cpu, errors)
        )
    return rows


def _accounting(acc: dict | None) -> list[str]:
    if not acc:
        return []
    if "per_model" not in acc:
        return [f"usage check failed: {acc.get('error', 'not run')[:200]}"]
    counts = ", ".join(
        f"{model} {c['recorded']:,} recorded / {c['sent_completed']:,} completed"
        for model, c in acc["per_model"].items()
    )
    matches = "yes" if acc.get("balance_matches_ledger") else "NO"
    return [
        f"this gateway's usage records after its graceful stop: {counts}; balance equals the ledger sum: {matches};"
        f" open holds: {acc.get('open_holds')}"
    ]


def render(results: dict, targets: list[Target]) -> str:
    m, o = results["machine"], results["options"]
    summary = results["summary"]
    rows = table_rows(targets, summary)
    widths = tuple(max(len(row[i]) for row in rows) for i in range(len(rows[0])))
    lines = [
        f"Inference Space beside its peers, {when(results['started_at'])}: {m['cpu_count']} CPUs ({m['cpu_model']}), shared"
        " by the load generator, the upstream, PostgreSQL, Redis and every target",
        f"{o['rounds']} rounds, order rotated; per target and round: {o['warmup']} s warm-up, {o['seconds']} s at 32"
        f" connections, {o['one_seconds']} s at 1 connection ({m['wrk']}); medians over the rounds",
        "",
        *(_row(row, widths) for row in rows),
        "",
    ]
    ratio = results["ratios"]
    named = {t.name: t.label for t in targets}
    peers = [f"{named[name]} {ratio[name]:.2f}x" for name in PEERS if ratio.get(name)]
    if peers:
        bare = f" (the bare relay: {ratio['bare_relay']:.2f}x)" if ratio.get("bare_relay") else ""
        lines.append(f"this gateway's free-model req/s at 32 connections over: {', '.join(peers)}{bare}")
    lines += _accounting(results.get("accounting"))
    gateway = results.get("gateway") or {}
    if gateway:
        log = gateway.get("log", {})
        logged = sum(item["count"] for item in log.get("records", []) + log.get("exceptions", []))
        how = "gracefully" if gateway.get("graceful_stop") else "NOT gracefully (killed)"
        lines.append(
            f"this gateway stopped {how}; {logged} warnings or errors in bench/results/peers-gateway.log"
        )
    lines += ["", "how each target ran:"]
    lines += [f"  {t.label}: {t.processes}; {t.config}" for t in targets]
    failed = {name: probe for name, probe in results.get("probes", {}).items() if not probe.get("ok")}
    for name, probe in failed.items():
        lines.append(f"  NOT MEASURED, {named.get(name, name)}: its probe failed: {probe.get('error')}")
    return "\n".join(lines)
