"""The deployment: one image, three ways to run it (docs/operations.md), tested as far as a machine without a
container runtime allows.

- Every role of ``deploy/entrypoint.sh`` runs for real, as the image runs it (``DEBUG=false``, a minimal
  environment, the venv's Python through ``PYTHON``): ``migrate`` on a fresh PostgreSQL database of its own,
  ``web`` over HTTP, ``worker`` and ``beat`` against Redis db 11, each stopped with SIGTERM.
- The Kubernetes manifests validate, strictly, against the schemas of a pinned Kubernetes version
  (kubernetes-validate), and say what matters: probes, the grace period, one beat, secrets from the Secret.
- compose.yaml validates against the Compose Specification's JSON schema. ``tests/data/compose-spec.json`` is
  that schema (``schema/compose-spec.json`` of the compose-spec/compose-spec repository, Apache License 2.0,
  (c) The Compose Specification Authors), unchanged, as the npm package ``dclint`` 3.1.0 ships it
  (``schemas/compose.schema.json``).
- The Dockerfile parses with BuildKit's own parser (the ``dockerfile`` package), and everything it copies
  exists and is let through by .dockerignore. The image itself is not built here.
"""

import fnmatch
import glob
import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote, urlsplit

import dockerfile
import jsonschema
import kubernetes_validate
import psutil
import psycopg
import pytest
import requests
import yaml
from django.apps import apps
from django.conf import settings
from psycopg import sql

from tests.live import ROOT, free_port, wait_for_http

ENTRYPOINT = ROOT / "deploy" / "entrypoint.sh"
KUBERNETES = ROOT / "deploy" / "kubernetes"
KUBERNETES_VERSION = "1.33.0"  # the schemas the manifests are held to, strictly: no unknown fields
COMPOSE_SCHEMA = ROOT / "tests" / "data" / "compose-spec.json"
SECRET_NAME = "inference-space-secrets"
SECRET_KEYS = {
    "SECRET_KEY",
    "DATABASE_URL",
    "REDIS_URL",
    "KEY_HASH_SECRET",
    "FIELD_ENCRYPTION_KEY",
    "STRIPE_SECRET_KEY",
    "STRIPE_WEBHOOK_SECRET",
    "METRICS_TOKEN",
}
ROLES = {"web", "worker", "beat", "migrate"}
_redis = urlsplit(settings.REDIS_URL)
DEPLOY_REDIS_URL = f"redis://{_redis.hostname or '127.0.0.1'}:{_redis.port or 6379}/11"  # the roles' own db


# --- Running the entrypoint's roles ----------------------------------------------------------------------------


def role_env(var_dir: Path, **overrides: str) -> dict[str, str]:
    """What a container of the image has: production settings, its own VAR_DIR, nothing of the test process."""
    return {
        "PATH": os.environ["PATH"],
        "HOME": str(var_dir),
        "LANG": "C.UTF-8",
        "PYTHON": sys.executable,
        "PYTHONUNBUFFERED": "1",
        "VAR_DIR": str(var_dir),
        "DEBUG": "false",
        "SECRET_KEY": "deploy-test-only",
        **overrides,
    }


def run_entrypoint(env: dict[str, str], *args: str, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(ENTRYPOINT), *args], env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


