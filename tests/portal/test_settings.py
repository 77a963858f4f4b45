import os
import subprocess
import sys

from tests.live import ROOT


def run_settings(**env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if k not in ("SECRET_KEY", "DEBUG", "DATABASE_URL", "REDIS_URL")
    }
    return subprocess.run(
        [sys.executable, "-c", "import django; django.setup(); from django.conf import settings; print(settings.DEBUG)"],
        cwd=ROOT, env={**clean, "DJANGO_SETTINGS_MODULE": "portal.settings", **env}, capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip


def test_production_refuses_to_start_without_a_secret_key(tmp_path):
    result = run_settings(DEBUG="false", VAR_DIR=str(tmp_path))
    assert result.returncode != 0
    assert "SECRET_KEY must be set when DEBUG is off" in result.stderr
    assert not (tmp_path / "dev-secret-key").exists()


def test_with_no_environment_it_runs_for_development_on_sqlite(tmp_path):
    result = run_settings(VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "True"
    assert (tmp_path / "dev-secret-key").stat().st_mode & 0o077 == 0  # the generated secret is private


def test_production_starts_with_a_secret_key(tmp_path):
    result = run_settings(DEBUG="false", SECRET_KEY="x" * 50, VAR_DIR=str(tmp_path))
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "False"
