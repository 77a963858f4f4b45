"""wrk as the load generator: a C event loop, so the generator costs little CPU next to the servers.

A Lua script sets the POST body and headers, and its ``done`` hook prints wrk's own totals and exact
percentiles (in microseconds) on one ``BENCH`` line, which is easier to trust than the rounded text table.
wrk counts a response with a status of 400 or more as an error ("Non-2xx or 3xx responses"); that count is
reported as ``non_2xx`` (this API never answers with a 3xx).
"""

import json
import os
import re
import shutil
import subprocess
from dataclasses import asdict, dataclass
from pathlib import Path

from bench.procs import pin_prefix
from bench.setup import BenchError

SCRIPT = """-- Written by the benchmark for one run.
wrk.method = "POST"
wrk.body = [==[{body}]==]
wrk.headers["Content-Type"] = "application/json"
wrk.headers["Authorization"] = "Bearer {key}"
{headers}
done = function(summary, latency, requests)
  local e = summary.errors
  io.write("BENCH requests=", summary.requests, " duration_us=", summary.duration, " bytes=", summary.bytes,
    " connect=", e.connect, " read=", e.read, " write=", e.write, " status=", e.status, " timeout=", e.timeout,
    " min=", latency.min, " max=", latency.max, " mean=", latency.mean, " stdev=", latency.stdev,
    " p50=", latency:percentile(50), " p75=", latency:percentile(75), " p90=", latency:percentile(90),
    " p99=", latency:percentile(99), " p999=", latency:percentile(99.9), "\\n")
end
"""


@dataclass
class WrkResult:
    """One wrk run. Latencies in milliseconds."""

    connections: int
    threads: int
    duration_s: float
    requests: int
    rps: float
    ok_rps: float  # successful responses per second: what a client actually got
    non_2xx: int
    socket_errors: int
    p50_ms: float
    p75_ms: float
    p90_ms: float
    p99_ms: float
    p999_ms: float
    mean_ms: float
    max_ms: float
    raw: str

    def summary(self) -> dict:
        data = asdict(self)
        data.pop("raw")
        return data


def ensure_wrk() -> str:
    """The wrk binary; installed with apt-get when missing and running as root, otherwise a clear error."""
    found = shutil.which("wrk")
    if found:
        return found
    if os.geteuid() != 0:
        raise BenchError(
            "wrk is not installed: install it with `sudo apt-get install -y wrk`, then run again"
        )
    print("  wrk is missing: installing it with apt-get", flush=True)
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    install = ["apt-get", "install", "-y", "-q", "wrk"]
    if subprocess.run(install, env=env, capture_output=True).returncode != 0:
        subprocess.run(["apt-get", "update", "-q"], env=env, capture_output=True)
        done = subprocess.run(install, env=env, capture_output=True, text=True)
        if done.returncode != 0:
            raise BenchError(f"apt-get install wrk failed:\n{done.stderr[-1500:]}")
    found = shutil.which("wrk")
    if not found:
        raise BenchError("wrk is still not on PATH after apt-get install wrk")
    return found


def wrk_version(binary: str) -> str:
    done = subprocess.run([binary, "-v"], capture_output=True, text=True)
    found = re.search(r"\d+\.\d+(\.\d+)?", done.stdout + done.stderr)
    return f"wrk {found.group(0)}" if found else "wrk (unknown version)"


def write_script(
    directory: Path, name: str, body: dict, key: str, headers: dict[str, str] | None = None
) -> Path:
    path = directory / f"{name}.lua"
    more = "".join(f'wrk.headers["{k}"] = "{v}"\n' for k, v in (headers or {}).items())
    text = SCRIPT.format(body=json.dumps(body, separators=(",", ":")), key=key, headers=more)
    path.write_text(text, encoding="utf-8")
    return path


def run(
    binary: str, url: str, script: Path, *, connections: int, threads: int, seconds: int, cpus: str | None
) -> WrkResult:
    """One wrk run of ``seconds`` (wrk takes whole seconds) against ``url``."""
    cmd = [
        *pin_prefix(cpus), binary, "-t", str(threads), "-c", str(connections), "-d", f"{max(1, seconds)}s",
        "--latency", "--timeout", "5s", "-s", str(script), url,
    ]  # fmt: skip
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=seconds + 60)
    except subprocess.TimeoutExpired as exc:
        raise BenchError(f"wrk did not finish: {' '.join(cmd)}") from exc
    if done.returncode != 0:
        raise BenchError(f"wrk failed (exit {done.returncode}): {done.stderr.strip()[-1000:]}")
    return parse(done.stdout, connections=connections, threads=threads)


def parse(output: str, *, connections: int, threads: int) -> WrkResult:
    """The BENCH line printed by the script's ``done`` hook, plus the raw text for the record."""
    match = re.search(r"^BENCH (.*)$", output, re.MULTILINE)
    if not match:
        raise BenchError(f"wrk printed no BENCH line (is the Lua script loaded?):\n{output[-1500:]}")
    values = {k: float(v) for k, v in (pair.split("=", 1) for pair in match.group(1).split())}
    duration = values["duration_us"] / 1e6
    requests = int(values["requests"])
    non_2xx = int(values["status"])
    sockets = int(values["connect"] + values["read"] + values["write"] + values["timeout"])
    return WrkResult(
        connections=connections,
        threads=threads,
        duration_s=round(duration, 3),
        requests=requests,
        rps=round(requests / duration, 1) if duration else 0.0,
        ok_rps=round((requests - non_2xx) / duration, 1) if duration else 0.0,
        non_2xx=non_2xx,
        socket_errors=sockets,
        p50_ms=values["p50"] / 1000,
        p75_ms=values["p75"] / 1000,
        p90_ms=values["p90"] / 1000,
        p99_ms=values["p99"] / 1000,
        p999_ms=values["p999"] / 1000,
        mean_ms=round(values["mean"] / 1000, 4),
        max_ms=values["max"] / 1000,
        raw=re.sub(r"^BENCH .*\n?", "", output, flags=re.MULTILINE).strip(),
    )
