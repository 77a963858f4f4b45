# Two entry points for a fresh machine: `make run` (serve with embedded defaults) and `make test` (everything).
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
HOST ?= 127.0.0.1
PORT ?= 8000

# Tests run against real PostgreSQL and Redis; these are the local defaults.
TEST_DATABASE_URL ?= postgres://postgres@127.0.0.1:5432/inference_space
TEST_REDIS_URL ?= redis://127.0.0.1:6379/15

.PHONY: install run serve test lint format bench bench-peers soak scale clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)

run: install
	$(PY) manage.py migrate --noinput
	$(PY) manage.py import_catalog catalog.demo.toml
	$(PY) manage.py quickstart
	bash .ci/serve-embedded $(HOST) $(PORT)

test: install
	bash .ci/services
	command -v chromium >/dev/null || (apt-get update -qq && apt-get install -y -qq chromium)
	command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || (apt-get update -qq && apt-get install -y -qq pgbouncer)
	DATABASE_URL=$(TEST_DATABASE_URL) REDIS_URL=$(TEST_REDIS_URL) $(PY) -m pytest -q

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

bench: install
	bash .ci/services
	DATABASE_URL=$(TEST_DATABASE_URL:inference_space=inference_space_bench) REDIS_URL=redis://127.0.0.1:6379/14 $(PY) -m bench

bench-peers: install
	bash .ci/services
	DATABASE_URL=$(TEST_DATABASE_URL:inference_space=inference_space_bench_peers) REDIS_URL=redis://127.0.0.1:6379/7 $(PY) -m bench.peers

soak: install
	bash .ci/services
	DATABASE_URL=$(TEST_DATABASE_URL:inference_space=inference_space_bench_soak) REDIS_URL=redis://127.0.0.1:6379/5 $(PY) -m bench.soak

scale: install
	bash .ci/services
	DATABASE_URL=$(TEST_DATABASE_URL:inference_space=inference_space_bench_scale) REDIS_URL=redis://127.0.0.1:6379/6 $(PY) -m bench.scale

clean:
	rm -rf $(VENV) var
