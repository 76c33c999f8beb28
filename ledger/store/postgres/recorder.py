"""The PostgreSQL recorder: reads, appends and transactions over one connection pool.

The pieces it is built from: ``schema`` (DDL and migrations), ``positions`` (the lock-free
position scheme and the visible horizon every read stops at), ``append`` (the append
statements and the libpq fast path), ``notify`` (announcing appends to other processes) and
``clock`` (the server's time without a round trip per call).
"""

from __future__ import annotations

from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import UUID

import psycopg
from eventsourcing.persistence import Notification, OperationalError, StoredEvent, Tracking
from psycopg import pq

from ledger.errors import InvalidInput, StoreSchemaMismatch
from ledger.store.base import (
    EVENTS_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    CommandAlreadyRecorded,
    LedgerRecorder,
    LogHead,
    SQLTransaction,
    aligned_command_ids,
    as_uuid,
)
from ledger.store.failures import STANDBY_MARK
from ledger.store.pool import Pool
from ledger.store.postgres._driver import translate
from ledger.store.postgres.append import (
    PostgresAppender,
    append_error,
    clashing_command,
    is_command_clash,
)
from ledger.store.postgres.clock import ServerClock
from ledger.store.postgres.notify import (
    CHANNEL,
    PostgresListener,
    PostgresNotifier,
    in_hot_standby,
)
from ledger.store.postgres.positions import MAX_EVENTS_PER_TRANSACTION, VISIBLE_HORIZON
from ledger.store.postgres.schema import SCHEMA_VERSION, create_schema, lock_key, schema_version

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from datetime import datetime

    from ledger.settings import LedgerSettings
    from ledger.store.url import StoreURL

__all__ = ["PostgresLedgerRecorder"]

_COLUMNS = "notification_id, originator_id, originator_version, topic, state"
_SNAPSHOT_READ = "SET TRANSACTION ISOLATION LEVEL REPEATABLE READ"
_LOCK_APPENDS = f"LOCK TABLE {EVENTS_TABLE} IN SHARE ROW EXCLUSIVE MODE"
# Tied to this transaction: a permit left behind by a crash opens nothing later.
_PURGE_PERMIT = (
    f"INSERT INTO {PURGE_PERMITS_TABLE} (originator_id, txid) VALUES (%s, pg_current_xact_id())"
)
_VIEW_TABLES = (
    "SELECT table_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND column_name = 'checkpoint_id' "
    "AND table_name LIKE 'ckl\\_view\\_%%' ORDER BY table_name"  # %% for psycopg
)
_SERVER_CLOCK = "SELECT clock_timestamp()"
_SYNCHRONOUS_COMMIT = {"full": "on", "fast": "off", "applied": "remote_apply"}
"""Each ``durability`` as the sessions' ``synchronous_commit``. ``remote_apply`` waits for the
standbys named in the server's ``synchronous_standby_names`` to replay the commit; with none
named it is ``on``."""
_IDLE = pq.TransactionStatus.IDLE
_CONNECTION_OK = pq.ConnStatus.OK


def _reusable(conn: psycopg.Connection[Any]) -> bool:
    """A connection back from a caller may be lent again: idle, connected, not broken."""
    pgconn = conn.pgconn
    return (
        pgconn.transaction_status == _IDLE and pgconn.status == _CONNECTION_OK and not conn.broken
    )


