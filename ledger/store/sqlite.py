"""SQLite backend: WAL, full durability by default, connections from ``ledger.store.pool``.

An in-memory store (``memory://``) uses one shared connection behind a lock instead, because
SQLite's shared-cache mode reports table locks as errors rather than waiting on them.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import time
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any, NamedTuple
from urllib.parse import quote, urlsplit
from uuid import UUID, uuid4

from eventsourcing.persistence import (
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    StoredEvent,
    Tracking,
)

from ledger.chain import chain_hash
from ledger.errors import RunArchived, StoreSchemaMismatch
from ledger.store.base import (
    ARCHIVES_TABLE,
    COMMAND_INDEX,
    EVENTS_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    TRACKING_TABLE,
    CommandAlreadyRecorded,
    LedgerRecorder,
    SQLTransaction,
    aligned_command_ids,
    as_uuid,
)
from ledger.store.pool import Pool
from ledger.store.url import StoreURL

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from ledger.settings import LedgerSettings

__all__ = ["OLD_WRITER_MESSAGE", "SCHEMA_TABLE", "SQLiteLedgerRecorder"]

# The event table (the benchmarks build their raw baseline table from it, so shapes match).
SCHEMA_TABLE = f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
        notification_id INTEGER PRIMARY KEY AUTOINCREMENT,
        originator_id TEXT NOT NULL,
        originator_version INTEGER NOT NULL,
        topic TEXT NOT NULL,
        state BLOB NOT NULL,
        event_hash BLOB,
        run_id TEXT,
        command_id TEXT,
        UNIQUE (originator_id, originator_version)
)"""

_SCHEMA = [
    SCHEMA_TABLE,
    f"""CREATE TRIGGER IF NOT EXISTS {EVENTS_TABLE}_no_update BEFORE UPDATE ON {EVENTS_TABLE}
        BEGIN SELECT RAISE(ABORT, '{EVENTS_TABLE} is append-only: UPDATE refused'); END""",
    # INSERT OR REPLACE deletes the row it replaces without firing DELETE triggers (unless a
    # connection enables recursive_triggers), so an insert may never land on an existing key.
    f"""CREATE TRIGGER IF NOT EXISTS {EVENTS_TABLE}_no_replace BEFORE INSERT ON {EVENTS_TABLE}
        WHEN EXISTS (SELECT 1 FROM {EVENTS_TABLE}
                     WHERE originator_id = NEW.originator_id
                       AND originator_version = NEW.originator_version)
          OR EXISTS (SELECT 1 FROM {EVENTS_TABLE} WHERE notification_id = NEW.notification_id)
        BEGIN SELECT RAISE(ABORT, 'UNIQUE constraint failed: {EVENTS_TABLE} key exists'); END""",
    f"""CREATE TABLE IF NOT EXISTS {SNAPSHOTS_TABLE} (
        originator_id TEXT NOT NULL,
        originator_version INTEGER NOT NULL,
        topic TEXT NOT NULL,
        state BLOB NOT NULL,
        PRIMARY KEY (originator_id, originator_version)
    ) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {PURGE_PERMITS_TABLE} (
        originator_id TEXT PRIMARY KEY
    ) WITHOUT ROWID""",
    f"""CREATE TABLE IF NOT EXISTS {ARCHIVES_TABLE} (
        archive_id INTEGER PRIMARY KEY AUTOINCREMENT,
        run_id TEXT NOT NULL,
        archived_at TEXT NOT NULL,
        events INTEGER NOT NULL,
        checkpoints INTEGER NOT NULL,
        file_sha256 TEXT NOT NULL,
        heads TEXT NOT NULL,
        restored_at TEXT
    )""",
    f"CREATE INDEX IF NOT EXISTS {ARCHIVES_TABLE}_run_idx ON {ARCHIVES_TABLE} (run_id)",
    f"""CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (
        name TEXT PRIMARY KEY,
        position INTEGER NOT NULL
    ) WITHOUT ROWID""",
]

