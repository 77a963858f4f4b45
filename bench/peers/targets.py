"""What the peers run measures, each behind the same fake upstream: how each starts, how it is called, and the
one probe that proves an answer really came from the upstream through it.

Every target gets the same body (bench.setup.chat_body: one short user message, ``max_tokens`` 16, not
streamed); only the URL, the key, the model's name and the headers a target needs differ:

- the upstream directly (``tests.upstream``, the fake provider of every benchmark; model ``echo``);
- the bare relay (bench/bare.py: uvicorn and one aiohttp session, nothing else);
- this gateway, one uvicorn process as in ``make bench``, with the free model (key lookup, limits in Redis, a
  usage record for every request) and the paid one (a credit hold and a ledger entry as well);
- LiteLLM's proxy, without a database, ``--num_workers`` one per core (its benchmarks page: "setting workers
  equal to CPU count gives optimal performance"), ``callbacks: []``, no retries, ``LITELLM_LOG=ERROR``, the
  bundled model cost map (``LITELLM_LOCAL_MODEL_COST_MAP``: no download at startup), a master key, and the
  upstream as an OpenAI-compatible model (``openai/echo`` with ``api_base``) named ``bench-free`` like ours,
  and ``--timeout_worker_healthcheck 60`` (which changes nothing once the workers serve; see HEALTHCHECK_S);
- Portkey's gateway as its docs run it locally: ``node build/start-server.js`` with ``NODE_ENV=production``
  (no console), one process, the upstream named per request by the ``x-portkey-provider: openai`` and
  ``x-portkey-custom-host`` headers, the key passed on to the upstream as its docs describe.

Both peers get an environment of their own with only PATH, HOME, LANG and their settings, so neither picks up
the bench's DATABASE_URL or REDIS_URL.
"""

import json
import os
import re
import secrets
from dataclasses import dataclass, field
from pathlib import Path

from bench import procs
from bench.peers.install import Installed
from bench.phases import DIRECT_KEY, PATH, post
from bench.setup import FREE_MODEL, PAID_MODEL, PROMPT, UPSTREAM_MODEL, chat_body

ANSWER = f"You said: {PROMPT}"  # what the fake upstream's echo model answers to every target's body
UPSTREAM_KEY = "bench-upstream-key"  # the fake upstream takes any key; a peer passes this one on
# uvicorn's supervisor kills a worker that answers no ping for 5 s (its default), and a LiteLLM worker busy
# importing on two loaded cores can miss that while it starts, and be killed and started again, over and over.
HEALTHCHECK_S = 60


@dataclass
class Target:
    """One thing the load is sent to, and what the table says about it."""

    name: str  # short, stable: the key in the JSON
    label: str
    base: str  # its base URL
    model: str
    key: str
    headers: dict[str, str] = field(default_factory=dict)
    service: procs.Service | None = None
    processes: str = "1 process"
    config: str = ""
    version: str | None = None
    marker: str | None = None  # a response header only this target adds: proof the answer went through it
    counted: bool = False  # requests to it are counted for the usage check (this gateway)

    @property
    def url(self) -> str:
        return self.base + PATH

    def cpu_pids(self) -> list[int]:
        """The processes whose CPU time is the target's: a supervisor and its workers."""
        if self.service is None or not self.service.alive():
            return []
        return [self.service.pid, *procs.children(self.service.pid)]


def peer_env(**settings: str) -> dict[str, str]:
    """A peer's environment: nothing of the bench's but PATH, HOME and LANG."""
    env = {name: os.environ[name] for name in ("PATH", "HOME", "LANG") if name in os.environ}
    return {**env, **settings}


def litellm_config(upstream_base: str, model: str, master_key: str) -> str:
    """LiteLLM's config.yaml: one OpenAI-compatible model on the upstream, no callbacks, no retries."""
    return f"""# Written by the benchmark for one run.
model_list:
  - model_name: {model}
    litellm_params:
      model: openai/{UPSTREAM_MODEL}
      api_base: {upstream_base}/v1
      api_key: {UPSTREAM_KEY}
litellm_settings:
  callbacks: []
  num_retries: 0
  request_timeout: 30
  set_verbose: false
general_settings:
  master_key: {master_key}
"""


def start_litellm(
    installed: Installed, port: int, upstream_base: str, model: str, workdir: Path, log: Path, workers: int
) -> tuple[procs.Service, str]:
    """LiteLLM's proxy without a database, ``workers`` uvicorn workers; the service and its master key."""
    master_key = f"sk-bench-peers-{secrets.token_hex(8)}"
    config = workdir / "litellm.yaml"
    config.write_text(litellm_config(upstream_base, model, master_key), encoding="utf-8")
    cmd = [
        str(installed.litellm), "--config", str(config), "--host", "127.0.0.1", "--port", str(port),
        "--num_workers", str(workers), "--timeout_worker_healthcheck", str(HEALTHCHECK_S),
    ]  # fmt: skip
    env = peer_env(LITELLM_LOG="ERROR", LITELLM_LOCAL_MODEL_COST_MAP="True", PYTHONUNBUFFERED="1")
    return procs.start("LiteLLM proxy", cmd, env, log, None, cwd=workdir), master_key


def start_portkey(installed: Installed, port: int, workdir: Path, log: Path) -> procs.Service:
    """Portkey's gateway on node, in production mode (no console UI)."""
    cmd = [installed.node, str(installed.portkey), f"--port={port}"]
    return procs.start("Portkey gateway", cmd, peer_env(NODE_ENV="production"), log, None, cwd=workdir)


