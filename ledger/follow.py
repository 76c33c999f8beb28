"""LogFollower: the one loop that follows the log by position; Backoff: its pauses.

Everything that reads the log as it grows does the same thing: read from its own position,
handle what it read, sleep until the ledger's :class:`~ledger.watch.LogWatcher` says the log
may have advanced (or ``poll_interval`` passes), and wait out store outages with a growing
pause. The projections' follower, ``run_stream`` and the metrics exporter each run one
:class:`LogFollower`; what differs between them is one *step*:

* the step reads one batch from :attr:`LogFollower.position`, handles it, reports the new
  position with :meth:`LogFollower.advance` and returns True when there may be more to read at
  once (a full batch), False to sleep until woken;
* it checks :attr:`LogFollower.stopping` between the events it hands out, so stopping is
  prompt even in the middle of a batch;
* the follower never reads ahead of its step: the next batch is read only when the step has
  returned (``run_stream``'s slow-subscriber rule: a slow consumer lags, nothing buffers).

The watcher itself keeps its own loop (it listens and polls the head rather than reading
events) and shares :class:`Backoff` with it, for store outages and for the PostgreSQL visible
horizon (events held back above it are looked for after 1 ms, doubling up to
``poll_interval``).

Read-your-writes is signal-driven: :meth:`LogFollower.wait_for` sleeps on a condition that
:meth:`LogFollower.advance` notifies, never on a timer.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from datetime import datetime
from typing import TYPE_CHECKING, Protocol, Self
from uuid import UUID

from ledger.checks import check_count, check_seconds
from ledger.errors import AwaitTimeout, StoreUnavailable

if TYPE_CHECKING:
    import logging
    from collections.abc import Callable, Iterable, Sequence

    from ledger.events import CheckpointEvent
    from ledger.settings import LedgerSettings

    Resume = Callable[[int, Sequence["Seen"]], int]
    """Where to go on from a position, given the last events handled (``resume_position``)."""

__all__ = [
    "HELD_BACK_FIRST_WAIT",
    "STORE_RETRY_FIRST",
    "STORE_RETRY_MAX",
    "Backoff",
    "LogFollower",
    "LogSource",
    "Seen",
    "seen",
]

STORE_RETRY_FIRST = 0.1
"""Seconds before the first retry after a store error."""

STORE_RETRY_MAX = 5.0
"""Longest pause between retries while the store is unavailable: once it is back, readers
follow within seconds (a 30 s cap left views up to a minute behind after a restart), and a
retry costs one failed connection attempt."""

HELD_BACK_FIRST_WAIT = 0.001
"""Seconds before looking again while PostgreSQL holds committed events above the horizon."""


class Backoff:
    """Pauses that double from ``first`` up to ``cap``, until :meth:`reset` after a success."""

    __slots__ = ("_next", "cap", "first")

    def __init__(self, first: float = STORE_RETRY_FIRST, cap: float = STORE_RETRY_MAX) -> None:
        """Start at ``first`` seconds (never more than ``cap``)."""
        self.first, self.cap = first, cap
        self._next = min(first, cap)

    def next(self) -> float:
        """The pause to take now; the one after it is twice as long (at most ``cap``)."""
        pause = self._next
        self._next = min(pause * 2, self.cap)
        return pause

    def reset(self) -> None:
        """Start again from ``first``: the thing waited for happened."""
        self._next = min(self.first, self.cap)


class LogSource(Protocol):
    """What a follower needs of a ``Ledger``: its settings, its watch signal, its failures."""

    settings: LedgerSettings

    def watch(self, callback: Callable[[], None]) -> Callable[[], None]:
        """Call ``callback`` whenever the log may have advanced; returns its remover."""
        ...

    @property
    def store_failures(self) -> int:
        """Transient store failures met so far: a change may mean another server answers."""
        ...


Seen = tuple[int, UUID, int, str | None, datetime]
"""An event a reader handled: position, checkpoint id, version, command id and timestamp.

