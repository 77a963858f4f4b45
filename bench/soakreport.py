"""The soak run's numbers from the client's records and the RSS samples, and the table printed at the end."""

import csv
import gzip
from collections import Counter
from pathlib import Path

from bench.soakload import Sent, latency_summary


def errors_by_status(records: list[Sent], skipped: int) -> dict[str, int]:
    """Every answer that was not 2xx, by status; transport failures by exception name."""
    counts: Counter[str] = Counter()
    for r in records:
        if not 200 <= r.status < 300:
            counts[str(r.status) if r.status else f"no answer ({r.error})"] += 1
    if skipped:
        counts["not sent (client at its in-flight bound)"] = skipped
    return dict(sorted(counts.items()))


def summarise(load: dict, baseline: dict) -> dict:
    """Throughput, latency of the gateway and of the direct baseline at the same rate, and the difference."""
    records = load["records"]
    ok = sum(1 for r in records if 200 <= r.status < 300)
    gateway, direct = latency_summary(records), latency_summary(baseline["records"])
    added = {}
    for kind in ("all", "plain", "stream"):
        if kind in gateway and kind in direct:
            added[kind] = {
                p: round(gateway[kind][p] - direct[kind][p], 3) for p in ("p50_ms", "p99_ms", "p999_ms")
            }
    return {
        "target_rate": load["rate"],
        "seconds": round(load["elapsed_s"], 1),
        "sent": len(records),
        "ok": ok,
        "ok_rps": round(ok / load["elapsed_s"], 1),
        "streamed": sum(1 for r in records if r.stream),
        "per_gateway": dict(Counter(str(r.target) for r in records)),
        "errors": errors_by_status(records, load["skipped"]),
        "latency": gateway,
        "baseline": {
            "seconds": round(baseline["elapsed_s"], 1),
            "sent": len(baseline["records"]),
            "errors": errors_by_status(baseline["records"], baseline["skipped"]),
            "latency": direct,
        },
        "added": added,
    }


def rss_summary(samples: dict[str, list[tuple[float, float]]], settle_s: float = 60.0) -> dict:
    """Per process: first, after ``settle_s`` (warm), last and peak MiB, and growth from warm to last."""
    out = {}
    for name, points in samples.items():
        if not points:
            continue
        warm = next((m for s, m in points if s >= settle_s), points[-1][1])
        last = points[-1][1]
        out[name] = {
            "samples": len(points),
            "start_mib": round(points[0][1], 1),
            "warm_mib": round(warm, 1),
            "end_mib": round(last, 1),
            "peak_mib": round(max(m for _, m in points), 1),
            "growth_after_warm_pct": round(100 * (last - warm) / warm, 2) if warm else None,
        }
    return out


def write_records(records: list[Sent], path: Path) -> None:
    """Every request of the soak, one CSV row each (gzip), for a closer look later."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with gzip.open(path, "wt", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(["t_s", "status", "latency_ms", "stream", "model", "gateway", "request_id", "error"])
        for r in sorted(records, key=lambda r: r.t):
            writer.writerow(
                [r.t, r.status, r.ms, int(r.stream), r.model, r.target, r.request_id or "", r.error or ""]
            )


def render(result: dict) -> str:
    s, acc = result["soak"], result.get("accounting", {})
    lines = [
        f"Soak: {s['seconds'] / 60:.1f} min at {s['target_rate']:.0f} req/s (open loop), 2 gateway processes, "
        f"{result['world']['keys']} keys, {result['world']['models']} models, "
        f"{100 * result['options']['stream_share']:.0f}% streamed",
        f"  sent {s['sent']:,}, 2xx {s['ok']:,} ({s['ok_rps']:.1f}/s); errors: {s['errors'] or 'none'}",
        "",
        f"  {'latency (2xx)':<16}{'gateway p50':>12}{'p99':>9}{'p99.9':>9}{'direct p50':>12}{'p99':>9}{'p99.9':>9}"
        f"{'added p50':>11}{'p99':>9}{'p99.9':>9}",
    ]
    for kind in ("all", "plain", "stream"):
        g, d, a = s["latency"].get(kind), s["baseline"]["latency"].get(kind), s["added"].get(kind)
        if not (g and d and a):
            continue
        lines.append(
            f"  {kind:<16}{g['p50_ms']:>12.2f}{g['p99_ms']:>9.2f}{g['p999_ms']:>9.2f}{d['p50_ms']:>12.2f}"
            f"{d['p99_ms']:>9.2f}{d['p999_ms']:>9.2f}{a['p50_ms']:>+11.2f}{a['p99_ms']:>+9.2f}{a['p999_ms']:>+9.2f}"
        )
    lines += ["", f"  {'RSS (MiB)':<16}{'start':>8}{'warm':>8}{'end':>8}{'peak':>8}{'growth':>9}"]
    for name, r in result["rss"].items():
        lines.append(
            f"  {name:<16}{r['start_mib']:>8.1f}{r['warm_mib']:>8.1f}{r['end_mib']:>8.1f}{r['peak_mib']:>8.1f}"
            f"{r['growth_after_warm_pct']:>+8.2f}%"
        )
    if "error" in acc:
        lines += ["", f"  accounting check failed: {acc['error']}"]
    elif acc:
        lines += [
            "",
            f"  lost: {acc['lost']} (client 2xx {acc['client_2xx']:,}, recorded {acc['client_2xx_recorded']:,}; "
            f"usage records {acc['records_total']:,}, of them not 2xx: {acc['records_not_2xx'] or 'none'})",
            f"  balance == ledger sum: {acc['accounts'] - acc['balance_ne_ledger']}/{acc['accounts']} accounts; "
            f"open holds {acc['open_holds']}; ledger_reconcile ok={acc['reconcile_ok']} "
            f"({acc['reconcile_accounts']} accounts)",
        ]
    lines.append(f"  RSS plot: {result['rss_plot']}")
    return "\n".join(lines)
