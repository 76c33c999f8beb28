"""The failure audit: one row per ``Failed`` event, and what became of it.

Each row keeps the run, batch, attempt, error type and message, transient or permanent, the
cursor and items processed at the failure, when, and whether it was later retried or reset.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from ledger import CheckpointEvent, Failed, Reset, Retried
from projections._common import from_json, parse_time, to_json, to_time
from projections.cursor import TABLE as CURSOR_TABLE
from projections.models import FailureRecord

if TYPE_CHECKING:
    from datetime import datetime

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

    def failures(
        self,
        tx: SQLTransaction,
        *,
        run_id: str | None,
        since: datetime | None,
        until: datetime | None,
        error_type: str | None,
        transient: bool | None,
        limit: int | None,
    ) -> list[FailureRecord]:
        """The failures matching every filter given (``None``: any), by position."""
        filters: tuple[tuple[str, object], ...] = (
            ("run_id = %s", run_id),
            ("failed_at >= %s", None if since is None else to_time(since)),
            ("failed_at < %s", None if until is None else to_time(until)),
            ("error_type = %s", error_type),
            ("transient = %s", None if transient is None else int(transient)),
        )
        where = ["1 = 1", *(clause for clause, value in filters if value is not None)]
        params = [value for _, value in filters if value is not None]
        sql = (
            "SELECT position, checkpoint_id, run_id, batch_index, attempt, error_type, message,"
            " transient, cursor, items_processed, failed_at, resolution, resolved_at"
            f" FROM {TABLE} WHERE {' AND '.join(where)} ORDER BY position"
        )
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        return [
            FailureRecord(
                position=int(row[0]),
                checkpoint_id=UUID(str(row[1])),
                run_id=row[2],
                batch_index=int(row[3]),
                attempt=int(row[4]),
                error_type=row[5],
                message=row[6],
                transient=bool(row[7]),
                cursor=from_json(row[8]),
                items_processed=int(row[9]),
                failed_at=parse_time(row[10]),
                resolution=row[11],
                resolved_at=None if row[12] is None else parse_time(row[12]),
            )
            for row in tx.query(sql, params)
        ]