All five tell the event a reader saw from a new one a promoted server wrote at the same
position (a lost transaction's id handed out again), even as the same version of the same
checkpoint, or for the same command repeated (``Ledger.resume_position``).
"""


def seen(position: int, event: CheckpointEvent) -> Seen:
    """What a follower remembers of an event it handled (``LogFollower.remember``)."""
    return (
        position,
        event.originator_id,
        event.originator_version,
        event.command_id,
        event.timestamp,
    )


RESUME_WINDOW = 4096
"""Events a follower remembers (``remember``) to resume exactly after a failover: more than a
failover to a lagging standby loses at the rates measured (``docs/scaling.md``)."""


def _nothing() -> None:
    """The remover of a watch never taken."""


class LogFollower:
    """Follows the log by position in one background thread; see the module docstring.

    Store errors of the types in ``retry_on`` are logged and retried after a :class:`Backoff`
    pause (0.1 s doubling to 5 s), from the same position. Any other exception ends the
    thread: it goes to ``on_error`` if given, else it is raised (and logged by Python).
    :meth:`start` and :meth:`stop` may alternate; the position is kept across them.
    """

    def __init__(
        self,
        source: LogSource,
        step: Callable[[LogFollower], bool],
        *,
        name: str,
        what: str,
        log: logging.Logger,
        position: int = 0,
        retry_on: tuple[type[Exception], ...] = (StoreUnavailable,),
        on_error: Callable[[Exception], None] | None = None,
        resume: Resume | None = None,
    ) -> None:
        """Prepare a follower at ``position``; nothing runs before :meth:`start`.

        Args:
            source: the ledger whose log is followed (its watch signal and poll interval).
            step: reads and handles one batch from ``follower.position``; True to read again
                at once, False to sleep until woken.
            name: the thread's name.
            what: how log messages and timeouts name this reader (``"views"``…).
            log: where outages are logged.
            position: the global position already handled (0: none).
            retry_on: the errors that mean "the store is unavailable": waited out.
            on_error: receives the error that ended the thread.
            resume: after an outage, or when the source met a store failure since the last
                step (another server may answer now), where to go on from the position and
                the events last handled (``remember``); e.g. ``Ledger.resume_position``: a
                failover may have lost the events last read. Called before the next step.
        """
        self.source, self.name, self.what = source, name, what
        self._step, self._log = step, log
        self._retry_on, self._on_error = retry_on, on_error
        self._resume = resume
        self._recent: deque[Seen] = deque(maxlen=RESUME_WINDOW)
        self._position = position
        self._moved = threading.Condition()
        self._wake = threading.Event()
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._unwatch: Callable[[], None] = _nothing

    @property
    def position(self) -> int:
        """Global position of the last event handled (0: none)."""
        return self._position

    @property
    def running(self) -> bool:
        """True while the background thread follows the log."""
        return self._thread is not None

    @property
    def stopping(self) -> bool:
        """True, in a step, once this thread was told to stop: hand out no more events."""
        # A thread replaced by stop() and start() sees itself replaced, not the new thread's
        # fresh stop event.
        return self._thread is not threading.current_thread() or self._stop.is_set()

    def advance(self, position: int) -> None:
        """Record that everything up to ``position`` is handled; wakes :meth:`wait_for`."""
        with self._moved:
            self._position = position
            self._moved.notify_all()

    def wake(self) -> None:
        """Read again now (as when the log advanced)."""
        self._wake.set()

    def start(self) -> Self:
        """Start following in a background thread (a no-op while it runs)."""
        with self._lock:
            if self._thread is not None:
                return self
            # A fresh stop event per thread: a thread told to stop stays told, even if the
            # next one starts before the old one has noticed.
            self._stop = threading.Event()
            self._unwatch = self.source.watch(self._wake.set)  # before the first read
            self._thread = threading.Thread(
                target=self._run, args=(self._stop,), name=self.name, daemon=True
            )
            self._thread.start()
        return self

    def stop(self, *, wait: bool = True) -> None:
        """Stop following; with ``wait``, join the thread (unless called from it).

        ``wait=False`` never blocks: the thread ends as soon as it sees the stop (at once if
        idle, after the step's current event otherwise), so a caller is never held up by a
        slow consumer.
        """
        with self._lock:
            thread, self._thread = self._thread, None
            unwatch, self._unwatch = self._unwatch, _nothing
            self._stop.set()
            self._wake.set()
        unwatch()
        if wait and thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)

    def _resumed(self, position: int) -> None:
        """Go on from ``position`` (``resume``'s answer), saying so if it moved back."""
        if position != self._position:
            self._log.warning(
                "%s: the event at position %d is no longer in the store (lost in a failover, "
                "or purged); going on after position %d, the newest one it still holds",
                self.what,
                self._position,
                position,
            )
            self.advance(position)
            while self._recent and self._recent[-1][0] > position:
                self._recent.pop()  # gone from the store

    def catch_up(self) -> int:
        """Run steps in the caller's thread until there is nothing more; returns the position.

        Errors propagate to the caller (nothing is retried here).
        """
        while self._step(self):
            pass
        return self._position

    def wait_for(self, position: int, timeout: float) -> int:
        """Block until the follower has handled global ``position``; returns its position.

        With the background thread running this sleeps on a signal that :meth:`advance`
        gives. Without it, the caller's thread runs the steps itself, and looks again after
        1 ms, doubling up to ``poll_interval``, while ``position`` is not readable yet: on
        PostgreSQL a committed event may wait above the visible horizon for an older
        transaction to end, which nothing signals (``ledger.store.postgres``).

        Raises:
            InvalidInput: ``position`` is not an int ≥ 0 or ``timeout`` not finite seconds ≥ 0.
            AwaitTimeout: it did not get there within ``timeout`` seconds.
        """
        check_count(position, "position")
        check_seconds(timeout, "timeout")
        deadline = time.monotonic() + timeout
        pause = Backoff(HELD_BACK_FIRST_WAIT, self.source.settings.poll_interval)
        while not self.running and self.catch_up() < position:
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                raise AwaitTimeout(f"{self.what} at position {position}", timeout)
            time.sleep(min(pause.next(), remaining))
        with self._moved:
            while self._position < position:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AwaitTimeout(f"{self.what} at position {position}", timeout)
                self._wake.set()
                self._moved.wait(remaining)
            return self._position

    def remember(self, handled: Iterable[Seen]) -> None:
        """Note the events handled (``seen(position, event)``), for ``resume``."""
        self._recent.extend(handled)

    def forget(self) -> None:
        """Forget the events noted: the position moved past events not handled one by one."""
        self._recent.clear()

    def _run(self, stop: threading.Event) -> None:
        retry = Backoff()
        outage = False
        failures = self.source.store_failures
        try:
            while not stop.is_set():
                self._wake.clear()  # before reading: an append after the read sets it again
                try:
                    # Read before the step: a failure during it is seen at the next one.
                    now = self.source.store_failures
                    if self._resume is not None and (outage or now != failures):
                        self._resumed(self._resume(self._position, list(self._recent)))
                    failures = now
                    more = self._step(self)
                except self._retry_on as exc:
                    pause = retry.next()
                    self._log.warning("%s paused (%s); retrying in %.1fs", self.what, exc, pause)
                    outage = True
                    stop.wait(pause)
                    continue
                outage = False
                retry.reset()
                if not more:
                    self._wake.wait(self.source.settings.poll_interval)
        except Exception as exc:
            if self._on_error is None:
                raise
            self._on_error(exc)
