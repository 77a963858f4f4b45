"""Interleaved rounds: each round loads every target once, in an order rotated from round to round, so that a
slower or busier stretch of the shared machine falls on different targets in different rounds.

For each target and round: a short warm-up at 32 connections (not counted), then 32 connections for the
throughput (wrk, 2 threads: ok requests/s, non-2xx, socket errors, and the target's CPU time per request),
then 1 connection for the latency (wrk, 1 thread: p50 and p99). Who else used the CPUs during the 32-connection
run is recorded beside it (the upstream's share is expected: every target calls it).
"""

import contextlib
import os
import statistics
from collections import Counter
from pathlib import Path

from bench import procs, wrk
from bench.peers.targets import Target
from bench.setup import chat_body


def order(targets: list[Target], round_no: int, rounds: int) -> list[Target]:
    """The targets of round ``round_no``, rotated so each round starts elsewhere in the list."""
    shift = (round_no * max(1, len(targets) // max(1, rounds))) % len(targets)
    return targets[shift:] + targets[:shift]


def scripts(targets: list[Target], workdir: Path) -> dict[str, Path]:
    """One wrk script per target: the same body, with the target's model name, key and headers."""
    return {
        t.name: wrk.write_script(workdir, f"peers-{t.name}", chat_body(t.model), t.key, t.headers)
        for t in targets
    }


def _load(binary: str, target: Target, script: Path, connections: int, seconds: int) -> wrk.WrkResult:
    threads = 2 if connections > 1 else 1
    return wrk.run(
        binary, target.url, script, connections=connections, threads=threads, seconds=seconds, cpus=None
    )


def measure(binary: str, target: Target, script: Path, opts: dict, upstream_pid: int, sent: Counter) -> dict:
    """One round of one target: warm-up, 32 connections with CPU accounting, then 1 connection."""
    warm = _load(binary, target, script, 32, opts["warmup"]) if opts["warmup"] else None
    pids = target.cpu_pids()
    used_before = {pid: procs.cpu_seconds(pid) for pid in pids}
    snapshot, jiffies = procs.cpu_snapshot(), procs.machine_jiffies()
    many = _load(binary, target, script, 32, opts["seconds"])
    busy_now, total_now = procs.machine_jiffies()
    used = 0.0
    for pid, before in used_before.items():
        with contextlib.suppress(OSError):  # a worker that exited during the run: its time is lost
            used += procs.cpu_seconds(pid) - before
    others = procs.busiest(
        snapshot, procs.cpu_snapshot(), many.duration_s, {*pids, os.getpid(), upstream_pid}
    )
    one = _load(binary, target, script, 1, opts["one_seconds"])
    if target.counted:
        sent[target.model] += (warm.requests if warm else 0) + many.requests + one.requests
    cores = (os.cpu_count() or 1) * (busy_now - jiffies[0]) / max(total_now - jiffies[1], 1)
    return {
        "target": target.name,
        "ok_rps": many.ok_rps,
        "rps": many.rps,
        "requests": many.requests,
        "non_2xx": many.non_2xx + one.non_2xx,
        "socket_errors": many.socket_errors + one.socket_errors,
        "p50_32c_ms": many.p50_ms,
        "p99_32c_ms": many.p99_ms,
        "p50_1c_ms": one.p50_ms,
        "p99_1c_ms": one.p99_ms,
        "requests_1c": one.requests,
        "cpu_pct": round(100 * used / many.duration_s, 1) if many.duration_s else None,
        "cpu_us_per_request": round(used / many.requests * 1e6, 1) if pids and many.requests else None,
        "processes_counted": len(pids),
        "machine_busy_cores": round(cores, 2),
        "other_processes": others,
        "warmup": {"requests": warm.requests, "non_2xx": warm.non_2xx} if warm else None,
        "raw_32c": many.raw,
        "raw_1c": one.raw,
    }


def _line(width: int, *cells: str) -> str:
    name, rps, p50, p99, cpu, *extra = cells
    return f"{name:{width}} {rps:>16} {p50:>11} {p99:>11} {cpu:>12}{''.join(extra)}"


def header(targets: list[Target]) -> tuple[int, str]:
    width = max(16, *(len(t.label) for t in targets))
    return width, _line(width, "target", "req/s (32 conn)", "p50 1 conn", "p99 1 conn", "CPU/request")


def row_text(width: int, target: Target, row: dict) -> str:
    cpu = f"{row['cpu_us_per_request']:,.0f} µs" if row["cpu_us_per_request"] else "-"
    errors = row["non_2xx"] + row["socket_errors"]
    note = f"  ({row['non_2xx']} non-2xx, {row['socket_errors']} socket errors)" if errors else ""
    return _line(width, target.label, f"{row['ok_rps']:,.0f}", f"{row['p50_1c_ms']:.3f} ms",
                 f"{row['p99_1c_ms']:.3f} ms", cpu, note)  # fmt: skip


def rounds(
    binary: str, targets: list[Target], workdir: Path, opts: dict, upstream_pid: int, sent: Counter
) -> list:
    """Every round's rows, in the order measured, each printed as it comes."""
    files = scripts(targets, workdir)
    width, head = header(targets)
    out: list[dict] = []
    for round_no in range(opts["rounds"]):
        print(f"\nround {round_no + 1} of {opts['rounds']}\n{head}", flush=True)
        for target in order(targets, round_no, opts["rounds"]):
            if target.service is not None and not target.service.alive():
                out.append({"target": target.name, "round": round_no + 1, "error": "the process exited"})
                print(f"{target.label:{width}} exited (code {target.service.proc.returncode})", flush=True)
                continue
            row = measure(binary, target, files[target.name], opts, upstream_pid, sent)
            row["round"] = round_no + 1
            out.append(row)
            print(row_text(width, target, row), flush=True)
    return out


def summarise(targets: list[Target], rows: list[dict]) -> dict[str, dict]:
    """Per target: medians over the rounds (and the range of the throughput), errors summed."""
    out: dict[str, dict] = {}
    for target in targets:
        mine = [row for row in rows if row["target"] == target.name and "error" not in row]
        if not mine:
            out[target.name] = {"rounds": 0}
            continue

        def median(key: str, rows: list[dict] = mine) -> float | None:
            values = [row[key] for row in rows if row[key] is not None]
            return statistics.median(values) if values else None

        rates = [row["ok_rps"] for row in mine]
        out[target.name] = {
            "rounds": len(mine),
            "ok_rps": median("ok_rps"),
            "ok_rps_min": min(rates),
            "ok_rps_max": max(rates),
            "p50_1c_ms": median("p50_1c_ms"),
            "p99_1c_ms": median("p99_1c_ms"),
            "p50_32c_ms": median("p50_32c_ms"),
            "cpu_us_per_request": median("cpu_us_per_request"),
            "cpu_pct": median("cpu_pct"),
            "requests": sum(row["requests"] + row["requests_1c"] for row in mine),
            "non_2xx": sum(row["non_2xx"] for row in mine),
            "socket_errors": sum(row["socket_errors"] for row in mine),
            "machine_busy_cores": median("machine_busy_cores"),
        }
    return out
