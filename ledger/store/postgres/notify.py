"""PostgreSQL wake-ups: the notifier that announces appends, and the listener readers wait on.

The ``NOTIFY`` that other processes' readers listen for is sent after the append commits,
outside its transaction, by a notifier thread (:class:`PostgresNotifier` says why). A wake-up
carries no data: each reader reads from its own position.

A hot standby can neither ``LISTEN`` nor receive the primary's notifications. There the
listener watches WAL replay instead (``pg_last_wal_replay_lsn()``, one cheap query every
``STANDBY_POLL`` seconds on its own connection): it returns as soon as replay moves, and the
watcher then reads the log's head, so a reader on a standby follows within a few milliseconds
of replay. When the standby is promoted, the same listener starts to ``LISTEN`` there.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import psycopg
from psycopg import pq, sql
from psycopg.generators import execute as _pq_execute

from ledger.store.base import EVENTS_TABLE
from ledger.store.postgres._driver import results_check, translate

__all__ = ["CHANNEL", "STANDBY_POLL", "PostgresListener", "PostgresNotifier", "in_hot_standby"]

log = logging.getLogger("ledger.postgres")  # the name it had before the store package

CHANNEL = EVENTS_TABLE
"""The channel appends are announced on, and listeners LISTEN to: the table's name."""


STANDBY_POLL = 0.005
"""Seconds between two looks at a standby's WAL replay position (one round trip each)."""
_REPLAY = b"SELECT pg_is_in_recovery(), pg_last_wal_replay_lsn()::text"


def in_hot_standby(conn: psycopg.Connection[Any]) -> bool:
    """Whether ``conn``'s server is a hot standby, as it reported at connect (no round trip).

    PostgreSQL 14 and later report ``in_hot_standby`` to every session (libpq's
    ``target_session_attrs`` reads it too), and report its change on promotion.
    """
    return conn.pgconn.parameter_status(b"in_hot_standby") == b"on"


