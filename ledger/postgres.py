"""PostgreSQL backend through psycopg 3 and a connection pool.

Appends take no lock, so concurrent writers commit side by side (and share WAL flushes). What
keeps a reader from skipping an event is the *position* itself: an event's ``notification_id``
is ``xid * 65536 + n``, where ``xid`` is its transaction's 64-bit id (``pg_current_xact_id()``)
and ``n`` its ordinal in that transaction (1…65535). Readers only read positions below the
**visible horizon**, ``pg_snapshot_xmin(pg_current_snapshot()) * 65536``: every transaction
with an id below the snapshot's ``xmin`` has ended, and every transaction that may still commit
has an id at or above it, hence positions at or above the horizon. So the log below the horizon
never changes again, and reading "after my position" never passes an event that commits later.
The argument in full, and its one cost (an open transaction holds the horizon back), is in
``docs/architecture.md``.

An append is one statement in autocommit mode, so one round trip, commit included. The
``NOTIFY`` that other processes' readers listen for is sent afterwards, outside the append's
transaction, by a notifier thread (:class:`_Notifier` says why).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
import weakref
from contextlib import contextmanager, suppress
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
from psycopg import pq, sql
from psycopg.errors import error_from_result
from psycopg.generators import execute as _pq_execute

from ledger.chain import chain_hash
from ledger.errors import InvalidInput, RunArchived
from ledger.store import (
    ARCHIVES_TABLE,
    EVENTS_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    LedgerRecorder,
    LogHead,
    SQLTransaction,
    StoreURL,
)

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ledger.settings import LedgerSettings

log = logging.getLogger("ledger.postgres")

__all__ = [
    "MAX_EVENTS_PER_TRANSACTION",
    "POSITIONS_PER_TRANSACTION",
    "SCHEMA",
    "VISIBLE_HORIZON",
    "PostgresLedgerRecorder",
    "PostgresListener",
    "append_lock_key",
]

# 2: positions are xid * 65536 + ordinal (1: a bigserial, handed out under an advisory lock).
# 3: hash chains (event_hash), purge permits and archive markers (ledger.chain, ledger.archive).
_SCHEMA_VERSION = 3
_ARCHIVED_SQLSTATE = "CK001"  # a write to an archived run (ledger.errors.RunArchived)
_GAP_SQLSTATE = "CK002"  # version n + 1 of a checkpoint that has no version n

POSITIONS_PER_TRANSACTION = 65536
"""Each transaction owns the positions ``[xid * 65536, (xid + 1) * 65536)``."""
MAX_EVENTS_PER_TRANSACTION = POSITIONS_PER_TRANSACTION - 1
"""Ordinals run from 1, so a transaction appends at most 65535 events."""

_XID = "pg_current_xact_id()::text::bigint"
VISIBLE_HORIZON = (
    f"(pg_snapshot_xmin(pg_current_snapshot())::text::bigint * {POSITIONS_PER_TRANSACTION})"
)
"""SQL: the first position a reader may not read yet. Every position below it is final.

