#!/bin/sh
# One image, every role. The first argument names the role; anything after it is passed on to the program:
#
#   web       the ASGI server for the site and /v1 (uvicorn)
#   worker    the Celery worker
#   beat      the Celery beat scheduler (run exactly one)
#   migrate   apply database migrations, then import CATALOG_FILE when it is set
#   manage.py ARGS...   a management command; any other command runs as given (sh, python, celery ...)
#
# PYTHON names the interpreter (default `python`, the image's virtualenv being first on PATH).
#
# Every role ends in `exec`, so the server is the process the orchestrator signals: SIGTERM reaches uvicorn or
# Celery itself and starts their graceful stop, instead of killing a shell that would leave them running.
set -eu

PYTHON=${PYTHON:-python}
APP_DIR=$(CDPATH='' cd -- "$(dirname -- "$0")/.." && pwd)
# The same default as portal/settings.py, exported so the app and this script agree on it.
VAR_DIR=${VAR_DIR:-$APP_DIR/var}
export VAR_DIR
cd "$APP_DIR"

role=${1:-web}
if [ "$#" -gt 0 ]; then shift; fi

# Empty a directory's contents but keep the directory: it may be a mount point (an emptyDir, a tmpfs), which
# can be emptied but not removed.
empty_dir() {
    case "$1" in
        "" | / | "$APP_DIR" | "$VAR_DIR")
            echo "entrypoint: refusing to empty '$1'" >&2
            exit 64
            ;;
    esac
    mkdir -p "$1"
    find "$1" -mindepth 1 -delete
}

web() {
    # prometheus_client's multiprocess mode adds up every file in this directory, one set per server process.
    # Files left by an earlier run (a restarted container keeps its volume) would be counted again, so the
    # directory starts empty, before any server process writes to it.
    PROMETHEUS_MULTIPROC_DIR=${PROMETHEUS_MULTIPROC_DIR:-$VAR_DIR/metrics}
    export PROMETHEUS_MULTIPROC_DIR
    empty_dir "$PROMETHEUS_MULTIPROC_DIR"
    # GRACEFUL_TIMEOUT_SECONDS bounds how long requests in flight (streams) may run on after SIGTERM, once
    # DRAIN_SECONDS are over. The default stays below Kubernetes' default grace period of 30 s; the manifests
    # and compose.yaml set both explicitly.
    exec "$PYTHON" -m uvicorn portal.asgi:application \
        --host "${HOST:-0.0.0.0}" --port "${PORT:-8000}" \
        --workers "${WEB_CONCURRENCY:-1}" \
        --loop uvloop --http httptools --no-access-log \
        --timeout-graceful-shutdown "${GRACEFUL_TIMEOUT_SECONDS:-25}" \
        "$@"
}

worker() {
    if [ -n "${CELERY_CONCURRENCY:-}" ]; then
        set -- --concurrency "$CELERY_CONCURRENCY" "$@"
    fi
    exec "$PYTHON" -m celery -A portal.celery:app worker --loglevel "${CELERY_LOG_LEVEL:-INFO}" "$@"
}

beat() {
    # The schedule file records when each periodic task last ran; losing it only means interval tasks wait
    # one interval again, so it may live on ephemeral storage.
    schedule=${CELERY_BEAT_SCHEDULE_FILE:-$VAR_DIR/celerybeat-schedule}
    mkdir -p "$(dirname -- "$schedule")"
    exec "$PYTHON" -m celery -A portal.celery:app beat --loglevel "${CELERY_LOG_LEVEL:-INFO}" \
        --schedule "$schedule" "$@"
}

migrate() {
    if [ -z "${CATALOG_FILE:-}" ]; then
        exec "$PYTHON" manage.py migrate --noinput "$@"
    fi
    "$PYTHON" manage.py migrate --noinput "$@"
    # Idempotent: the catalog file is the source of truth for what it names, so every release may import it.
    exec "$PYTHON" manage.py import_catalog "$CATALOG_FILE"
}

case "$role" in
    web | worker | beat | migrate) "$role" "$@" ;;
    manage.py) exec "$PYTHON" manage.py "$@" ;;
    *) exec "$role" "$@" ;;
esac
