"""PostgreSQL backend through psycopg 3 and a connection pool.

An append is one statement in autocommit mode, so one round trip, commit included. It takes a
transaction-scoped advisory lock before drawing notification ids, so ids are handed out in
commit order and a reader following the log by id can never pass over an id that commits
later (the guarantee eventsourcing buys with ``LOCK TABLE … IN EXCLUSIVE MODE`` and three more
statements). The same statement sends the ``NOTIFY`` that live streams listen for. Every row
also records its transaction id (``xid8``), for readers that will not need the lock.
"""

from __future__ import annotations

import hashlib
import threading
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import psycopg
from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    ProgrammingError,
    StoredEvent,
)
from psycopg import sql

from ledger.store import EVENTS_TABLE, SNAPSHOTS_TABLE, LedgerRecorder, SQLTransaction, StoreURL

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ledger.settings import LedgerSettings

__all__ = ["SCHEMA", "PostgresLedgerRecorder", "PostgresListener", "append_lock_key"]

_SCHEMA_VERSION = 1


def append_lock_key(table: str = EVENTS_TABLE) -> int:
    """The advisory lock key that serialises appends to ``table`` (a stable signed int64)."""
    digest = hashlib.sha256(f"checkpoint-ledger:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        notification_id bigserial NOT NULL,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        PRIMARY KEY (originator_id, originator_version)
    )""",
    f"""CREATE UNIQUE INDEX IF NOT EXISTS {EVENTS_TABLE}_notification_id_idx
        ON {EVENTS_TABLE} (notification_id)""",
    """CREATE OR REPLACE FUNCTION ckl_refuse_change() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$""",
    f"""CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_append_only
        BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
        FOR EACH ROW EXECUTE FUNCTION ckl_refuse_change()""",
    f"""CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_no_truncate
        BEFORE TRUNCATE ON {EVENTS_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION ckl_refuse_change()""",
    f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        PRIMARY KEY (originator_id, originator_version)
    )""",
    """CREATE TABLE IF NOT EXISTS ckl_schema (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL
    )""",
]

_COLUMNS = "notification_id, originator_id, originator_version, topic, state"


def _translate(exc: psycopg.Error) -> PersistenceError:
    # Messages from psycopg never include the password, but may include host and user.
    detail = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0] if str(exc) else ''}"
    if isinstance(exc, psycopg.errors.UniqueViolation):
        return IntegrityError(detail)
    if isinstance(exc, psycopg.OperationalError):
        return OperationalError(detail)
    if isinstance(exc, psycopg.InterfaceError):
        return InterfaceError(detail)
    if isinstance(exc, psycopg.ProgrammingError):
        return ProgrammingError(detail)
    return PersistenceError(detail)


class _PostgresTransaction:
    dialect: Literal["sqlite", "postgres"] = "postgres"

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(query.encode(), tuple(params), prepare=True).rowcount

    def query(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(query.encode(), tuple(params), prepare=True)]


class PostgresListener:
    """LISTEN on the event channel over a dedicated connection (not from the pool)."""

    def __init__(self, url: str, channel: str, connect_timeout: float) -> None:
        try:
            self._conn = psycopg.connect(
                url, autocommit=True, connect_timeout=max(1, int(connect_timeout))
            )
            self._conn.execute(sql.SQL("LISTEN {}").format(sql.Identifier(channel)))
        except psycopg.Error as exc:
            raise _translate(exc) from exc

    def wait(self, timeout: float) -> bool:
        """True if an append was announced within ``timeout`` seconds (all pending drained)."""
        got = False
        try:
            for _ in self._conn.notifies(timeout=timeout, stop_after=1):
                got = True
            if got:  # drain what else is queued, without waiting: one catch-up serves them all
                for _ in self._conn.notifies(timeout=0):
                    pass
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        return got

    def close(self) -> None:
        """Close the listening connection."""
        self._conn.close()