Evaluate it in the same statement as the read: it is taken from that statement's snapshot, so
every committed row below it is visible to the read.
"""


def append_lock_key(table: str = EVENTS_TABLE) -> int:
    """A stable signed int64 advisory lock key named after ``table`` (or any name).

    Appends take no lock any more (schema version 1 locked this key per append); the schema
    (``"schema"``) and the projections' DDL (``"views"``) are still created under such keys.
    """
    digest = hashlib.sha256(f"checkpoint-ledger:{table}".encode()).digest()
    return int.from_bytes(digest[:8], "big", signed=True)


SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        notification_id bigint NOT NULL,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        PRIMARY KEY (originator_id, originator_version),
        CONSTRAINT {EVENTS_TABLE}_position_in_transaction CHECK (
            notification_id < (transaction_id::text::bigint + 1) * {POSITIONS_PER_TRANSACTION}
        )
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
    # Schema 3. Rows written before it keep a NULL hash ("unchained" to ckl verify).
    f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS event_hash bytea",
    f"""CREATE TABLE IF NOT EXISTS {PURGE_PERMITS_TABLE} (
        originator_id uuid NOT NULL,
        txid xid8 NOT NULL DEFAULT pg_current_xact_id(),
        PRIMARY KEY (originator_id, txid)
    )""",
    f"""CREATE TABLE IF NOT EXISTS {ARCHIVES_TABLE} (
        archive_id bigserial PRIMARY KEY,
        run_id text NOT NULL,
        archived_at text NOT NULL,
        events bigint NOT NULL,
        checkpoints bigint NOT NULL,
        file_sha256 text NOT NULL,
        heads text NOT NULL,
        restored_at text
    )""",
    f"CREATE INDEX IF NOT EXISTS {ARCHIVES_TABLE}_run_idx ON {ARCHIVES_TABLE} (run_id)",
    # A DELETE passes only for a checkpoint the same transaction holds a permit for: only the
    # owner role may write permits (ckl grants), so a writer cannot grant itself one.
    f"""CREATE OR REPLACE FUNCTION ckl_guard_events() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            IF TG_OP = 'DELETE' AND EXISTS (
                SELECT 1 FROM {PURGE_PERMITS_TABLE}
                WHERE originator_id = OLD.originator_id AND txid = pg_current_xact_id()
            ) THEN
                RETURN OLD;
            END IF;
            RAISE EXCEPTION '% is append-only: % refused', TG_TABLE_NAME, TG_OP
                USING ERRCODE = 'restrict_violation';
        END $$""",
    f"""CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_append_only
        BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
        FOR EACH ROW EXECUTE FUNCTION ckl_guard_events()""",
    # Runs for Created events (version 1) and for rows whose hash came out NULL (no previous
    # version): an archived run stays archived, and a version never skips its predecessor.
    f"""CREATE OR REPLACE FUNCTION ckl_guard_insert() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE archived text;
        BEGIN
            IF NEW.originator_version = 1 THEN
                SELECT a.run_id INTO archived FROM {ARCHIVES_TABLE} AS a
                WHERE a.restored_at IS NULL
                  AND a.run_id = convert_from(NEW.state, 'UTF8')::jsonb ->> 'run_id'
                LIMIT 1;
            ELSE
                SELECT a.run_id INTO archived FROM {ARCHIVES_TABLE} AS a
                WHERE a.restored_at IS NULL AND strpos(a.heads, NEW.originator_id::text) > 0
                LIMIT 1;
            END IF;
            IF archived IS NOT NULL THEN
                RAISE EXCEPTION 'run % is archived', archived
                    USING ERRCODE = '{_ARCHIVED_SQLSTATE}', DETAIL = archived;
            END IF;
            IF NEW.event_hash IS NULL AND NEW.originator_version > 1 AND NOT EXISTS (
                SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = NEW.originator_id
                   AND originator_version = NEW.originator_version - 1
            ) THEN
                RAISE EXCEPTION 'checkpoint % has no version %; version % refused',
                    NEW.originator_id, NEW.originator_version - 1, NEW.originator_version
                    USING ERRCODE = '{_GAP_SQLSTATE}';
            END IF;
            RETURN NEW;
        END $$""",
    f"""CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_guard_insert
        BEFORE INSERT ON {EVENTS_TABLE} FOR EACH ROW
        WHEN (NEW.originator_version = 1 OR NEW.event_hash IS NULL)
        EXECUTE FUNCTION ckl_guard_insert()""",
]

_COLUMNS = "notification_id, originator_id, originator_version, topic, state"

_IDLE = pq.TransactionStatus.IDLE
_CONNECTION_OK = pq.ConnStatus.OK
_APPEND_ONE = b"ckl_append_one"
"""Name of the one-event append, prepared once on each pooled connection (``_append_one``)."""
# uuid and bytea binary, bigint binary (8 bytes, big-endian), topic as text.
_APPEND_ONE_FORMATS = (pq.Format.BINARY, pq.Format.BINARY, pq.Format.TEXT, pq.Format.BINARY)


def _results_check(
    conn: psycopg.Connection[Any], results: list[pq.abc.PGresult], expected: pq.ExecStatus
) -> pq.abc.PGresult:
    """The statement's last result, or psycopg's exception for the error a result reports."""
    if not results:
        msg = "no result from the server"
        raise psycopg.OperationalError(msg)
    for result in results:
        if result.status != expected:
            raise error_from_result(result, encoding=conn.info.encoding)
    return results[-1]


def _numbered(query: str) -> bytes:
    """The query with its ``%s`` placeholders numbered for libpq (``$1``, ``$2`` and so on)."""
    parts = query.split("%s")
    out = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        out += f"${n}{part}"
    return out.encode()


def _uuid(value: UUID | str) -> UUID:
    return value if isinstance(value, UUID) else UUID(value)


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


def _append_sql() -> tuple[str, str]:
    """The two append statements: one event (scalars), several (``unnest`` of arrays).

    Each row's position is ``block.last + ordinal``: ``block.base`` is the transaction's own
    range (``xid * 65536``), and ``block.last`` the highest position the transaction already
    used in it (an index probe, normally empty: an append is one autocommit statement, but a
    transaction that appended before keeps its positions unique). Ordinals follow the input
    order. The ``CHECK`` on the table refuses a position past the transaction's range. One
    event binds scalars, because adapting and unnesting one-element arrays measured ~90 µs per
    append. No ``NOTIFY`` here: PostgreSQL serialises the commits of every transaction that
    notifies (one lock held through the commit's WAL flush), which would undo what dropping
    the append lock gains; :class:`_Notifier` sends it afterwards instead.
    """
    block = (
        "(SELECT coalesce((SELECT max(notification_id) FROM "
        f"{EVENTS_TABLE} WHERE notification_id > x.base "
        f"AND notification_id < x.base + {POSITIONS_PER_TRANSACTION}), x.base) AS last "
        f"FROM (SELECT {_XID} * {POSITIONS_PER_TRANSACTION} AS base) AS x) AS block"
    )
    columns = "notification_id, originator_id, originator_version, topic, state, event_hash"
    # ledger.chain.chain_hash in SQL; the previous hash is one probe of the primary key. No
    # previous row gives NULL, which the insert trigger refuses (a version never skips one).
    previous = (
        "CASE WHEN e.v = 1 THEN ''::bytea ELSE (SELECT coalesce(p.event_hash, ''::bytea) "
        f"FROM {EVENTS_TABLE} AS p WHERE p.originator_id = e.oid "
        "AND p.originator_version = e.v - 1) END"
    )
    one = (
        f"INSERT INTO {EVENTS_TABLE} ({columns}) "
        "SELECT block.last + 1, e.oid, e.v, e.topic, e.state, "
        f"sha256({previous} || uuid_send(e.oid) || int8send(e.v) "
        "|| convert_to(e.topic, 'UTF8') || '\\x00'::bytea || e.state) "
        f"FROM {block}, (SELECT %s::uuid AS oid, %s::bigint AS v, %s::text AS topic, "
        "%s::bytea AS state) AS e "
        "RETURNING notification_id"
    )
    # Several events: their hashes are computed in Python (insert_events), from the previous
    # hashes read in the same transaction, and bound as one more array.
    many = (
        f"INSERT INTO {EVENTS_TABLE} ({columns}) "
        "SELECT block.last + e.ordinal, e.originator_id, e.originator_version, e.topic, e.state, "
        f"e.event_hash FROM {block}, "
        "unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[], %s::bytea[]) "
        "WITH ORDINALITY AS e(originator_id, originator_version, topic, state, event_hash, "
        "ordinal) RETURNING notification_id"
    )
    return one, many


_PREVIOUS_HASHES = (
    f"SELECT p.originator_id, p.originator_version, p.event_hash FROM {EVENTS_TABLE} AS p "
    "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(oid, v) "
    "ON p.originator_id = w.oid AND p.originator_version = w.v"
)


def _schema_version(conn: psycopg.Connection[Any]) -> int | None:
    row = conn.execute("SELECT to_regclass('ckl_schema') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    current = conn.execute("SELECT max(version) FROM ckl_schema").fetchone()
    return None if current is None or current[0] is None else int(current[0])


def _migrate_from_1(conn: psycopg.Connection[Any]) -> None:
    """Schema 1 → 2, inside the schema transaction: positions stop coming from a sequence.

    Old positions (a bigserial) stay. Every later append runs in a transaction younger than
    this one, so its positions start above ``xid_of_this_transaction * 65536``; the old ones
    must lie below that, which is checked (it holds unless one old transaction appended more
    than ~65,000 events per transaction ever run on the cluster). ALTER TABLE waits for
    appends of old processes in flight; old processes appending afterwards fail (the column
    has no default any more): stop them before upgrading.
    """
    conn.execute(f"ALTER TABLE {EVENTS_TABLE} ALTER COLUMN notification_id DROP DEFAULT")
    conn.execute(f"DROP SEQUENCE IF EXISTS {EVENTS_TABLE}_notification_id_seq")
    constraint = f"{EVENTS_TABLE}_position_in_transaction"
    found = conn.execute("SELECT 1 FROM pg_constraint WHERE conname = %s", (constraint,))
    if found.fetchone() is None:  # NOT VALID: old rows are not checked, new ones are
        conn.execute(
            f"ALTER TABLE {EVENTS_TABLE} ADD CONSTRAINT {constraint} CHECK (notification_id"
            f" < (transaction_id::text::bigint + 1) * {POSITIONS_PER_TRANSACTION}) NOT VALID"
        )
    row = conn.execute(
        f"SELECT max(notification_id), {_XID} * {POSITIONS_PER_TRANSACTION} FROM {EVENTS_TABLE}"
    ).fetchone()
    if row is not None and row[0] is not None and int(row[0]) >= int(row[1]):
        msg = (
            f"cannot migrate {EVENTS_TABLE}: its highest position {row[0]} is not below the "
            f"first transaction-based position {row[1]}"
        )
        raise ProgrammingError(msg)


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


_NOTIFY = (
    f"SELECT pg_notify('{EVENTS_TABLE}', '')".encode()
)  # the channel LISTENed to: the table name
_NOTIFY_INTERVAL = 0.005
"""Seconds between two notifies of one recorder: an append after a quiet spell is announced at
once, a stream of appends about 200 times a second (each notify is a transaction)."""
_QUIET = 0.02
"""An append this long after the recorder's previous one is announced by the writing thread
itself, before the append returns: no hand-off to the notifier thread, which measured ~0.6 ms
of cross-process wake-up latency. Faster appends are merged by the thread, off the hot path."""


class _Notifier:
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
            # libpq directly, as in _append_one: this thread's CPU is the writer's too.
            conn.pgconn.send_query(_NOTIFY)
            results = conn.wait(_pq_execute(conn.pgconn))
            _results_check(conn, results, pq.ExecStatus.TUPLES_OK)
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
        # Connections that may be lent now (a counting semaphore, kept by hand: the fast path
        # is one plain lock, where threading.BoundedSemaphore takes a Condition twice).
        self._lendable = settings.pool_size
        self._waiting = 0
        self._guard = threading.Lock()
        self._returned = threading.Condition(self._guard)
        self._closed = False
        # Plain strings built once (our own identifiers and constants): no SQL composition per
        # call. Both append statements live here, side by side; see _append_sql.
        self._insert_one, self._insert_many = _append_sql()
        self._insert_one_pq = _numbered(self._insert_one)
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()
        self._notifier = _Notifier(self.store.url, self._connect_kwargs)
        # Connect once now: a clear error at open, not at the first command.
        with self._conn():
            pass

    def _connect(self) -> psycopg.Connection[Any]:
        return psycopg.connect(self.store.url, **self._connect_kwargs)

    @contextmanager
    def _conn(self) -> Iterator[psycopg.Connection[Any]]:
        conn = self._take()
        try:
            yield conn
        except psycopg.Error as exc:
            raise _translate(exc) from exc
        finally:
            self._give(conn)

    def _take(self) -> psycopg.Connection[Any]:
        """A pooled connection (or a new one); hand it back with :meth:`_give`."""
        if self._closed:
            msg = f"the ledger on {self.store.display} is closed"
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
        except BaseException as exc:
            self._release()
            if isinstance(exc, psycopg.Error):
                raise _translate(exc) from exc
            raise

    def _wait_for_a_connection(self) -> None:
        """Wait (holding ``_guard``) until a connection may be lent, at most connect_timeout."""
        deadline = time.monotonic() + self._connect_timeout
        self._waiting += 1
        try:
            while not self._lendable:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    msg = (
                        f"no free connection to {self.store.display} within "
                        f"{self._connect_timeout:g}s (raise CKL_POOL_SIZE)"
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

    def _give(self, conn: psycopg.Connection[Any]) -> None:
        """Return a connection from :meth:`_take`: kept if idle and healthy, else closed."""
        pgconn = conn.pgconn
        if (
            pgconn.transaction_status == _IDLE
            and pgconn.status == _CONNECTION_OK
            and not conn.broken
        ):
            with self._guard:
                if not self._closed:
                    self._idle.append(conn)
                    self._lendable += 1
                    if self._waiting:
                        self._returned.notify()
                    return
        try:
            conn.close()
        finally:
            self._release()

    def create_tables(self) -> None:
        """Create (or migrate) the schema once: a cheap check, then DDL under an advisory lock.

        Raises:
            eventsourcing.persistence.ProgrammingError: the store was made by a newer
                checkpoint-ledger, or cannot be migrated (see ``_migrate_from_1``).
        """
        with self._conn() as conn:
            if _schema_version(conn) == _SCHEMA_VERSION:
                return
            with conn.transaction():
                # Concurrent openers wait here instead of racing CREATE statements.
                conn.execute("SELECT pg_advisory_xact_lock(%s)", (append_lock_key("schema"),))
                found = _schema_version(conn)  # again, under the lock: another may have done it
                if found == _SCHEMA_VERSION:
                    return
                if found is not None and found > _SCHEMA_VERSION:
                    msg = (
                        f"the store {self.store.display} has schema version {found}; this "
                        f"checkpoint-ledger knows versions up to {_SCHEMA_VERSION}: upgrade it"
                    )
                    raise ProgrammingError(msg)
                for statement in SCHEMA:
                    conn.execute(statement)
                if found == 1:
                    _migrate_from_1(conn)
                conn.execute(
                    "INSERT INTO ckl_schema (version) VALUES (%s) "
                    "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
                    (_SCHEMA_VERSION,),
                )

    def insert_events(self, stored_events: Sequence[StoredEvent], **_: object) -> Sequence[int]:
        """Append events atomically in one round trip; their positions, ascending.

        Raises:
            InvalidInput: more than ``MAX_EVENTS_PER_TRANSACTION`` events (nothing is written).
        """
        if not stored_events:
            return []
        if len(stored_events) > MAX_EVENTS_PER_TRANSACTION:
            raise InvalidInput(
                "stored_events",
                f"{len(stored_events)} events in one append; PostgreSQL positions leave room "
                f"for at most {MAX_EVENTS_PER_TRANSACTION} per transaction (append in batches)",
            )
        if len(stored_events) == 1:  # the hot path: no context manager, no sort
            conn = self._take()
            try:
                position = self._append_one(conn, stored_events[0])
            except psycopg.Error as exc:
                raise self._append_error(exc) from exc
            finally:
                self._give(conn)
            self._notifier.announce()
            return [position]
        with self._conn() as conn:
            try:
                with conn.transaction():
                    rows = self._insert_chained(conn, stored_events)
            except psycopg.Error as exc:
                raise self._append_error(exc) from exc
        self._notifier.announce()
        # Ordinals follow the input order, so sorting restores it whatever RETURNING's order.
        return sorted(int(r[0]) for r in rows)

    @staticmethod
    def _append_error(exc: psycopg.Error) -> Exception:
        """What a failed append raises: our errors for our SQLSTATEs, else the store's."""
        if exc.sqlstate == _ARCHIVED_SQLSTATE:
            return RunArchived(exc.diag.message_detail or "?")
        if exc.sqlstate == _GAP_SQLSTATE:
            return IntegrityError(exc.diag.message_primary or str(exc))
        return _translate(exc)

    def _append_one(self, conn: psycopg.Connection[Any], e: StoredEvent) -> int:
        """The one-event append, sent to libpq directly; its position.

        The hot path of every yield: psycopg's cursor (query conversion, adapters, its
        prepared-statement cache, result wrapping) measured ~70 µs of client CPU per durable
        append, this ~25 µs. The statement is prepared once per connection under our own name;
        waiting goes through ``Connection.wait`` as ``execute()`` does, so Ctrl-C still cancels
        the query in the server, and errors are psycopg's own exceptions, as before.
        """
        pgconn = conn.pgconn
        params = (
            _uuid(e.originator_id).bytes,
            e.originator_version.to_bytes(8, "big", signed=True),
            e.topic.encode(),
            e.state,
        )
        if conn not in self._prepared:
            self._prepare_append_one(conn)
        pgconn.send_query_prepared(_APPEND_ONE, params, _APPEND_ONE_FORMATS)
        try:
            result = _results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.TUPLES_OK)
        except psycopg.errors.InvalidSqlStatementName:
            # psycopg runs DEALLOCATE ALL after a ROLLBACK, DROP or ALTER on the connection
            # (its own prepared statements may be stale then), which drops ours too. Nothing
            # was executed: prepare again and send once more.
            self._prepare_append_one(conn)
            pgconn.send_query_prepared(_APPEND_ONE, params, _APPEND_ONE_FORMATS)
            result = _results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.TUPLES_OK)
        return int(result.get_value(0, 0) or b"")

    def _prepare_append_one(self, conn: psycopg.Connection[Any]) -> None:
        pgconn = conn.pgconn
        pgconn.send_prepare(_APPEND_ONE, self._insert_one_pq)
        with suppress(psycopg.errors.DuplicatePreparedStatement):  # still prepared here
            _results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.COMMAND_OK)
        self._prepared.add(conn)

    def _insert_chained(
        self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]
    ) -> list[tuple[Any, ...]]:
        """The multi-row append, each event chained in Python (inside the caller's transaction)."""
        params = self.chained_params(conn, events)
        return conn.execute(self._insert_many, params, prepare=True).fetchall()

    def chained_params(
        self, conn: psycopg.Connection[Any], events: Sequence[StoredEvent]
    ) -> tuple[list[Any], ...]:
        """The arrays the multi-row append binds, hashes included, read and computed in ``conn``.

        Previous hashes read here belong to committed rows, which never change; a predecessor
        that is neither stored nor earlier in ``events`` gets no hash, which the insert trigger
        refuses.
        """
        oids = [_uuid(e.originator_id) for e in events]
        wanted = (oids, [e.originator_version - 1 for e in events])
        stored = {
            (r[0], int(r[1])): (None if r[2] is None else bytes(r[2]))
            for r in conn.execute(_PREVIOUS_HASHES, wanted, prepare=True)
        }
        hashes: list[bytes | None] = []
        mine: dict[tuple[UUID, int], bytes] = {}
        for oid, e in zip(oids, events, strict=True):
            version = e.originator_version
            key = (oid, version - 1)
            if version == 1:
                prev: bytes | None = None
            elif key in mine:
                prev = mine[key]
            elif key in stored:
                prev = stored[key]
            else:
                hashes.append(None)  # refused by the trigger: no version n - 1
                continue
            digest = chain_hash(prev, oid, version, e.topic, e.state)
            mine[(oid, version)] = digest
            hashes.append(digest)
        return (
            oids,
            [e.originator_version for e in events],
            [e.topic for e in events],
            [e.state for e in events],
            hashes,
        )

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
        self._notifier.close()
