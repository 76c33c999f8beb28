"""The baselines of the flow benchmarks: the driver alone, doing the least the figure needs."""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import psycopg
from eventsourcing.persistence import Tracking
from eventsourcing.popo import POPOTrackingRecorder

if TYPE_CHECKING:
    from bench._flow_harness import Probe

__all__ = [
    "RawConnection",
    "RawInsert",
    "event_hop",
    "eventsourcing_wait",
    "sqlite_path",
]

_STATE = b'{"cursor": 500000, "items_processed": 500000}' + b" " * 200


def sqlite_path(store: str) -> str:
    """The file of a ``sqlite:///path`` URL."""
    return store.removeprefix("sqlite:///")


class RawConnection:
    """One plain driver connection (sqlite3 or psycopg) to a store, for raw reads."""

    def __init__(self, store: str) -> None:
        self.sqlite = store.startswith("sqlite:///")
        self.conn: Any
        if self.sqlite:
            self.conn = sqlite3.connect(sqlite_path(store), isolation_level=None)
        else:
            self.conn = psycopg.connect(store, autocommit=True)

    def fetch_all(self, sql: str, params: tuple[object, ...] = ()) -> list[tuple[Any, ...]]:
        """Every row of one query, in a read transaction of its own."""
        if self.sqlite:
            self.conn.execute("BEGIN")
            try:
                rows: list[tuple[Any, ...]] = self.conn.execute(
                    sql.replace("%s", "?"), params
                ).fetchall()
            finally:
                self.conn.execute("COMMIT")
            return rows
        return list(self.conn.execute(sql, params).fetchall())

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class RawInsert:
    """A single-row ``INSERT`` + ``COMMIT``, durable, into a table shaped like ``ckl_events``.

    SQLite: a file of its own (WAL, ``synchronous=FULL``), so that neither connection has its
    page cache invalidated by the other's writes. PostgreSQL: a database of its own on the same
    server (same WAL, same flushes), autocommit, ``synchronous_commit=on``.
    """

    def __init__(self, store: str) -> None:
        self.sqlite = store.startswith("sqlite:///")
        self.originator_id = uuid4()
        self.version = 0
        self.conn: Any
        if self.sqlite:
            self.conn = sqlite3.connect(sqlite_path(store), isolation_level=None)
            mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            self.conn.execute("PRAGMA synchronous=FULL")
            level = self.conn.execute("PRAGMA synchronous").fetchone()[0]
            assert (mode, level) == ("wal", 2), (mode, level)
            self.conn.execute(
                "CREATE TABLE raw_events (notification_id INTEGER PRIMARY KEY AUTOINCREMENT,"
                " originator_id TEXT NOT NULL, originator_version INTEGER NOT NULL,"
                " topic TEXT NOT NULL, state BLOB NOT NULL,"
                " UNIQUE (originator_id, originator_version))"
            )
        else:
            self.conn = psycopg.connect(store, autocommit=True)
            self.conn.execute("SET synchronous_commit = on")
            self.conn.execute(
                "CREATE TABLE raw_events (originator_id uuid NOT NULL,"
                " originator_version bigint NOT NULL, topic text NOT NULL, state bytea NOT NULL,"
                " notification_id bigserial NOT NULL UNIQUE,"
                " PRIMARY KEY (originator_id, originator_version))"
            )

    def insert(self) -> None:
        """Append one row, durably."""
        self.version += 1
        if self.sqlite:
            self.conn.execute("BEGIN IMMEDIATE")
            self.conn.execute(
                "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
                " VALUES (?, ?, 'checkpoint.Yielded', ?)",
                (str(self.originator_id), self.version, _STATE),
            )
            self.conn.execute("COMMIT")
        else:
            self.conn.execute(
                "INSERT INTO raw_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, 'checkpoint.Yielded', %s)",
                (self.originator_id, self.version, _STATE),
                prepare=True,
            )

    def probe(self, name: str) -> Probe:
        """The insert as a probe: its wall-clock time under ``name``."""

        def op() -> dict[str, float]:
            started = time.perf_counter()
            self.insert()
            return {name: time.perf_counter() - started}

        return op

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


def event_hop(settle: float) -> Probe:
    """One ``threading.Event.set()`` to the return of the ``wait()`` it releases in a thread."""

    def op() -> dict[str, float]:
        event = threading.Event()
        woke: list[int] = []

        def waiter() -> None:
            event.wait(10)
            woke.append(time.monotonic_ns())

        thread = threading.Thread(target=waiter, daemon=True)
        thread.start()
        time.sleep(settle)
        started = time.monotonic_ns()
        event.set()
        thread.join()
        return {"thread wake-up": (woke[0] - started) / 1e9}

    return op


def eventsourcing_wait(samples: int, projection_delay: float) -> list[float]:
    """Seconds ``TrackingRecorder.wait()`` takes when the view is updated ``delay`` later.

    eventsourcing's ``wait()`` (the same method on every backend's recorder) checks the
    tracking table, then sleeps 100 ms, 200 ms… (up to 800 ms) between checks. A thread plays a
    projection that records the tracking position ``projection_delay`` after the command.
    """
    recorder = POPOTrackingRecorder()
    taken = []
    for position in range(1, samples + 1):

        def project(position: int = position) -> None:
            time.sleep(projection_delay)
            recorder.insert_tracking(Tracking("bench", position))

        thread = threading.Thread(target=project, daemon=True)
        started = time.perf_counter()
        thread.start()
        recorder.wait("bench", position, timeout=5.0)
        taken.append(time.perf_counter() - started)
        thread.join()
    return taken
