"""The run timeline: every event of a run, in global order, with its position and time.

The event documents themselves stay in the log; the timeline indexes them by run, so reading
one run costs the same however many other runs the store holds (its read joins them from the
log by position).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import UUID

from eventsourcing.persistence import StoredEvent

from ledger.store import EVENTS_TABLE
from projections._common import parse_time, to_time
from projections.models import TimelineEntry

if TYPE_CHECKING:
    from collections.abc import Callable
    from datetime import datetime

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

    def timeline(
        self,
        tx: SQLTransaction,
        to_event: Callable[[StoredEvent], CheckpointEvent],
        run_id: str,
        *,
        after: int = 0,
        until: datetime | None = None,
        limit: int | None = None,
    ) -> list[TimelineEntry]:
        """The run's events after global ``after`` and at or before ``until``, by position.

        ``to_event`` decodes a log row (the ledger's mapper), as the documents live in the log.
        """
        sql = (
            f"SELECT t.position, t.at, t.batch_index, t.version, e.topic, e.state,"
            f" e.originator_id FROM {TABLE} t JOIN {EVENTS_TABLE} e"
            " ON e.notification_id = t.position"
            " WHERE t.run_id = %s AND t.position > %s"
        )
        params: list[object] = [run_id, after]
        if until is not None:
            sql += " AND t.at <= %s"
            params.append(to_time(until))
        sql += " ORDER BY t.position"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        entries = []
        for position, at, batch, version, topic, state, oid in tx.query(sql, params):
            stored = StoredEvent(UUID(str(oid)), int(version), topic, bytes(state))
            entries.append(
                TimelineEntry(
                    position=int(position),
                    at=parse_time(at),
                    batch_index=int(batch),
                    version=int(version),
                    topic=topic,
                    event=to_event(stored),
                )
            )
        return entries