@dataclass
class Role:
    """One long-running role started through the entrypoint; ``log`` is everything it wrote."""

    proc: subprocess.Popen
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def wait_for(self, pattern: str, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if re.search(pattern, self.log()):
                return
            if self.proc.poll() is not None:
                break
            time.sleep(0.1)
        pytest.fail(f"no line matching {pattern!r} (exit code {self.proc.poll()})\n--- log ---\n{self.log()}")

    def terminate(self, timeout: float = 30) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def command_line(self) -> str:
        """The command line of the process the entrypoint started: after ``exec``, the server itself."""
        return " ".join(psutil.Process(self.proc.pid).cmdline())


@pytest.fixture
def start_role(tmp_path) -> Iterator:
    started: list[Role] = []

    def start(env: dict[str, str], *args: str) -> Role:
        log_path = tmp_path / f"{args[0]}-{len(started)}.log"
        with log_path.open("wb") as out:
            proc = subprocess.Popen([str(ENTRYPOINT), *args], env=env, stdout=out, stderr=subprocess.STDOUT)
        started.append(Role(proc, log_path))
        return started[-1]

    yield start
    for role in started:  # a failed test leaves nothing running
        if role.proc.poll() is None:
            role.proc.kill()
            role.proc.wait()


def _admin_connection() -> psycopg.Connection:
    db = settings.DATABASES["default"]
    return psycopg.connect(
        host=db["HOST"],
        port=db["PORT"] or 5432,
        user=db["USER"],
        password=db["PASSWORD"] or None,
        dbname="postgres",
        autocommit=True,
    )


@pytest.fixture(scope="module")
def deploy_database() -> Iterator[str]:
    """A fresh, empty PostgreSQL database for the migrate role, dropped afterwards. Yields its URL."""
    db = settings.DATABASES["default"]
    name = f"inference_space_deploy_{uuid.uuid4().hex[:8]}"
    with _admin_connection() as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    auth = quote(db["USER"]) + (f":{quote(db['PASSWORD'])}" if db["PASSWORD"] else "")
    yield f"postgres://{auth}@{db['HOST']}:{db['PORT'] or 5432}/{name}"
    with _admin_connection() as conn:  # FORCE: the roles' connections may linger a moment after they stop
        conn.execute(sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name)))


@pytest.fixture(scope="module")
def migrated(deploy_database, tmp_path_factory) -> subprocess.CompletedProcess:
    """The migrate role, run once on the fresh database, with the demo catalog to import."""
    env = role_env(
        tmp_path_factory.mktemp("var-migrate"),
        DATABASE_URL=deploy_database,
        REDIS_URL=DEPLOY_REDIS_URL,
        CATALOG_FILE="catalog.demo.toml",
    )
    return run_entrypoint(env, "migrate")


@pytest.fixture(scope="module")
def built_var_dir(tmp_path_factory) -> Path:
    """A VAR_DIR with the static files collected as the image's build step collects them: DEBUG off, a
    throwaway SECRET_KEY, no database and no Redis."""
    var_dir = tmp_path_factory.mktemp("var-image")
    result = run_entrypoint(role_env(var_dir), "manage.py", "collectstatic", "--noinput")
    assert result.returncode == 0, result.stderr
    return var_dir


def test_migrate_builds_a_fresh_database_and_imports_the_catalog(migrated, deploy_database):
    assert migrated.returncode == 0, migrated.stdout + migrated.stderr
    with psycopg.connect(deploy_database) as conn:
        tables = {
            row[0] for row in conn.execute("SELECT tablename FROM pg_tables WHERE schemaname = 'public'")
        }
        models = {row[0] for row in conn.execute("SELECT name FROM proxy_model")}
    expected = {model._meta.db_table for model in apps.get_models() if model._meta.managed}
    assert expected <= tables, f"missing tables: {sorted(expected - tables)}"
    assert {"demo-chat", "demo-paid"} <= models  # CATALOG_FILE was imported after the migrations


def test_manage_py_passes_through_to_django_and_nothing_is_left_to_migrate(
    migrated, deploy_database, tmp_path
):
    env = role_env(tmp_path, DATABASE_URL=deploy_database, REDIS_URL=DEPLOY_REDIS_URL)
    result = run_entrypoint(env, "manage.py", "migrate", "--check")
    assert result.returncode == 0, result.stdout + result.stderr


def test_the_image_build_step_collects_the_static_files_into_var_dir(built_var_dir):
    assert (built_var_dir / "staticfiles" / "app.css").is_file()
    assert (built_var_dir / "staticfiles" / "admin").is_dir()


