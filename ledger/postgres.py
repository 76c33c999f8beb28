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
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID

import psycopg
import psycopg_pool
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

__all__ = ["PostgresLedgerRecorder", "PostgresListener", "append_lock_key"]

_SCHEMA_VERSION = 1


def append_lock_key(table: str = EVENTS_TABLE) -> int:
    """The advisory lock key that serialises appends to ``table`` (a stable signed int64)."""
    digest = hashlib.sha256(f"checkpoint-ledger:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


_SCHEMA = [
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
    if isinstance(exc, psycopg.OperationalError | psycopg_pool.PoolTimeout):
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

        def configure(conn: psycopg.Connection[Any]) -> None:
            conn.execute(
                sql.SQL("SET synchronous_commit = {}").format(sql.Literal(synchronous_commit))
            )

        self._pool: psycopg_pool.ConnectionPool[psycopg.Connection[Any]] = (
            psycopg_pool.ConnectionPool(
                store.url,
                min_size=1,
                max_size=settings.pool_size,
                kwargs={
                    "autocommit": True,
                    "connect_timeout": max(1, int(settings.connect_timeout)),
                },
                configure=configure,
                timeout=settings.connect_timeout,
                open=False,
                name=f"ckl:{store.display}",
            )
        )
        serialise = sql.SQL(
            "(SELECT pg_advisory_xact_lock({key}), pg_notify({channel}, '')) AS serialise"
        ).format(key=sql.Literal(append_lock_key()), channel=sql.Literal(self.channel))
        # One event (the common case) binds scalars: arrays cost time to adapt and to unnest.
        self._insert_one = sql.SQL(
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT %s::uuid, %s::bigint, %s::text, %s::bytea FROM {serialise} "
            "RETURNING notification_id"
        ).format(table=sql.Identifier(EVENTS_TABLE), serialise=serialise)
        self._insert_many = sql.SQL(
            "INSERT INTO {table} (originator_id, originator_version, topic, state) "
            "SELECT e.originator_id, e.originator_version, e.topic, e.state "
            "FROM {serialise}, unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
            "AS e(originator_id, originator_version, topic, state) "
            "RETURNING notification_id"
        ).format(table=sql.Identifier(EVENTS_TABLE), serialise=serialise)
        # Probe once before the pool opens: a clear error now, instead of the pool's
        # background retries logging the same failure until its timeout.
        try:
            psycopg.connect(
                store.url, connect_timeout=max(1, int(settings.connect_timeout))
            ).close()
            self._pool.open(wait=True, timeout=settings.connect_timeout)
        except (psycopg.Error, psycopg_pool.PoolTimeout) as exc:
            self._pool.close()
            raise _translate(exc) from exc

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        try:
            with self._pool.connection() as conn:
                yield conn
        except psycopg_pool.PoolClosed as exc:
            msg = f"the ledger on {self.store.display} is closed"
            raise InterfaceError(msg) from exc
        except psycopg_pool.PoolTimeout as exc:
            raise _translate(exc) from exc
        except psycopg.Error as exc:
            raise _translate(exc) from exc

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
                for statement in _SCHEMA:
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
    def transaction(self, *, readonly: bool = False) -> Iterator[SQLTransaction]:  # noqa: ARG002
        """A transaction on one pooled connection (MVCC: readers never block writers)."""
        with self._conn() as conn, conn.transaction():
            yield _PostgresTransaction(conn)

    def listener(self) -> PostgresListener:
        """A new LISTEN connection on the event channel."""
        return PostgresListener(self.store.url, self.channel, self._connect_timeout)

    def close(self) -> None:
        """Close the pool. Idempotent."""
        self._pool.close()