# Schema versions (PRAGMA user_version). 2: hash chains, purge permits, archive markers (a
# store written by version 1 gets the column, its old rows stay unchained, and the triggers).
# 3: the run id is a column (the archive guard parsed the state as JSON before), backfilled
# from each checkpoint's Created event; eventsourcing's tracking table, which takes over the
# projections' ckl_view_tracking row. 4: the command id is a column with a partial unique
# index (idempotent commands; old rows keep NULL). 5: the archive trigger checks every version.
# 6: an insert without a hash is refused (the trigger below): every writer since schema 2
# hashes its rows, so only a writer of an older schema, still running after an upgrade, would
# append unchained rows that `ckl verify` then reports. 7: a version that skips its
# predecessor is refused by a trigger even when its hash came from a remembered head.
_SCHEMA_VERSION = 7
OLD_WRITER_MESSAGE = (
    "this store was upgraded by a newer checkpoint-ledger: upgrade this process"
    " (it would append rows without hashes)"
)
_ARCHIVED_MESSAGE = "ckl_archives: the run is archived"
_GAP_MESSAGE = "ckl_events: the checkpoint has no previous version"
# What SQLite says when the command index refuses a row, and what the trigger below says too.
_COMMAND_CLASH = (
    f"UNIQUE constraint failed: {EVENTS_TABLE}.originator_id, {EVENTS_TABLE}.command_id"
)
_LEGACY_TRACKING = "ckl_view_tracking"
_MIGRATE = [
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_no_delete",
    # Only a purge (ledger.archive) deletes, and only rows whose checkpoint it listed in the
    # permit table in the same transaction; it empties that table before it commits.
    f"""CREATE TRIGGER {EVENTS_TABLE}_no_delete BEFORE DELETE ON {EVENTS_TABLE}
        WHEN NOT EXISTS (SELECT 1 FROM {PURGE_PERMITS_TABLE}
                         WHERE originator_id = OLD.originator_id)
        BEGIN SELECT RAISE(ABORT, '{EVENTS_TABLE} is append-only: DELETE refused'); END""",
    # An archived run stays archived: its checkpoints cannot be created or written again
    # (unless the archive is imported back with --restore, which marks the archive restored).
    # The run is the row's run_id column: the state is opaque to the store. Every version is
    # checked (schema 5): an appender that chains to a head it remembers, without reading it
    # back, must still be refused once a purge took that head away.
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_not_archived",
    f"""CREATE TRIGGER {EVENTS_TABLE}_not_archived BEFORE INSERT ON {EVENTS_TABLE}
        WHEN NEW.run_id IS NOT NULL AND EXISTS (
            SELECT 1 FROM {ARCHIVES_TABLE} WHERE restored_at IS NULL AND run_id = NEW.run_id)
        BEGIN SELECT RAISE(ABORT, '{_ARCHIVED_MESSAGE}'); END""",
    # A run's checkpoints (archive, audit) by index; only Created events are indexed, so a
    # yield's append updates no more indexes than before.
    f"""CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_run_idx ON {EVENTS_TABLE} (run_id)
        WHERE originator_version = 1""",
    # Schema 4: one event per command on a checkpoint. Partial: events without a command id
    # (old rows, eventsourcing's own writes) add no index entry.
    f"""CREATE UNIQUE INDEX IF NOT EXISTS {COMMAND_INDEX} ON {EVENTS_TABLE}
        (originator_id, command_id) WHERE command_id IS NOT NULL""",
    # The new unique key is one more that INSERT OR REPLACE would resolve by deleting the
    # older row past the DELETE trigger (as _no_replace says): refused before it gets there,
    # with the message SQLite's own refusal by the index has.
    # Schema 6: a writer of schema 1 (no hash column then) cannot append to an upgraded store.
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_hashed",
    f"""CREATE TRIGGER {EVENTS_TABLE}_hashed BEFORE INSERT ON {EVENTS_TABLE}
        WHEN NEW.event_hash IS NULL
        BEGIN SELECT RAISE(ABORT, '{OLD_WRITER_MESSAGE}'); END""",
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_no_replace_command",
    f"""CREATE TRIGGER {EVENTS_TABLE}_no_replace_command BEFORE INSERT ON {EVENTS_TABLE}
        WHEN NEW.command_id IS NOT NULL AND EXISTS (SELECT 1 FROM {EVENTS_TABLE}
             WHERE originator_id = NEW.originator_id AND command_id = NEW.command_id)
        BEGIN SELECT RAISE(ABORT, '{_COMMAND_CLASH}'); END""",
    # Schema 7: a version never skips its predecessor, also when the appender chains to a head
    # it remembers without reading it back: a store that lost commits it acknowledged (restored
    # from a backup under a running writer) refuses the writer's next version, and the Ledger
    # reloads (PostgreSQL's insert trigger has the same rule).
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_no_gap",
    f"""CREATE TRIGGER {EVENTS_TABLE}_no_gap BEFORE INSERT ON {EVENTS_TABLE}
        WHEN NEW.originator_version > 1 AND NOT EXISTS (SELECT 1 FROM {EVENTS_TABLE}
             WHERE originator_id = NEW.originator_id
               AND originator_version = NEW.originator_version - 1)
        BEGIN SELECT RAISE(ABORT, '{_GAP_MESSAGE}'); END""",
]
# Schema 3's backfill of old rows: the run id from the checkpoint's Created event, parsed once
# here (the Ledger wrote every old row as JSON); past the UPDATE trigger, dropped meanwhile.
_BACKFILL_RUN_IDS = [
    f"DROP TRIGGER IF EXISTS {EVENTS_TABLE}_no_update",
    f"""UPDATE {EVENTS_TABLE} SET run_id = (
            SELECT json_extract(CAST(c.state AS TEXT), '$.run_id') FROM {EVENTS_TABLE} AS c
            WHERE c.originator_id = {EVENTS_TABLE}.originator_id AND c.originator_version = 1
              AND json_valid(CAST(c.state AS TEXT)))
        WHERE run_id IS NULL""",
    _SCHEMA[1],  # the UPDATE trigger again
]

