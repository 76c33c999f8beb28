"""The event table is append-only in the database itself, not only by convention.

Each test records a checkpoint through the ledger, then goes around it with a raw driver
connection (``sqlite3`` or ``psycopg``) and tries to change history. The database must refuse,
and the ledger must read back exactly the events it wrote.
"""

from __future__ import annotations

import sqlite3
from typing import TYPE_CHECKING

import psycopg
import pytest

from ledger import CheckpointEvent, CheckpointToken, Ledger

if TYPE_CHECKING:
    from collections.abc import Iterator

SQLITE_PREFIX = "sqlite:///"


def _is_sqlite(store_url: str) -> bool:
    return store_url.startswith(SQLITE_PREFIX)


def _execute_raw(store_url: str, statement: str) -> None:
    """Run one statement on the store with the plain driver, bypassing the ledger."""
    if _is_sqlite(store_url):
        conn = sqlite3.connect(store_url.removeprefix(SQLITE_PREFIX))
        try:
            with conn:  # commits, or rolls back on error
                conn.execute(statement)
        finally:
            conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True, connect_timeout=10) as pg:
            pg.execute(statement)


def _refusal(store_url: str) -> type[Exception]:
    """The driver error a refused change raises on this backend."""
    return sqlite3.IntegrityError if _is_sqlite(store_url) else psycopg.errors.IntegrityError


class Recorded:
    """A ledger with one checkpoint that was created and yielded, and what the store held."""

    def __init__(self, ledger: Ledger, token: CheckpointToken) -> None:
        self.ledger, self.token = ledger, token
        self.count = ledger.count_events()
        self.events: list[CheckpointEvent] = ledger.checkpoint_events(token)

    def assert_unchanged(self) -> None:
        assert self.ledger.count_events() == self.count
        assert self.ledger.checkpoint_events(self.token) == self.events


@pytest.fixture
def recorded(store_url: str) -> Iterator[Recorded]:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("run-append-only", 0, metadata={"source": "test"})
        ledger.checkpoint_yield(token, cursor=10, items_processed=10)
        state = Recorded(ledger, token)
        assert state.count == 2
        yield state


def test_an_update_of_recorded_events_is_refused_by_the_database(
    store_url: str, recorded: Recorded
) -> None:
    with pytest.raises(_refusal(store_url), match="append-only"):
        _execute_raw(store_url, "UPDATE ckl_events SET topic = 'x'")
    recorded.assert_unchanged()


def test_a_delete_of_recorded_events_is_refused_by_the_database(
    store_url: str, recorded: Recorded
) -> None:
    with pytest.raises(_refusal(store_url), match="append-only"):
        _execute_raw(store_url, "DELETE FROM ckl_events")
    recorded.assert_unchanged()


@pytest.mark.postgres
def test_a_truncate_of_the_event_table_is_refused_by_postgresql(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger:
        token = ledger.create_checkpoint("run-append-only", 0)
        ledger.checkpoint_yield(token, cursor="k-1", items_processed=1)
        recorded = Recorded(ledger, token)
        with pytest.raises(psycopg.errors.IntegrityError, match="append-only"):
            _execute_raw(postgres_url, "TRUNCATE ckl_events")
        recorded.assert_unchanged()


_OVERWRITE = {
    # SQLite's REPLACE conflict resolution deletes the old row without firing DELETE triggers
    # (unless the connection turned recursive_triggers on), so a DELETE trigger alone misses it.
    "sqlite": (
        "INSERT OR REPLACE INTO ckl_events (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version, 'x', state FROM ckl_events"
    ),
    "postgres": (
        "INSERT INTO ckl_events (originator_id, originator_version, topic, state) "
        "SELECT originator_id, originator_version, 'x', state FROM ckl_events "
        "ON CONFLICT (originator_id, originator_version) DO UPDATE SET topic = EXCLUDED.topic"
    ),
}


def test_an_insert_that_replaces_recorded_events_is_refused_by_the_database(
    store_url: str, recorded: Recorded
) -> None:
    statement = _OVERWRITE["sqlite" if _is_sqlite(store_url) else "postgres"]
    with pytest.raises(_refusal(store_url)):
        _execute_raw(store_url, statement)
    recorded.assert_unchanged()
