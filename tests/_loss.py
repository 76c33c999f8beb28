"""Acknowledged events made to vanish, as a failover to a lagging standby makes them vanish.

Only the store's owner can delete from the event table: a purge permit for the checkpoint,
written in the same transaction, lets the append-only guard pass (``ledger.archive`` does the
same to purge a run). The replica tests lose events for real (``tests/faults``); this is the
quick way for the tests of what happens next.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger.store.base import EVENTS_TABLE, PURGE_PERMITS_TABLE, SNAPSHOTS_TABLE

if TYPE_CHECKING:
    from ledger import CheckpointToken, Ledger

__all__ = ["lose_events_after"]


def lose_events_after(ledger: Ledger, token: CheckpointToken, version: int) -> None:
    """Delete the checkpoint's events and snapshots after ``version`` (0: all of them)."""
    with ledger.recorder.transaction() as tx:
        key = tx.key(token.checkpoint_id)
        tx.execute(f"INSERT INTO {PURGE_PERMITS_TABLE} (originator_id) VALUES (%s)", (key,))
        for table in (EVENTS_TABLE, SNAPSHOTS_TABLE):
            tx.execute(
                f"DELETE FROM {table} WHERE originator_id = %s AND originator_version > %s",
                (key, version),
            )
        tx.execute(f"DELETE FROM {PURGE_PERMITS_TABLE} WHERE originator_id = %s", (key,))