class PostgresLedgerRecorder(LedgerRecorder):
    """The ledger's event and snapshot tables in one PostgreSQL database."""

    def __init__(self, store: StoreURL, settings: LedgerSettings) -> None:
        self.store = store
        self.channel = EVENTS_TABLE
        self._connect_timeout = settings.connect_timeout
        synchronous_commit = "on" if settings.durability == "full" else "off"

        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(settings.connect_timeout)),
            # Set at connect time, so every pooled connection has the store's durability.
            "options": f"-c synchronous_commit={synchronous_commit}",
        }
        # A small pool of our own: taking and returning a connection is a list pop/append
        # under a lock (psycopg_pool's bookkeeping measured ~35 µs per checkout in place, a
        # tenth of a durable append). At most `pool_size` connections are open at once.
        self._idle: list[psycopg.Connection[Any]] = []
        self._slots = threading.BoundedSemaphore(settings.pool_size)
        self._guard = threading.Lock()
        self._closed = False
        # Plain strings built once (our own identifiers and constants): no SQL composition per
        # call. One event (the common case) binds scalars: arrays cost time to adapt and unnest.
        serialise = (
            f"(SELECT pg_advisory_xact_lock({append_lock_key()}), "
            f"pg_notify('{self.channel}', '')) AS serialise"
        )
        self._insert_one = (
            f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
            f"SELECT %s::uuid, %s::bigint, %s::text, %s::bytea FROM {serialise} "
            "RETURNING notification_id"
        )
        self._insert_many = (
            f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state) "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            f"FROM {serialise}, unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "AS e(originator_id, originator_version, topic, state) "
            "RETURNING notification_id"
        )
        # Connect once now: a clear error at open, not at the first command.
        with self._conn():
            pass

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.store.url, **self._connect_kwargs)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        if self._closed:
            msg = f"the ledger on {self.store.display} is closed"
            raise InterfaceError(msg)
        if not self._slots.acquire(timeout=self._connect_timeout):
            msg = (
                f"no free connection to {self.store.display} within "
                f"{self._connect_timeout:g}s (raise CKL_POOL_SIZE)"
            )
            raise OperationalError(msg)
        conn: psycopg.Connection[Any] | None = None
        try:
            with self._guard:
                conn = self._idle.pop() if self._idle else None
            if conn is None:
                conn = self._connect()
            yield conn
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        finally:
            if conn is not None:
                healthy = (
                    not conn.closed
                    and not conn.broken
                    and conn.info.transaction_status == psycopg.pq.TransactionStatus.IDLE
                )
                with self._guard:
                    if healthy and not self._closed:
                        self._idle.append(conn)
                        conn = None
                if conn is not None:
                    conn.close()
            self._slots.release()

    def create_tables(self) -> None:
        """Create the schema once: a cheap check first, then DDL under an advisory lock."""
        with self._conn() as conn:
            row = conn.execute("SELECT to_regclass('ckl_schema') IS NOT NULL").fetchone()
            if row and row[0]:
                current = conn.execute("SELECT max(version) FROM ckl_schema").fetchone()
                if current and current[0] == _SCHEMA_VERSION:
                    return
            with conn.transaction():
                # Concurrent openers wait here instead of racing CREATE statements.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (append_lock_key("schema"),))
                for statement in SCHEMA:
                    conn.execute(statement)
                conn.execute(
                    "INSERT INTO ckl_schema (version) VALUES (%s) "
                    "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
                    (_SCHEMA_VERSION,),
                )

    def insert_events(self, stored_events: Sequence[StoredEvent], **_: object) -> Sequence[int]:
        """Append events atomically in one round trip; their notification ids, in order."""
        if not stored_events:
            return []
        if len(stored_events) == 1:
            (e,) = stored_events
            query = self._insert_one
            params: tuple[object, ...] = (e.originator_id, e.originator_version, e.topic, e.state)
        else:
            query = self._insert_many
            params = (
                [e.originator_id for e in stored_events],
                [e.originator_version for e in stored_events],
                [e.topic for e in stored_events],
                [e.state for e in stored_events],
            )
        with self._conn() as conn:
            rows = conn.execute(query, params, prepare=True).fetchall()
        return [int(r[0]) for r in rows]

    def select_events(
        self,
        originator_id: UUID | str,
        *,
        gt: int | None = None,
        lte: int | None = None,
        desc: bool = False,
        limit: int | None = None,
    ) -> Sequence[StoredEvent]:
        """One checkpoint's events, by version."""
        return self._select(EVENTS_TABLE, originator_id, gt=gt, lte=lte, desc=desc, limit=limit)

    def _select(
        self,
        table: str,
        originator_id: UUID | str,
        *,
        gt: int | None,
        lte: int | None,
        desc: bool,
        limit: int | None,
    ) -> list[StoredEvent]:
        oid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        query = (
            f"SELECT originator_version, topic, state FROM {table} "
            "WHERE originator_id = %s AND originator_version > %s "
            "AND originator_version <= %s ORDER BY originator_version"
            + (" DESC" if desc else "")
            + " LIMIT %s"
        )
        params = (oid, gt or 0, lte if lte is not None else 2**62, limit)
        with self._conn() as conn:
            rows = conn.execute(query, params, prepare=True).fetchall()
        return [StoredEvent(oid, int(r[0]), r[1], bytes(r[2])) for r in rows]

    def select_notifications(
        self,
        start: int | None,
        limit: int,
        stop: int | None = None,
        topics: Sequence[str] = (),
        *,
        inclusive_of_start: bool = True,
    ) -> Sequence[Notification]:
        """Events in global order, from ``start``."""
        low = 0 if start is None else (start if inclusive_of_start else start + 1)
        query = (
            f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} "
            "WHERE notification_id >= %s AND notification_id <= %s"
            + (" AND topic = ANY(%s)" if topics else "")
            + " ORDER BY notification_id LIMIT %s"
        )
        params: list[object] = [low, stop if stop is not None else 2**62]
        if topics:
            params.append(list(topics))
        params.append(limit)
        with self._conn() as conn:
            rows = conn.execute(query, params, prepare=True).fetchall()
        return [self._notification(row, row[1]) for row in rows]

    def max_notification_id(self) -> int | None:
        """The newest global position, or ``None`` for an empty store."""
        with self._conn() as conn:
            row = conn.execute(f"SELECT max(notification_id) FROM {EVENTS_TABLE}").fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def insert_snapshot(self, snapshot: StoredEvent) -> None:
        """Keep a snapshot; an existing one at the same version is left as it is."""
        with self._conn() as conn:
            conn.execute(
                f"INSERT INTO {SNAPSHOTS_TABLE} VALUES (%s, %s, %s, %s) ON CONFLICT DO NOTHING",
                (
                    snapshot.originator_id,
                    snapshot.originator_version,
                    snapshot.topic,
                    snapshot.state,
                ),
            )

    def select_snapshot(self, originator_id: UUID, lte: int | None = None) -> StoredEvent | None:
        """The latest snapshot at or before ``lte``."""
        rows = self._select(SNAPSHOTS_TABLE, originator_id, gt=None, lte=lte, desc=True, limit=1)
        return rows[0] if rows else None

    def count_events(self, originator_id: UUID | None = None) -> int:
        """Rows in the event table (of one checkpoint, or all)."""
        with self._conn() as conn:
            if originator_id is None:
                row = conn.execute(f"SELECT count(*) FROM {EVENTS_TABLE}").fetchone()
            else:
                row = conn.execute(
                    f"SELECT count(*) FROM {EVENTS_TABLE} WHERE originator_id = %s",
                    (originator_id,),
                ).fetchone()
        return int(row[0]) if row else 0

    @contextmanager
    def transaction(
        self,
        *,
        readonly: bool = False,  # noqa: ARG002  (MVCC: readers never block writers)
        pipeline: bool = False,
    ) -> Iterator[SQLTransaction]:
        """A transaction on one pooled connection, pipelined if asked."""
        with self._conn() as conn, conn.transaction():
            if pipeline:
                with conn.pipeline():
                    yield _PostgresTransaction(conn)
            else:
                yield _PostgresTransaction(conn)

    def listener(self) -> PostgresListener:
        """A new LISTEN connection on the event channel."""
        return PostgresListener(self.store.url, self.channel, self._connect_timeout)

    def close(self) -> None:
        """Close the idle connections (lent ones close when they come back). Idempotent."""
        with self._guard:
            self._closed = True
            idle, self._idle = self._idle, []
        for conn in idle:
            conn.close()
