"""Positions without a lock: ``notification_id = xid * 65536 + n``, read below the horizon.

Appends take no lock, so concurrent writers commit side by side (and share WAL flushes). What
keeps a reader from skipping an event is the *position* itself: an event's ``notification_id``
is ``xid * 65536 + n``, where ``xid`` is its transaction's 64-bit id (``pg_current_xact_id()``)
and ``n`` its ordinal in that transaction (1…65535). Readers only read positions below the
**visible horizon**, ``pg_snapshot_xmin(pg_current_snapshot()) * 65536``: every transaction
with an id below the snapshot's ``xmin`` has ended, and every transaction that may still commit
has an id at or above it, hence positions at or above the horizon. So the log below the horizon
never changes again, and reading "after my position" never passes an event that commits later.
The argument in full, and its one cost (an open transaction holds the horizon back), is in
``docs/architecture.md``.
"""

from __future__ import annotations

__all__ = ["MAX_EVENTS_PER_TRANSACTION", "POSITIONS_PER_TRANSACTION", "VISIBLE_HORIZON", "XID"]

POSITIONS_PER_TRANSACTION = 65536
"""Each transaction owns the positions ``[xid * 65536, (xid + 1) * 65536)``."""
MAX_EVENTS_PER_TRANSACTION = POSITIONS_PER_TRANSACTION - 1
"""Ordinals run from 1, so a transaction appends at most 65535 events."""

XID = "pg_current_xact_id()::text::bigint"
"""SQL: the current transaction's id (assigning one if it has none yet), as a bigint."""
VISIBLE_HORIZON = (
    f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {POSITIONS_PER_TRANSACTION})"
)
"""SQL: the first position a reader may not read yet. Every position below it is final.

Evaluate it in the same statement as the read: it is taken from that statement's snapshot, so
every committed row below it is visible to the read.
"""
