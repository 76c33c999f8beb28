"""The failure audit: one row per failure, lease takeover and cancel, and what became of it.

Each row keeps the run, batch, attempt, error type and message, transient or permanent, the
cursor and items processed at that moment, when, its kind and, for a ``Failed`` event, the
traceback, host and pid it carried. A failure row is later marked retried (by ``Retried`` or a
claim that retried it) or reset. A takeover (a ``Claimed`` that took an expired lease) is a
row of error type ``LeaseExpired`` for the attempt it superseded, so a dead worker shows in the
audit; a cancel is a row of error type ``Cancelled`` with the operator's reason.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from projections._common import from_json, parse_time, to_time
from projections.models import FailureRecord

if TYPE_CHECKING:
    from collections.abc import Collection
    from datetime import datetime

    from ledger import SQLTransaction
    from projections.models import AuditKind

__all__ = ["AUDIT_KINDS", "FailureView"]

TABLE = "ckl_view_failures"

AUDIT_KINDS: tuple[AuditKind, ...] = ("failure", "takeover", "cancel")
"""The kinds of audit row, as ``Projections.failures(kind=...)`` accepts them."""

_COLUMNS = (
    "position, checkpoint_id, run_id, batch_index, attempt, error_type, message, transient,"
    " cursor, items_processed, failed_at, resolution, resolved_at, kind, traceback, host, pid"
)


class FailureView:
    """Every failure, takeover and cancel ever recorded, filterable by run, time, type, kind."""

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
            resolved_at TEXT,
            kind TEXT NOT NULL,
            traceback TEXT,
            host TEXT,
            pid BIGINT
        )""",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_run_idx ON {TABLE} (run_id, failed_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_time_idx ON {TABLE} (failed_at)",
        f"CREATE INDEX IF NOT EXISTS {TABLE}_open_idx ON {TABLE} (checkpoint_id, resolution)",
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
        kind: AuditKind | None,
        limit: int | None,
        after: int = 0,
        before: int | None = None,
        batches: Collection[int] | None = None,
        descending: bool = False,
    ) -> list[FailureRecord]:
        """The audit rows matching every filter given (``None``: any), by position.

        Keyset by position (the primary key): rows after ``after`` and before ``before``,
        oldest first or, ``descending``, newest first; never OFFSET.
        """
        filters: tuple[tuple[str, object], ...] = (
            ("position > %s", after or None),
            ("position < %s", before),
            ("run_id = %s", run_id),
            ("failed_at >= %s", None if since is None else to_time(since)),
            ("failed_at <= %s", None if until is None else to_time(until)),
            ("error_type = %s", error_type),
            ("transient = %s", None if transient is None else int(transient)),
            ("kind = %s", kind),
        )
        where = ["1 = 1", *(clause for clause, value in filters if value is not None)]
        params = [value for _, value in filters if value is not None]
        if batches is not None:
            listed = sorted(set(batches))
            where.append(
                f"batch_index IN ({', '.join(['%s'] * len(listed))})" if listed else "1 = 0"
            )
            params.extend(listed)
        order = "position DESC" if descending else "position"
        sql = f"SELECT {_COLUMNS} FROM {TABLE} WHERE {' AND '.join(where)} ORDER BY {order}"
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
                kind=row[13],
                traceback=row[14],
                host=row[15],
                pid=None if row[16] is None else int(row[16]),
            )
            for row in tx.query(sql, params)
        ]
