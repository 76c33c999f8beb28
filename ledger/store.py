"""The store: one URL picks the backend; both keep the same append-only event table.

``sqlite:///path.db`` (embedded default), ``postgresql://user:pass@host:5432/db`` and
``memory://`` (an in-memory SQLite database, for fast unit tests) all give a
:class:`LedgerRecorder`: eventsourcing's ``ApplicationRecorder`` interface (events in each
checkpoint's sequence and in one global order, the notification id) plus a snapshot table.

Both backends enforce append-only in the database: UPDATE, DELETE (and TRUNCATE on PostgreSQL)
on ``ckl_events`` are refused by triggers. Tables are created once, under a lock, so many
processes may open a new store at the same moment.
"""

from __future__ import annotations

import re
from abc import abstractmethod
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal, NamedTuple, Protocol
from urllib.parse import unquote, urlsplit, urlunsplit
from uuid import UUID, uuid4

from eventsourcing.persistence import ApplicationRecorder, Notification, StoredEvent, Subscription

from ledger.errors import InvalidInput, InvalidStoreURL

if TYPE_CHECKING:
    from collections.abc import Sequence
    from contextlib import AbstractContextManager

    from ledger.settings import LedgerSettings

__all__ = [
    "ARCHIVES_TABLE",
    "EVENTS_TABLE",
    "PURGE_PERMITS_TABLE",
    "SNAPSHOTS_TABLE",
    "LedgerRecorder",
    "LogHead",
    "LogListener",
    "SQLTransaction",
    "StoreURL",
    "open_recorder",
    "parse_store_url",
    "quote_identifier",
    "redact_url",
]

EVENTS_TABLE = "ckl_events"
SNAPSHOTS_TABLE = "ckl_snapshots"
# Tamper evidence and retention (ledger.chain, ledger.archive): a DELETE on the event table is
# refused unless the row's checkpoint has a permit written in the same transaction (only the
# owner role may write permits), and archived runs are listed so that they stay archived.
PURGE_PERMITS_TABLE = "ckl_purge_permits"
ARCHIVES_TABLE = "ckl_archives"


@dataclass(frozen=True)
class StoreURL:
    """A parsed store URL. ``display`` never contains a password."""

    kind: Literal["sqlite", "postgres", "memory"]
    url: str
    display: str
    sqlite_path: str = ""


_IDENTIFIER = re.compile(r"[a-z_][a-z0-9_]{0,62}")


def quote_identifier(name: str) -> str:
    """``name`` as a quoted SQL identifier, for table names found at run time (not values).

    Raises:
        InvalidInput: the name is not a plain lower-case identifier.
    """
    if not _IDENTIFIER.fullmatch(name):
        raise InvalidInput("identifier", f"{name[:80]!r} is not a plain lower-case SQL name")
    return f'"{name}"'


