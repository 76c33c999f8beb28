"""The recorder interface the layers above use: eventsourcing's plus snapshots, chains, purge.

Every backend (``ledger.store.sqlite``, ``ledger.store.postgres``) keeps the same tables: the
append-only event table, snapshots, tracking records, purge permits and archive markers. A
:class:`LedgerRecorder` is eventsourcing's ``ProcessRecorder`` (events in each checkpoint's
sequence and in one global order, the notification id, ``subscribe()``, tracking records in
the same database) plus snapshots, the log's readable head, cross-process wake-ups and
transactions for the read models kept beside the log.
A :class:`SQLTransaction` holds the statements on the ledger's own tables that the layers above
need (a run's checkpoints, chain reads, archive markers, the purge): portable SQL here, and
what differs between backends as a statement or method each backend provides, so that nothing
outside ``ledger.store`` compares dialect names.

Both backends enforce append-only in the database: UPDATE, DELETE (and TRUNCATE on PostgreSQL)
on ``ckl_events`` are refused by triggers. Tables are created once, under a lock, so many
processes may open a new store at the same moment.
"""

from __future__ import annotations

import contextlib
import re
import threading
import time
from abc import ABC, abstractmethod
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, NamedTuple, Protocol
from uuid import UUID

from eventsourcing.persistence import (
    ApplicationRecorder,
    IntegrityError,
    InterfaceError,
    Notification,
    OperationalError,
    PersistenceError,
    ProcessRecorder,
    StoredEvent,
    Subscription,
    Tracking,
    WaitInterruptedError,
)

from ledger.chain import ChainRow
from ledger.errors import InvalidInput, StoreReadOnly
from ledger.store.failures import store_error
from ledger.store.subscription import FIRST_RETRY, LogSubscription

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence
    from contextlib import AbstractContextManager

    from ledger.settings import LedgerSettings
    from ledger.store.url import StoreURL

__all__ = [
    "ARCHIVES_TABLE",
    "COMMAND_INDEX",
    "EVENTS_TABLE",
    "PARTITIONING_TABLE",
    "PURGE_PERMITS_TABLE",
    "SNAPSHOTS_TABLE",
    "TRACKING_TABLE",
    "CommandAlreadyRecorded",
    "LedgerRecorder",
    "LogHead",
    "LogListener",
    "SQLTransaction",
    "as_uuid",
    "quote_identifier",
    "store_errors",
]

EVENTS_TABLE = "ckl_events"
SNAPSHOTS_TABLE = "ckl_snapshots"
# Tamper evidence and retention (ledger.chain, ledger.archive): a DELETE on the event table is
# refused unless the row's checkpoint has a permit written in the same transaction (only the
# owner role may write permits), and archived runs are listed so that they stay archived.
PURGE_PERMITS_TABLE = "ckl_purge_permits"
ARCHIVES_TABLE = "ckl_archives"
# PostgreSQL only (schema 7): one row, the size of new partitions, once the event table is
# partitioned by position range (ledger.store.postgres.partitions); absent or empty: one table.
PARTITIONING_TABLE = "ckl_partitioning"
# eventsourcing's tracking records (``Tracking(application_name, notification_id)``), one row
# per application holding its newest position (eventsourcing's "single-row tracking"). The
# columns keep the names of the projections' former ``ckl_view_tracking`` table, whose rows
# the schema migration moves here.
TRACKING_TABLE = "ckl_tracking"
# Idempotent commands: the event that recorded a command carries its id in the command_id
# column (NULL for events written before command ids, or by anything but the Ledger), and this
# partial unique index keeps a checkpoint from recording one command twice. Both backends
# report a refusal by it as CommandAlreadyRecorded (by this name on PostgreSQL).
COMMAND_INDEX = f"{EVENTS_TABLE}_command_idx"

_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")
# The projections' tables are found, not imported (ledger never imports projections): every
# ckl_view_* table keyed by checkpoint_id loses a purged checkpoint's rows.
_VIEW_TABLE_NAME = re.compile(r"ckl_view_[a-z0-9_]{1,50}")

