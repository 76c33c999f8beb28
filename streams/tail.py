"""run_stream: a run's events as an Observable — catch up from the store, then live.

Catch-up and live are one loop reading the log by global position, so there is no seam to
fall into: no gap and no duplicate, in the log's order, whoever writes. (On PostgreSQL the
log is read only up to the visible horizon, below which positions are final, so reading
"after my position" never passes an event that commits later; see ``ledger.postgres``.)

Slow subscribers: the stream is **pull-based**. Each subscription has its own reader thread,
which reads at most ``batch_size`` events, hands them to the subscriber one by one, and reads
more only when the subscriber has returned. A slow subscriber therefore only falls behind in
the log — its memory stays bounded by one batch, and writers never wait for it.
"""

from __future__ import annotations

import logging
import threading
from datetime import datetime
from typing import TYPE_CHECKING
from uuid import UUID

import reactivex
from pydantic import BaseModel, ConfigDict, SerializeAsAny
from reactivex.disposable import Disposable

from ledger import CheckpointEvent, InvalidInput, Ledger, LedgerError, StoreUnavailable

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

    Subscribing starts a reader thread; disposing the subscription stops it (without waiting for
    a subscriber stuck in ``on_next``) and releases what it holds. The stream never completes on
    its own; it errors only on a programming error, while store outages are waited out (it
    resumes from its last position).

    Raises:
        InvalidInput: ``run_id`` is not a str or None, or ``after`` or ``batch_size`` is not a
            valid int.
    """
    if run_id is not None and not isinstance(run_id, str):
        raise InvalidInput("run_id", f"expected a str or None, got {type(run_id).__name__}")
    if isinstance(after, bool) or not isinstance(after, int) or after < 0:
        raise InvalidInput("after", f"must be a position ≥ 0, got {after!r}")
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise InvalidInput("batch_size", f"must be an int ≥ 1, got {batch_size!r}")

    def subscribe(
        observer: abc.ObserverBase[StreamEvent], _scheduler: abc.SchedulerBase | None = None
    ) -> abc.DisposableBase:
        stop, wake = threading.Event(), threading.Event()
        unwatch = ledger.watch(wake.set)  # before the first read, so no append slips between
        thread = threading.Thread(
            target=_follow,
            args=(ledger, run_id, after, batch_size, observer, stop, wake),
            name=f"ckl-stream-{run_id or 'all'}",
            daemon=True,
        )
        thread.start()

        def dispose() -> None:
            # The reader thread ends as soon as it sees `stop` (at once if idle, after the
            # subscriber's current on_next otherwise); disposing never waits for a subscriber.
            stop.set()
            wake.set()
            unwatch()

        return Disposable(dispose)

    return reactivex.create(subscribe)


def _follow(  # noqa: PLR0917  (the closure's captured state, passed explicitly)
    ledger: Ledger,
    run_id: str | None,
    position: int,
    batch_size: int,
    observer: abc.ObserverBase[StreamEvent],
    stop: threading.Event,
    wake: threading.Event,
) -> None:
    delay = 0.1
    try:
        while not stop.is_set():
            wake.clear()  # before reading: an append after the read sets it again
            try:
                rows = ledger.read_log(after=position, limit=batch_size)
                tokens = [ledger.token_for(event.originator_id) for _, event in rows]
                delay = 0.1
            except StoreUnavailable as exc:
                log.warning("stream paused, store unavailable (%s); retrying in %.1fs", exc, delay)
                stop.wait(delay)
                delay = min(delay * 2, 5.0)
                continue
            for (row_position, event), token in zip(rows, tokens, strict=True):
                if stop.is_set():
                    return
                position = row_position
                if token is None or (run_id is not None and token.run_id != run_id):
                    continue
                observer.on_next(
                    StreamEvent(
                        position=row_position,
                        run_id=token.run_id,
                        batch_index=token.batch_index,
                        checkpoint_id=event.originator_id,
                        topic=event.topic,
                        at=event.timestamp,
                        event=event,
                    )
                )
            if len(rows) < batch_size:
                wake.wait(ledger.settings.poll_interval)
    except LedgerError as exc:
        observer.on_error(exc)
    except Exception as exc:  # noqa: BLE001  (a subscriber's on_next raised: end with its error)
        observer.on_error(exc)
