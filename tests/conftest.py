"""Shared test configuration: PostgreSQL fixtures and hypothesis profiles.

``conftest_pg`` has the fixtures for the shared test server (``pg_dsn`` and friends);
``throwaway_pg`` has ``throwaway_pg``, a cluster of the suite's own for the tests that
restart or stop a server; ``blocking`` has ``release``, for threads that block past a
deadline.
"""

from __future__ import annotations

import importlib.util
import os

from hypothesis import HealthCheck, settings

pytest_plugins = [
    "blocking",
    *(name for name in ("conftest_pg", "throwaway_pg") if importlib.util.find_spec(name)),
]

settings.register_profile(
    "default", deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
settings.register_profile(
    "ci",
    deadline=None,
    derandomize=True,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
settings.load_profile("ci" if os.environ.get("CI") == "true" else "default")
