"""eventsourcing's ``Subscription`` over either backend: catch up, then follow the log.

One implementation for both, from what every recorder offers: ``select_notifications`` (on
PostgreSQL only below the visible horizon, so a reader never passes an event that commits
later), ``listener()`` (LISTEN/NOTIFY on PostgreSQL, none on SQLite), ``log_head()`` (whether
committed events wait above the horizon for an older transaction) and the recorder's
in-process wake-up after its own appends.
"""

from __future__ import annotations

import threading
from collections import deque
from typing import TYPE_CHECKING

from eventsourcing.persistence import ApplicationRecorder, PersistenceError, Subscription

if TYPE_CHECKING:
    from collections.abc import Sequence

    from eventsourcing.persistence import Notification

    from ledger.store.base import LedgerRecorder, LogListener

__all__ = ["FIRST_RETRY", "LogSubscription"]

FIRST_RETRY = 0.001
"""Seconds before looking again at events held back above the horizon (then doubling)."""
_BATCH = 500
"""Notifications read per query."""
_STOP_CHECK = 0.1
"""Longest one LISTEN wait, so that a ``stop()`` from another thread is seen soon."""


class LogSubscription(Subscription[ApplicationRecorder]):
    """The notifications after ``gt`` (of ``topics``, if any), in order; blocks for new ones.

    Iterating reads the log in the iterating thread, ``_BATCH`` at a time, after the last
    position it returned. Once caught up it waits until the log may have grown: a NOTIFY where
    the backend has a listener (opened with the subscription, before its first read, so an
    append that commits later always wakes it), an append through the same recorder, or
    ``poll_interval`` at the latest; while committed events are held above the horizon by an
    older transaction, it looks again after 1 ms, doubling. A lost listening connection is
    opened again at the next wait (catching up from the position covers what it missed).
    ``stop()``, also called on leaving the ``with`` block, ends the iteration and releases the
    listening connection.
    """

    def __init__(
        self,
        recorder: LedgerRecorder,
        gt: int | None,
        topics: Sequence[str],
        *,
        poll_interval: float,
    ) -> None:
        """Open the wake-up sources; the first read happens on the first ``next()``."""
        super().__init__(recorder, gt=gt, topics=topics)
        self._log = recorder
        self._poll_interval = poll_interval
        self._buffer: deque[Notification] = deque()
        self._woken = threading.Event()  # set by appends through the recorder and by stop()
        self._iterating = threading.Lock()  # held while __next__ may use the listener
        recorder.wake_on_append(self._woken)
        self._listener: LogListener | None = None
        try:
            self._listener = recorder.listener()
        except PersistenceError:
            self._listener = None  # no wake-ups until it can be opened again; polling meanwhile

    def __next__(self) -> Notification:
        """The next notification, waiting for it if the log has none yet.

        Raises:
            StopIteration: the subscription was stopped.
            eventsourcing.persistence.PersistenceError: reading the log failed.
        """
        with self._iterating:
            delay = FIRST_RETRY
            while not self._has_been_stopped:
                if self._buffer:
                    notification = self._buffer.popleft()
                    self._last_notification_id = notification.id
                    return notification
                self._woken.clear()  # before the read: a wake-up after it is not lost
                self._buffer.extend(
                    self._log.select_notifications(
                        self._last_notification_id,
                        _BATCH,
                        topics=self._topics,
                        inclusive_of_start=False,
                    )
                )
                if not self._buffer:
                    delay = self._wait(delay)
            self._release()
            raise StopIteration

    def stop(self) -> None:
        """End the iteration (now, or when the iterating thread next looks) and release it."""
        super().stop()
        self._woken.set()
        if self._iterating.acquire(blocking=False):  # nobody iterating: release it here
            try:
                self._release()
            finally:
                self._iterating.release()

    def _wait(self, delay: float) -> float:
        """Sleep until the log may have grown; the next back-off for held-back events."""
        if self._log.log_head().held_back:
            # An older transaction holds committed events above the horizon, and its end may
            # send no NOTIFY: look again soon, then less often.
            self._woken.wait(delay)
            return min(delay * 2, self._poll_interval)
        if self._listener is None:
            try:
                self._listener = self._log.listener()
            except PersistenceError:
                self._listener = None
        if self._listener is None:  # SQLite, or PostgreSQL while unreachable: poll
            self._woken.wait(self._poll_interval)
            return FIRST_RETRY
        waited = 0.0
        try:
            while waited < self._poll_interval and not self._woken.is_set():
                step = min(_STOP_CHECK, self._poll_interval - waited)
                if self._listener.wait(step):
                    break
                waited += step
        except PersistenceError:
            self._listener.close()
            self._listener = None  # reopened at the next wait; the read catches up anyway
        return FIRST_RETRY

    def _release(self) -> None:
        """Close the listening connection and stop taking wake-ups (idempotent)."""
        self._log.forget_waker(self._woken)
        listener, self._listener = self._listener, None
        if listener is not None:
            listener.close()
