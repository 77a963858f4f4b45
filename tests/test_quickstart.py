"""The README's first command, as a newcomer runs it: SQLite, no Redis, the demo catalog and key."""

import os
import re
import signal
import subprocess
import time

import openai

from tests.live import ROOT, free_port, wait_for_http


def test_make_run_serves_v1_models_with_the_demo_key(tmp_path):
    port = free_port()
    env = {
        k: v
        for k, v in os.environ.items()
        if k not in ("DATABASE_URL", "REDIS_URL", "DJANGO_SETTINGS_MODULE")
    }
    env.update(VAR_DIR=str(tmp_path), PORT=str(port))
    proc = subprocess.Popen(
        ["make", "run", f"PORT={port}"], cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True, start_new_session=True,
    )  # fmt: skip
    output: list[str] = []
    try:
        key = None
        deadline = time.monotonic() + 120
        while key is None and time.monotonic() < deadline:
            line = proc.stdout.readline()
            if not line:
                break
            output.append(line)
            if match := re.search(r"API key:\s+(sk-\S+)", line):
                key = match.group(1)
        assert key, "make run printed no API key:\n" + "".join(output)
        wait_for_http(f"http://127.0.0.1:{port}/v1/models", timeout=60, proc=proc)
        api = openai.OpenAI(base_url=f"http://127.0.0.1:{port}/v1", api_key=key, max_retries=0)
        models = {m.id: m for m in api.models.list().data}
        assert models["demo-chat"].owned_by == "demo"
        assert (tmp_path / "dev.sqlite3").exists()
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
