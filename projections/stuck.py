"""The stuck checkpoints: open ones whose lease expired, or with no event for a while.

A read over the cursor view's table (its owner, lease expiry and ``updated_at``, the time of
the checkpoint's last event of any kind, claims and renewals included); it keeps no table of
its own. Stuck is judged against a moment, by default the ledger's clock, so that a lease is
expired here exactly when a ``claim_checkpoint`` at that moment would take it over.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

from projections._common import parse_time, to_time
from projections.cursor import TABLE as CURSOR_TABLE
from projections.models import StuckCheckpoint

if TYPE_CHECKING:
    from datetime import datetime

    from ledger import SQLTransaction

__all__ = ["STUCK_IDLE_SECONDS", "stuck"]

STUCK_IDLE_SECONDS = 300.0
"""Seconds without any event after which an open checkpoint counts as stuck ("idle")."""


def stuck(
    tx: SQLTransaction, run_id: str | None, *, idle: float, now: datetime
) -> list[StuckCheckpoint]:
    """The open checkpoints (of ``run_id``, or every run) stuck at ``now``, longest idle first.

    Reason ``"lease expired"`` when an owner's lease ran out at or before ``now`` (whatever
    the idle time), else ``"idle"`` when the last event is ``idle`` seconds old or older.
    """
    at, cutoff = to_time(now), to_time(now - timedelta(seconds=idle))
    sql = (
        "SELECT run_id, batch_index, status, attempt, owner, lease_expires_at, updated_at"
        f" FROM {CURSOR_TABLE} WHERE status = 'open'"
        " AND ((owner IS NOT NULL AND lease_expires_at <= %s) OR updated_at <= %s)"
    )
    params: list[object] = [at, cutoff]
    if run_id is not None:
        sql += " AND run_id = %s"
        params.append(run_id)
    sql += " ORDER BY updated_at, run_id, batch_index"
    found = []
    for run, batch, status, attempt, owner, expires, updated in tx.query(sql, params):
        last = parse_time(updated)
        expired = owner is not None and expires is not None and expires <= at
        found.append(
            StuckCheckpoint(
                run_id=run,
                batch_index=int(batch),
                status=status,
                attempt=int(attempt),
                owner=owner,
                lease_expires_at=None if expires is None else parse_time(expires),
                last_activity=last,
                idle_seconds=max(0.0, (now - last).total_seconds()),
                reason="lease expired" if expired else "idle",
            )
        )
    return found
