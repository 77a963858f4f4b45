# syntax=docker/dockerfile:1
# One image for every role: `web`, `worker`, `beat`, `migrate` (deploy/entrypoint.sh; docs/operations.md).
#
#   docker build -t inference-space:0.1.0 .
#   docker run --rm --env-file production.env inference-space:0.1.0 migrate
#
# Both stages start from the same Python image, so the virtualenv built in the first one runs unchanged in the
# second (a virtualenv names its interpreter by path).
ARG PYTHON_IMAGE=python:3.11-slim-bookworm

FROM ${PYTHON_IMAGE} AS builder
ENV PIP_NO_CACHE_DIR=1 \
    PIP_DISABLE_PIP_VERSION_CHECK=1 \
    PYTHONDONTWRITEBYTECODE=1
# A compiler, for any dependency that has no wheel for the build platform (an arm64 host, say); it stays here.
RUN apt-get update \
    && apt-get install -y --no-install-recommends build-essential \
    && rm -rf /var/lib/apt/lists/*
RUN python -m venv /opt/venv
ENV PATH=/opt/venv/bin:$PATH
WORKDIR /build
# Only the dependencies from pyproject.toml, in their own layer: it is rebuilt when they change, not on every
# edit of the code. The project itself is not installed: it runs from /app, where its templates and static
# folders sit beside the packages (portal/settings.py finds them from its own path).
COPY pyproject.toml ./
RUN python -c "import tomllib; print('\n'.join(tomllib.load(open('pyproject.toml', 'rb'))['project']['dependencies']))" \
        > requirements.txt \
    && pip install --upgrade pip \
    && pip install -r requirements.txt

FROM ${PYTHON_IMAGE} AS runtime
# tini as PID 1: it forwards SIGTERM to the role's process and reaps orphans, which a server running as
# PID 1 would not do (the kernel gives PID 1 no default signal actions).
RUN apt-get update \
    && apt-get install -y --no-install-recommends tini \
    && rm -rf /var/lib/apt/lists/* \
    && groupadd --system --gid 10001 app \
    && useradd --system --uid 10001 --gid app --home-dir /app --no-create-home --shell /usr/sbin/nologin app
ENV PATH=/opt/venv/bin:$PATH \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1 \
    VAR_DIR=/app/var \
    DEBUG=false
COPY --from=builder /opt/venv /opt/venv
WORKDIR /app
# The code belongs to root and is read-only to the app user; only var/ is the app's.
COPY manage.py catalog.demo.toml catalog.example.toml ./
COPY portal ./portal
COPY proxy ./proxy
COPY billing ./billing
COPY templates ./templates
COPY static ./static
COPY --chmod=0755 deploy/entrypoint.sh ./deploy/entrypoint.sh
# Static files are collected here, at build time, into VAR_DIR/staticfiles (STATIC_ROOT), and served by the
# web role itself. With DEBUG off the settings refuse to load without SECRET_KEY, so this one step gets a
# throwaway value; it is in no layer's environment and signs nothing. Collecting without REDIS_URL leaves a
# local Celery broker folder behind, which is removed. The bytecode is compiled now because the code is
# read-only at run time (and the root filesystem may be).
RUN DEBUG=false SECRET_KEY=collectstatic-only-not-a-secret python manage.py collectstatic --noinput \
    && rm -rf var/celery \
    && python -m compileall -q portal proxy billing \
    && mkdir -p var/metrics var/beat \
    && chown app:app var var/metrics var/beat
USER 10001:10001
EXPOSE 8000
ENTRYPOINT ["tini", "--", "/app/deploy/entrypoint.sh"]
CMD ["web"]