_CHAIN_COLUMNS = "originator_version, topic, state, event_hash"
_SELECT_CHAIN = (
    f"SELECT notification_id, {_CHAIN_COLUMNS} FROM {EVENTS_TABLE} WHERE originator_id = %s "
    "ORDER BY originator_version"
)
_SELECT_HASHES = (
    f"SELECT originator_version, event_hash FROM {EVENTS_TABLE} WHERE originator_id = %s "
    "ORDER BY originator_version"
)
_SELECT_PAGE = (
    f"SELECT originator_id, {_CHAIN_COLUMNS} FROM {EVENTS_TABLE} "
    "WHERE (originator_id, originator_version) > (%s, %s) "
    "ORDER BY originator_id, originator_version LIMIT %s"
)
_SELECT_FIRST_PAGE = (
    f"SELECT originator_id, {_CHAIN_COLUMNS} FROM {EVENTS_TABLE} "
    "ORDER BY originator_id, originator_version LIMIT %s"
)
_ARCHIVED_HEADS = f"SELECT run_id, heads FROM {ARCHIVES_TABLE}"
_ACTIVE_MARKER = (
    f"SELECT archive_id FROM {ARCHIVES_TABLE} WHERE run_id = %s AND restored_at IS NULL"
)
_MARK_RESTORED = (
    f"UPDATE {ARCHIVES_TABLE} SET restored_at = %s WHERE run_id = %s AND restored_at IS NULL"
)
_INSERT_MARKER = (
    f"INSERT INTO {ARCHIVES_TABLE} (run_id, archived_at, events, checkpoints, file_sha256, heads)"
    " VALUES (%s, %s, %s, %s, %s, %s)"
)
# A run's checkpoints are found by their Created event (version 1), through the run_id column
# and its partial index (the state is opaque to the store).
_RUN_CHECKPOINTS = (
    f"SELECT originator_id FROM {EVENTS_TABLE} WHERE originator_version = 1 AND run_id = %s "
    "ORDER BY originator_id"
)
_SELECT_TRACKING = f"SELECT position FROM {TRACKING_TABLE} WHERE name = %s"
# Moves forward only: a position at or below the recorded one updates nothing and returns no
# row, which insert_tracking reports as eventsourcing's IntegrityError.
_INSERT_TRACKING = (
    f"INSERT INTO {TRACKING_TABLE} (name, position) VALUES (%s, %s) "
    f"ON CONFLICT (name) DO UPDATE SET position = excluded.position "
    f"WHERE {TRACKING_TABLE}.position < excluded.position RETURNING position"
)
_RESET_TRACKING = f"UPDATE {TRACKING_TABLE} SET position = 0 WHERE name = %s"
_COUNT_BETWEEN = (
    f"SELECT count(*) FROM (SELECT 1 FROM {EVENTS_TABLE}"
    " WHERE notification_id > %s AND notification_id <= %s LIMIT %s) AS behind"
)
# A probe of the command index (its WHERE command_id IS NOT NULL is implied by the equality).
_FIND_COMMAND = (
    f"SELECT originator_version, topic FROM {EVENTS_TABLE} "
    "WHERE originator_id = %s AND command_id = %s"
)
_DROP_PERMIT = f"DELETE FROM {PURGE_PERMITS_TABLE} WHERE originator_id = %s"
_PURGE_EVENTS = f"DELETE FROM {EVENTS_TABLE} WHERE originator_id = %s"
_PURGE_SNAPSHOTS = f"DELETE FROM {SNAPSHOTS_TABLE} WHERE originator_id = %s"


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier, for table names found at run time (not values).

    Raises:
        InvalidInput: the name is not a plain lower-case identifier.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise InvalidInput("identifier", f"{name[:80]!r} is not a plain lower-case SQL name")
    return f'"{name}"'


@contextlib.contextmanager
def store_errors(store_display: str, operation: str) -> Iterator[None]:
    """The store's persistence errors become ``StoreUnavailable`` naming ``store_display``.

    Or, for a failure no retry mends, the ``StoreFailure`` it stands for
    (``ledger.store.failures``).

    For code above the recorder that calls it directly (``Ledger`` has its own retrying
    translation). Pass the password-free name (``Ledger.store_display``).
    """
    try:
        yield
    except (OperationalError, InterfaceError, PersistenceError) as exc:
        raise store_error(exc, store_display, operation) from exc