_INSERT = (
    f"INSERT INTO {EVENTS_TABLE} (originator_id, originator_version, topic, state, event_hash,"
    " run_id, command_id) VALUES (?, ?, ?, ?, ?, ?, ?)"
)
_PREVIOUS = (
    f"SELECT event_hash FROM {EVENTS_TABLE} WHERE originator_id = ? AND originator_version = ?"
)
_ARCHIVED_CHECKPOINT = (
    f"SELECT run_id FROM {ARCHIVES_TABLE} WHERE restored_at IS NULL AND instr(heads, ?) > 0"
)
_COLUMNS = "notification_id, originator_id, originator_version, topic, state"
_PURGE_PERMIT = f"INSERT INTO {PURGE_PERMITS_TABLE} (originator_id) VALUES (%s)"
_HAS_TABLE = "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?"
_VIEW_TABLES = (
    "SELECT m.name FROM sqlite_master AS m, pragma_table_info(m.name) AS c "
    "WHERE m.type = 'table' AND m.name LIKE 'ckl\\_view\\_%' ESCAPE '\\' "
    "AND c.name = 'checkpoint_id' ORDER BY m.name"
)


class _Row(NamedTuple):
    """One event to insert; ``digest`` is ``None`` until its predecessor's hash is read."""

    oid: UUID
    version: int
    topic: str
    state: bytes
    command_id: str | None
    digest: bytes | None


def _translate(exc: sqlite3.Error) -> PersistenceError:
    if isinstance(exc, sqlite3.IntegrityError):
        return IntegrityError(str(exc))
    if isinstance(exc, sqlite3.OperationalError):
        return OperationalError(str(exc))
    return InterfaceError(f"{type(exc).__name__}: {exc}")


