"""Hypothesis profiles, and how many examples each state machine runs under them.

Profiles, chosen with env ``HYPOTHESIS_PROFILE``:

- ``dev`` (the default) and ``ci`` (always under ``CI=true``): the counts a suite run can afford.
  ``ci`` gives property tests 200 examples; a state machine runs the count its test names
  (`machine_settings`), in memory more than on a real store, where one example costs seconds.
- ``thorough``, for runs by hand: ten times as many examples everywhere (2,000 per property
  test), e.g. ``HYPOTHESIS_PROFILE=thorough .venv/bin/python -m pytest tests/ledger`` (without
  ``CI=true``, which always means ``ci``).

Deadlines are off everywhere: examples run against real databases with ``fsync`` on, and
wall-clock limits would make the suite flaky, not stricter.
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings

# State machines that open a real store take long per step; that is their point, not a bug.
_SLOW_IS_EXPECTED = [HealthCheck.too_slow]
_THOROUGH = 10  # how many times the suite's counts a thorough run tries


def profile_name() -> str:
    """This run's profile: ``ci`` under ``CI=true``, else ``$HYPOTHESIS_PROFILE`` or ``dev``."""
    # Not `tests.fix_postgres.in_ci`: importing the plugin here would stop pytest rewriting its
    # asserts (conftest imports this module).
    if os.environ.get("CI", "").strip().lower() == "true":
        return "ci"
    return os.environ.get("HYPOTHESIS_PROFILE", "dev")


def load_profiles() -> None:
    """Register the profiles and load the one this run uses."""
    settings.register_profile("dev", deadline=None, suppress_health_check=_SLOW_IS_EXPECTED)
    settings.register_profile(
        "ci",
        max_examples=200,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW_IS_EXPECTED,
    )
    settings.register_profile(
        "thorough",
        max_examples=200 * _THOROUGH,
        deadline=None,
        print_blob=True,
        suppress_health_check=_SLOW_IS_EXPECTED,
    )
    settings.load_profile(profile_name())


def machine_settings(*, examples: int, steps: int) -> settings:
    """Settings for a state machine: ``examples`` runs of up to ``steps`` steps.

    The ``thorough`` profile multiplies ``examples`` by ten; the rest comes from the profile.
    """
    scale = _THOROUGH if profile_name() == "thorough" else 1
    return settings(deadline=None, max_examples=examples * scale, stateful_step_count=steps)