def test_web_empties_the_metrics_directory_serves_the_probes_and_stops_on_sigterm(
    migrated, deploy_database, built_var_dir, start_role
):
    metrics = built_var_dir / "metrics"
    metrics.mkdir(exist_ok=True)
    stale = metrics / "counter_999999.db"
    stale.write_bytes(b"left by an earlier run")
    port = free_port()
    env = role_env(
        built_var_dir,
        DATABASE_URL=deploy_database,
        REDIS_URL=DEPLOY_REDIS_URL,
        HOST="127.0.0.1",
        PORT=str(port),
        WEB_CONCURRENCY="2",  # uvicorn's supervisor and its workers: the path every deployment takes
        GRACEFUL_TIMEOUT_SECONDS="5",
    )
    web = start_role(env, "web")
    url = f"http://127.0.0.1:{port}"
    try:
        wait_for_http(f"{url}/healthz", proc=web.proc)
    except RuntimeError as exc:
        pytest.fail(f"{exc}\n--- log ---\n{web.log()}")

    assert requests.get(f"{url}/healthz", timeout=5).json() == {"status": "ok"}
    ready = requests.get(f"{url}/readyz", timeout=5)
    assert ready.status_code == 200, ready.text
    assert ready.json() == {"status": "ready", "checks": {"database": "ok", "redis": "ok"}}
    assert requests.get(f"{url}/static/app.css", timeout=5).status_code == 200  # collected, served, DEBUG off
    assert metrics.is_dir() and not stale.exists()
    assert "uvicorn portal.asgi:application" in web.command_line()  # exec'd: SIGTERM goes to the server

    assert web.terminate() == 0, web.log()
    log = web.log()
    assert log.count("Application shutdown complete.") == 2, log  # both workers stopped gracefully
    assert "Traceback" not in log, log


def test_worker_starts_and_stops_warmly_on_sigterm(migrated, deploy_database, tmp_path, start_role):
    env = role_env(tmp_path, DATABASE_URL=deploy_database, REDIS_URL=DEPLOY_REDIS_URL, CELERY_CONCURRENCY="1")
    worker = start_role(env, "worker")
    worker.wait_for(r"celery@\S+ ready\.")
    assert "celery -A portal.celery:app worker" in worker.command_line()
    assert worker.terminate() == 0, worker.log()
    assert "Warm shutdown" in worker.log()
    assert "Traceback" not in worker.log(), worker.log()


def test_beat_keeps_its_schedule_under_var_dir_and_stops_on_sigterm(
    migrated, deploy_database, tmp_path, start_role
):
    env = role_env(tmp_path, DATABASE_URL=deploy_database, REDIS_URL=DEPLOY_REDIS_URL)
    beat = start_role(env, "beat")
    beat.wait_for(r"beat: Starting\.\.\.")
    assert "celery -A portal.celery:app beat" in beat.command_line()
    assert beat.terminate() == 0, beat.log()
    assert glob.glob(str(tmp_path / "celerybeat-schedule*")), "no schedule file under VAR_DIR"
    assert "Traceback" not in beat.log(), beat.log()


def test_any_other_command_runs_as_given(tmp_path):
    result = run_entrypoint(role_env(tmp_path), "sh", "-c", 'echo "$VAR_DIR"')
    assert result.returncode == 0 and result.stdout.strip() == str(tmp_path)


# --- Kubernetes --------------------------------------------------------------------------------------------------


def _manifests() -> list[tuple[str, dict]]:
    found = []
    for path in sorted(KUBERNETES.glob("*.yaml")):
        found += [(path.name, doc) for doc in yaml.safe_load_all(path.read_text()) if doc]
    return found


MANIFESTS = _manifests()


def manifest(kind: str, name: str) -> dict:
    (doc,) = [d for _, d in MANIFESTS if d["kind"] == kind and d["metadata"]["name"] == name]
    return doc


def pod_specs() -> dict[str, dict]:
    return {
        d["metadata"]["name"]: d["spec"]["template"]["spec"]
        for _, d in MANIFESTS
        if "template" in d.get("spec", {})
    }