class CommandAlreadyRecorded(IntegrityError):
    """The checkpoint already has an event that recorded this command: nothing was written.

    Raised by ``insert_events`` when (and only when) the command index refused a row; a
    version another writer took first stays a plain ``IntegrityError``. The ``Ledger`` answers
    both by reading the checkpoint again (:meth:`LedgerRecorder.find_command` says which event).

    Attributes:
        originator_id: the checkpoint.
        command_id: the command's id.
    """

    def __init__(self, originator_id: UUID, command_id: str) -> None:
        """The refusal of ``command_id`` on checkpoint ``originator_id``."""
        super().__init__(
            f"command {command_id!r} is already recorded on checkpoint {originator_id}"
        )
        self.originator_id = originator_id
        self.command_id = command_id

    def __reduce__(self) -> tuple[type[CommandAlreadyRecorded], tuple[UUID, str]]:
        """Pickle by the attributes (a process pool hands errors back pickled)."""
        return type(self), (self.originator_id, self.command_id)


def aligned_command_ids(
    stored_events: Sequence[StoredEvent], command_ids: Sequence[str | None] | None
) -> Sequence[str | None]:
    """The command id of each event (``None`` where it has none), checked against the events.

    Raises:
        InvalidInput: ``command_ids`` is given with another length than ``stored_events``, or
            holds something other than a non-empty string or ``None`` (nothing is written).
    """
    if command_ids is None:
        return [None] * len(stored_events)
    if len(command_ids) != len(stored_events):
        raise InvalidInput(
            "command_ids",
            f"{len(command_ids)} command ids for {len(stored_events)} events (one per event)",
        )
    for command_id in command_ids:
        if command_id is not None and not (isinstance(command_id, str) and command_id):
            raise InvalidInput("command_ids", f"{command_id!r} is not a non-empty string or None")
    return command_ids


def as_uuid(value: object) -> UUID:
    """A checkpoint id as a ``UUID``: a driver's value (SQLite ``str``, PostgreSQL ``UUID``)."""
    return value if isinstance(value, UUID) else UUID(str(value))


def _hash(value: Any) -> bytes | None:  # noqa: ANN401  (bytes, memoryview or NULL)
    return None if value is None else bytes(value)


class LogHead(NamedTuple):
    """Where the log's readable part ends.

    Attributes:
        readable: the newest position a reader may read now (``None``: nothing yet).
        held_back: committed events lie above ``readable`` and will become readable, at their
            own positions, once older transactions end (PostgreSQL only; see
            ``ledger.store.postgres``). A watcher then looks again soon rather than at the
            next poll.
    """

    readable: int | None
    held_back: bool = False


