"""Projections: the follower that keeps the read models current, and their facade.

Each view module owns its table's DDL, its ``apply`` and its reads; :class:`Projections`
checks a query's arguments and runs the view's read in one read-only transaction.

Each batch of events is applied to every view and the tracking position is moved **in the same
transaction**, after re-reading (and on PostgreSQL locking) the tracked position inside it. So
an event is applied exactly once, whatever crashes or how many followers run at once: a crash
rolls the whole batch back, and a second follower skips what the first already applied. The
position is an eventsourcing tracking record (``Tracking("views", position)``) in the store's
tracking table, written through the recorder's transaction (``ledger.store``).

Following the log: the follower (a ``ledger.LogFollower`` whose step applies one batch)
sleeps until the ledger's ``LogWatcher`` says the log may have advanced — at once for appends
through the same ``Ledger``, by LISTEN/NOTIFY for other processes on PostgreSQL (reconnecting
after a server restart), and within the ledger's ``poll_interval`` otherwise — then catches up
from its tracked position.

Read-your-writes is signal-driven: :meth:`Projections.wait_for` sleeps on a condition that the
follower notifies after each commit, never on a back-off timer.
"""

from __future__ import annotations

import logging
import threading
from typing import TYPE_CHECKING, Any, NamedTuple, Protocol, Self, TypeVar

from eventsourcing.persistence import PersistenceError, Tracking

from ledger import (
    CheckpointState,
    CheckpointToken,
    InvalidInput,
    Ledger,
    LedgerError,
    LogFollower,
    check_aware,
    check_count,
    check_run_id,
    check_seconds,
    check_text,
    check_token,
)
from ledger.events import EVENT_TYPES, Snapshot
from ledger.store import TRACKING_TABLE, private_views_recorder, store_error
from projections.cursor import CursorView
from projections.failures import AUDIT_KINDS, FailureView
from projections.fold import PageWriter, decode
from projections.history import HistoryView
from projections.stuck import STUCK_IDLE_SECONDS, stuck
from projections.timeline import TimelineView

if TYPE_CHECKING:
    from collections.abc import Callable, Collection, Iterator
    from datetime import datetime
    from types import TracebackType
    from uuid import UUID

    from ledger import SQLTransaction
    from ledger.store import LedgerRecorder
    from projections._common import View
    from projections.models import (
        AuditKind,
        CheckpointSummary,
        FailureRecord,
        History,
        RunProgress,
        RunStatus,
        RunSummary,
        StuckCheckpoint,
        TimelineEntry,
    )

__all__ = ["SCHEMA_TABLE", "VIEWS_SCHEMA_VERSION", "Projections"]

log = logging.getLogger("projections")

T = TypeVar("T")


class _Keyed(Protocol):
    @property
    def position(self) -> int: ...


R = TypeVar("R", bound=_Keyed)


class _Page(NamedTuple):
    """One page of a keyset read: rows after ``after`` and before ``before``, by position."""

    after: int
    before: int | None
    limit: int | None
    descending: bool


PAGE_SIZE = 1000
"""Rows per page (one read-only transaction each) of the iterators: big enough that a page's
round trip is small next to decoding it, small enough that a page is a few hundred KB."""

TRACKING = TRACKING_TABLE
"""The store's tracking table (eventsourcing's tracking records; columns ``name, position``)."""
TRACKING_NAME = "views"
"""The views' application name in the tracking table."""
SCHEMA_TABLE = "ckl_view_schema"
"""One row per set of views: the version of the tables' shape they were built with."""
VIEWS_SCHEMA_VERSION = 2
"""The shape of the view tables (1: before leases, never recorded; 2: owner, lease, kinds)."""