def container_env(container: dict) -> dict[str, str]:
    return {e["name"]: e["value"] for e in container.get("env", []) if "value" in e}


@pytest.mark.parametrize(
    "doc", [d for _, d in MANIFESTS], ids=[f"{f}:{d['kind']}/{d['metadata']['name']}" for f, d in MANIFESTS]
)
def test_every_manifest_is_valid_for_the_pinned_kubernetes_version(doc):
    kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_strict_validation_refuses_a_field_kubernetes_does_not_know():
    doc = json.loads(json.dumps(manifest("Deployment", "inference-space-beat")))
    doc["spec"]["template"]["spec"]["containers"][0]["readinesProbe"] = {"httpGet": {"path": "/readyz"}}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(doc, KUBERNETES_VERSION, strict=True)


def test_the_manifests_hold_every_role_and_the_apply_order_pieces():
    kinds = {(d["kind"], d["metadata"]["name"]) for _, d in MANIFESTS}
    assert {
        ("Secret", SECRET_NAME),
        ("ConfigMap", "inference-space-config"),
        ("Job", "inference-space-migrate"),
        ("Deployment", "inference-space-web"),
        ("Service", "inference-space-web"),
        ("HorizontalPodAutoscaler", "inference-space-web"),
        ("PodDisruptionBudget", "inference-space-web"),
        ("Deployment", "inference-space-worker"),
        ("Deployment", "inference-space-beat"),
    } <= kinds
    roles = {c["args"][0] for spec in pod_specs().values() for c in spec["containers"]}
    assert roles == ROLES
    images = {c["image"] for spec in pod_specs().values() for c in spec["containers"]}
    assert len(images) == 1  # one image serves every role


