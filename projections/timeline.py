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
    from collections.abc import Callable, Collection
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
        before: int | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        batches: Collection[int] | None = None,
        topics: Collection[str] | None = None,
        limit: int | None = None,
        descending: bool = False,
    ) -> list[TimelineEntry]:
        """The run's events after global ``after`` (and before ``before``), by position.

        Filters: time from ``since`` to ``until`` (both inclusive), batch indexes, event
        topics. ``descending`` reads the newest first (for "the last N"). Keyset by position
        (the primary key), never OFFSET, so a page costs the same wherever it starts.
        ``to_event`` decodes a log row (the ledger's mapper), as the documents live in the log.
        """
        sql = (
            f"SELECT t.position, t.at, t.batch_index, t.version, e.topic, e.state,"
            f" e.originator_id FROM {TABLE} t JOIN {EVENTS_TABLE} e"
            " ON e.notification_id = t.position"
            " WHERE t.run_id = %s AND t.position > %s AND e.notification_id > %s"
        )
        # The bound is repeated on the log's side of the join: without it PostgreSQL's merge
        # join scans the log from its start for every page (a page at 900,000 took 2 s).
        params: list[object] = [run_id, after, after]
        if before is not None:
            sql += " AND t.position < %s AND e.notification_id < %s"
            params += [before, before]
        if since is not None:
            sql += " AND t.at >= %s"
            params.append(to_time(since))
        if until is not None:
            sql += " AND t.at <= %s"
            params.append(to_time(until))
        for column, values in (("t.batch_index", batches), ("t.topic", topics)):
            if values is not None:
                listed = sorted(set(values))  # type: ignore[type-var]
                sql += (
                    f" AND {column} IN ({', '.join(['%s'] * len(listed))})"
                    if listed
                    else " AND 1 = 0"
                )
                params.extend(listed)
        sql += " ORDER BY t.position DESC" if descending else " ORDER BY t.position"
        if limit is not None:
            sql += " LIMIT %s"
            params.append(limit)
        new = TimelineEntry.model_construct
        entries = []
        for position, at, batch, version, topic, state, oid in tx.query(sql, params):
            stored = StoredEvent(UUID(str(oid)), int(version), topic, bytes(state))
            # model_construct: every field is typed already (ints, a parsed time, a decoded
            # event); validating the event model again would double the cost of a replay.
            entries.append(
                new(
                    position=int(position),
                    at=parse_time(at),
                    batch_index=int(batch),
                    version=int(version),
                    topic=topic,
                    event=to_event(stored),
                )
            )
        return entries

    def heads(
        self,
        tx: SQLTransaction,
        run_id: str,
        *,
        until: datetime | None = None,
        batches: Collection[int] | None = None,
    ) -> dict[int, tuple[UUID, int]]:
        """Each batch's checkpoint id and last version at or before ``until`` (default: now)."""
        sql = f"SELECT batch_index, checkpoint_id, MAX(version) FROM {TABLE} WHERE run_id = %s"
        params: list[object] = [run_id]
        if until is not None:
            sql += " AND at <= %s"
            params.append(to_time(until))
        if batches is not None:
            listed = sorted(set(batches))
            sql += (
                f" AND batch_index IN ({', '.join(['%s'] * len(listed))})"
                if listed
                else " AND 1 = 0"
            )
            params.extend(listed)
        sql += " GROUP BY batch_index, checkpoint_id"
        return {
            int(batch): (UUID(str(oid)), int(version))
            for batch, oid, version in tx.query(sql, params)
        }
