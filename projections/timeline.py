"""The run timeline: every event of a run, in global order, with its position and time.

The event documents themselves stay in the log; the timeline indexes them by run, so reading
one run costs the same however many other runs the store holds.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from projections._common import to_time
from projections.cursor import TABLE as CURSOR_TABLE

if TYPE_CHECKING:
    from ledger import CheckpointEvent, SQLTransaction

__all__ = ["TimelineView"]

TABLE = "ckl_view_timeline"


class TimelineView:
    """(run, position) → checkpoint, version, event type and time."""

    name: str = "timeline"
    tables: tuple[str, ...] = (TABLE,)
    ddl: tuple[str, ...] = (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            position BIGINT PRIMARY KEY,
            run_id TEXT NOT NULL,
            checkpoint_id TEXT NOT NULL,
            batch_index BIGINT NOT NULL,
            version BIGINT NOT NULL,
            topic TEXT NOT NULL,
            at TEXT NOT NULL
        )""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_run_idx ON {TABLE} (run_id, position)",
    )

    def apply(self, tx: SQLTransaction, position: int, event: CheckpointEvent) -> None:
        """Index one event under its run."""
        oid = str(event.originator_id)
        tx.execute(
            f"INSERT INTO {TABLE} SELECT %s, run_id, checkpoint_id, batch_index, %s, %s, %s"
            f" FROM {CURSOR_TABLE} WHERE checkpoint_id = %s",
            (position, event.originator_version, event.topic, to_time(event.timestamp), oid),
        )