class SQLTransaction(ABC):
    """One open transaction on the store, for read models and for the ledger's own tables.

    The read models kept beside the log use the primitives (``execute``, ``query``, the
    locks); chains, archive markers and the purge use the methods on the ledger's tables.
    Statements use ``%s`` placeholders on both backends. The transaction commits when its
    ``with`` block ends normally and rolls back if it raises. The methods on the ledger's
    tables are written once here in portable SQL; a backend supplies what differs as the
    abstract methods, each with its statement as a constant of the backend's module.
    """

    @abstractmethod
    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""

    @abstractmethod
    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query; its rows."""

    @abstractmethod
    def query_for_update(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one ``SELECT`` in a write transaction, holding its rows until the end.

        Another write transaction that reads the same rows this way waits for this one
        (``FOR UPDATE`` on PostgreSQL; on SQLite the write transaction already excludes it).
        """

    @abstractmethod
    def lock_for_schema(self, name: str) -> None:
        """Wait until no other transaction holds the schema lock ``name``, then hold it.

        Concurrent creators of the same tables (``"views"`` for the projections) queue here
        instead of racing ``CREATE`` statements. Released when the transaction ends.
        """

    @abstractmethod
    def lock_appends(self) -> None:
        """Keep every other writer from appending until this transaction ends."""

    @abstractmethod
    def key(self, checkpoint_id: UUID) -> object:
        """A checkpoint id as this backend binds it in the ledger's tables."""

    def run_checkpoint_ids(self, run_id: str) -> list[UUID]:
        """The ids of the checkpoints of ``run_id``, in id order (an index of Created events)."""
        return [as_uuid(r[0]) for r in self.query(_RUN_CHECKPOINTS, (run_id,))]

    @abstractmethod
    def _insert_purge_permit(self, key: object) -> None:
        """A purge permit for the checkpoint bound as ``key``, valid in this transaction only."""

    @abstractmethod
    def _view_tables(self) -> list[str]:
        """The names of the tables named ``ckl_view_*`` that have a ``checkpoint_id`` column."""

    @abstractmethod
    def has_table(self, name: str) -> bool:
        """Whether the table ``name`` exists (a read: nothing is created)."""

    def events_partitioned(self) -> bool:
        """Whether the event table is partitioned (PostgreSQL, after ``ckl partitions enable``).

        A partitioned store keeps an archived run's events until their partition is detached
        (``ledger.partitions``): archiving then purges nothing.
        """
        return self.has_table(PARTITIONING_TABLE) and bool(
            self.query(f"SELECT size FROM {PARTITIONING_TABLE}")
        )

    # ------------------------------------------------------------ chains

    def select_chain(self, checkpoint_id: UUID) -> list[ChainRow]:
        """One checkpoint's rows, in version order, as the chain sees them."""
        return [row for _, row in self.select_positioned_chain(checkpoint_id)]

    def select_positioned_chain(self, checkpoint_id: UUID) -> list[tuple[int, ChainRow]]:
        """One checkpoint's rows in version order, each with its position in the log."""
        return [
            (int(r[0]), ChainRow(checkpoint_id, int(r[1]), str(r[2]), bytes(r[3]), _hash(r[4])))
            for r in self.query(_SELECT_CHAIN, (self.key(checkpoint_id),))
        ]

    def select_hashes(self, checkpoint_id: UUID) -> list[bytes | None]:
        """One checkpoint's event hashes in version order (``None``: an unchained old row)."""
        rows = self.query(_SELECT_HASHES, (self.key(checkpoint_id),))
        return [_hash(r[1]) for r in rows]

    def select_chain_page(self, after: tuple[UUID, int] | None, limit: int) -> list[ChainRow]:
        """Up to ``limit`` rows of the store in (checkpoint, version) order, after ``after``."""
        if after is None:
            rows = self.query(_SELECT_FIRST_PAGE, (limit,))
        else:
            rows = self.query(_SELECT_PAGE, (self.key(after[0]), after[1], limit))
        return [
            ChainRow(as_uuid(r[0]), int(r[1]), str(r[2]), bytes(r[3]), _hash(r[4])) for r in rows
        ]

    # ------------------------------------------------------------ tracking

    tracking_inserted: bool = False
    """Set by :meth:`insert_tracking`: the recorder wakes its ``wait``-ers after the commit."""

    def max_tracking_id(self, application_name: str, *, for_update: bool = False) -> int | None:
        """The application's recorded position (``None``: none recorded).

        ``for_update=True`` also keeps the row from other writers that read it so until this
        transaction ends: of two followers of one application, the second waits and then sees
        what the first recorded.
        """
        read = self.query_for_update if for_update else self.query
        rows = read(_SELECT_TRACKING, (application_name,))
        return int(rows[0][0]) if rows else None

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record that ``tracking.application_name`` has processed up to its notification id.

        Raises:
            eventsourcing.persistence.IntegrityError: the application's recorded position is
                already at or after it (positions only move forward).
        """
        name, position = tracking.application_name, tracking.notification_id
        if not self.query(_INSERT_TRACKING, (name, position)):
            msg = f"tracking of {name!r} is already at or after position {position}"
            raise IntegrityError(msg)
        self.tracking_inserted = True

    def reset_tracking(self, application_name: str) -> None:
        """Move the application's recorded position back to 0, to rebuild what it derives."""
        self.execute(_RESET_TRACKING, (application_name,))

    # ------------------------------------------------------------ archives and purge

    def archived_heads(self) -> list[tuple[str, str]]:
        """``(run_id, heads as JSON)`` of every archive marker, restored ones included."""
        return [(str(run_id), str(heads)) for run_id, heads in self.query(_ARCHIVED_HEADS)]

    def run_is_archived(self, run_id: str) -> bool:
        """True if ``run_id`` has an archive marker that was not restored."""
        return bool(self.query(_ACTIVE_MARKER, (run_id,)))

    def mark_restored(self, run_id: str, restored_at: str) -> None:
        """Mark the run's active archive markers restored: it may be written again."""
        self.execute(_MARK_RESTORED, (restored_at, run_id))

    def insert_archive_marker(
        self,
        run_id: str,
        *,
        archived_at: str,
        events: int,
        checkpoints: int,
        file_sha256: str,
        heads: str,
    ) -> None:
        """Record that ``run_id`` was archived (``heads``: its chain heads, as JSON)."""
        self.execute(_INSERT_MARKER, (run_id, archived_at, events, checkpoints, file_sha256, heads))

    def purge_checkpoints(self, checkpoint_ids: Sequence[UUID]) -> None:
        """Delete the checkpoints' events, snapshots and projection rows, in this transaction.

        Each checkpoint gets a purge permit first, the only way past the append-only trigger
        (on PostgreSQL only the owner role may write one), dropped again once its rows are
        gone. The projections' ``ckl_view_*`` tables are found by name, not imported.
        """
        views = [
            quote_identifier(name)
            for name in self._view_tables()
            if _VIEW_TABLE_NAME.fullmatch(name)
        ]
        for oid in checkpoint_ids:
            key = self.key(oid)
            self._insert_purge_permit(key)
            self.execute(_PURGE_EVENTS, (key,))
            self.execute(_PURGE_SNAPSHOTS, (key,))
            for table in views:
                self.execute(f"DELETE FROM {table} WHERE checkpoint_id = %s", (str(oid),))
            self.execute(_DROP_PERMIT, (key,))


