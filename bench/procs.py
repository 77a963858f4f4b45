"""The servers under test, as child processes: the fake upstream and the gateways, served by uvicorn (one
process, or a supervisor with ``--workers N``) or by granian (always a supervisor and its worker processes).

Each runs in its own session (process group), so a Ctrl-C in the terminal reaches only the benchmark, which
then stops them in order: the gateway first, gracefully, so that it flushes its settlement queue.
"""

import contextlib
import importlib.util
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

from bench.setup import ROOT, BenchError

try:  # psutil is optional: /proc gives the same number on Linux
    import psutil
except ImportError:  # pragma: no cover - depends on the environment
    psutil = None


def free_port() -> int:
    """A port that was free a moment ago (the kernel picks it); good enough on a quiet machine."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def pin_prefix(cpus: str | None) -> list[str]:
    """``taskset -c CPUS`` in front of a command, or nothing. taskset execs, so the PID stays the server's."""
    return ["taskset", "-c", cpus] if cpus else []


SERVERS = ("uvicorn", "granian")


@dataclass
class Service:
    """One child server, its log file, and how to stop it."""

    name: str
    proc: subprocess.Popen
    log_path: Path
    log_file: IO[bytes]
    exit_code: int | None = field(default=None)
    killed: bool = field(default=False)  # it ignored SIGTERM for the whole grace period
    server: str = "uvicorn"
    workers: int = 1  # the processes that serve requests: 1 and no supervisor for a lone uvicorn

    @property
    def supervised(self) -> bool:
        """True when the process started is a supervisor whose workers serve (``worker_pids`` finds them)."""
        return self.server == "granian" or self.workers > 1

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def tail(self, lines: int = 25) -> str:
        self.log_file.flush()
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])

    def stop(self, grace: float = 20.0) -> int | None:
        """SIGTERM, then SIGKILL after ``grace`` seconds. Returns the exit code; safe to call twice.

        uvicorn re-raises the SIGTERM after its graceful shutdown, so -15 is its normal exit code here; granian's
        supervisor passes the SIGTERM to its workers, waits for their lifespan shutdown and exits with 0.
        """
        if self.alive():
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(grace)
            except subprocess.TimeoutExpired:
                self.killed = True
                # The whole group: a supervisor's workers would otherwise outlive it.
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(self.proc.pid, signal.SIGKILL)
                self.proc.wait(5)
        self.exit_code = self.proc.returncode
        if not self.log_file.closed:
            self.log_file.close()
        return self.exit_code


