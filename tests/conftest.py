"""Test-session setup: the PostgreSQL fixtures and the hypothesis profiles.

The profiles (``dev``, ``ci`` under ``CI=true``, ``thorough`` by hand) and the state machines'
example counts are described in ``tests/_hypothesis.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from tests._hypothesis import load_profiles

if TYPE_CHECKING:
    import pytest

pytest_plugins = ["tests.fix_postgres", "tests.fix_replica"]

load_profiles()


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Run the tests marked ``slow`` first, in collection order otherwise.

    Under pytest-xdist a long test that starts last keeps one worker busy while the others sit
    idle; started first, it runs beside the many short ones.
    """
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)
