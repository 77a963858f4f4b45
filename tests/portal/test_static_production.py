"""With DEBUG off, the one process still serves the stylesheet (collected files, long-lived cache headers)."""

import subprocess
import sys
import urllib.request

from django.conf import settings

from tests.conftest import database_url
from tests.live import ROOT, start_gateway


def test_a_production_process_serves_collected_static_files(live_database, tmp_path, artifacts):
    production = {"DEBUG": "false", "SECRET_KEY": "s" * 60, "ALLOWED_HOSTS": "127.0.0.1",
                  "SECURE_SSL_REDIRECT": "false", "VAR_DIR": str(tmp_path)}  # fmt: skip
    env = {"PATH": "/usr/bin:/bin", "DJANGO_SETTINGS_MODULE": "portal.settings", **production}
    collected = subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput"], cwd=ROOT, env=env, capture_output=True,
        text=True, timeout=120,
    )  # fmt: skip
    assert collected.returncode == 0, collected.stderr
    gw = start_gateway(database_url(), settings.REDIS_URL, artifacts, **production)
    try:
        with urllib.request.urlopen(f"{gw.url}/static/app.css", timeout=10) as response:
            body = response.read()
            assert response.status == 200
            assert response.headers["Content-Type"].startswith("text/css")
        assert b"{" in body and len(body) > 1000
        assert (tmp_path / "staticfiles" / "app.css").read_bytes() == body
    finally:
        gw.stop()