def redact_url(url: str) -> str:
    """The URL with any password replaced by ``***``: safe for logs and error messages."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return "<unparseable store URL>"
    if parts.password is None:
        return url
    netloc = parts.netloc.rsplit("@", 1)
    user = parts.username or ""
    return urlunsplit(parts._replace(netloc=f"{user}:***@{netloc[-1]}"))


def parse_store_url(url: str) -> StoreURL:  # noqa: C901  (one branch per rule it checks)
    """Check a store URL and say which backend it names.

    Raises:
        InvalidStoreURL: not a string, unknown scheme, or no path/database name.
    """
    if not isinstance(url, str) or not url.strip():
        raise InvalidStoreURL(str(url)[:200], "the store URL must be a non-empty string")
    display = redact_url(url)
    try:
        parts = urlsplit(url)
    except ValueError as exc:
        raise InvalidStoreURL(display, f"it is not a valid URL ({exc})") from exc
    scheme = parts.scheme.lower()
    if scheme == "memory":
        return StoreURL("memory", url, display)
    if scheme == "sqlite":
        if parts.netloc:
            raise InvalidStoreURL(
                display, "a SQLite URL has three slashes before a relative path (sqlite:///x.db)"
            )
        path = unquote(parts.path.removeprefix("/"))
        if not path:
            raise InvalidStoreURL(display, "the SQLite URL has no file path")
        return StoreURL("sqlite", url, display, sqlite_path=path)
    if scheme in {"postgresql", "postgres", "postgresql+psycopg"}:
        if not parts.hostname and "host=" not in parts.query:
            raise InvalidStoreURL(display, "the PostgreSQL URL has no host")
        if not parts.path.strip("/"):
            raise InvalidStoreURL(display, "the PostgreSQL URL has no database name")
        try:
            _ = parts.port
        except ValueError as exc:
            raise InvalidStoreURL(display, "the port is not a number") from exc
        plain = urlunsplit(parts._replace(scheme="postgresql"))
        return StoreURL("postgres", plain, display)
    raise InvalidStoreURL(display, f"unknown scheme {parts.scheme!r}")


class LogHead(NamedTuple):
    """Where the log's readable part ends.

    Attributes:
        readable: the newest position a reader may read now (``None``: nothing yet).
        held_back: committed events lie above ``readable`` and will become readable, at their
            own positions, once older transactions end (PostgreSQL only; see
            ``ledger.postgres``). A watcher then looks again soon rather than at the next poll.
    """

    readable: int | None
    held_back: bool = False


class SQLTransaction(Protocol):
    """One open transaction on the store, for read models kept beside the log.

    Statements use ``%s`` placeholders on both backends. The transaction commits when its
    ``with`` block ends normally and rolls back if it raises.
    """

    dialect: Literal["sqlite", "postgres"]

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        """Run one statement; the number of rows it changed."""
        ...

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        """Run one query; its rows."""
        ...


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


class LedgerRecorder(ApplicationRecorder):
    """eventsourcing's ``ApplicationRecorder`` plus snapshots, schema and housekeeping.

    Every method raises eventsourcing's persistence errors (``IntegrityError`` when another
    writer already took an ``(originator_id, originator_version)``, ``OperationalError`` or
    ``InterfaceError`` when the database is unreachable); the ``Ledger`` translates them.
    """

    store: StoreURL

    @abstractmethod
    def create_tables(self) -> None:
        """Create the tables, indexes and append-only triggers, once, safely under races."""

    @abstractmethod
    def insert_snapshot(self, snapshot: StoredEvent) -> None:
        """Keep a snapshot (derived data: losing one only costs a longer load)."""

    @abstractmethod
    def select_snapshot(self, originator_id: UUID, lte: int | None = None) -> StoredEvent | None:
        """The latest snapshot of a checkpoint at or before version ``lte``."""

    @abstractmethod
    def count_events(self, originator_id: UUID | None = None) -> int:
        """How many events the store holds (of one checkpoint, or in all)."""

    @abstractmethod
    def close(self) -> None:
        """Release connections. Idempotent."""

    @abstractmethod
    def transaction(
        self, *, readonly: bool = False, pipeline: bool = False
    ) -> AbstractContextManager[SQLTransaction]:
        """A transaction on the store's database; write ones are serialised with other writers.

        ``pipeline=True`` lets PostgreSQL send statements without waiting for each result (a
        batch of view updates costs one round trip); ``execute`` then reports no row count.
        """

    def log_head(self) -> LogHead:
        """The readable head of the log (``max_notification_id``), and whether more waits."""
        return LogHead(self.max_notification_id())

    def listener(self) -> LogListener | None:
        """A cross-process wake-up source, or ``None`` where the backend has none (SQLite)."""
        return None

    def subscribe(
        self, gt: int | None = None, topics: Sequence[str] = ()
    ) -> Subscription[ApplicationRecorder]:
        """Not offered by the recorder: live streams live in ``streams/``."""
        msg = "subscribe to the ledger through streams.run_stream, not the recorder"
        raise NotImplementedError(msg)

    @staticmethod
    def _notification(row: Any, originator_id: UUID) -> Notification:  # noqa: ANN401
        return Notification(
            id=row[0],
            originator_id=originator_id,
            originator_version=row[2],
            topic=row[3],
            state=bytes(row[4]),
        )


def open_recorder(settings: LedgerSettings) -> LedgerRecorder:
    """The recorder for ``settings.store``, with its tables in place.

    Raises:
        InvalidStoreURL: the URL is not usable.
        eventsourcing.persistence.OperationalError: the database cannot be reached.
    """
    store = parse_store_url(settings.store)
    recorder: LedgerRecorder
    if store.kind == "postgres":
        from ledger.postgres import PostgresLedgerRecorder  # noqa: PLC0415  (psycopg on demand)

        recorder = PostgresLedgerRecorder(store, settings)
    else:
        from ledger.sqlite import SQLiteLedgerRecorder  # noqa: PLC0415

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
        recorder = SQLiteLedgerRecorder(store, settings)
    try:
        recorder.create_tables()
    except BaseException:
        recorder.close()
        raise
    return recorder