def start(
    name: str, cmd: list[str], env: dict[str, str], log_path: Path, cpus: str | None, cwd: Path = ROOT
) -> Service:
    """``cwd`` decides whose code a ``python -m`` child imports: that directory comes first on its sys.path."""
    log_path.parent.mkdir(parents=True, exist_ok=True)
    log_file = log_path.open("wb")
    proc = subprocess.Popen(
        [*pin_prefix(cpus), *cmd],
        cwd=cwd,
        env=env,
        stdin=subprocess.DEVNULL,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    return Service(name, proc, log_path, log_file)


def start_upstream(port: int, env: dict[str, str], log_path: Path, cpus: str | None) -> Service:
    cmd = [sys.executable, "-m", "tests.upstream", "--host", "127.0.0.1", "--port", str(port)]
    return start("upstream", cmd, env, log_path, cpus)


def start_uvicorn(
    name: str, app: str, port: int, env: dict[str, str], log_path: Path, cpus: str | None, cwd: Path = ROOT,
    workers: int = 1,
) -> Service:  # fmt: skip
    """uvicorn with the fast event loop and HTTP parser, no access log (as in production): one process, or
    with ``workers`` > 1 a supervisor whose workers accept on its socket (``worker_pids`` finds them)."""
    cmd = [
        sys.executable, "-m", "uvicorn", app, "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--log-level", "warning",
    ]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    service = start(name, cmd, env, log_path, cpus, cwd)
    service.workers = workers
    return service


def start_granian(
    name: str, app: str, port: int, env: dict[str, str], log_path: Path, cpus: str | None, cwd: Path = ROOT,
    workers: int = 1,
) -> Service:  # fmt: skip
    """granian's ASGI interface (with the lifespan) and its fastest documented settings: uvloop, HTTP/1 only,
    no websockets, no access log. A supervisor and ``workers`` processes that accept on its socket."""
    if importlib.util.find_spec("granian") is None:
        raise BenchError("granian is not installed: pip install -e '.[dev]'")
    cmd = [
        sys.executable, "-m", "granian", "--interface", "asgi", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "1", "--no-ws", "--no-access-log", "--log-level", "warning",
        "--workers", str(workers), app,
    ]  # fmt: skip
    service = start(name, cmd, env, log_path, cpus, cwd)
    service.server, service.workers = "granian", workers
    return service


def start_gateway(
    port: int, env: dict[str, str], log_path: Path, cpus: str | None, cwd: Path = ROOT, name: str = "gateway",
    workers: int = 1, server: str = "uvicorn",
) -> Service:  # fmt: skip
    starter = start_granian if server == "granian" else start_uvicorn
    return starter(name, "portal.asgi:application", port, env, log_path, cpus, cwd, workers)


def wait_ready(service: Service, url: str, headers: dict[str, str], timeout: float = 60.0) -> float:
    """Poll ``url`` until it answers 200; the seconds it took. Fails fast if the process dies."""
    started = time.monotonic()
    last = "no answer"
    while time.monotonic() - started < timeout:
        if not service.alive():
            raise BenchError(
                f"the {service.name} exited with code {service.proc.returncode} while starting:\n{service.tail()}"
            )
        try:
            with urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=2) as resp:
                if resp.status == 200:
                    return time.monotonic() - started
                last = f"HTTP {resp.status}"
        except urllib.error.HTTPError as exc:
            last = f"HTTP {exc.code}: {exc.read()[:300]!r}"
        except OSError as exc:
            last = str(exc)
        time.sleep(0.2)
    raise BenchError(
        f"the {service.name} did not answer {url} within {timeout:.0f} s ({last}):\n{service.tail()}"
    )


def _listening_inodes(port: int) -> set[str]:
    """The socket inodes listening on 127.0.0.1:``port`` (/proc/net/tcp: state 0A is LISTEN): one socket that
    a supervisor's workers share (uvicorn), or one per worker bound with SO_REUSEPORT (granian on Linux)."""
    inodes = set()
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[3] == "0A" and int(fields[1].rsplit(":", 1)[1], 16) == port:
            inodes.add(fields[9])
    return inodes


def _watches(pid: int, inodes: set[str]) -> bool:
    """True when one of ``pid``'s epoll sets holds one of the sockets ``inodes``: its event loop accepts there."""
    sockets, polls = set(), []
    try:
        for fd in Path(f"/proc/{pid}/fd").iterdir():
            with contextlib.suppress(OSError):  # closed in the meantime
                link = os.readlink(fd)
                if link.startswith("socket:[") and link[8:-1] in inodes:
                    sockets.add(fd.name)
                elif link == "anon_inode:[eventpoll]":
                    polls.append(fd.name)
        for poll in polls:
            for line in Path(f"/proc/{pid}/fdinfo/{poll}").read_text().splitlines():
                if line.startswith("tfd:") and line.split()[1] in sockets:
                    return True
    except OSError:  # the process is gone
        return False
    return False


def children(pid: int) -> list[int]:
    """The processes whose parent is ``pid``."""
    out = []
    for entry in Path("/proc").iterdir():
        with contextlib.suppress(OSError, IndexError):
            if entry.name.isdigit() and int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                out.append(int(entry.name))
    return sorted(out)


