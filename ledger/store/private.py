"""Views built privately, in memory, for a ledger opened read-only whose stored views lag.

A read-only ledger cannot bring the store's view tables up to date, so :class:`Projections`
builds them in a private in-memory SQLite database instead (:class:`PrivateViewsRecorder`),
from the read-only log: the views' tables, their tracking row and their transactions are the
private database's; the log (``select_notifications``, the head) is the store's. The timeline
joins the view rows with the log's event rows by position, so every event row the views read
is also copied into the private database's event table (a copy of what was read, nothing
more: it lives as long as the ``Projections``).
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from uuid import uuid4

from ledger.store.base import EVENTS_TABLE, LogHead
from ledger.store.sqlite import SQLiteLedgerRecorder
from ledger.store.url import parse_store_url

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Notification

    from ledger.settings import LedgerSettings
    from ledger.store.base import LedgerRecorder

__all__ = ["PrivateViewsRecorder"]

# The copy's hash is a placeholder: nothing verifies the private copy (the store's rows are
# what `ckl verify` reads), and the schema refuses rows without one.
_COPY = (
    f"INSERT INTO {EVENTS_TABLE} (notification_id, originator_id, originator_version, topic,"
    " state, event_hash) VALUES (?, ?, ?, ?, ?, x'')"
)


class PrivateViewsRecorder(SQLiteLedgerRecorder):
    """A private in-memory database for view tables; the log is read from ``source``."""

    def __init__(self, source: LedgerRecorder, settings: LedgerSettings) -> None:
        """Create the private database (with the ledger's schema) next to ``source``."""
        store = parse_store_url(f"memory://ckl-private-views-{uuid4().hex}")
        super().__init__(store, settings.model_copy(update={"read_only": False}))
        self.create_tables()
        self.source = source
        self._copied = 0  # the highest position copied so far

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """The store's events (as its recorder gives them), copied here for the timeline."""
        notes = self.source.select_notifications(
            start, limit, stop, topics, inclusive_of_start=inclusive_of_start
        )
        fresh = [n for n in notes if n.id > self._copied]
        if fresh:
            with self._transaction(write=True) as conn:
                conn.executemany(
                    _COPY,
                    [
                        (n.id, str(n.originator_id), n.originator_version, n.topic, n.state)
                        for n in fresh
                    ],
                )
            self._copied = fresh[-1].id
        return notes

    def max_notification_id(self) -> int | None:
        """The store's newest position."""
        return self.source.max_notification_id()

    def log_head(self) -> LogHead:
        """The store's readable head."""
        return self.source.log_head()
