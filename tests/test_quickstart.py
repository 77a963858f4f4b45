"""The README's first command, as a newcomer runs it: SQLite, no Redis, the demo catalog and key."""

import os
import re
import signal
import sqlite3
import subprocess
import time

import openai

from tests.live import ROOT, free_port, wait_for_http


def usage_rows(path, expected: int, timeout: float = 10.0) -> int:
    deadline = time.monotonic() + timeout
    while True:
        with sqlite3.connect(path) as db:
            count = db.execute("SELECT COUNT(*) FROM billing_usagerecord").fetchone()[0]
        if count >= expected or time.monotonic() > deadline:
            return count
        time.sleep(0.1)


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
        reply = api.chat.completions.create(
            model="demo-chat", messages=[{"role": "user", "content": "Hello!"}]
        )
        assert "You said: Hello!" in reply.choices[0].message.content
        streamed = api.chat.completions.create(
            model="demo-chat", messages=[{"role": "user", "content": "Hi"}], stream=True
        )
        assert "You said: Hi" in "".join(c.choices[0].delta.content or "" for c in streamed if c.choices)
        assert usage_rows(tmp_path / "dev.sqlite3", expected=2) == 2  # settled on SQLite too
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
