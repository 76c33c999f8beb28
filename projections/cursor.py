"""The current-cursor view: one row per checkpoint, its latest state.

It backs :meth:`Projections.current`, the pending tokens of a run (its checkpoints with
status ``open``: neither completed, failed nor cancelled), run progress (``completed`` is only
ever set by a ``Completed`` event, so progress never runs ahead of a durable checkpoint), the
store-wide status counts and the stuck checkpoints (``projections.stuck`` reads its owner,
lease expiry and ``updated_at``, the time of the checkpoint's last event of any kind).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import UUID

from ledger import (
    Cancelled,
    CheckpointEvent,
    CheckpointToken,
    Completed,
    Failed,
)
from projections._common import from_json, parse_time
from projections.models import CheckpointSummary, RunProgress, RunStatus, RunSummary

if TYPE_CHECKING:
    from ledger import SQLTransaction

__all__ = ["STATUSES", "TABLE", "CursorView"]

TABLE = "ckl_view_cursor"

STATUSES = ("open", "completed", "failed", "cancelled")
"""Every status a checkpoint can have, in the order counts list them."""

_SUMMARY_COLUMNS = (
    "checkpoint_id, run_id, batch_index, total_batches, status, attempt, cursor,"
    " items_processed, accumulated_results, yields, version, created_at, updated_at, position,"
    " owner, lease_expires_at"
)

_NO_LEASE = "owner = NULL, lease_expires_at = NULL"
"""What a complete, fail, retry, reset, release or cancel does to the lease: ends it."""

_COMMON = "version = %s, updated_at = %s, position = %s WHERE checkpoint_id = %s"
"""What every event sets: the checkpoint's version, its last activity and the log position."""


_END_STATUS: dict[type[CheckpointEvent], str] = {
    Completed: "completed",
    Failed: "failed",
    Cancelled: "cancelled",
}
"""The status each ending event leaves."""


class CursorView:
    """Latest status, attempt, cursor, items, results and lease of every checkpoint."""

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
            position BIGINT NOT NULL,
            owner TEXT,
            lease_expires_at TEXT
        )""",
        f"CREATE UNIQUE INDEX IF NOT EXISTS {TABLE}_run_idx ON {TABLE} (run_id, batch_index)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_status_idx ON {TABLE} (run_id, status)",
        # The stuck query scans open checkpoints from the longest idle.
        f"CREATE INDEX IF NOT EXISTS {TABLE}_idle_idx ON {TABLE} (status, updated_at)",
    )

    # ------------------------------------------------------------ reads

    def current(self, tx: SQLTransaction, checkpoint_id: UUID) -> CheckpointSummary | None:
        """The checkpoint's row, or ``None`` if the view has not seen it."""
        rows = tx.query(
            f"SELECT {_SUMMARY_COLUMNS} FROM {TABLE} WHERE checkpoint_id = %s",
            (str(checkpoint_id),),
        )
        return _summary(rows[0]) if rows else None

    def checkpoints(self, tx: SQLTransaction, run_id: str) -> list[CheckpointSummary]:
        """Every checkpoint of a run, by batch index."""
        rows = tx.query(
            f"SELECT {_SUMMARY_COLUMNS} FROM {TABLE} WHERE run_id = %s ORDER BY batch_index",
            (run_id,),
        )
        return [_summary(row) for row in rows]

    def pending_checkpoints(self, tx: SQLTransaction, run_id: str) -> list[CheckpointToken]:
        """Tokens of the run's checkpoints with status ``open``, by batch index (leased or not)."""
        rows = tx.query(
            f"SELECT batch_index, checkpoint_id FROM {TABLE}"
            " WHERE run_id = %s AND status = 'open' ORDER BY batch_index",
            (run_id,),
        )
        return [
            CheckpointToken(run_id=run_id, batch_index=int(b), checkpoint_id=UUID(str(c)))
            for b, c in rows
        ]

    def progress(self, tx: SQLTransaction, run_id: str) -> RunProgress:
        """The run's checkpoints counted by status, and its largest ``total_batches``."""
        rows = tx.query(
            f"SELECT status, count(*), max(total_batches) FROM {TABLE}"
            " WHERE run_id = %s GROUP BY status",
            (run_id,),
        )
        counts = {str(status): int(n) for status, n, _ in rows}
        totals = [int(t) for _, _, t in rows if t is not None]
        return RunProgress(
            run_id=run_id,
            total_batches=max(totals) if totals else None,
            created=sum(counts.values()),
            completed=counts.get("completed", 0),
            failed=counts.get("failed", 0),
            open=counts.get("open", 0),
            cancelled=counts.get("cancelled", 0),
        )

    def runs(self, tx: SQLTransaction) -> list[RunSummary]:
        """Every run's counts by status and items, in one grouped scan, latest activity first."""
        rows = tx.query(
            "SELECT run_id, max(total_batches), count(*),"
            " sum(CASE WHEN status = 'completed' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN status = 'failed' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN status = 'open' THEN 1 ELSE 0 END),"
            " sum(CASE WHEN status = 'cancelled' THEN 1 ELSE 0 END),"
            f" sum(items_processed), min(created_at), max(updated_at) FROM {TABLE}"
            " GROUP BY run_id"
        )
        runs = [_run_summary(row) for row in rows]
        runs.sort(key=lambda run: (run.last_activity, run.run_id), reverse=True)
        return runs

    def checkpoint_counts(self, tx: SQLTransaction) -> dict[str, int]:
        """Checkpoints of every run by status, in one scan; every status present, 0 if none."""
        rows = tx.query(f"SELECT status, count(*) FROM {TABLE} GROUP BY status")
        counts = dict.fromkeys(STATUSES, 0)
        counts.update({str(status): int(count) for status, count in rows})
        return counts


def _run_summary(row: tuple[Any, ...]) -> RunSummary:
    total = None if row[1] is None else int(row[1])
    created, completed, failed, opened, cancelled = (int(n) for n in row[2:7])
    status: RunStatus
    if failed:
        status = "failed"
    elif opened or (total is not None and created < total):
        status = "running"
    else:
        status = "completed"
    return RunSummary(
        run_id=row[0],
        status=status,
        total_batches=total,
        created=created,
        completed=completed,
        failed=failed,
        open=opened,
        cancelled=cancelled,
        items_processed=int(row[7] or 0),
        created_at=parse_time(row[8]),
        last_activity=parse_time(row[9]),
    )


def _summary(row: tuple[Any, ...]) -> CheckpointSummary:
    return CheckpointSummary(
        checkpoint_id=UUID(str(row[0])),
        run_id=row[1],
        batch_index=int(row[2]),
        total_batches=None if row[3] is None else int(row[3]),
        status=row[4],
        attempt=int(row[5]),
        cursor=from_json(row[6]),
        items_processed=int(row[7]),
        accumulated_results=from_json(row[8]),
        yields=int(row[9]),
        version=int(row[10]),
        created_at=parse_time(row[11]),
        updated_at=parse_time(row[12]),
        position=int(row[13]),
        owner=row[14],
        lease_expires_at=None if row[15] is None else parse_time(row[15]),
        last_activity=parse_time(row[12]),
    )