class Projections:
    """The read models of one ledger's store, kept exactly once per event.

    Use it as a context manager, or call :meth:`close`. Without :meth:`start`, nothing runs in
    the background and :meth:`catch_up` (or :meth:`wait_for`) applies new events on demand.
    """

    def __init__(
        self,
        ledger: Ledger,
        *,
        history_size: int = 100,
        batch_size: int = 2000,
    ) -> None:
        """Create the views' tables if needed and hook into the ledger's appends.

        Args:
            ledger: the ledger whose log the views follow (their tables live in its store).
            history_size: yields kept per checkpoint in the bounded history.
            batch_size: events applied per transaction while catching up (a page, folded
                and written in a few set-based statements per view: ``projections.fold``).

        Raises:
            InvalidInput: a non-positive size or interval.
            StoreUnavailable: the store cannot be reached.
        """
        check_count(history_size, "history_size", minimum=1)
        check_count(batch_size, "batch_size", minimum=1)
        self.ledger = ledger
        self.recorder: LedgerRecorder = ledger.recorder
        # A read-only ledger cannot write the store's views: it reads them while they are
        # current, else builds its own in memory (see _open_read_only).
        self._follows_stored_views = False
        self.history_size = history_size
        self.batch_size = batch_size
        self._cursor = CursorView()
        self._history = HistoryView(history_size)
        self._failures = FailureView()
        self._timeline = TimelineView()
        # Order matters: the cursor view creates the row the others read run_id from.
        self.views: tuple[View, ...] = (
            self._cursor,
            self._history,
            self._failures,
            self._timeline,
        )
        self._apply_lock = threading.Lock()
        if ledger.recorder.read_only:
            self._store_call("open views", self._open_read_only)
        # The dialect of the database the view tables are in (private views are SQLite).
        self._writer = PageWriter(
            postgres=self.recorder.postgres_dialect, history_size=history_size
        )
        step = self._follow_tracking if self._follows_stored_views else self._apply_batch
        # Any LedgerError is waited out, as a store outage is: the views must keep following.
        self._follower = LogFollower(
            ledger,
            lambda _follower: self._store_call("apply", step),
            name="ckl-projections",
            what="views",
            log=log,
            retry_on=(LedgerError,),
            # After an outage (a failover among them) from the position the views' own
            # tracking row holds: it commits with the views, so it is what they contain.
            resume=lambda _position, _seen: self._store_call(
                "read position", self._tracked_position
            ),
        )
        if not self._follows_stored_views:
            self._store_call("create views", self._create_tables)
        self._follower.advance(self._store_call("read position", self._tracked_position))

    # ---------------------------------------------------------------- life cycle

    def start(self) -> Self:
        """Follow the log in a background thread until :meth:`stop` or :meth:`close`."""
        self._follower.start()
        return self

    def stop(self) -> None:
        """Stop the background thread (views keep their state; start again to resume)."""
        self._follower.stop()

    def close(self) -> None:
        """Stop following. The ledger stays open (private in-memory views are dropped)."""
        self.stop()
        if self.recorder is not self.ledger.recorder:
            self.recorder.close()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def position(self) -> int:
        """Global position of the last event the views include (0: none)."""
        return self._follower.position

    @property
    def running(self) -> bool:
        """True while a background thread follows the log."""
        return self._follower.running

    # ---------------------------------------------------------------- applying

    def catch_up(self) -> int:
        """Apply every event committed so far; returns the views' position."""
        return self._follower.catch_up()

    def wait_for(self, position: int, timeout: float = 5.0) -> int:
        """Block until the views include global ``position``; returns the views' position.

        With the follower running this sleeps on a signal; without it, it applies the missing
        events itself.

        Raises:
            InvalidInput: ``position`` is not an int ≥ 0 or ``timeout`` not finite seconds ≥ 0.
            AwaitTimeout: the views did not get there within ``timeout`` seconds.
        """
        return self._follower.wait_for(position, timeout)

    def sync(self, timeout: float = 5.0) -> int:
        """Read-your-writes: wait until the views include everything committed by now."""
        check_seconds(timeout, "timeout")
        # Stored views on a read-only ledger: as of their tracked position (the log's head
        # when they were opened, or later if a projector elsewhere moved them on).
        head = self._tracked_position if self._follows_stored_views else self._log_head
        target = self._store_call("read log head", head) or 0
        return self.wait_for(target, timeout)

    def rebuild(self) -> int:
        """Drop the views, recreate them and replay the whole log; returns the new position.

        Safe while followers run in this or other processes (see the module docstring): the
        reset is one transaction, and they notice it and carry on from the tracked position.
        """
        was_running = self.running
        self.stop()
        with self._apply_lock:

            def drop_and_create() -> None:
                with self.recorder.transaction() as tx:
                    self._rebuild_tables(tx)

            self._store_call("rebuild", drop_and_create)
            self._follower.advance(0)
        position = self.catch_up()
        if was_running:
            self.start()
        return position

    # ---------------------------------------------------------------- queries

    def current(self, token: CheckpointToken) -> CheckpointSummary | None:
        """The checkpoint's row in the cursor view, or ``None`` if the views have not seen it."""
        check_token(token)
        return self._read(lambda tx: self._cursor.current(tx, token.checkpoint_id))

    def checkpoints(self, run_id: str) -> list[CheckpointSummary]:
        """Every checkpoint of a run, by batch index."""
        check_run_id(run_id)
        return self._read(lambda tx: self._cursor.checkpoints(tx, run_id))

    def pending_checkpoints(self, run_id: str) -> list[CheckpointToken]:
        """Tokens of the run's open checkpoints (created, neither completed nor failed)."""
        check_run_id(run_id)
        return self._read(lambda tx: self._cursor.pending_checkpoints(tx, run_id))

    def progress(self, run_id: str) -> RunProgress:
        """Completed / total batches of a run (completions are durable by construction)."""
        check_run_id(run_id)
        return self._read(lambda tx: self._cursor.progress(tx, run_id))

    def runs(
        self,
        *,
        status: RunStatus | None = None,
        contains: str | None = None,
        limit: int | None = None,
    ) -> list[RunSummary]:
        """The store's runs, latest activity first, with their counts by status.

        ``status`` keeps the runs of that :data:`~projections.models.RunStatus`, ``contains``
        those whose id contains the text, ``limit`` the first so many. One grouped scan of the
        cursor view (one row per checkpoint), filtered after it: made for run lists of up to
        some thousands of runs.

        Raises:
            InvalidInput: an unknown status, a ``contains`` that is not a str, a bad limit.
        """
        if status is not None and status not in ("failed", "running", "completed"):
            raise InvalidInput("status", "must be 'failed', 'running' or 'completed'")
        if contains is not None:
            check_text(contains, "contains")
        if limit is not None:
            check_count(limit, "limit", minimum=1)
        runs = self._read(self._cursor.runs)
        if status is not None:
            runs = [run for run in runs if run.status == status]
        if contains:
            runs = [run for run in runs if contains in run.run_id]
        return runs if limit is None else runs[:limit]

    def history(self, token: CheckpointToken) -> History:
        """The bounded history of a checkpoint: its last ``history_size`` yields."""
        check_token(token)
        return self._read(lambda tx: self._history.history(tx, token.checkpoint_id))

    def failures(
        self,
        *,
        run_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error_type: str | None = None,
        transient: bool | None = None,
        kind: AuditKind | None = None,
        limit: int | None = None,
        after: int = 0,
        batches: Collection[int] | None = None,
    ) -> list[FailureRecord]:
        """The failure audit, oldest first, filtered by run, time, type, transience and kind.

        ``kind``: ``"failure"``, ``"takeover"`` or ``"cancel"`` (``None``: all); ``since`` and
        ``until`` are both inclusive. ``after`` and
        ``limit`` page it by position: pass the last record's ``position`` as the next
        ``after`` (:meth:`iter_failures` does this for you).

        Raises:
            InvalidInput: a bad filter (a naive datetime, an unknown kind…).
            StoreUnavailable: the store cannot be read.
        """
        query = self._failure_query(
            run_id=run_id, since=since, until=until, error_type=error_type,
            transient=transient, kind=kind, batches=batches,
        )  # fmt: skip
        check_count(after, "after")
        if limit is not None:
            check_count(limit, "limit")
        return self._read(lambda tx: query(tx, _Page(after, None, limit, descending=False)))

    def iter_failures(
        self,
        *,
        run_id: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        error_type: str | None = None,
        transient: bool | None = None,
        kind: AuditKind | None = None,
        batches: Collection[int] | None = None,
        after: int = 0,
        descending: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[FailureRecord]:
        """The failure audit page by page: :meth:`failures` without holding it all.

        Each page is one read-only transaction, keyed by position (rows after the previous
        page's last, or before it when ``descending``: newest first), so memory stays flat
        and a row appended meanwhile is read once, in its place.

        Raises:
            InvalidInput: a bad filter or page size (raised by the call, before any read).
            StoreUnavailable: the store cannot be read.
        """
        query = self._failure_query(
            run_id=run_id, since=since, until=until, error_type=error_type,
            transient=transient, kind=kind, batches=batches,
        )  # fmt: skip
        check_count(after, "after")
        check_count(page_size, "page_size", minimum=1)
        return self._pages(query, after=after, descending=descending, page_size=page_size)

    def _failure_query(
        self,
        *,
        run_id: str | None,
        since: datetime | None,
        until: datetime | None,
        error_type: str | None,
        transient: bool | None,
        kind: AuditKind | None,
        batches: Collection[int] | None,
    ) -> Callable[[SQLTransaction, _Page], list[FailureRecord]]:
        """Check the audit's filters once; the page query that applies them."""
        _check_filters(run_id, error_type, transient, None)
        if kind is not None and kind not in AUDIT_KINDS:
            raise InvalidInput("kind", f"expected one of {', '.join(AUDIT_KINDS)} or None")
        if since is not None:
            check_aware(since, "since")
        if until is not None:
            check_aware(until, "until")
        listed = _check_batches(batches)

        def query(tx: SQLTransaction, page: _Page) -> list[FailureRecord]:
            return self._failures.failures(
                tx,
                run_id=run_id,
                since=since,
                until=until,
                error_type=error_type,
                transient=transient,
                kind=kind,
                limit=page.limit,
                after=page.after,
                before=page.before,
                batches=listed,
                descending=page.descending,
            )

        return query

    def stuck(
        self,
        run_id: str | None = None,
        *,
        idle: float | None = None,
        now: datetime | None = None,
    ) -> list[StuckCheckpoint]:
        """Open checkpoints nobody is moving, longest idle first (of one run, or every run).

        Stuck means its owner's lease expired (reason ``"lease expired"``: the worker is
        presumed dead and another may take it over), or no event of any kind for ``idle``
        seconds (reason ``"idle"``). As of the views: :meth:`sync` first to include the
        latest writes.

        Args:
            run_id: one run, or ``None`` for every run.
            idle: seconds without an event that make a checkpoint stuck (default
                :data:`STUCK_IDLE_SECONDS`, 300).
            now: the moment judged at (timezone-aware; default the ledger's clock).

        Raises:
            InvalidInput: a bad run id, a negative or non-finite ``idle``, a naive ``now``.
            StoreUnavailable: the store cannot be read.
        """
        if run_id is not None:
            check_run_id(run_id)
        seconds = STUCK_IDLE_SECONDS if idle is None else check_seconds(idle, "idle")
        moment = self.ledger.now() if now is None else check_aware(now, "now")
        return self._read(lambda tx: stuck(tx, run_id, idle=seconds, now=moment))

    def timeline(
        self,
        run_id: str,
        *,
        after: int = 0,
        until: datetime | None = None,
        limit: int | None = None,
        since: datetime | None = None,
        batches: Collection[int] | None = None,
        topics: Collection[str] | None = None,
    ) -> list[TimelineEntry]:
        """Every event of a run in global order (after a position, up to a moment).

        ``after`` and ``limit`` page it by position: pass the last entry's ``position`` as the
        next ``after`` (:meth:`iter_timeline` does this for you). ``since``/``until`` keep
        the events of that time span (both inclusive), ``batches`` those batch indexes,
        ``topics`` those event topics (``Yielded.topic``…).

        Raises:
            InvalidInput: a bad run id, position, limit, naive time, batch or topic.
            StoreUnavailable: the store cannot be read.
        """
        query = self._timeline_query(
            run_id=run_id, since=since, until=until, batches=batches, topics=topics
        )
        check_count(after, "after")
        if limit is not None:
            check_count(limit, "limit")
        return self._read(lambda tx: query(tx, _Page(after, None, limit, descending=False)))

    def iter_timeline(
        self,
        run_id: str,
        *,
        after: int = 0,
        since: datetime | None = None,
        until: datetime | None = None,
        batches: Collection[int] | None = None,
        topics: Collection[str] | None = None,
        descending: bool = False,
        page_size: int = PAGE_SIZE,
    ) -> Iterator[TimelineEntry]:
        """A run's timeline page by page: :meth:`timeline` without holding the run.

        Each page is one read-only transaction of at most ``page_size`` entries, keyed by
        global position (after the previous page's last; before it when ``descending``,
        newest first, which is how "the last N" is read), never OFFSET: memory stays flat
        whatever the run's size, and an event appended while reading is read once, in order.

        Raises:
            InvalidInput: a bad argument (raised before the first page is read).
            StoreUnavailable: the store cannot be read.
        """
        query = self._timeline_query(
            run_id=run_id, since=since, until=until, batches=batches, topics=topics
        )
        check_count(after, "after")
        check_count(page_size, "page_size", minimum=1)
        return self._pages(query, after=after, descending=descending, page_size=page_size)

    def heads(
        self,
        run_id: str,
        *,
        until: datetime | None = None,
        batches: Collection[int] | None = None,
    ) -> dict[int, tuple[UUID, int]]:
        """Each batch's checkpoint id and last version at or before ``until`` (default: all).

        What a state "as of" needs: ``ledger.get_checkpoint(token, as_of=version)`` starts
        from the nearest snapshot instead of folding the run's whole timeline.

        Raises:
            InvalidInput: a bad run id, a naive ``until``, a bad batch index.
            StoreUnavailable: the store cannot be read.
        """
        check_run_id(run_id)
        if until is not None:
            check_aware(until, "until")
        listed = _check_batches(batches)
        return self._read(lambda tx: self._timeline.heads(tx, run_id, until=until, batches=listed))

    def run_state_as_of(
        self, run_id: str, moment: datetime, *, batches: Collection[int] | None = None
    ) -> dict[int, CheckpointState]:
        """Each batch's state at ``moment`` (of ``batches``, or every batch created by then)."""
        check_aware(moment, "moment")
        return self.run_states(run_id, until=moment, batches=batches)

    def run_states(
        self,
        run_id: str,
        *,
        until: datetime | None = None,
        batches: Collection[int] | None = None,
    ) -> dict[int, CheckpointState]:
        """Each batch's state at its last event the views include (up to ``until``), by batch.

        One ledger read per batch, from its nearest snapshot up to that version
        (:meth:`heads`), never the whole timeline in memory.

        Raises:
            InvalidInput: a bad run id, a naive ``until``, a bad batch index.
            StoreUnavailable: the store cannot be read.
        """
        states: dict[int, CheckpointState] = {}
        for batch, (oid, version) in sorted(
            self.heads(run_id, until=until, batches=batches).items()
        ):
            token = CheckpointToken(run_id=run_id, batch_index=batch, checkpoint_id=oid)
            states[batch] = self.ledger.get_checkpoint(token, as_of=version)
        return states

    def _timeline_query(
        self,
        *,
        run_id: str,
        since: datetime | None,
        until: datetime | None,
        batches: Collection[int] | None,
        topics: Collection[str] | None,
    ) -> Callable[[SQLTransaction, _Page], list[TimelineEntry]]:
        """Check the timeline's filters once; the page query that applies them."""
        check_run_id(run_id)
        for moment, name in ((since, "since"), (until, "until")):
            if moment is not None:
                check_aware(moment, name)
        listed = _check_batches(batches)
        kinds = None
        if topics is not None:
            if isinstance(topics, str):
                raise InvalidInput("topics", "expected a collection of topics, not one string")
            kinds = list(topics)
            for topic in kinds:
                if topic not in EVENT_TYPES or topic == Snapshot.topic:
                    known = ", ".join(t for t in EVENT_TYPES if t != Snapshot.topic)
                    raise InvalidInput("topics", f"unknown event topic {topic!r} (one of {known})")
        to_event = self.ledger.mapper.to_event

        def query(tx: SQLTransaction, page: _Page) -> list[TimelineEntry]:
            return self._timeline.timeline(
                tx,
                to_event,
                run_id,
                after=page.after,
                before=page.before,
                since=since,
                until=until,
                batches=listed,
                topics=kinds,
                limit=page.limit,
                descending=page.descending,
            )

        return query

    def _pages(
        self,
        query: Callable[[SQLTransaction, _Page], list[R]],
        *,
        after: int,
        descending: bool,
        page_size: int,
    ) -> Iterator[R]:
        """Read pages of ``query`` until a short one, each in its own read-only transaction.

        Each page starts past the previous page's last row (rows are keyed by position):
        after it, or before it when ``descending``.
        """
        page = _Page(after, None, page_size, descending=descending)
        while True:
            rows = self._read(lambda tx, page=page: query(tx, page))  # type: ignore[misc]
            yield from rows
            if len(rows) < page_size:
                return
            last = rows[-1].position
            page = page._replace(before=last) if descending else page._replace(after=last)

    def tracked_position(self) -> int:
        """Global position of the last event the views applied, as recorded in the store.

        Unlike :attr:`position` (what this object has applied or seen applied), it counts the
        work of every process that keeps these views, such as a ``ckl project`` elsewhere.

        Raises:
            StoreUnavailable: the store cannot be read.
        """
        return self._tracked_position()

    def checkpoint_counts(self) -> dict[str, int]:
        """How many checkpoints of every run have each status, as of the views.

        One scan of the cursor view (a row per checkpoint); every status is present, 0 if none.

        Raises:
            StoreUnavailable: the store cannot be read.
        """
        return self._read(self._cursor.checkpoint_counts)

    # ---------------------------------------------------------------- internals

    def _log_head(self) -> int | None:
        return self.recorder.max_notification_id()

    def _open_read_only(self) -> None:
        """Read the store's views if they are current, else build private ones (one note).

        Current: built with this code's view schema, and tracked up to the log's readable
        head. Otherwise the views are built in a private in-memory database from the log
        (``ledger.store.private``); nothing is written to the store either way.
        """
        store = self.ledger.recorder
        built: int | None = None
        tracked: int | None = None
        with store.transaction(readonly=True) as tx:
            if tx.has_table(SCHEMA_TABLE):
                rows = tx.query(
                    f"SELECT version FROM {SCHEMA_TABLE} WHERE name = %s", (TRACKING_NAME,)
                )
                built = int(rows[0][0]) if rows else None
                tracked = tx.max_tracking_id(TRACKING_NAME) or 0
        head = store.log_head().readable or 0
        if built == VIEWS_SCHEMA_VERSION and tracked == head:
            self._follows_stored_views = True
            return
        state = (
            "has no views"
            if built is None
            else f"has views of schema {built} at position {tracked} of {head}"
        )
        # INFO, not a warning: the reads are right either way, only slower (a replay).
        log.info(
            "read-only store %s %s: building them in memory from the log for this process "
            "(`ckl project` or `ckl rebuild` with write access brings the stored ones up to date)",
            self.ledger.store_display,
            state,
        )
        self.recorder = private_views_recorder(store, self.ledger.settings)

    def _follow_tracking(self) -> bool:
        """Stored views on a read-only ledger: move to the position a projector recorded."""
        tracked = self._tracked_position()
        if tracked <= self._follower.position:
            return False
        self._follower.advance(tracked)
        return True

    def _lock_schema(self, tx: SQLTransaction) -> None:
        tx.lock_for_schema("views")

    def _create_tables(self) -> None:
        """Create the views if missing; rebuild them if they have another shape than ours."""
        with self.recorder.transaction() as tx:
            self._lock_schema(tx)
            tx.execute(
                f"CREATE TABLE IF NOT EXISTS {SCHEMA_TABLE}"
                " (name TEXT PRIMARY KEY, version BIGINT NOT NULL)"
            )
            rows = tx.query(f"SELECT version FROM {SCHEMA_TABLE} WHERE name = %s", (TRACKING_NAME,))
            built = int(rows[0][0]) if rows else None
            tracked = tx.max_tracking_id(TRACKING_NAME)
            if built == VIEWS_SCHEMA_VERSION:
                for view in self.views:
                    for statement in view.ddl:
                        tx.execute(statement)
                return
            if built is not None or tracked:
                log.info(
                    "views were built with schema %s, this version keeps schema %s:"
                    " rebuilding them from the log",
                    built or 1,
                    VIEWS_SCHEMA_VERSION,
                )
            self._rebuild_tables(tx)

    def _rebuild_tables(self, tx: SQLTransaction) -> None:
        """Drop and create every view table and move the tracked position to 0, in ``tx``.

        The tracking row is locked first, as a follower's batch does, then the tables: the
        same lock order everywhere, so a rebuild and a follower's batch never deadlock.
        """
        self._lock_schema(tx)
        if tx.max_tracking_id(TRACKING_NAME, for_update=True) is None:
            # A row at 0 from the start, so that followers always have one to lock (under the
            # views' lock, so two creators do not race for it).
            tx.insert_tracking(Tracking(TRACKING_NAME, 0))
        else:
            tx.reset_tracking(TRACKING_NAME)
        for view in self.views:
            for table in view.tables:
                tx.execute(f"DROP TABLE IF EXISTS {table}")
        for view in self.views:
            for statement in view.ddl:
                tx.execute(statement)
        tx.execute(
            f"INSERT INTO {SCHEMA_TABLE} (name, version) VALUES (%s, %s)"
            " ON CONFLICT (name) DO UPDATE SET version = excluded.version",
            (TRACKING_NAME, VIEWS_SCHEMA_VERSION),
        )

    def _tracked_position(self) -> int:
        return self.recorder.max_tracking_id(TRACKING_NAME) or 0

    def _apply_batch(self) -> bool:
        """Apply the next batch of events; False when there was nothing new."""
        with self._apply_lock:
            start = self._follower.position
            notes = self.recorder.select_notifications(
                start, self.batch_size, inclusive_of_start=False
            )
            if not notes:
                return False
            with self.recorder.transaction(pipeline=True) as tx:
                tracked = tx.max_tracking_id(TRACKING_NAME, for_update=True) or 0
                # Only a rebuild moves the tracked position back (module docstring): then this
                # batch is dropped and the follower starts again from the tracked position.
                rebuilt = tracked < start
                fresh = [] if rebuilt else [note for note in notes if note.id > tracked]
                # Skipped ones another follower applied already: exactly once.
                if fresh:
                    to_event = self.ledger.mapper.to_event
                    self._writer.apply(tx, [decode(note, to_event) for note in fresh])
                last = fresh[-1].id if fresh else tracked
                if last != tracked:
                    tx.insert_tracking(Tracking(TRACKING_NAME, last))
            if rebuilt:
                log.info(
                    "views were rebuilt elsewhere (tracked at %d, this follower at %d):"
                    " following again from %d",
                    tracked,
                    start,
                    tracked,
                )
                self._follower.advance(tracked)
                return True
            self._follower.advance(max(start, last, tracked))
            return True  # maybe more: the next round reads from the new position

    def _query(self, sql: str, params: Any = ()) -> list[tuple[Any, ...]]:  # noqa: ANN401
        return self._read(lambda tx: tx.query(sql, params))

    def _read(self, read: Callable[[SQLTransaction], T]) -> T:
        """One view read in one read-only transaction; a store error is ``StoreUnavailable``."""

        def run() -> T:
            with self.recorder.transaction(readonly=True) as tx:
                return read(tx)

        return self._store_call("query views", run)

    def _store_call(self, operation: str, call: Callable[[], T]) -> T:
        try:
            return call()
        except PersistenceError as exc:
            raise store_error(exc, self.ledger.store_display, operation) from exc


def _check_batches(batches: Collection[int] | None) -> list[int] | None:
    """Batch indexes as a list, each an int ≥ 0 (``None``: every batch)."""
    if batches is None:
        return None
    if isinstance(batches, int | str):
        raise InvalidInput("batches", "expected a collection of batch indexes")
    return [check_count(batch, "batches") for batch in batches]


def _check_filters(run_id: object, error_type: object, transient: object, limit: object) -> None:
    if run_id is not None:
        check_run_id(run_id)
    if error_type is not None:
        check_text(error_type, "error_type")
    if transient is not None and not isinstance(transient, bool):
        raise InvalidInput("transient", f"expected a bool or None, got {transient!r}")
    if limit is not None:
        check_count(limit, "limit")
