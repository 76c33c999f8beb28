"""One connection pool for both backends: connections lent to one thread at a time.

Threads come and go (every stream and awaiter has one) while connections stay few. Taking and
returning a connection is a list pop or append under one lock, with no context manager on the
way: it is on the hot path of every append (``psycopg_pool``'s bookkeeping measured ~35 µs per
checkout, a tenth of a durable PostgreSQL append).
"""

from __future__ import annotations

import sys
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Generic, Protocol, TypeVar

from eventsourcing.persistence import InterfaceError, OperationalError

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

__all__ = ["Closable", "Pool"]


class Closable(Protocol):
    """A database connection, as far as the pool is concerned."""

    def close(self) -> None:
        """Release the connection."""
        ...


C = TypeVar("C", bound=Closable)


class Pool(Generic[C]):
    """Connections made by ``connect``, kept idle for reuse while ``healthy`` says they may be.

    At most ``keep`` connections are kept idle; a surplus one is closed when it comes back. With
    a ``limit``, at most that many are lent at once, and a taker waits for one to come back, up
    to ``wait_timeout`` seconds. ``connect`` raises eventsourcing's persistence errors.
    """

    def __init__(
        self,
        connect: Callable[[], C],
        *,
        name: str,
        keep: int,
        limit: int | None = None,
        wait_timeout: float = 0.0,
        healthy: Callable[[C], bool] | None = None,
    ) -> None:
        self._connect = connect
        self._name = name
        self._keep = keep
        self._healthy = healthy
        self._wait_timeout = wait_timeout
        self._idle: list[C] = []
        # Connections that may be lent now: a counting semaphore kept by hand, because the
        # fast path is one plain lock, where threading.BoundedSemaphore takes a Condition twice.
        self._lendable = sys.maxsize if limit is None else limit
        self._waiting = 0
        self._guard = threading.Lock()
        self._returned = threading.Condition(self._guard)
        self._closed = False

    def take(self) -> C:
        """A pooled connection (or a new one); hand it back with :meth:`give`.

        Raises:
            eventsourcing.persistence.InterfaceError: the pool is closed.
            eventsourcing.persistence.OperationalError: no connection came back in time, or
                connecting failed.
        """
        if self._closed:
            msg = f"the ledger on {self._name} is closed"
            raise InterfaceError(msg)
        with self._guard:
            if not self._lendable:
                self._wait_for_a_connection()
            self._lendable -= 1
            conn = self._idle.pop() if self._idle else None
        if conn is not None:
            return conn
        try:
            return self._connect()
        except BaseException:
            self._release()
            raise

    def give(self, conn: C) -> None:
        """Return a connection from :meth:`take`: kept if healthy and wanted, else closed."""
        if self._healthy is None or self._healthy(conn):
            with self._guard:
                if not self._closed and len(self._idle) < self._keep:
                    self._idle.append(conn)
                    self._lendable += 1
                    if self._waiting:
                        self._returned.notify()
                    return
        try:
            conn.close()  # surplus, broken, or the pool closed while it was lent out
        finally:
            self._release()

    @contextmanager
    def connection(self) -> Iterator[C]:
        """:meth:`take` and :meth:`give` around a block (off the hot path)."""
        conn = self.take()
        try:
            yield conn
        finally:
            self.give(conn)

    def close(self) -> None:
        """Close the idle connections; a lent one closes when it comes back. Idempotent.

        (Closing a connection another thread is using can crash a driver, sqlite3 among them.)
        """
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()

    def _wait_for_a_connection(self) -> None:
        """Wait (holding ``_guard``) until a connection may be lent, at most ``wait_timeout``."""
        deadline = time.monotonic() + self._wait_timeout
        self._waiting += 1
        try:
            while not self._lendable:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = (
                        f"no free connection to {self._name} within "
                        f"{self._wait_timeout:g}s (raise CKL_POOL_SIZE)"
                    )
                    raise OperationalError(msg)
                self._returned.wait(remaining)
        finally:
            self._waiting -= 1

    def _release(self) -> None:
        with self._guard:
            self._lendable += 1
            if self._waiting:
                self._returned.notify()