def _read_only_uri(path: str) -> str:
    return f"file:{quote(path)}?mode=ro"


def _is_wal(path: str) -> bool:
    """The file is in WAL mode: its header's read and write versions (bytes 18, 19) are 2."""
    try:
        with open(path, "rb") as file:  # noqa: PTH123
            header = file.read(20)
    except OSError:
        return False
    return header[18:20] == b"\x02\x02"


def _unwritable_directory(path: str) -> bool:
    """Nobody but root may create files next to ``path``: a read-only mount or permissions."""
    directory = os.path.dirname(os.path.abspath(path))  # noqa: PTH100, PTH120
    try:
        mounted_read_only = bool(os.statvfs(directory).f_flag & os.ST_RDONLY)
        no_write_bits = not os.stat(directory).st_mode & 0o222  # noqa: PTH116
    except OSError:
        return False
    return mounted_read_only or no_write_bits or not os.access(directory, os.W_OK)


class _SQLiteTransaction(SQLTransaction):
    """A transaction on one connection; a write one already excludes every other writer."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(sql.replace("%s", "?"), tuple(params)).rowcount

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql.replace("%s", "?"), tuple(params))]

    def query_for_update(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        # BEGIN IMMEDIATE holds the database's write lock: no other writer reads past us.
        return self.query(sql, params)

    def lock_for_schema(self, name: str) -> None:
        """Nothing to take: the write transaction already serialises schema changes."""

    def lock_appends(self) -> None:
        """Nothing to take: the write transaction already excludes every appender."""

    def key(self, checkpoint_id: UUID) -> object:
        return str(checkpoint_id)  # TEXT column

    def _insert_purge_permit(self, key: object) -> None:
        self.execute(_PURGE_PERMIT, (key,))

    def _view_tables(self) -> list[str]:
        return [str(r[0]) for r in self.query(_VIEW_TABLES)]

    def has_table(self, name: str) -> bool:
        return bool(self.query(_HAS_TABLE, (name,)))


class SQLiteLedgerRecorder(LedgerRecorder):
    """The ledger's event and snapshot tables in one SQLite database file."""

    def __init__(self, store: StoreURL, settings: LedgerSettings) -> None:
        if store.kind == "memory":
            # memory:// is a private in-memory database per Ledger, shared by its threads;
            # memory://NAME is shared by the Ledgers of one process while any is open.
            name = (urlsplit(store.url).netloc + urlsplit(store.url).path).strip("/")
            name = "".join(c if c.isalnum() or c in "-_" else "_" for c in name)
            store = StoreURL(
                "memory",
                store.url,
                store.display,
                sqlite_path=f"file:ckl-{name or uuid4().hex}?mode=memory&cache=shared",
            )
        super().__init__(store, settings)
        self._path = store.sqlite_path
        self._uri = store.kind == "memory"
        if self.read_only and not self._uri:
            # mode=ro: SQLite itself refuses every write, and creates no file (a missing one
            # is an error, not a new empty database).
            self._path = _read_only_uri(os.path.abspath(self._path))  # noqa: PTH100
            self._uri = True
        self._synchronous = "NORMAL" if settings.durability == "fast" else "FULL"
        self._timeout = settings.connect_timeout
        # Connections lent to one thread at a time, as many as threads ask for; at most
        # `pool_size` are kept idle.
        self._pool: Pool[sqlite3.Connection] | None = None
        self._guard = threading.RLock()
        self._shared: sqlite3.Connection | None = None
        if self._uri:
            # Keep one connection open for the database's whole life (it vanishes with the
            # last connection), and route every thread through it, under _guard.
            self._shared = self._connect()
        else:
            self._pool = Pool(self._connect, name=store.display, keep=settings.pool_size)

    def _connect(self) -> sqlite3.Connection:
        if self.read_only and self.store.kind == "sqlite":
            return self._connect_read_only()
        try:
            conn = sqlite3.connect(
                self._path,
                uri=self._uri,
                timeout=self._timeout,
                isolation_level=None,  # we issue BEGIN ourselves
                check_same_thread=False,
            )
            if not self._uri:
                self._ensure_wal(conn)
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _connect_read_only(self) -> sqlite3.Connection:
        """A ``mode=ro`` connection, checked by a first read (no PRAGMA that writes).

        A WAL database needs its ``-shm`` index even to be read, and SQLite creates it (and an
        empty ``-wal``) where the directory lets it. In a directory nobody may write (a
        read-only mount, or no write permission: only root could still write there) a
        database with no ``-wal`` file holds everything in its main file and no writer can be
        at work, so it is opened ``immutable``: no locks, no ``-shm``, nothing created. With a
        ``-wal`` file there, its content is needed and the index cannot be made: an error says
        what to do.
        """
        path = self.store.sqlite_path
        if not os.path.exists(path):  # noqa: PTH110
            msg = f"there is no SQLite database at {path} (a read-only open never creates one)"
            raise OperationalError(msg)
        uri = self._path
        if _is_wal(path) and not os.path.exists(path + "-shm") and _unwritable_directory(path):  # noqa: PTH110
            if os.path.exists(path + "-wal"):  # noqa: PTH110
                msg = (
                    f"{self.store.display} is a WAL database with a {path}-wal file, and its "
                    f"directory is not writable, so SQLite cannot create the {path}-shm index "
                    "that reading it needs: read it where the directory is writable, or "
                    "checkpoint it (open it once with a writer) before making it read-only"
                )
                raise OperationalError(msg)
            uri += "&immutable=1"
        try:
            conn = self._open_uri(uri)
            try:
                conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
            except BaseException:
                conn.close()
                raise
        except sqlite3.Error as exc:
            raise _translate(exc) from exc
        return conn

    def _open_uri(self, uri: str) -> sqlite3.Connection:
        return sqlite3.connect(
            uri, uri=True, timeout=self._timeout, isolation_level=None, check_same_thread=False
        )

    def _ensure_wal(self, conn: sqlite3.Connection) -> None:
        # Switching a new file to WAL needs an exclusive lock, and SQLite does not always wait
        # for it (processes opening a new store together see "database is locked" at once),
        # so wait here, within the connect timeout.
        deadline = time.monotonic() + self._timeout
        delay = 0.001
        while True:
            try:
                mode = str(conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]).lower()
            except sqlite3.OperationalError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(delay)
                delay = min(delay * 2, 0.05)
                continue
            if mode != "wal":
                msg = f"cannot switch {self.store.display} to WAL (got {mode})"
                raise OperationalError(msg)
            return

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        conn = self._lend()
        try:
            yield conn
        finally:
            self._give_back(conn)

    @contextmanager
    def _transaction(self, *, write: bool) -> Iterator[sqlite3.Connection]:
        if write:
            self.refuse_write("a write transaction")
        with self._connection() as conn:
            try:
                # IMMEDIATE takes the write lock up front, where the busy timeout applies;
                # a deferred transaction upgraded later could fail without waiting.
                conn.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield conn
                except BaseException:
                    conn.rollback()
                    raise
                conn.commit()
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                raise _translate(exc) from exc

    def schema_version(self) -> int:
        """The store's schema version (0: no ledger schema: an empty or foreign database)."""
        with self._transaction(write=False) as conn:
            version = int(conn.execute("PRAGMA user_version").fetchone()[0])
            if version == 0:
                found = conn.execute(
                    "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?",
                    (EVENTS_TABLE,),
                ).fetchone()
                version = 1 if found is not None else 0  # schema 1 kept user_version 0
        return version

    @property
    def code_schema_version(self) -> int:
        """The schema version this code creates and upgrades to."""
        return _SCHEMA_VERSION

    def _check_schema(self) -> None:
        found = self.schema_version()
        if found != _SCHEMA_VERSION:
            raise StoreSchemaMismatch(self.store.display, found, _SCHEMA_VERSION)

    def create_tables(self) -> None:
        """Create or upgrade the schema once; concurrent openers queue on SQLite's write lock.

        Read-only, only check it.

        Raises:
            StoreSchemaMismatch: (read-only) no schema, or another version than the code's.
        """
        if self.read_only:
            self._check_schema()
            return
        with self._transaction(write=False) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= _SCHEMA_VERSION:
                return
        with self._transaction(write=True) as conn:
            if conn.execute("PRAGMA user_version").fetchone()[0] >= _SCHEMA_VERSION:
                return  # another opener got here first
            for statement in _SCHEMA:
                conn.execute(statement)
            columns = {row[1] for row in conn.execute(f"PRAGMA table_info({EVENTS_TABLE})")}
            if "event_hash" not in columns:
                conn.execute(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN event_hash BLOB")
            if "run_id" not in columns:
                conn.execute(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN run_id TEXT")
                for statement in _BACKFILL_RUN_IDS:
                    conn.execute(statement)
            if "command_id" not in columns:  # schema 4; its index and trigger are in _MIGRATE
                conn.execute(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN command_id TEXT")
            for statement in _MIGRATE:
                conn.execute(statement)
            self._take_over_legacy_tracking(conn)
            conn.execute(f"PRAGMA user_version = {_SCHEMA_VERSION}")

    @staticmethod
    def _take_over_legacy_tracking(conn: sqlite3.Connection) -> None:
        """Move the projections' former tracking rows into the tracking table (schema 3)."""
        found = conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = ?", (_LEGACY_TRACKING,)
        ).fetchone()
        if found is None:
            return
        conn.execute(
            f"INSERT INTO {TRACKING_TABLE} (name, position) SELECT name, position"
            f" FROM {_LEGACY_TRACKING} WHERE true ON CONFLICT (name) DO NOTHING"
        )
        conn.execute(f"DROP TABLE {_LEGACY_TRACKING}")

    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        run_id: str | None = None,
        command_ids: Sequence[str | None] | None = None,
        tracking: Tracking | None = None,
        **_: Any,  # noqa: ANN401  (eventsourcing's signature)
    ) -> Sequence[int]:
        """Append events atomically, each chained to its predecessor; their notification ids.

        The chain hashes what it always did (the command id is inside the event's state, which
        it covers); ``command_ids`` only fills the indexed column.

        Raises:
            RunArchived: a checkpoint of an archived run would be written again.
            CommandAlreadyRecorded: the checkpoint already recorded one of the commands.
            IntegrityError: the version is taken, or its predecessor does not exist, or
                ``tracking`` is not after the application's recorded position.
            InvalidInput: ``command_ids`` does not match ``stored_events``.
        """
        self.refuse_write("append")
        commands = aligned_command_ids(stored_events, command_ids)
        # Hashed before the write lock where the predecessor's hash is known (the writer's own
        # last append): the lock, which every writer of the file queues for, is held for the
        # statements alone.
        rows = self._chained_rows(stored_events, commands)
        # The hot path of every command: one connection lent by hand and one transaction,
        # without the context managers of the general path.
        conn = self._lend()
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
                try:
                    ids, heads = self._insert_rows(conn, rows, run_id)
                    tx = None
                    if tracking is not None:
                        tx = _SQLiteTransaction(conn)
                        tx.insert_tracking(tracking)
                except BaseException:
                    conn.rollback()
                    raise
                conn.execute("COMMIT")
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    conn.rollback()
                for row in rows:
                    self._heads.pop(row.oid, None)
                raise _translate(exc) from exc
        finally:
            self._give_back(conn)
        self._remember_heads(heads)
        if ids and self._append_wakers:
            self._appended()
        if tx is not None:
            self._committed(tx)
        return ids

    def _chained_rows(
        self,
        stored_events: Sequence[StoredEvent],
        commands: Sequence[str | None],
    ) -> list[_Row]:
        """The rows to insert, each hashed here if its predecessor's hash is known already.

        Known: a first version (nothing before it), or the version after a head this recorder
        committed, or after an earlier row of the same batch hashed here. (Rows only vanish in
        a purge of an archived run, and the archive trigger refuses every append to one.) The
        others are hashed inside the transaction, from their predecessor read there.
        """
        rows: list[_Row] = []
        # This batch's rows so far: (version, hash), the hash None if left to the transaction.
        known: dict[UUID, tuple[int, bytes | None]] = {}
        for event, command_id in zip(stored_events, commands, strict=True):
            oid = as_uuid(event.originator_id)
            version = event.originator_version
            digest: bytes | None = None
            if version <= 1:  # the first (eventsourcing's own tests start at 0)
                digest = chain_hash(None, oid, version, event.topic, event.state)
            else:
                head = known.get(oid) or self._heads.get(oid)
                prev = head[1] if head is not None and head[0] == version - 1 else None
                if prev is not None:
                    digest = chain_hash(prev, oid, version, event.topic, event.state)
            known[oid] = (version, digest)
            rows.append(_Row(oid, version, event.topic, event.state, command_id, digest))
        return rows

    def _insert_rows(
        self, conn: sqlite3.Connection, rows: Sequence[_Row], run_id: str | None
    ) -> tuple[list[int], dict[UUID, tuple[int, bytes]]]:
        ids: list[int] = []
        written: dict[UUID, tuple[int, bytes]] = {}  # this batch's own heads
        for row in rows:
            oid, version, digest = row.oid, row.version, row.digest
            if digest is None:
                mine = written.get(oid)
                if mine is not None and mine[0] == version - 1:
                    prev: bytes | None = mine[1]
                else:
                    prev = self._previous_hash(conn, oid, version)
                digest = chain_hash(prev, oid, version, row.topic, row.state)
            try:
                cursor = conn.execute(
                    _INSERT,
                    (str(oid), version, row.topic, row.state, digest, run_id, row.command_id),
                )
            except sqlite3.IntegrityError as exc:
                if _ARCHIVED_MESSAGE in str(exc):
                    raise RunArchived(run_id or "?") from exc
                if row.command_id is not None and _COMMAND_CLASH in str(exc):
                    raise CommandAlreadyRecorded(oid, row.command_id) from exc
                raise
            written[oid] = (version, digest)
            ids.append(int(cursor.lastrowid or 0))
        return ids, written

    def _lend(self) -> sqlite3.Connection:
        """A connection for one thread: pooled, or the shared one (held under ``_guard``)."""
        if self._pool is not None:
            return self._pool.take()
        self._guard.acquire()
        if self._shared is None:
            self._guard.release()
            msg = f"the ledger on {self.store.display} is closed"
            raise InterfaceError(msg)
        return self._shared

    def _give_back(self, conn: sqlite3.Connection) -> None:
        if self._pool is not None:
            self._pool.give(conn)
        else:
            self._guard.release()

    @staticmethod
    def _previous_hash(conn: sqlite3.Connection, oid: UUID, version: int) -> bytes | None:
        row = conn.execute(_PREVIOUS, (str(oid), version - 1)).fetchone()
        if row is not None:
            return None if row[0] is None else bytes(row[0])  # None: an unchained old row
        # The ledger appends version n + 1 only after reading version n: a hole means the
        # checkpoint was purged (archived) under a stale cache, or a caller skipped a version.
        archived = conn.execute(_ARCHIVED_CHECKPOINT, (str(oid),)).fetchone()
        if archived is not None:
            raise RunArchived(str(archived[0]))
        msg = f"checkpoint {oid} has no version {version - 1}; version {version} refused"
        raise IntegrityError(msg)

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
        table = SNAPSHOTS_TABLE if snapshots else EVENTS_TABLE
        sql = f"SELECT originator_version, topic, state FROM {table} WHERE originator_id = ?"
        params: list[object] = [str(originator_id)]
        if gt is not None:
            sql += " AND originator_version > ?"
            params.append(gt)
        if lte is not None:
            sql += " AND originator_version <= ?"
            params.append(lte)
        sql += " ORDER BY originator_version" + (" DESC" if desc else "")
        if limit is not None:
            sql += " LIMIT ?"
            params.append(limit)
        oid = originator_id if isinstance(originator_id, UUID) else UUID(originator_id)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [StoredEvent(oid, row[0], row[1], bytes(row[2])) for row in rows]

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
        sql = f"SELECT {_COLUMNS} FROM {EVENTS_TABLE} WHERE 1=1"
        params: list[object] = []
        if start is not None:
            sql += " AND notification_id >= ?" if inclusive_of_start else " AND notification_id > ?"
            params.append(start)
        if stop is not None:
            sql += " AND notification_id <= ?"
            params.append(stop)
        if topics:
            sql += f" AND topic IN ({','.join('?' * len(topics))})"
            params.extend(topics)
        sql += " ORDER BY notification_id LIMIT ?"
        params.append(limit)
        with self._transaction(write=False) as conn:
            rows = conn.execute(sql, params).fetchall()
        return [self._notification(row, UUID(row[1])) for row in rows]

    def max_notification_id(self) -> int | None:
        """The newest global position, or ``None`` for an empty store."""
        with self._transaction(write=False) as conn:
            row = conn.execute(f"SELECT MAX(notification_id) FROM {EVENTS_TABLE}").fetchone()
        return None if row[0] is None else int(row[0])

    def insert_snapshot(self, snapshot: StoredEvent) -> None:
        """Keep a snapshot; an existing one at the same version is left as it is."""
        self.refuse_write("snapshot")
        with self._transaction(write=True) as conn:
            conn.execute(
                f"INSERT OR IGNORE INTO {SNAPSHOTS_TABLE} VALUES (?, ?, ?, ?)",
                (
                    str(snapshot.originator_id),
                    snapshot.originator_version,
                    snapshot.topic,
                    snapshot.state,
                ),
            )

    def count_events(self, originator_id: UUID | None = None) -> int:
        """Rows in the event table (of one checkpoint, or all)."""
        sql = f"SELECT COUNT(*) FROM {EVENTS_TABLE}"
        params: tuple[str, ...] = ()
        if originator_id is not None:
            sql += " WHERE originator_id = ?"
            params = (str(originator_id),)
        with self._transaction(write=False) as conn:
            return int(conn.execute(sql, params).fetchone()[0])

    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        bound = tuple(str(p) if isinstance(p, UUID) else p for p in params)  # TEXT keys
        with self._transaction(write=False) as conn:
            return [tuple(r) for r in conn.execute(sql.replace("%s", "?"), bound)]

    @contextmanager
    def transaction(
        self,
        *,
        readonly: bool = False,
        pipeline: bool = False,  # noqa: ARG002  (in-process: nothing to pipeline)
        snapshot: bool = False,  # noqa: ARG002  (a SQLite transaction reads one snapshot)
    ) -> Iterator[SQLTransaction]:
        """A transaction; a write one (``BEGIN IMMEDIATE``) admits one writer at a time."""
        with self._transaction(write=not readonly) as conn:
            tx = _SQLiteTransaction(conn)
            yield tx
        self._committed(tx)

    def close(self) -> None:
        """Close the idle connections; one still lent to a thread closes when it comes back.

        (Closing a connection another thread is using can crash the sqlite3 module.)
        """
        if self._pool is not None:
            self._pool.close()
        with self._guard:  # the shared in-memory connection is used under this lock
            shared, self._shared = self._shared, None
        if shared is not None:
            shared.close()