class PostgresListener:
    """Waits for appends on a dedicated connection (not from the pool).

    On a primary: ``LISTEN`` on the event channel. On a hot standby: the WAL replay position,
    looked at every ``STANDBY_POLL`` seconds, until a promotion turns it into a ``LISTEN``.
    """

    def __init__(self, url: str, channel: str, connect_timeout: float) -> None:
        self._listen = sql.SQL("LISTEN {}").format(sql.Identifier(channel))
        self._replayed: str | None = None
        try:
            self._conn = psycopg.connect(
                url, autocommit=True, connect_timeout=max(1, int(connect_timeout))
            )
        except psycopg.Error as exc:
            raise translate(exc) from exc
        try:
            self.standby = in_hot_standby(self._conn)
            if self.standby:
                self._replayed = self._look()
            else:
                self._conn.execute(self._listen)
        except psycopg.Error as exc:
            self._conn.close()  # not left open for the garbage collector: the caller retries
            raise translate(exc) from exc

    def _look(self) -> str | None:
        """The standby's replay position; on a promoted server, ``LISTEN`` (standby no more)."""
        row = self._conn.execute(_REPLAY).fetchone()
        if row is None or not row[0]:
            self._conn.execute(self._listen)
            self.standby = False
            log.info("the standby was promoted: listening for appends on it")
            return None
        return str(row[1])

    def wait(self, timeout: float) -> bool:
        """True if an append was announced within ``timeout`` seconds (all pending drained).

        On a standby, returns (False) as soon as replay moved: the caller reads the log head,
        which says whether anything readable arrived; True once, when it turns out promoted
        (notifications sent before this listener's ``LISTEN`` are lost).
        """
        try:
            if self.standby:
                return self._wait_for_replay(timeout)
            got = False
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain what else is queued, without waiting: one catch-up serves them all
                for _ in self._conn.notifies(timeout=0):
                    pass
        except psycopg.Error as exc:
            raise translate(exc) from exc
        return got

    def _wait_for_replay(self, timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        while True:
            replayed = self._look()
            if not self.standby:
                return True
            if replayed != self._replayed:
                self._replayed = replayed
                return False
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            time.sleep(min(STANDBY_POLL, left))

    def close(self) -> None:
        """Close the listening connection."""
        self._conn.close()


_NOTIFY = f"SELECT pg_notify('{CHANNEL}', '')".encode()
_NOTIFY_INTERVAL = 0.005
"""Seconds between two notifies of one recorder: an append after a quiet spell is announced at
once, a stream of appends about 200 times a second (each notify is a transaction)."""
_QUIET = 0.02
"""An append this long after the recorder's previous one is announced by the writing thread
itself, before the append returns: no hand-off to the notifier thread, which measured ~0.6 ms
of cross-process wake-up latency. Faster appends are merged by the thread, off the hot path."""


class PostgresNotifier:
    """Announces appends to other processes' listeners: a ``NOTIFY`` after the commit.

    A thread of its own sends ``SELECT pg_notify('ckl_events', '')`` on a connection of its
    own, in autocommit with ``synchronous_commit = off``: PostgreSQL holds one lock from a
    notifying transaction's pre-commit through its commit, so a notify inside the append would
    make concurrent appends commit (and wait for their WAL flush) one at a time. Here the
    writer never waits, and pokes that arrive while a notify is being sent, or less than
    ``_NOTIFY_INTERVAL`` after the last one, are merged into the next one: an append after a
    quiet spell is announced at once (by the writing thread itself: :meth:`announce`), a
    stream of appends costs about 200 notifies a second.
    A wake-up carries no data and readers read from their own position, so merging loses
    nothing; a notify lost with the connection (or the server) only delays other processes
    until their next poll (``ledger.watch``).
    """

    def __init__(self, url: str, connect_kwargs: dict[str, Any]) -> None:
        self._url = url
        self._connect_kwargs = {**connect_kwargs, "options": "-c synchronous_commit=off"}
        self._wake = threading.Event()
        self._poked = False
        self._parked = False
        self._stop = False
        self._thread: threading.Thread | None = None
        self._guard = threading.Lock()
        # The notify connection and the time of the last notify, shared by the thread and by
        # writers announcing a quiet append themselves; sends are serialised by _sending.
        self._sending = threading.Lock()
        self._conn: psycopg.Connection[Any] | None = None
        self._sent = 0.0
        self._last_append = -_QUIET

    def announce(self) -> None:
        """After an append committed: a notify now if the recorder was quiet, else merged.

        A quiet append (none in the last ``_QUIET`` seconds) is announced by the calling thread
        on the notify connection, so a lone checkpoint reaches other processes' listeners one
        round trip after its commit. Within a stream of appends this is :meth:`poke`: the
        writer does not wait, the thread merges. If the notify connection is busy or fails,
        the thread takes over.
        """
        now = time.monotonic()
        quiet = now - self._last_append >= _QUIET
        self._last_append = now
        if quiet and not self._stop and self._sending.acquire(blocking=False):
            try:
                sent = self._send_locked()
            finally:
                self._sending.release()
            if sent:
                return
        self.poke()

    def _send_locked(self) -> bool:
        """One notify on the shared connection (``_sending`` held); whether it went."""
        self._conn = self._send(self._conn)
        if self._conn is None:
            return False
        self._sent = time.monotonic()
        return True

    def poke(self) -> None:
        """Ask for one notify after now (starts the thread on first use)."""
        if self._thread is None:
            with self._guard:
                if self._thread is None and not self._stop:
                    self._thread = threading.Thread(
                        target=self._run, name="ckl-notify", daemon=True
                    )
                    self._thread.start()
        if self._poked:
            # A notify is already owed and the thread has not taken it yet (it clears the flag
            # after its pause, then sends): that notify leaves after this append's commit, so
            # it covers it. A plain read, no lock, no wake-up: a stream of appends skips the
            # Event's condition lock on all but about one append per interval.
            return
        self._poked = True  # before reading _parked: the thread sets _parked, then reads this
        if self._parked:
            self._wake.set()

    def _run(self) -> None:
        while not self._stop:
            # Parked until a poke when nothing is owed. Whichever of a poke and the thread sets
            # its flag first, the other sees it (_poked before _parked in poke, the reverse
            # here), so a poke is never left unseen.
            self._parked = True
            if not self._poked and not self._stop:
                self._wake.wait()
            self._parked = False
            self._wake.clear()
            # Active: while appends keep coming, sleep out the interval and read the flag, with
            # no Event round trip per notify; park after an interval without a poke.
            while True:
                pause = self._sent + _NOTIFY_INTERVAL - time.monotonic()
                if pause > 0 and not self._stop:
                    time.sleep(pause)
                poked, self._poked = self._poked, False
                if not poked:
                    break
                # Also on the way out: appends made just before close() are announced. After
                # a failure _sent stays put, so the next poke tries again at once.
                with self._sending:
                    self._send_locked()
                if self._stop:
                    break
        if self._poked:  # a poke between the last send and close()
            with self._sending:
                self._send_locked()

    def _send(self, conn: psycopg.Connection[Any] | None) -> psycopg.Connection[Any] | None:
        """One notify; the connection to use next time (``None`` after a failure)."""
        try:
            if conn is None or conn.closed:
                conn = psycopg.connect(self._url, **self._connect_kwargs)
            # libpq directly, as in the append: this thread's CPU is the writer's too.
            conn.pgconn.send_query(_NOTIFY)
            results = conn.wait(_pq_execute(conn.pgconn))
            results_check(conn, results, pq.ExecStatus.TUPLES_OK)
        except psycopg.Error as exc:
            log.debug("notify failed (%s); listeners fall back to polling", exc)
            if conn is not None:
                conn.close()
            return None
        return conn

    def close(self) -> None:
        """Send the notify still owed, stop the thread and close its connection."""
        with self._guard:
            self._stop = True
            thread = self._thread
        self._wake.set()
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=10)
        with self._sending:
            if self._conn is not None:
                self._conn.close()
                self._conn = None
