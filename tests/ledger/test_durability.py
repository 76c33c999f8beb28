"""Full durability is the default; the fast and applied modes are opt-in, on both backends.

What ``applied`` waits for on a standby is in ``tests/faults/test_applied_durability.py``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pytest

from ledger import Ledger, LedgerSettings
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.sqlite import SQLiteLedgerRecorder

if TYPE_CHECKING:
    from ledger.store import LedgerRecorder


def store_setting(recorder: LedgerRecorder) -> str:
    """What the live connection says its commit durability is."""
    if isinstance(recorder, SQLiteLedgerRecorder):
        with recorder._connection() as conn:
            level = int(conn.execute("PRAGMA synchronous").fetchone()[0])
            mode = str(conn.execute("PRAGMA journal_mode").fetchone()[0])
        return f"{mode}:{ {1: 'normal', 2: 'full'}[level] }"
    assert isinstance(recorder, PostgresLedgerRecorder)
    with recorder._conn() as conn:
        row = conn.execute("SHOW synchronous_commit").fetchone()
    assert row is not None
    return f"pg:{row[0]}"


@pytest.mark.parametrize(
    ("durability", "sqlite", "postgres"),
    [
        ("full", "wal:full", "pg:on"),
        ("fast", "wal:normal", "pg:off"),
        ("applied", "wal:full", "pg:remote_apply"),
    ],
)
def test_durability_setting_reaches_the_database(
    store_url: str, durability: str, sqlite: str, postgres: str
) -> None:
    config = LedgerSettings(store=store_url, durability=durability)
    with Ledger.open(settings=config) as ledger:
        token = ledger.create_checkpoint("durable", 0)  # a write, so the connection exists
        ledger.checkpoint_yield(token, 1, 1)
        expected = sqlite if store_url.startswith("sqlite") else postgres
        assert store_setting(ledger.recorder) == expected


def test_the_default_is_full_durability() -> None:
    assert LedgerSettings().durability == "full"
