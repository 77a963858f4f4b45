"""Test settings: the real services on this machine unless the environment names others."""

import os

os.environ.setdefault("DATABASE_URL", "postgres://postgres@127.0.0.1:5432/inference_space")
os.environ.setdefault("REDIS_URL", "redis://127.0.0.1:6379/15")

from portal.settings import *  # noqa: F403

# Tests set up rows with the ORM from inside async test functions; the gateway under test is a separate process.
os.environ.setdefault("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