def test_web_probes_and_a_grace_period_longer_than_drain_plus_the_graceful_timeout():
    spec = pod_specs()["inference-space-web"]
    (web,) = spec["containers"]
    assert web["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert web["readinessProbe"]["httpGet"]["path"] == "/readyz"
    env = container_env(web)
    drain, graceful = float(env["DRAIN_SECONDS"]), float(env["GRACEFUL_TIMEOUT_SECONDS"])
    assert spec["terminationGracePeriodSeconds"] > drain + graceful
    # The drain outlasts the readiness probe's noticing the 503, so the pod leaves the endpoints while it serves.
    probe = web["readinessProbe"]
    assert drain > probe["periodSeconds"] * probe["failureThreshold"]


def test_beat_runs_exactly_one_replica_and_is_recreated_not_rolled():
    beat = manifest("Deployment", "inference-space-beat")
    assert beat["spec"]["replicas"] == 1
    assert beat["spec"]["strategy"]["type"] == "Recreate"


def test_the_autoscaler_owns_the_web_replicas_and_the_budget_and_service_select_web_pods():
    web = manifest("Deployment", "inference-space-web")
    labels = web["spec"]["template"]["metadata"]["labels"]
    assert "replicas" not in web["spec"]  # an apply would otherwise reset what the autoscaler chose
    hpa = manifest("HorizontalPodAutoscaler", "inference-space-web")
    assert hpa["spec"]["scaleTargetRef"] == {
        "apiVersion": "apps/v1",
        "kind": "Deployment",
        "name": "inference-space-web",
    }
    assert hpa["spec"]["minReplicas"] >= 2  # so the budget's one disruption never empties the Service
    pdb = manifest("PodDisruptionBudget", "inference-space-web")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    service = manifest("Service", "inference-space-web")
    assert service["spec"]["selector"].items() <= labels.items()
    ports = {p["name"] for p in web["spec"]["template"]["spec"]["containers"][0]["ports"]}
    assert {p["targetPort"] for p in service["spec"]["ports"]} <= ports
    for name in ("inference-space-web", "inference-space-worker", "inference-space-beat"):
        deployment = manifest("Deployment", name)
        assert (
            deployment["spec"]["selector"]["matchLabels"].items()
            <= deployment["spec"]["template"]["metadata"]["labels"].items()
        )


def test_secrets_come_only_from_the_secret():
    secret = manifest("Secret", SECRET_NAME)
    assert set(secret["stringData"]) == SECRET_KEYS
    assert not SECRET_KEYS & set(manifest("ConfigMap", "inference-space-config")["data"])
    for name, spec in pod_specs().items():
        for container in spec["containers"]:
            refs = [source["secretRef"]["name"] for source in container["envFrom"] if "secretRef" in source]
            assert refs == [SECRET_NAME], name
            for entry in container.get("env", []):
                if entry["name"] in SECRET_KEYS:  # a secret named one by one must still come from the Secret
                    assert entry["valueFrom"]["secretKeyRef"]["name"] == SECRET_NAME, name


def test_every_pod_runs_as_non_root_on_a_read_only_root_with_no_capabilities():
    for name, spec in pod_specs().items():
        assert spec["securityContext"]["runAsNonRoot"] is True, name
        assert spec["securityContext"]["runAsUser"] != 0, name
        assert spec["automountServiceAccountToken"] is False, name
        for container in spec["containers"]:
            context = container["securityContext"]
            assert context["readOnlyRootFilesystem"] is True, name
            assert context["allowPrivilegeEscalation"] is False, name
            assert context["capabilities"]["drop"] == ["ALL"], name
            mounts = {m["mountPath"] for m in container["volumeMounts"]}
            assert "/tmp" in mounts, name
    # What each role writes has a volume: the web's metrics directory (VAR_DIR keeps the image's static files),
    # beat's schedule file in VAR_DIR.
    web_mounts = {m["mountPath"] for m in pod_specs()["inference-space-web"]["containers"][0]["volumeMounts"]}
    assert "/app/var/metrics" in web_mounts
    beat_mounts = {
        m["mountPath"] for m in pod_specs()["inference-space-beat"]["containers"][0]["volumeMounts"]
    }
    assert "/app/var" in beat_mounts


# --- Compose -----------------------------------------------------------------------------------------------------

COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())
APP_SERVICES = ("migrate", "web", "worker", "beat")


def compose_errors(document: dict) -> list[str]:
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    validator = jsonschema.Draft7Validator(schema)  # the draft the schema names in its $schema
    return [f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in validator.iter_errors(document)]


def seconds(duration: str) -> float:
    """A Compose duration such as ``1m30s`` in seconds."""
    units = {"h": 3600, "m": 60, "s": 1, "ms": 0.001}
    parts = re.findall(r"(\d+(?:\.\d+)?)(ms|h|m|s)", duration)
    assert parts and "".join(n + u for n, u in parts) == duration, duration
    return sum(float(n) * units[u] for n, u in parts)


def test_compose_file_is_valid_against_the_compose_specification():
    assert compose_errors(COMPOSE) == []


def test_the_compose_schema_refuses_what_compose_would_refuse():
    unknown_condition = json.loads(json.dumps(COMPOSE))
    unknown_condition["services"]["web"]["depends_on"]["migrate"]["condition"] = "service_finished"
    assert compose_errors(unknown_condition)
    unknown_key = json.loads(json.dumps(COMPOSE))
    unknown_key["services"]["worker"]["restart_policy"] = "always"  # a key of deploy:, not of a service
    assert compose_errors(unknown_key)


def test_compose_runs_migrate_to_completion_before_the_roles_start():
    services = COMPOSE["services"]
    assert services["migrate"]["command"] == ["migrate"] and services["migrate"]["restart"] == "no"
    for name in ("web", "worker", "beat"):
        assert services[name]["command"] == [name]
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for store in ("postgres", "redis"):
        assert services["migrate"]["depends_on"][store] == {"condition": "service_healthy"}