def worker_pids(service: Service, port: int, count: int, timeout: float = 60.0) -> list[int]:
    """Wait until ``count`` of a supervisor's workers accept on ``port``; their PIDs.

    Answering one request proves only that one worker is up, and a worker starts accepting only after its
    lifespan startup, so a load started too early would land on the first worker alone. A worker is serving
    once its event loop watches a socket listening on the port, which the kernel shows in the epoll set's fdinfo.
    """
    started, serving = time.monotonic(), []
    while time.monotonic() - started < timeout:
        if not service.alive():
            raise BenchError(
                f"the {service.name} exited with code {service.proc.returncode}:\n{service.tail()}"
            )
        inodes = _listening_inodes(port)
        serving = [pid for pid in children(service.pid) if inodes and _watches(pid, inodes)]
        if len(serving) >= count:
            return serving
        time.sleep(0.2)
    raise BenchError(
        f"only {len(serving)} of the {service.name}'s {count} workers accepted within {timeout:.0f} s"
    )


def serving_pids(service: Service, port: int) -> tuple[int, ...]:
    """A supervisor's workers once they all accept on ``port``; nothing for a server that serves alone."""
    return tuple(worker_pids(service, port, service.workers)) if service.supervised else ()


def rss_bytes(pid: int) -> int:
    """Resident set size of one process, in bytes."""
    if psutil is not None:
        return psutil.Process(pid).memory_info().rss
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise BenchError(f"no VmRSS for process {pid}")


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process so far, to tell who was busy during a phase."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    ticks = os.sysconf("SC_CLK_TCK")
    return (int(fields[11]) + int(fields[12])) / ticks


def machine_jiffies() -> tuple[int, int]:
    """Busy and total CPU time of the whole machine so far, in clock ticks (/proc/stat; idle and iowait are
    not busy): what every process together used, the load generator included."""
    ticks = [int(value) for value in Path("/proc/stat").read_text().splitlines()[0].split()[1:9]]
    return sum(ticks) - ticks[3] - ticks[4], sum(ticks)


def cpu_snapshot() -> dict[int, tuple[str, float]]:
    """CPU seconds used so far by every process on the machine, to spot neighbours that skew a run."""
    snapshot = {}
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            used = cpu_seconds(int(entry.name))
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace").strip()
        except (OSError, ValueError, IndexError):
            continue  # gone in the meantime, or a kernel thread without a command line
        snapshot[int(entry.name)] = (cmdline.replace(str(ROOT) + "/", "")[:100] or entry.name, used)
    return snapshot


def busiest(before: dict, after: dict, seconds: float, skip: set[int], limit: int = 3) -> list[dict]:
    """The processes (other than ``skip``) that used the most CPU between two snapshots, in % of a core."""
    usage = []
    for pid, (name, used) in after.items():
        if pid in skip or pid not in before:
            continue
        pct = 100 * (used - before[pid][1]) / seconds if seconds else 0.0
        if pct >= 5:
            usage.append({"pid": pid, "cmd": name, "cpu_pct": round(pct, 1)})
    return sorted(usage, key=lambda item: -item["cpu_pct"])[:limit]


def neighbours_busy(seconds: float = 2.0) -> float:
    """CPU used by every other process over ``seconds``, in % of one core (PostgreSQL and Redis excluded)."""
    before = cpu_snapshot()
    time.sleep(seconds)
    others = busiest(before, cpu_snapshot(), seconds, {os.getpid()}, limit=1000)
    return sum(p["cpu_pct"] for p in others if not p["cmd"].startswith(("postgres", "redis-server")))


def wait_quiet(max_wait: float, threshold: float = 15.0) -> dict:
    """Wait (up to ``max_wait`` s) for other processes to leave the CPUs alone; what was seen last."""
    started = time.monotonic()
    busy = neighbours_busy()
    while busy > threshold and time.monotonic() - started < max_wait:
        print(f"  other processes use {busy:.0f}% of a core; waiting for a quiet machine", flush=True)
        time.sleep(3)
        busy = neighbours_busy()
    return {"neighbours_cpu_pct": round(busy, 1), "waited_s": round(time.monotonic() - started, 1)}