class LogListener(Protocol):
    """Wakes a reader when another process appends (PostgreSQL LISTEN/NOTIFY)."""

    def wait(self, timeout: float) -> bool:
        """Block up to ``timeout`` seconds; True if an append was announced.

        Raises:
            eventsourcing.persistence.OperationalError: the connection was lost (reconnect by
                asking the recorder for a new listener, then catch up from your position).
        """
        ...

    def close(self) -> None:
        """Stop listening and release the connection."""
        ...


_AT = (
    "SELECT notification_id, originator_id, originator_version, topic, state FROM "
    f"{EVENTS_TABLE} WHERE notification_id = %s"
)
_RESUME_AT = (
    f"SELECT coalesce((SELECT notification_id FROM {EVENTS_TABLE} WHERE notification_id = %s),"
    f" (SELECT max(notification_id) FROM {EVENTS_TABLE} WHERE notification_id < %s))"
)


HEADS_KEPT = 4096
"""Checkpoint heads a recorder remembers (a few hundred KB): more than a worker writes at once."""


class LedgerRecorder(ProcessRecorder):
    """eventsourcing's ``ProcessRecorder`` plus snapshots, schema and housekeeping.

    That is eventsourcing's ``ApplicationRecorder`` (``insert_events``, ``select_events``,
    ``select_notifications``, ``max_notification_id``, ``subscribe``) and its
    ``TrackingRecorder`` (``insert_tracking``, ``max_tracking_id``, ``has_tracking_id``,
    ``wait``), with the tracking records in the same database, so that a read model kept
    beside the log records its position in the transaction that updates it
    (:meth:`SQLTransaction.insert_tracking`). eventsourcing's own recorder test cases run
    against both backends (``tests/ledger/test_eventsourcing_recorders.py``).

    States are opaque bytes to the store: nothing in it parses them. What the store needs to
    know about an event beyond eventsourcing's fields, its run (for the archive guard), the
    ``Ledger`` passes as ``insert_events(..., run_id=...)``; it is ``NULL`` for events written
    by anything else.

    Every method raises eventsourcing's persistence errors (``IntegrityError`` when another
    writer already took an ``(originator_id, originator_version)``, ``OperationalError`` or
    ``InterfaceError`` when the database is unreachable); the ``Ledger`` translates them.
    ``insert_events`` also raises ``RunArchived`` for a write to an archived run, and
    ``InvalidInput`` for an append too large for one transaction (PostgreSQL).
    """

    store: StoreURL
    postgres_dialect: ClassVar[bool] = False
    """Whether the tables are PostgreSQL's (the projections' page writer picks its SQL by it)."""
    resume_sql: ClassVar[str] = _RESUME_AT
    """``resume_position``'s statement (PostgreSQL's also stops at the visible horizon)."""

    def __init__(self, store: StoreURL, settings: LedgerSettings) -> None:
        """Connect to ``store`` (``ledger.store.backends`` constructs every backend so).

        Backends call this first: it keeps what following the log and waiting on tracking
        need (the poll interval, the in-process wake-ups).
        """
        self.store = store
        self.poll_interval = settings.poll_interval
        # Read-only (settings.read_only): nothing is created, upgraded or written; every write
        # method calls refuse_write first, so a write is refused before anything is sent.
        self.read_only = settings.read_only
        # Subscriptions to wake when this recorder appends (an in-process wake-up: on SQLite
        # the only one besides polling), and wait()-ers to wake when it records tracking.
        self._append_wakers: set[threading.Event] = set()
        self._tracking_moved = threading.Condition()
        self._tracking_generation = 0
        # The (version, hash) of the last event this recorder committed per checkpoint, so
        # that the next append chains to it without reading it back (most recently used last).
        self._heads: dict[UUID, tuple[int, bytes]] = {}

    def refuse_write(self, operation: str) -> None:
        """Raise ``StoreReadOnly`` if this recorder is read-only (before anything is sent).

        Raises:
            StoreReadOnly: the recorder was opened with ``read_only``.
        """
        if self.read_only:
            raise StoreReadOnly(
                self.store.display, operation, "the ledger was opened read-only (CKL_READ_ONLY)"
            )

    def _remember_heads(self, heads: dict[UUID, tuple[int, bytes]]) -> None:
        """Keep the heads of a committed append; at most ``HEADS_KEPT``, least recent out."""
        for oid, head in heads.items():
            self._heads.pop(oid, None)
            self._heads[oid] = head
        while len(self._heads) > HEADS_KEPT:
            try:
                del self._heads[next(iter(self._heads))]
            except (StopIteration, KeyError, RuntimeError):  # another thread trimmed it
                break

    @abstractmethod
    def insert_events(
        self,
        stored_events: Sequence[StoredEvent],
        *,
        run_id: str | None = None,
        command_ids: Sequence[str | None] | None = None,
        tracking: Tracking | None = None,
        **kwargs: Any,  # noqa: ANN401  (eventsourcing's signature)
    ) -> Sequence[int]:
        """Append events atomically (with ``tracking``, if given, in the same transaction).

        Args:
            stored_events: the events, in the order their positions will follow.
            run_id: the run the events belong to (the ``Ledger`` passes it; the archive guard
                refuses a Created event of an archived run by it). ``None``: no run.
            command_ids: the id of the command each event records, aligned with
                ``stored_events`` (``None`` for an event without one; the argument ``None``:
                none has one, as eventsourcing calls it). Stored in the ``command_id``
                column, which is not part of the hash chain: the ``Ledger`` also puts the id
                in the event's state, which the chain already covers.
            tracking: a tracking record to insert atomically with the events
                (eventsourcing's ``ProcessRecorder``).
            kwargs: other keywords of eventsourcing's interface, ignored.

        Returns:
            The events' positions, ascending.

        Raises:
            CommandAlreadyRecorded: a checkpoint already recorded one of the commands (or the
                batch names one twice for a checkpoint); nothing was written.
            eventsourcing.persistence.IntegrityError: a version is taken or skipped.
            InvalidInput: ``command_ids`` does not match ``stored_events``.
        """

    @abstractmethod
    def create_tables(self) -> None:
        """Create the tables, indexes and append-only triggers, once, safely under races.

        Read-only (``settings.read_only``), only check the schema: nothing is created.

        Raises:
            StoreSchemaMismatch: (read-only) no ledger schema, or another version than
                :attr:`code_schema_version`.
        """

    @abstractmethod
    def schema_version(self) -> int:
        """The store's schema version, read without writing (0: no ledger schema)."""

    @property
    @abstractmethod
    def code_schema_version(self) -> int:
        """The schema version this code creates and upgrades stores to."""

    @abstractmethod
    def insert_snapshot(self, snapshot: StoredEvent) -> None:
        """Keep a snapshot (derived data: losing one only costs a longer load)."""

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
        return self._select(originator_id, snapshots=False, gt=gt, lte=lte, desc=desc, limit=limit)

    def select_snapshot(self, originator_id: UUID, lte: int | None = None) -> StoredEvent | None:
        """The latest snapshot of a checkpoint at or before version ``lte``."""
        rows = self._select(originator_id, snapshots=True, gt=None, lte=lte, desc=True, limit=1)
        return rows[0] if rows else None

    @abstractmethod
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
        """One checkpoint's events (or, with ``snapshots``, its snapshots), by version."""

    @abstractmethod
    def count_events(self, originator_id: UUID | None = None) -> int:
        """How many events the store holds (of one checkpoint, or in all)."""

    @abstractmethod
    def _query(self, sql: str, params: Sequence[object]) -> list[tuple[Any, ...]]:
        """The rows of one read statement run on its own: one round trip on PostgreSQL.

        ``%s`` placeholders; UUIDs are bound as the backend keys checkpoints.
        """

    def find_command(self, originator_id: UUID, command_id: str) -> tuple[int, str] | None:
        """The ``(originator_version, topic)`` of the event that recorded ``command_id``.

        ``None`` if the checkpoint recorded no such command. One probe of the command index.
        """
        rows = self._query(_FIND_COMMAND, (originator_id, command_id))
        return (int(rows[0][0]), str(rows[0][1])) if rows else None

    def resume_position(self, position: int) -> int:
        """Where a reader that handled everything up to ``position`` resumes, by position.

        The same position if its event is still in the store (or ``position`` is 0), else the
        newest position below it that is. A position's event vanishes when a run is purged
        (``ckl archive``), and when a failover to an asynchronous standby loses the last
        commits. The promoted server may then reuse
        the lost transactions' ids, so its new events can take positions *below* the ones a
        reader saw: reading on from the last common position reads them, and nothing twice
        (what lay between was lost or purged). One probe of the position index.
        """
        if position <= 0:
            return 0
        rows = self._query(self.resume_sql, (position, position))
        found = rows[0][0] if rows else None
        return 0 if found is None else int(found)

    def notification_at(self, position: int) -> Notification | None:
        """The event the store holds at ``position``, if any (one probe of the index)."""
        rows = self._query(_AT, (position,))
        return self._notification(rows[0], as_uuid(rows[0][1])) if rows else None

    def forget_head(self, originator_id: UUID) -> None:
        """Forget the head remembered for a checkpoint (its store lost what this process wrote)."""
        self._heads.pop(originator_id, None)

    def database_now(self) -> datetime:
        """The store's clock, as an aware UTC datetime: the time every writer agrees on.

        Here the machine's clock: a SQLite store is written by the processes of one machine,
        which share it, so no query is needed. PostgreSQL overrides it with the server's.
        """
        return datetime.now(UTC)

    def count_events_between(self, after: int, upto: int, cap: int) -> int:
        """Events with ``after < position <= upto``, counted up to ``cap`` (a lag, not a total).

        Counted, not subtracted: positions are not dense (PostgreSQL hands each transaction a
        block of them), so ``upto - after`` is not a number of events.
        """
        if upto <= after:
            return 0
        with self.transaction(readonly=True) as tx:
            rows = tx.query(_COUNT_BETWEEN, (after, upto, cap))
        return int(rows[0][0])

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    def transaction(
        self, *, readonly: bool = False, pipeline: bool = False, snapshot: bool = False
    ) -> AbstractContextManager[SQLTransaction]:
        """A transaction on the store's database; write ones are serialised with other writers.

        ``pipeline=True`` lets PostgreSQL send statements without waiting for each result (a
        batch of view updates costs one round trip); ``execute`` then reports no row count.
        ``snapshot=True``: every read sees the database as of the first one (REPEATABLE READ
        on PostgreSQL; a SQLite transaction always does).
        """

    def log_head(self) -> LogHead:
        """The readable head of the log (``max_notification_id``), and whether more waits."""
        return LogHead(self.max_notification_id())

    def is_standby(self) -> bool:
        """Whether the store is a read-only replica now (a PostgreSQL hot standby)."""
        return False

    def listener(self) -> LogListener | None:
        """A cross-process wake-up source, or ``None`` where the backend has none (SQLite)."""
        return None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """The log after position ``gt`` (of ``topics``, if given): catch up, then follow.

        A :class:`~ledger.store.subscription.LogSubscription`: woken by LISTEN/NOTIFY on
        PostgreSQL (reading only below the visible horizon, so it never skips an event that
        commits later), polling every ``poll_interval`` on SQLite, and at once by this
        recorder's own appends on both. ``stop()`` or leaving its ``with`` block releases its
        connection.
        """
        return LogSubscription(self, gt, topics, poll_interval=self.poll_interval)

    def wake_on_append(self, event: threading.Event) -> None:
        """Set ``event`` after each append through this recorder commits (until forgotten)."""
        self._append_wakers.add(event)

    def forget_waker(self, event: threading.Event) -> None:
        """Stop setting ``event`` on appends."""
        self._append_wakers.discard(event)

    def _appended(self) -> None:
        """After an append committed: wake this process's subscriptions."""
        for event in list(self._append_wakers):
            event.set()

    # ------------------------------------------------------------ tracking

    def insert_tracking(self, tracking: Tracking) -> None:
        """Record a tracking object in a transaction of its own.

        Raises:
            eventsourcing.persistence.IntegrityError: the application's position is already
                at or after ``tracking.notification_id``.
        """
        with self.transaction() as tx:
            tx.insert_tracking(tracking)

    def max_tracking_id(self, application_name: str) -> int | None:
        """The newest position recorded for ``application_name`` (``None``: none yet)."""
        with self.transaction(readonly=True) as tx:
            return tx.max_tracking_id(application_name)

    def wait(
        self,
        application_name: str,
        notification_id: int | None,
        timeout: float = 1.0,
        interrupt: threading.Event | None = None,
    ) -> None:
        """Block until ``application_name`` has recorded ``notification_id`` (or later).

        Signal-driven, not eventsourcing's polling with a 100 ms back-off: tracking recorded
        through this recorder (any of its transactions) wakes the waiter at once. Tracking
        recorded by another process is seen by looking again after 1 ms, doubling up to
        ``poll_interval``; so is ``interrupt``.

        Raises:
            TimeoutError: not recorded within ``timeout`` seconds.
            eventsourcing.persistence.WaitInterruptedError: ``interrupt`` was set first.
        """
        deadline = time.monotonic() + timeout
        delay = FIRST_RETRY
        while True:
            with self._tracking_moved:
                generation = self._tracking_generation
            if self.has_tracking_id(application_name, notification_id):
                return
            if interrupt is not None and interrupt.is_set():
                raise WaitInterruptedError
            remaining = deadline - time.monotonic()
            if remaining <= 0:
                msg = (
                    f"timed out waiting for notification {notification_id} from application "
                    f"{application_name!r} to be processed"
                )
                raise TimeoutError(msg)
            with self._tracking_moved:
                if self._tracking_generation == generation:  # nothing recorded since the read
                    self._tracking_moved.wait(min(delay, remaining))
            delay = min(delay * 2, self.poll_interval)

    def _committed(self, tx: SQLTransaction) -> None:
        """After ``tx`` committed: wake the ``wait``-ers if it recorded tracking."""
        if tx.tracking_inserted:
            with self._tracking_moved:
                self._tracking_generation += 1
                self._tracking_moved.notify_all()

    @staticmethod
    def _notification(row: Any, originator_id: UUID) -> Notification:  # noqa: ANN401
        return Notification(
            id=row[0],
            originator_id=originator_id,
            originator_version=row[2],
            topic=row[3],
            state=bytes(row[4]),
        )
