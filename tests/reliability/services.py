"""Private Redis and PostgreSQL servers that a fault test may stop, kill and restart.

The shared services on the default ports serve every engineer's test runs and must never be touched; these run
on free ports from temporary directories and die with the test that started them.
"""

import contextlib
import json
import os
import pwd
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import psycopg
import redis

from tests.live import ROOT, free_port

PG_BIN = Path("/usr/lib/postgresql/15/bin")


class PrivateRedis:
    """A throwaway ``redis-server`` with no persistence: a restart comes back empty, like a lost cache."""

    def __init__(self) -> None:
        self.port = free_port()
        self.proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> "PrivateRedis":
        cmd = [
            "redis-server",
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
        ]
        self.proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        client = redis.Redis(port=self.port, socket_connect_timeout=0.2)
        deadline = time.monotonic() + 10
        while True:
            try:
                client.ping()
                return self
            except redis.RedisError:
                if self.proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def kill(self) -> None:
        """Stop it the hard way (its data is gone either way: nothing is persisted)."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)

    def is_down(self) -> bool:
        try:
            redis.Redis(port=self.port, socket_connect_timeout=0.2).ping()
        except redis.RedisError:
            return True
        return False


class PrivatePostgres:
    """A PostgreSQL 15 cluster of our own, run as the ``postgres`` OS user (the server refuses to run as root)."""

    def __init__(self, dbname: str = "isp") -> None:
        self.dbname = dbname
        self.port = free_port()
        # Not under pytest's tmp dir: its parents are private to root, and the server runs as postgres.
        self.root = Path(tempfile.mkdtemp(prefix="isp-pg-", dir="/tmp"))
        self.data = self.root / "data"
        self.log_path = self.root / "server.log"
        user = pwd.getpwnam("postgres")
        os.chown(self.root, user.pw_uid, user.pw_gid)

    @property
    def url(self) -> str:
        return f"postgres://postgres@127.0.0.1:{self.port}/{self.dbname}"

    def _as_postgres(self, *args: str, timeout: float = 120) -> None:
        result = subprocess.run(
            ["runuser", "-u", "postgres", "--", *args], capture_output=True, text=True, timeout=timeout
        )
        if result.returncode != 0:
            raise RuntimeError(f"{' '.join(args[:2])} failed: {result.stdout}{result.stderr}")

    def init(self) -> "PrivatePostgres":
        self._as_postgres(
            str(PG_BIN / "initdb"), "-D", str(self.data), "-A", "trust", "-U", "postgres", "-E", "UTF8",
            "--no-sync", "--no-instructions",
        )  # fmt: skip
        self.start()
        with psycopg.connect(self.dsn("postgres"), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{self.dbname}"')
        return self

    def start(self) -> None:
        options = (
            f"-p {self.port} -k {self.root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=50"
        )
        self._as_postgres(
            str(PG_BIN / "pg_ctl"),
            "-D",
            str(self.data),
            "-l",
            str(self.log_path),
            "-o",
            options,
            "-w",
            "start",
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` ends every session (their transactions roll back); ``immediate`` is a crash."""
        self._as_postgres(str(PG_BIN / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def dsn(self, dbname: str | None = None) -> str:
        return f"host=127.0.0.1 port={self.port} user=postgres dbname={dbname or self.dbname}"

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        with psycopg.connect(self.dsn(), autocommit=True) as conn:
            return conn.execute(sql, params).fetchall()

    def destroy(self) -> None:
        with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
            self.stop("immediate")
        shutil.rmtree(self.root, ignore_errors=True)


def django_env(database_url: str, redis_url: str) -> dict[str, str]:
    """The environment of a Django process (a gateway, a management command) on the given services."""
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DJANGO_SETTINGS_MODULE", "DATABASE_URL", "REDIS_URL")
    }
    return {
        **env,
        "DJANGO_SETTINGS_MODULE": "portal.settings",
        "DATABASE_URL": database_url,
        "REDIS_URL": redis_url,
    }


def migrate(database_url: str, redis_url: str) -> None:
    result = subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=django_env(database_url, redis_url),
        capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"migrate failed:\n{result.stdout}\n{result.stderr}")


def privctl(database_url: str, redis_url: str, command: str, **args) -> dict:
    """Run one of tests/reliability/privctl.py's commands in a Django process on the given services."""
    result = subprocess.run(
        [sys.executable, "-m", "tests.reliability.privctl", command, json.dumps(args)], cwd=ROOT,
        env=django_env(database_url, redis_url), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    if result.returncode != 0:
        raise RuntimeError(f"privctl {command} failed:\n{result.stdout}\n{result.stderr}")
    return json.loads(result.stdout.strip().splitlines()[-1])
