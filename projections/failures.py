"""The failure audit: one row per ``Failed`` event, and what became of it.

Each row keeps the run, batch, attempt, error type and message, transient or permanent, the
cursor and items processed at the failure, when, and whether it was later retried or reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger import CheckpointEvent, Failed, Reset, Retried
from projections._common import to_json, to_time
from projections.cursor import TABLE as CURSOR_TABLE

if TYPE_CHECKING:
    from ledger import SQLTransaction

__all__ = ["FailureView"]

TABLE = "ckl_view_failures"


class FailureView:
    """Every failure ever recorded, filterable by run, time, error type and kind."""

    name: str = "failures"
    tables: tuple[str, ...] = (TABLE,)
    ddl: tuple[str, ...] = (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            position BIGINT PRIMARY KEY,
            checkpoint_id TEXT NOT NULL,
            run_id TEXT NOT NULL,
            batch_index BIGINT NOT NULL,
            attempt BIGINT NOT NULL,
            error_type TEXT NOT NULL,
            message TEXT NOT NULL,
            transient INTEGER NOT NULL,
            cursor TEXT,
            items_processed BIGINT NOT NULL,
            failed_at TEXT NOT NULL,
            resolution TEXT,
            resolved_at TEXT
        )""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_run_idx ON {TABLE} (run_id, failed_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_time_idx ON {TABLE} (failed_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_open_idx ON {TABLE} (checkpoint_id, resolution)",
    )

    def apply(self, tx: SQLTransaction, position: int, event: CheckpointEvent) -> None:
        """Add a failure, or mark the checkpoint's unresolved failure retried or reset."""
        oid = str(event.originator_id)
        if isinstance(event, Failed):
            tx.execute(
                f"INSERT INTO {TABLE} SELECT %s, checkpoint_id, run_id, batch_index, %s, %s, %s,"
                f" %s, %s, %s, %s, NULL, NULL FROM {CURSOR_TABLE} WHERE checkpoint_id = %s",
                (
                    position,
                    event.attempt,
                    event.error_type,
                    event.message,
                    int(event.transient),
                    to_json(event.cursor),
                    event.items_processed,
                    to_time(event.timestamp),
                    oid,
                ),
            )
        elif isinstance(event, Retried | Reset):
            resolution = "retried" if isinstance(event, Retried) else "reset"
            tx.execute(
                f"UPDATE {TABLE} SET resolution = %s, resolved_at = %s"
                " WHERE checkpoint_id = %s AND resolution IS NULL",
                (resolution, to_time(event.timestamp), oid),
            )
