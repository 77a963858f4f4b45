"""Real gateway processes for tests: uvicorn serving portal.asgi on a free port, against the test database."""

import os
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for_http(url: str, timeout: float = 30.0, proc: subprocess.Popen | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc is not None and proc.poll() is not None:
            raise RuntimeError(f"the server exited with {proc.returncode} before answering {url}")
        try:
            urllib.request.urlopen(url, timeout=1.0).close()
            return
        except urllib.error.HTTPError:
            return  # it answered, with an error status: it is up
        except OSError:
            time.sleep(0.1)
    raise RuntimeError(f"nothing answered {url} within {timeout} s")


@dataclass
class Gateway:
    """One uvicorn process serving the whole site. ``log`` is everything it wrote."""

    port: int
    proc: subprocess.Popen
    log_path: Path
    env: dict = field(repr=False, default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def base_url(self) -> str:
        return f"{self.url}/v1"

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20.0) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def start_gateway(
    database_url: str, redis_url: str, log_dir: Path, *, workers: int = 1, **overrides: str
) -> Gateway:
    port = free_port()
    env = {
        **{
            k: v for k, v in os.environ.items() if k != "DJANGO_ALLOW_ASYNC_UNSAFE"
        },  # the test process's only
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
        "DEBUG": "true",
        "PYTHONUNBUFFERED": "1",
        **overrides,
    }
    if not redis_url:
        env.pop("REDIS_URL")
    log_path = log_dir / f"gateway-{port}.log"
    if "PROMETHEUS_MULTIPROC_DIR" not in overrides:  # its own, new: a scrape adds up every file there
        env["PROMETHEUS_MULTIPROC_DIR"] = tempfile.mkdtemp(prefix=f"metrics-{port}-", dir=log_dir)
    cmd = [
        sys.executable, "-m", "uvicorn", "portal.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--loop", "uvloop", "--http", "httptools", "--no-access-log", "--timeout-graceful-shutdown", "15",
    ]  # fmt: skip
    if workers > 1:
        cmd += ["--workers", str(workers)]
    with log_path.open("wb") as out:
        proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    gw = Gateway(port, proc, log_path, env)
    try:
        wait_for_http(f"{gw.url}/v1/models", proc=proc)
    except RuntimeError as exc:
        gw.stop(signal.SIGKILL)
        raise RuntimeError(f"{exc}\n--- gateway log ---\n{gw.log()}") from None
    return gw