class _PostgresTransaction(SQLTransaction):
    """A transaction on one pooled connection; statements are prepared on the connection."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def execute(self, query: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(query.encode(), tuple(params), prepare=True).rowcount

    def query(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(query.encode(), tuple(params), prepare=True)]

    def query_for_update(self, query: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return self.query(query + " FOR UPDATE", params)

    def lock_for_schema(self, name: str) -> None:
        self.query("SELECT pg_advisory_xact_lock(%s)", (lock_key(name),))

    def lock_appends(self) -> None:
        self.execute(_LOCK_APPENDS)

    def key(self, checkpoint_id: UUID) -> object:
        return checkpoint_id  # uuid column

    def _insert_purge_permit(self, key: object) -> None:
        self.execute(_PURGE_PERMIT, (key,))

    def _view_tables(self) -> list[str]:
        return [str(r[0]) for r in self.query(_VIEW_TABLES)]

    def has_table(self, name: str) -> bool:
        rows = self.query("SELECT to_regclass(%s) IS NOT NULL", (name,))
        return bool(rows and rows[0][0])


class PostgresLedgerRecorder(LedgerRecorder):
    """The ledger's event and snapshot tables in one PostgreSQL database."""

    postgres_dialect: ClassVar[bool] = True
    resume_sql: ClassVar[str] = (
        f"SELECT coalesce((SELECT notification_id FROM {EVENTS_TABLE} WHERE notification_id = %s),"
        f" (SELECT max(notification_id) FROM {EVENTS_TABLE} WHERE notification_id < %s"
        f" AND notification_id < {VISIBLE_HORIZON}))"
    )
    clock_refresh: ClassVar[float] = 30.0
    """Seconds between measurements of the server's clock (``database_now``)."""

    def __init__(self, store: StoreURL, settings: LedgerSettings) -> None:
        super().__init__(store, settings)
        self.channel = CHANNEL
        self._connect_timeout = settings.connect_timeout
        options = f"-c synchronous_commit={_SYNCHRONOUS_COMMIT[settings.durability]}"

        self._connect_kwargs: dict[str, Any] = {
            "autocommit": True,
            "connect_timeout": max(1, int(settings.connect_timeout)),
            # Set at connect time, so every pooled connection has the store's durability.
            "options": options,
        }
        # At most `pool_size` connections are open at once; a thread waits for one to come
        # back up to connect_timeout.
        self._pool: Pool[psycopg.Connection[Any]] = Pool(
            self._connect,
            name=store.display,
            keep=settings.pool_size,
            limit=settings.pool_size,
            wait_timeout=settings.connect_timeout,
            healthy=_reusable,
        )
        self._appender = PostgresAppender()
        self._notifier = PostgresNotifier(self.store.url, self._connect_kwargs)
        # Connect once now (a clear error at open, not at the first command), and measure
        # the server's clock on that connection.
        self._clock = ServerClock(self._server_time, self.clock_refresh)

    def _connect(self) -> psycopg.Connection[Any]:
        """A new pooled connection; a writer's never on a hot standby (refused before use).

        A standby takes no writes, and would fail a writer's first append with a read-only
        error after it had decided the command: refusing the connection says so at open.
        (A multi-host URL with ``target_session_attrs=read-write`` never picks a standby.)
        """
        try:
            conn = psycopg.connect(self.store.url, **self._connect_kwargs)
        except psycopg.Error as exc:
            raise translate(exc) from exc
        if not self.read_only and in_hot_standby(conn):
            host = conn.info.host
            conn.close()
            msg = f"{STANDBY_MARK} ({host}: in recovery, read-only)"
            raise OperationalError(msg)
        if self.read_only:
            # Every transaction of the session read-only: the server refuses any write too.
            # Set once connected, not in the startup options: libpq's target_session_attrs
            # (read-write, primary) reads the session's default to pick a server, and would
            # refuse every host of a multi-host URL.
            try:
                conn.execute("SET default_transaction_read_only = on")
            except psycopg.Error as exc:
                conn.close()
                raise translate(exc) from exc
        return conn

    def is_standby(self) -> bool:
        """Whether the server this recorder's connections reach is a hot standby now."""
        with self._conn() as conn:
            row = conn.execute("SELECT pg_is_in_recovery()", prepare=True).fetchone()
        return bool(row and row[0])

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._pool.take()
        try:
            yield conn
        except psycopg.Error as exc:
            raise translate(exc) from exc
        finally:
            self._pool.give(conn)

    def _server_time(self) -> datetime:
        with self._conn() as conn:
            row = conn.execute(_SERVER_CLOCK, prepare=True).fetchone()
        if row is None:  # pragma: no cover  (a SELECT of one value returns one row)
            msg = "no row from SELECT clock_timestamp()"
            raise OperationalError(msg)
        found: datetime = row[0]
        return found

    def database_now(self) -> datetime:
        """The server's clock: the local clock plus the offset last measured from the server.

        Measured at open and again on the first call ``clock_refresh`` seconds later (one
        ``SELECT clock_timestamp()`` three times, the quickest round trip's midpoint kept);
        every other call is local. If a refresh fails, the last offset stays.
        """
        return self._clock.now()

    def create_tables(self) -> None:
        """Create (or migrate) the schema once: a cheap check, then DDL under an advisory lock.

        Raises:
            eventsourcing.persistence.ProgrammingError: the store was made by a newer
                checkpoint-ledger, or cannot be migrated.
        """
        if self.read_only:
            found = self.schema_version()
            if found != SCHEMA_VERSION:
                standby = found == 0 and self.is_standby()
                raise StoreSchemaMismatch(self.store.display, found, SCHEMA_VERSION, standby)
            return
        with self._conn() as conn:
            create_schema(conn, self.store.display)

    def schema_version(self) -> int:
        """The store's schema version, read without writing (0: no ledger schema)."""
        with self._conn() as conn:
            return schema_version(conn) or 0

    @property
    def code_schema_version(self) -> int:
        """The schema version this code creates and upgrades stores to."""
        return SCHEMA_VERSION

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        run_id: str | None = None,
        command_ids: Sequence[str | None] | None = None,
        tracking: Tracking | None = None,
        **_: Any,  # noqa: ANN401  (eventsourcing's signature)
    ) -> Sequence[int]:
        """Append events atomically in one round trip; their positions, ascending.

        Raises:
            InvalidInput: more than ``MAX_EVENTS_PER_TRANSACTION`` events, or ``command_ids``
                does not match ``stored_events`` (nothing is written).
            CommandAlreadyRecorded: the command index refused a row (by its name).
            IntegrityError: a version is taken or skipped, or ``tracking`` is not after the
                application's recorded position.
        """
        self.refuse_write("append")
        commands = aligned_command_ids(stored_events, command_ids)
        if tracking is not None:
            return self._insert_tracked(stored_events, run_id, commands, tracking)
        if not stored_events:
            return []
        if len(stored_events) > MAX_EVENTS_PER_TRANSACTION:
            raise InvalidInput(
                "stored_events",
                f"{len(stored_events)} events in one append; PostgreSQL positions leave room "
                f"for at most {MAX_EVENTS_PER_TRANSACTION} per transaction (append in batches)",
            )
        if len(stored_events) == 1:  # the hot path: no context manager, no sort
            return [self._insert_one(stored_events[0], run_id, commands[0])]
        with self._conn() as conn:
            try:
                with conn.transaction():
                    rows = self._appender.many(conn, stored_events, run_id, commands)
            except psycopg.Error as exc:
                if is_command_clash(exc):  # rolled back: conn may ask which command it was
                    raise clashing_command(conn, stored_events, commands) from exc
                raise append_error(exc) from exc
        self._notifier.announce()
        if self._append_wakers:
            self._appended()
        # Ordinals follow the input order, so sorting restores it whatever RETURNING's order.
        return sorted(int(r[0]) for r in rows)

    def _insert_one(self, event: StoredEvent, run_id: str | None, command_id: str | None) -> int:
        """One event, one statement on a pooled connection in autocommit: one round trip."""
        pool = self._pool
        conn = pool.take()
        try:
            position = self._appender.one(conn, event, run_id, command_id)
        except psycopg.Error as exc:
            if command_id is not None and is_command_clash(exc):
                raise CommandAlreadyRecorded(as_uuid(event.originator_id), command_id) from exc
            raise append_error(exc) from exc
        finally:
            pool.give(conn)
        self._notifier.announce()
        if self._append_wakers:
            self._appended()
        return position

    def _insert_tracked(
        self,
        stored_events: Sequence[StoredEvent],
        run_id: str | None,
        commands: Sequence[str | None],
        tracking: Tracking,
    ) -> list[int]:
        """Events and a tracking record in one transaction (eventsourcing's process recorder)."""
        if len(stored_events) > MAX_EVENTS_PER_TRANSACTION:
            return list(self.insert_events(stored_events))  # refused there, nothing written
        rows: list[tuple[Any, ...]] = []
        with self._conn() as conn:
            try:
                with conn.transaction():
                    if stored_events:
                        rows = self._appender.many(conn, stored_events, run_id, commands)
                    tx = _PostgresTransaction(conn)
                    tx.insert_tracking(tracking)
            except psycopg.Error as exc:
                if is_command_clash(exc):
                    raise clashing_command(conn, stored_events, commands) from exc
                raise append_error(exc) from exc
        if rows:
            self._notifier.announce()
            self._appended()
        self._committed(tx)
        return sorted(int(r[0]) for r in rows)

    def _select(
        self,
        originator_id: UUID | str,
        *,
        snapshots: bool,
        gt: int | None,
        lte: int | None,
        desc: bool,
        limit: int | None,
    ) -> list[StoredEvent]:
        oid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        table = SNAPSHOTS_TABLE if snapshots else EVENTS_TABLE
        query = (
            f"SELECT originator_version, topic, state FROM {table} "
            "WHERE originator_id = %s AND originator_version > %s "
            "AND originator_version <= %s ORDER BY originator_version"
            + (" DESC" if desc else "")
            + " LIMIT %s"
        )
        # gt=None is no lower bound: version 0 (eventsourcing's first version) included.
        params = (oid, gt if gt is not None else -(2**63), lte if lte is not None else 2**62, limit)
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
        """Events in global order, from ``start``, up to the visible horizon (never beyond).

        Events of transactions still in flight, and committed events above an older
        transaction still in flight, are not returned yet; they will be, at the same positions.
        """
        low = 0 if start is None else (start if inclusive_of_start else start + 1)
        query = (
            f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} "
            "WHERE notification_id >= %s AND notification_id <= %s"
            f" AND notification_id < {VISIBLE_HORIZON}"
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
        """The newest committed position, or ``None``: what "everything so far" must reach.

        It may still wait above the visible horizon (``select_notifications`` will return it
        once older transactions end), so it is a target to wait for, never a bound to read up
        to: ``Projections.sync()`` waits for it, which includes the caller's own writes even
        while another transaction holds the horizon. ``log_head`` gives the readable head.
        """
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT max(notification_id) FROM {EVENTS_TABLE}", prepare=True
            ).fetchone()
        return None if row is None or row[0] is None else int(row[0])

    def log_head(self) -> LogHead:
        """The readable head, and whether committed events wait above it (one snapshot)."""
        with self._conn() as conn:
            row = conn.execute(
                f"SELECT (SELECT max(notification_id) FROM {EVENTS_TABLE}"
                " WHERE notification_id < h.horizon),"
                f" (SELECT max(notification_id) FROM {EVENTS_TABLE})"
                f" FROM (SELECT {VISIBLE_HORIZON} AS horizon) AS h",
                prepare=True,
            ).fetchone()
        readable = None if row is None or row[0] is None else int(row[0])
        committed = None if row is None or row[1] is None else int(row[1])
        held_back = committed is not None and (readable is None or committed > readable)
        return LogHead(readable, held_back=held_back)

    def insert_snapshot(self, snapshot: StoredEvent) -> None:
        """Keep a snapshot; an existing one at the same version is left as it is."""
        self.refuse_write("snapshot")
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

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        with self._conn() as conn:  # autocommit: one round trip
            return [tuple(r) for r in conn.execute(sql.encode(), tuple(params), prepare=True)]

    @contextmanager
    def transaction(
        self,
        *,
        readonly: bool = False,
        pipeline: bool = False,
        snapshot: bool = False,
    ) -> Iterator[SQLTransaction]:
        """A transaction on one pooled connection, pipelined if asked."""
        if not readonly:
            self.refuse_write("a write transaction")
        with self._conn() as conn, conn.transaction():
            if snapshot:  # the first statement of the transaction, as PostgreSQL requires
                conn.execute(_SNAPSHOT_READ)
            tx = _PostgresTransaction(conn)
            if pipeline:
                with conn.pipeline():
                    yield tx
            else:
                yield tx
        self._committed(tx)

    def listener(self) -> PostgresListener:
        """A new LISTEN connection on the event channel."""
        return PostgresListener(self.store.url, self.channel, self._connect_timeout)

    def close(self) -> None:
        """Close the idle connections (lent ones close when they come back). Idempotent."""
        self._pool.close()
        self._notifier.close()
