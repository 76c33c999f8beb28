"""run_stream: a run's events as an Observable — catch up from the store, then live.

Catch-up and live are one loop reading the log by global position, so there is no seam to
fall into: no gap and no duplicate, in the log's order, whoever writes. (On PostgreSQL the
log is read only up to the visible horizon, below which positions are final, so reading
"after my position" never passes an event that commits later; see ``ledger.store.postgres``.)

Slow subscribers: the stream is **pull-based**. Each subscription has its own reader thread,
which reads at most ``batch_size`` events, hands them to the subscriber one by one, and reads
more only when the subscriber has returned. A slow subscriber therefore only falls behind in
the log — its memory stays bounded by one batch, and writers never wait for it.
"""

from __future__ import annotations

import logging
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import reactivex
from pydantic import BaseModel, ConfigDict, SerializeAsAny
from reactivex.disposable import Disposable

from ledger import CheckpointEvent, Ledger, LogFollower, check_count, check_run_id
from ledger.follow import seen

if TYPE_CHECKING:
    from reactivex import Observable, abc

__all__ = ["StreamEvent", "run_stream"]

log = logging.getLogger("streams")


class StreamEvent(BaseModel):
    """One event of the stream, with where it sits in the log."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    position: int
    run_id: str
    batch_index: int
    checkpoint_id: UUID
    topic: str
    at: datetime
    event: SerializeAsAny[CheckpointEvent]


def run_stream(
    ledger: Ledger,
    run_id: str | None = None,
    after: int = 0,
    *,
    batch_size: int = 500,
) -> Observable[StreamEvent]:
    """The events of ``run_id`` (or of every run) after global position ``after``, forever.

    Read from ``ledger.reader`` (a hot standby when the ledger was opened with
    ``reader_store``). After a store outage the stream goes on from the last position the
    store still holds (``Ledger.resume_position``), so a failover that lost the last events
    neither skips the new primary's events nor repeats any.

    Subscribing starts a reader thread; disposing the subscription stops it (without waiting for
    a subscriber stuck in ``on_next``) and releases what it holds. The stream never completes on
    its own; it errors only on a programming error, while store outages are waited out (it
    resumes from its last position).

    Raises:
        InvalidInput: ``run_id`` is not a valid run id or None, or ``after`` or
            ``batch_size`` is not a valid int.
    """
    if run_id is not None:
        check_run_id(run_id)
    check_count(after, "after")
    check_count(batch_size, "batch_size", minimum=1)
    ledger = ledger.reader  # a hot standby when the ledger has a reader_store

    def subscribe(
        observer: abc.ObserverBase[StreamEvent], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        follower = LogFollower(
            ledger,
            lambda follower: _read_batch(follower, ledger, run_id, batch_size, observer),
            name=f"ckl-stream-{run_id or 'all'}",
            what="stream",
            log=log,
            position=after,
            on_error=observer.on_error,
            resume=ledger.resume_position,
        ).start()
        # Disposing never waits for a subscriber stuck in on_next: the reader thread ends as
        # soon as it sees the stop (at once if idle, after the current on_next otherwise).
        return Disposable(lambda: follower.stop(wait=False))

    return reactivex.create(subscribe)


def _read_batch(
    follower: LogFollower,
    ledger: Ledger,
    run_id: str | None,
    batch_size: int,
    observer: abc.ObserverBase[StreamEvent],
) -> bool:
    """Hand the subscriber the run's events of the next batch; True if the batch was full.

    Store errors propagate before anything of the batch is handed out, so the follower's
    retry reads the same batch again and nothing is delivered twice.
    """
    rows = ledger.read_log(after=follower.position, limit=batch_size)
    tokens = [ledger.token_for(event.originator_id) for _, event in rows]
    for (position, event), token in zip(rows, tokens, strict=True):
        if follower.stopping:
            return False
        if token is None or (run_id is not None and token.run_id != run_id):
            continue
        item = StreamEvent(
            position=position,
            run_id=token.run_id,
            batch_index=token.batch_index,
            checkpoint_id=event.originator_id,
            topic=event.topic,
            at=event.timestamp,
            event=event,
        )
        try:
            observer.on_next(item)
        except Exception as exc:  # noqa: BLE001  (the subscriber's own error ends its stream)
            # Not the follower's to retry: a retry would hand out this batch a second time.
            follower.stop(wait=False)
            observer.on_error(exc)
            return False
    if rows:
        follower.remember(seen(p, e) for p, e in rows)
        follower.advance(rows[-1][0])
    return len(rows) == batch_size
