"""Shared test configuration: PostgreSQL fixtures and hypothesis profiles."""

from __future__ import annotations

import importlib.util
import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["conftest_pg"] if importlib.util.find_spec("conftest_pg") else []

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
