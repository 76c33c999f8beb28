"""The current-cursor view: one row per checkpoint, its latest state.

It backs :meth:`Projections.current`, the pending tokens of a run (its checkpoints with
status ``open``: neither completed nor failed) and run progress (``completed`` is only ever
set by a ``Completed`` event, so progress never runs ahead of a durable checkpoint).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ledger import CheckpointEvent, Completed, Created, Failed, Reset, Retried, Yielded
from projections._common import to_json, to_time

if TYPE_CHECKING:
    from ledger import SQLTransaction

__all__ = ["CursorView"]

TABLE = "ckl_view_cursor"


class CursorView:
    """Latest status, attempt, cursor, items and results of every checkpoint."""

    name: str = "cursor"
    tables: tuple[str, ...] = (TABLE,)
    ddl: tuple[str, ...] = (
        f"""CREATE TABLE IF NOT EXISTS {TABLE} (
            checkpoint_id TEXT PRIMARY KEY,
            run_id TEXT NOT NULL,
            batch_index BIGINT NOT NULL,
            total_batches BIGINT,
            status TEXT NOT NULL,
            attempt BIGINT NOT NULL,
            cursor TEXT,
            items_processed BIGINT NOT NULL,
            accumulated_results TEXT,
            yields BIGINT NOT NULL,
            version BIGINT NOT NULL,
            created_at TEXT NOT NULL,
            updated_at TEXT NOT NULL,
            position BIGINT NOT NULL
        )""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_run_idx ON {TABLE} (run_id, batch_index)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_status_idx ON {TABLE} (run_id, status)",
    )

    def apply(self, tx: SQLTransaction, position: int, event: CheckpointEvent) -> None:
        """Fold one event into the checkpoint's row."""
        oid, at = str(event.originator_id), to_time(event.timestamp)
        common = (event.originator_version, at, position, oid)
        if isinstance(event, Created):
            tx.execute(
                f"INSERT INTO {TABLE} (checkpoint_id, run_id, batch_index, total_batches, status,"
                " attempt, items_processed, yields, version, created_at, updated_at, position)"
                " VALUES (%s, %s, %s, %s, 'open', 1, 0, 0, %s, %s, %s, %s)",
                (
                    oid,
                    event.run_id,
                    event.batch_index,
                    event.total_batches,
                    event.originator_version,
                    at,
                    at,
                    position,
                ),
            )
        elif isinstance(event, Yielded):
            tx.execute(
                f"UPDATE {TABLE} SET cursor = %s, items_processed = %s, accumulated_results = %s,"
                " yields = yields + 1, version = %s, updated_at = %s, position = %s"
                " WHERE checkpoint_id = %s",
                (
                    to_json(event.cursor),
                    event.items_processed,
                    to_json(event.accumulated_results),
                    *common,
                ),
            )
        elif isinstance(event, Completed | Failed):
            status = "completed" if isinstance(event, Completed) else "failed"
            tx.execute(
                f"UPDATE {TABLE} SET status = %s, version = %s, updated_at = %s, position = %s"
                " WHERE checkpoint_id = %s",
                (status, *common),
            )
        elif isinstance(event, Retried):
            tx.execute(
                f"UPDATE {TABLE} SET status = 'open', attempt = %s, version = %s,"
                " updated_at = %s, position = %s WHERE checkpoint_id = %s",
                (event.attempt, *common),
            )
        elif isinstance(event, Reset):
            tx.execute(
                f"UPDATE {TABLE} SET status = 'open', attempt = %s, cursor = NULL,"
                " items_processed = 0, accumulated_results = NULL, version = %s,"
                " updated_at = %s, position = %s WHERE checkpoint_id = %s",
                (event.attempt, *common),
            )
