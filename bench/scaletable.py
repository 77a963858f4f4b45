"""The scale run's comparison (empty vs seeded database) and its printed table."""

TARGET_WORSE_PCT = 10.0
PAGE_TARGET_MS = 150.0


def _pct(before: float, after: float, higher_is_better: bool) -> float | None:
    """How much worse ``after`` is than ``before``, in % (negative: better)."""
    if not before:
        return None
    change = 100 * (after - before) / before
    return round(-change if higher_is_better else change, 1)


def changes(phases: dict) -> dict:
    """Per phase: the gateway's p50/p99 (1 connection) or ok req/s (32), empty vs seeded, % worse."""
    out = {}
    for name, sides in phases.items():
        empty, seeded = sides.get("empty", {}), sides.get("seeded", {})
        if "gateway" not in empty or "gateway" not in seeded:
            out[name] = {"error": empty.get("error") or seeded.get("error") or "missing"}
            continue
        e, s = empty["gateway"], seeded["gateway"]
        row = {
            "p50_ms": [e["p50_ms"], s["p50_ms"], _pct(e["p50_ms"], s["p50_ms"], False)],
            "p99_ms": [e["p99_ms"], s["p99_ms"], _pct(e["p99_ms"], s["p99_ms"], False)],
            "ok_rps": [e["ok_rps"], s["ok_rps"], _pct(e["ok_rps"], s["ok_rps"], True)],
            "added_p50_ms": [empty["added_p50_ms"], seeded["added_p50_ms"]],
            "direct_p50_ms": [empty["direct"]["p50_ms"], seeded["direct"]["p50_ms"]],
            "direct_ok_rps": [empty["direct"]["ok_rps"], seeded["direct"]["ok_rps"]],
            "non_2xx": [e["non_2xx"], s["non_2xx"]],
        }
        headline = "ok_rps" if name.endswith("_32c") else "p50_ms"
        worse = row[headline][2]
        row["headline"] = headline
        row["verdict"] = "n/a" if worse is None else ("PASS" if worse <= TARGET_WORSE_PCT else "MISS")
        out[name] = row
    return out


def render(results: dict) -> str:
    seed = results["seed"]
    lines = [
        f"Scale: {seed['usage_rows']:,} usage records, {seed['keys']:,} keys, {seed.get('daily_rows', 0):,} daily "
        f"rollups; the heavy user has {seed['heavy_rows']:,} records"
        + (" (SEEDING CUT SHORT by its time budget)" if seed.get("cut_short") else ""),
    ]
    if "timings_s" in seed:
        lines.append(f"  seeding took {seed['total_s']:.0f} s: {seed['timings_s']}")
    if results.get("changes"):
        lines += _render_phases(results["changes"])
    lines += _render_pages(results.get("pages"))
    return "\n".join(lines)


def _render_phases(changes: dict) -> list[str]:
    lines = [
        "",
        f"  {'phase':<10}{'figure':<10}{'empty':>10}{'seeded':>10}{'worse':>9}  {'added p50 ms (empty/seeded)':<28}"
        f"{'verdict':>8}",
    ]
    for name, row in changes.items():
        if "error" in row:
            lines.append(f"  {name:<10}error: {row['error'][:90]}")
            continue
        for figure in ("p50_ms", "p99_ms", "ok_rps"):
            e, s, worse = row[figure]
            headline = figure == row["headline"]
            added = f"{row['added_p50_ms'][0]:+.3f} / {row['added_p50_ms'][1]:+.3f}" if headline else ""
            worse_text = "-" if worse is None else f"{worse:+.1f}%"
            label = name if figure == "p50_ms" else ""
            shown = figure + ("*" if headline else "")
            lines.append(
                f"  {label:<10}{shown:<10}{e:>10.3f}{s:>10.3f}{worse_text:>9}  {added:<28}"
                f"{row['verdict'] if headline else '':>8}"
            )
    lines.append(
        f"  * the figure judged against the {TARGET_WORSE_PCT:.0f}% limit (gateway through the seeded database)"
    )
    return lines


def _render_pages(pages: list[dict] | dict | None) -> list[str]:
    lines = [""]
    if isinstance(pages, dict):
        lines.append(f"  pages: error: {pages.get('error', '')[-300:]}")
    elif pages:
        lines.append(
            f"  {'page (heavy user)':<52}{'status':>7}{'median ms':>11}{'queries':>9}{'slowest q':>11}{'verdict':>9}"
        )
        for p in pages:
            verdict = "PASS" if p["median_ms"] < PAGE_TARGET_MS and p["status"] == 200 else "MISS"
            lines.append(
                f"  {p['path'][:52]:<52}{p['status']:>7}{p['median_ms']:>11.1f}{p['queries']:>9}"
                f"{p['slowest_query_ms']:>9.1f}ms{verdict:>9}"
            )
    return lines
