"""LogWatcher: one wake-up source per Ledger for everything that follows the log.

Readers (projections, live streams, completion awaiters) register a callback and are told
"the log may have advanced"; they then read from their own position, so a spurious wake-up
costs one query and a missed one is impossible to act on wrongly. Sources:

* appends made through this ``Ledger``: at once, in the writing thread;
* other processes on PostgreSQL: ``LISTEN/NOTIFY`` on a dedicated connection, reconnecting
  after the server restarts with the followers' back-off (``ledger.follow.Backoff``; one
  warning per outage, and one when it ends), and waking everyone, since notifications sent
  while disconnected are lost; on a hot standby, which cannot ``LISTEN``, the listener returns
  whenever WAL replay moves (``ledger.store.postgres.notify``) and the head is read then;
* other processes on either backend: a poll of the log's head every ``poll_interval`` seconds
  (on PostgreSQL only a safety net);
* on PostgreSQL, the visible horizon moving: committed events may wait above it for an older
  transaction to end (``ledger.store.postgres``), and that end sends no notification when the older
  transaction appended nothing. While the head says events are held back, the watcher looks
  again after 1 ms, doubling up to ``poll_interval``, and wakes everyone when the head moves.

One thread per watched Ledger, started with the first subscriber and told to stop with the last
(it ends within one poll interval; ``close`` waits for it).
Callbacks must be quick and must not block (set an event, schedule work); one that raises is
logged and skipped.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import TYPE_CHECKING

from eventsourcing.persistence import PersistenceError

from ledger.follow import HELD_BACK_FIRST_WAIT, Backoff

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger.store import LedgerRecorder, LogListener

__all__ = ["LogWatcher"]

log = logging.getLogger("ledger.watch")


class LogWatcher:
    """Tells subscribers when the log may have advanced."""

    def __init__(self, recorder: LedgerRecorder, poll_interval: float) -> None:
        self._recorder = recorder
        self.poll_interval = poll_interval
        self._callbacks: dict[int, Callable[[], None]] = {}
        self._next_id = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._head: int | None = None

    def subscribe(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the log may have advanced; returns its remover."""
        with self._lock:
            key = self._next_id
            self._next_id += 1
            self._callbacks[key] = callback
            if self._thread is None:
                # A fresh stop event per thread: a thread told to stop stays told, even if a
                # new subscriber starts the next thread before the old one has noticed.
                self._stop = threading.Event()
                self._thread = threading.Thread(
                    target=self._run, args=(self._stop,), name="ckl-watch", daemon=True
                )
                self._thread.start()

        def remove() -> None:
            # Never waits for the thread: it ends by itself within one poll interval, and a
            # remover may be a callback's own thread or a subscriber in a hurry.
            with self._lock:
                self._callbacks.pop(key, None)
                if not self._callbacks and self._thread is not None:
                    self._thread = None
                    self._stop.set()

        return remove

    def notify(self) -> None:
        """Wake every subscriber (called on appends, notifications and head changes)."""
        with self._lock:
            callbacks = list(self._callbacks.values())
        for callback in callbacks:
            try:
                callback()
            except Exception:
                log.exception("log watcher callback %r failed; it was skipped", callback)

    def close(self) -> None:
        """Stop the thread and forget every subscriber."""
        with self._lock:
            self._callbacks.clear()
            thread, self._thread = self._thread, None
            self._stop.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _next_wait(self, held: Backoff, *, held_back: bool, fresh: bool) -> float:
        """How long to wait for the next look: short while events wait above the horizon.

        ``fresh``: something happened (a notification, or the head moved), so the held-back
        pauses start again from 1 ms; otherwise they keep doubling, up to ``poll_interval``.
        """
        if not held_back:
            held.reset()
            return self.poll_interval
        if fresh:
            held.reset()
        return held.next()

    def _listen(self) -> LogListener | None:
        """A new listener, and everyone woken: what was sent while nobody listened is lost."""
        listener = self._recorder.listener()
        if listener is not None:
            self.notify()
        return listener

    def _run(self, stop: threading.Event) -> None:
        listener: LogListener | None = None
        retry = Backoff()
        held = Backoff(HELD_BACK_FIRST_WAIT, self.poll_interval)
        wait = self.poll_interval
        lost_at: float | None = None  # when the store was lost (one warning per outage)
        while not stop.is_set():
            try:
                listener = listener or self._listen()
                woke = listener.wait(wait) if listener is not None else stop.wait(wait)
                if stop.is_set():
                    break
                head, held_back = self._recorder.log_head()
                if lost_at is not None:
                    _back(lost_at)
                    lost_at = None
                retry.reset()
                moved = head != self._head
                if woke or moved:
                    self._head = head
                    self.notify()
                wait = self._next_wait(held, held_back=held_back, fresh=woke or moved)
            except PersistenceError as exc:
                pause = retry.next()
                lost_at = _lost(lost_at, exc, retry.cap)
                if listener is not None:
                    listener.close()
                    listener = None
                stop.wait(pause)
        if listener is not None:
            listener.close()


def _lost(lost_at: float | None, exc: Exception, cap: float) -> float:
    """When the outage began: a warning at its start, debug lines while it lasts."""
    if lost_at is None:
        log.warning(
            "log watcher lost the store (%s); retrying every %.1fs or less until it is back "
            "(readers fall behind meanwhile)",
            exc,
            cap,
        )
        return time.monotonic()
    log.debug("log watcher: the store is still unavailable (%s)", exc)
    return lost_at


def _back(lost_at: float) -> None:
    """The store answered after an outage that began at ``lost_at``: say so, once."""
    log.warning("log watcher reached the store again after %.1fs", time.monotonic() - lost_at)
