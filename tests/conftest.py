"""Test-session setup: the PostgreSQL fixtures and the hypothesis profiles.

Profiles: ``dev`` (the default), ``ci`` (always under ``CI=true``) and ``thorough``; choose one
with env ``HYPOTHESIS_PROFILE``. Deadlines are off everywhere: examples run against real
databases with ``fsync`` on, and wall-clock limits would make the suite flaky, not stricter.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

pytest_plugins = ["tests.fix_postgres"]

# State machines that open a real store take long per step; that is their point, not a bug.
_SLOW_IS_EXPECTED = [HealthCheck.too_slow]

settings.register_profile("dev", deadline=None, suppress_health_check=_SLOW_IS_EXPECTED)
settings.register_profile(
    "ci",
    max_examples=200,
    deadline=None,
    print_blob=True,
    suppress_health_check=_SLOW_IS_EXPECTED,
)
settings.register_profile("thorough", max_examples=2_000, deadline=None, print_blob=True)
# Not `tests.fix_postgres.in_ci`: importing the plugin here would stop pytest rewriting its asserts.
_IN_CI = os.environ.get("CI", "").strip().lower() == "true"
settings.load_profile("ci" if _IN_CI else os.environ.get("HYPOTHESIS_PROFILE", "dev"))