def portkey_headers(upstream_base: str) -> dict[str, str]:
    return {"x-portkey-provider": "openai", "x-portkey-custom-host": f"{upstream_base}/v1"}


def upstream_id(answer_id: object) -> tuple[str, int] | None:
    """The fake upstream's answer id split in two: its process's random tag, and its request counter."""
    found = re.fullmatch(r"(chatcmpl-[0-9a-f]{8})(\d{12})", answer_id) if isinstance(answer_id, str) else None
    return (found.group(1), int(found.group(2))) if found else None


def probe(target: Target, after: tuple[str, int] | None = None) -> dict:
    """One request: its status, whether the answer is the upstream's echo and carries the target's marker.

    ``after`` is the id of the upstream's answer to the probe before: an answer that went to this run's
    upstream carries its tag and a higher counter (a new request, not a cached or made-up answer).
    """
    data = json.dumps(chat_body(target.model)).encode()
    headers = {"Authorization": f"Bearer {target.key}", "Content-Type": "application/json", **target.headers}
    try:
        status, body, got = post(target.url, data, headers)
    except OSError as exc:
        return {"ok": False, "error": str(exc)}
    text = body[:600].decode("utf-8", "replace")
    out: dict = {"status": status, "body": text}
    try:
        answer = json.loads(body)
        content, made = answer["choices"][0]["message"]["content"], upstream_id(answer.get("id"))
    except (ValueError, KeyError, IndexError, TypeError, AttributeError):
        content, made = None, None
    out["upstream_id"] = made
    marked = target.marker is None or got.get(target.marker) is not None
    if target.marker:
        out["marker"] = {target.marker: got.get(target.marker)}
    problems = []
    if status != 200:
        problems.append(f"HTTP {status}")
    if content != ANSWER:
        problems.append(f"answer {content!r}, not the upstream's {ANSWER!r}")
    if made is None or (after is not None and (made[0] != after[0] or made[1] <= after[1])):
        problems.append(f"answer id {made} is not a new one from this run's upstream (after {after})")
    if not marked:
        problems.append(f"no {target.marker} header: did the answer go through it?")
    out["ok"] = not problems
    if problems:
        out["error"] = "; ".join(problems)
    return out


def direct(upstream: procs.Service, base: str) -> Target:
    return Target(
        "direct", "upstream, called directly", base, UPSTREAM_MODEL, DIRECT_KEY, service=upstream,
        config="the fake upstream (tests/upstream.py, aiohttp), model echo",
    )  # fmt: skip


def bare(relay: procs.Service, base: str) -> Target:
    return Target(
        "bare_relay", "bare relay (uvicorn + aiohttp)", base, UPSTREAM_MODEL, DIRECT_KEY, service=relay,
        config="bench/bare.py: uvicorn (uvloop, httptools) and one aiohttp session, nothing else",
    )  # fmt: skip


GATEWAY_CONFIG = (
    "one uvicorn process (uvloop, httptools, without uvicorn's access log), DEBUG off, the defaults otherwise, as in"
    " make bench: key lookup, limits in Redis, a usage record and the gateway's access line per request"
)


def gateway(service: procs.Service, base: str, key: str, *, paid: bool) -> Target:
    if paid:
        name, label, model = "gateway_paid", "Inference Space, paid model", PAID_MODEL
        config = f"{GATEWAY_CONFIG}, and a credit hold and a ledger entry (0.50/1.50 USD per 1M tokens)"
    else:
        name, label, model, config = "gateway_free", "Inference Space, free model", FREE_MODEL, GATEWAY_CONFIG
    return Target(
        name,
        label,
        base,
        model,
        key,
        service=service,
        config=config,
        marker="x-ratelimit-limit-rpm",
        counted=True,
    )


def litellm(service: procs.Service, base: str, master_key: str, installed: Installed, workers: int) -> Target:
    config = (
        f"litellm --config (no database; callbacks: [], num_retries: 0; openai/{UPSTREAM_MODEL} with api_base the"
        f" upstream's /v1, named {FREE_MODEL}) --num_workers {workers} --timeout_worker_healthcheck {HEALTHCHECK_S},"
        " LITELLM_LOG=ERROR,"
        " LITELLM_LOCAL_MODEL_COST_MAP=True, a master key; uvicorn (uvloop) with the HTTP parser that"
        " litellm[proxy] installs (h11)"
    )
    return Target(
        "litellm", f"LiteLLM proxy {installed.litellm_version}", base, FREE_MODEL, master_key, service=service,
        processes=f"{workers} uvicorn workers", config=config, version=installed.litellm_version,
        marker="x-litellm-version",
    )  # fmt: skip


def portkey(service: procs.Service, base: str, upstream_base: str, installed: Installed) -> Target:
    config = (
        f"NODE_ENV=production node build/start-server.js --port=N (node {installed.node_version}); the upstream"
        " named per request by x-portkey-provider: openai and x-portkey-custom-host: its /v1"
    )
    return Target(
        "portkey", f"Portkey gateway {installed.portkey_version}", base, UPSTREAM_MODEL, UPSTREAM_KEY,
        headers=portkey_headers(upstream_base), service=service, processes="1 node process", config=config,
        version=installed.portkey_version, marker="x-portkey-provider",
    )  # fmt: skip