def test_compose_checks_the_health_of_postgres_redis_and_web():
    def check(name: str) -> str:
        test = COMPOSE["services"][name]["healthcheck"]["test"]
        return " ".join(test) if isinstance(test, list) else test

    assert "pg_isready" in check("postgres")
    assert "redis-cli ping" in check("redis")
    assert "/readyz" in check("web")


def test_compose_takes_secrets_from_the_env_file_and_gives_web_time_to_drain():
    services = COMPOSE["services"]
    images = {services[name]["image"] for name in APP_SERVICES}
    assert len(images) == 1  # one image serves every role
    example = (ROOT / "deploy" / "compose.env.example").read_text()
    defined = set(re.findall(r"^([A-Z_]+)=", example, flags=re.MULTILINE))
    assert defined >= SECRET_KEYS
    for name in APP_SERVICES:
        service = services[name]
        assert service["env_file"] == "deploy/compose.env", name
        assert not SECRET_KEYS & set(service.get("environment", {})), name
        assert service["read_only"] is True and service["cap_drop"] == ["ALL"], name
    web = services["web"]["environment"]
    drain, graceful = float(web["DRAIN_SECONDS"]), float(web["GRACEFUL_TIMEOUT_SECONDS"])
    assert seconds(services["web"]["stop_grace_period"]) > drain + graceful
    assert {"pgdata", "redisdata"} <= set(COMPOSE["volumes"])


# --- The Dockerfile ----------------------------------------------------------------------------------------------


def dockerignore_allows(path: str) -> bool:
    """Whether the build context keeps ``path``, for the syntax .dockerignore uses: the last pattern that
    matches the path or one of its parent folders decides, ``!`` lets it through."""
    allowed = True
    for line in (ROOT / ".dockerignore").read_text().splitlines():
        pattern = line.strip()
        if not pattern or pattern.startswith("#"):
            continue
        keep = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        parts = path.split("/")
        if any(fnmatch.fnmatchcase("/".join(parts[:i]), pattern) for i in range(1, len(parts) + 1)):
            allowed = keep
    return allowed


def test_the_dockerfile_builds_in_two_stages_and_runs_every_role_as_a_non_root_user():
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    starts = [i for i, c in enumerate(commands) if c.cmd == "FROM"]
    assert len(starts) >= 2  # a builder and a slim runtime
    runtime = commands[starts[-1] :]
    (user,) = [c.value[0] for c in runtime if c.cmd == "USER"]
    assert int(user.split(":")[0]) != 0  # numeric, so Kubernetes' runAsNonRoot can check it
    (entrypoint,) = [c for c in runtime if c.cmd == "ENTRYPOINT"]
    assert entrypoint.json and "/app/deploy/entrypoint.sh" in entrypoint.value
    (cmd,) = [c for c in runtime if c.cmd == "CMD"]
    assert cmd.value == ("web",)
    collect = [c.value[0] for c in runtime if c.cmd == "RUN" and "collectstatic" in c.value[0]]
    assert collect and "DEBUG=false" in collect[0] and "SECRET_KEY=" in collect[0]
    # The throwaway key is given to that one step, never to the image's environment.
    env_names = [v for c in runtime if c.cmd == "ENV" for v in c.value[::2]]
    assert "SECRET_KEY" not in env_names and "VAR_DIR" in env_names
    assert os.access(ENTRYPOINT, os.X_OK)


def test_everything_the_dockerfile_copies_exists_and_is_in_the_build_context():
    commands = dockerfile.parse_file(str(ROOT / "Dockerfile"))
    sources = [
        src
        for c in commands
        if c.cmd == "COPY" and not any(f.startswith("--from") for f in c.flags)
        for src in c.value[:-1]
    ]
    assert "pyproject.toml" in sources and "deploy/entrypoint.sh" in sources
    for src in sources:
        assert (ROOT / src).exists(), src
        assert dockerignore_allows(src), f"{src} is left out of the build context by .dockerignore"
    assert not dockerignore_allows(".env") and not dockerignore_allows("var/dev-secret-key")
