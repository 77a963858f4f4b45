"""Production settings (DEBUG=false): Django's deployment checklist is clean, and the cookies a browser gets are
Secure, HttpOnly (the session) and SameSite, as set in portal/settings.py and as sent over the wire."""

import json
import os
import re
import secrets
import subprocess
import sys

import requests
from django.conf import settings

from tests.conftest import database_url
from tests.live import ROOT, start_gateway


def production_env(tmp_path, **extra: str) -> dict[str, str]:
    # The test process's own settings set DJANGO_ALLOW_ASYNC_UNSAFE, which no deployment has.
    dropped = ("DEBUG", "SECRET_KEY", "DATABASE_URL", "REDIS_URL", "DJANGO_ALLOW_ASYNC_UNSAFE")
    clean = {k: v for k, v in os.environ.items() if k not in dropped}
    return {
        **clean, "DJANGO_SETTINGS_MODULE": "portal.settings", "DEBUG": "false",
        "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "gateway.example.com", "VAR_DIR": str(tmp_path),
        **extra,
    }  # fmt: skip


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"], cwd=ROOT,
        env=production_env(tmp_path), capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert "System check identified no issues (0 silenced)." in output, output
    assert "WARNING" not in output and "security.W" not in output, output


def test_production_cookie_and_transport_settings(tmp_path):
    names = [
        "DEBUG", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE", "CSRF_COOKIE_SECURE",
        "CSRF_COOKIE_SAMESITE", "SECURE_SSL_REDIRECT", "SECURE_HSTS_SECONDS", "SECURE_CONTENT_TYPE_NOSNIFF",
        "X_FRAME_OPTIONS",
    ]  # fmt: skip
    code = (
        "import django, json; django.setup(); from django.conf import settings as s; "
        f"print(json.dumps({{n: getattr(s, n) for n in {names!r}}}))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=production_env(tmp_path), capture_output=True, text=True,
        timeout=60,
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    values = json.loads(result.stdout.strip().splitlines()[-1])
    assert values["DEBUG"] is False
    assert values["SESSION_COOKIE_SECURE"] is True and values["CSRF_COOKIE_SECURE"] is True
    assert values["SESSION_COOKIE_HTTPONLY"] is True
    assert values["SESSION_COOKIE_SAMESITE"] in ("Lax", "Strict") and values["CSRF_COOKIE_SAMESITE"] in (
        "Lax",
        "Strict",
    )
    assert values["SECURE_SSL_REDIRECT"] is True and values["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert values["SECURE_CONTENT_TYPE_NOSNIFF"] is True and values["X_FRAME_OPTIONS"] == "DENY"


def cookie(response: requests.Response, name: str) -> str:
    """The raw Set-Cookie line for ``name`` (requests folds several into one header)."""
    for line in response.raw.headers.getlist("Set-Cookie"):
        if line.startswith(f"{name}="):
            return line
    raise AssertionError(f"no {name} cookie in {response.raw.headers.getlist('Set-Cookie')}")


def test_a_browser_gets_secure_httponly_samesite_cookies_from_a_production_server(
    live_db, make_user, security_logs
):
    """Behind a TLS proxy (X-Forwarded-Proto: https), as production runs."""
    password = secrets.token_urlsafe(16)
    user = make_user(password=password)
    production = {"DEBUG": "false", "SECRET_KEY": secrets.token_urlsafe(64), "ALLOWED_HOSTS": "127.0.0.1",
                  "BEHIND_TLS_PROXY": "true", "DJANGO_ALLOW_ASYNC_UNSAFE": ""}  # fmt: skip
    gw = start_gateway(database_url(), settings.REDIS_URL, security_logs, **production)
    try:
        plain = requests.get(f"{gw.url}/login", allow_redirects=False, timeout=30)
        assert plain.status_code == 301 and plain.headers["Location"].startswith("https://"), plain.headers

        https = {"X-Forwarded-Proto": "https"}
        page = requests.get(f"{gw.url}/login", headers=https, timeout=30)
        assert page.status_code == 200, page.text[:500]
        assert page.headers["Strict-Transport-Security"].startswith("max-age=31536000")
        csrf = cookie(page, "csrftoken")
        assert re.search(r";\s*Secure", csrf) and re.search(r";\s*SameSite=(Lax|Strict)", csrf), csrf
        token = re.search(r'name="csrfmiddlewaretoken" value="([^"]+)"', page.text).group(1)
        # Sent by hand: a cookie jar (rightly) keeps a Secure cookie off this plain-HTTP hop to the "proxy".
        signed_in = requests.post(
            f"{gw.url}/login", data={"csrfmiddlewaretoken": token, "username": user.email, "password": password},
            headers={**https, "Origin": f"https://127.0.0.1:{gw.port}", "Cookie": csrf.split(";")[0]},
            allow_redirects=False, timeout=30,
        )  # fmt: skip
        assert signed_in.status_code == 302, signed_in.text[:1000]
        session = cookie(signed_in, "sessionid")
        for flag in (r";\s*Secure", r";\s*HttpOnly", r";\s*SameSite=(Lax|Strict)"):
            assert re.search(flag, session, re.IGNORECASE), f"{flag} missing from {session}"
    finally:
        gw.stop()
