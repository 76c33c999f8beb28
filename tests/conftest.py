"""Test-session setup: the PostgreSQL fixtures and the hypothesis profiles.

The profiles (``dev``, ``ci`` under ``CI=true``, ``thorough`` by hand) and the state machines'
example counts are described in ``tests/_hypothesis.py``.
"""

from __future__ import annotations

from tests._hypothesis import load_profiles

pytest_plugins = ["tests.fix_postgres"]

load_profiles()
