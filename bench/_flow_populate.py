"""Big logs, written fast: event rows and the view rows the projections would hold for them.

Writing a million events through the API (and then projecting them one by one) would take the
whole time budget, so the sections that need big stores write them in bulk: the event documents
are built from templates that give the bytes ``ledger``'s mapper writes, and the view rows are
folded here the way ``projections/`` folds them. :func:`check` proves both on every run, on
each backend, before anything is measured: every template against the mapper, and a small
bulk-loaded store's view tables against what ``Projections.rebuild()`` makes of its log.

Only ``Created``, ``Yielded`` and ``Completed`` are folded into view rows; logs with failures
and retries are written as events only (the catch-up section rebuilds their views itself).
"""

from __future__ import annotations

import itertools
import json
import sqlite3
from collections import deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any, Protocol
from uuid import UUID

import psycopg

from bench._workload import ITEMS_PER_YIELD, yield_payload
from ledger import Completed, Created, Failed, Ledger, LedgerSettings, Retried, Yielded
from ledger._mapper import EventMapper
from ledger.chain import chain_hash
from ledger.checkpoint import checkpoint_id_for
from projections import Projections
from projections._common import to_json, to_time

if TYPE_CHECKING:
    from collections.abc import Iterable, Iterator

    from ledger import CheckpointEvent

__all__ = [
    "BulkLoader",
    "LogBuilder",
    "Spec",
    "check",
    "checkpoint_specs",
    "interleave",
    "loader_for",
    "run_specs",
]

BASE_TIME = datetime(2026, 1, 1, tzinfo=UTC)
_CHUNK = 20_000

# The mapper's JSON (pydantic's model_dump_json): fields in declaration order, compact.
_HEAD = '{"originator_id":"%s","originator_version":%d,"timestamp":"%s","command_id":null,'
_CREATED = _HEAD + '"run_id":%s,"batch_index":%d,"total_batches":%d,"metadata":{}}'
_YIELDED = (
    _HEAD + '"attempt":%d,"cursor":%d,"items_processed":%d,'
    '"accumulated_results":{"rows_ok":%d,"rows_skipped":%d,"amount_cents":%d},'
    '"lease_expires_at":null}'
)
_COMPLETED = _HEAD + '"attempt":%d,"result":{"rows":%d}}'
_FAILED = (
    _HEAD + '"attempt":%d,"error_type":"TimeoutError","message":"upstream timed out",'
    '"transient":true,"cursor":%d,"items_processed":%d,"traceback":null,"host":null,'
    '"pid":null}'
)
_RETRIED = _HEAD + '"attempt":%d}'


@dataclass(frozen=True, slots=True)
class Spec:
    """One event to write, before it has a position: kind C(reated), Y, D(one), F, R."""

    kind: str
    run_id: str
    batch_index: int
    total_batches: int
    version: int
    step: int
    attempt: int


def checkpoint_specs(
    run_id: str,
    batch_index: int,
    total_batches: int,
    events: int,
    *,
    complete: bool = True,
    fail: bool = False,
) -> Iterator[Spec]:
    """A checkpoint's events: Created, yields, then Completed (when ``complete``).

    With ``fail``, a transient failure and its retry sit in the middle (attempt 2 resumes).
    """
    version, step, attempt = 1, 0, 1
    yield Spec("C", run_id, batch_index, total_batches, 1, 0, 1)
    last = events - 1 if complete else events
    failure_at = events // 2 if fail and events >= 6 else -1
    while version < last:
        version += 1
        if version == failure_at:
            yield Spec("F", run_id, batch_index, total_batches, version, step, attempt)
            version += 1
            attempt += 1
            yield Spec("R", run_id, batch_index, total_batches, version, step, attempt)
            continue
        step += 1
        yield Spec("Y", run_id, batch_index, total_batches, version, step, attempt)
    if complete:
        yield Spec("D", run_id, batch_index, total_batches, events, step, attempt)


def run_specs(
    run_id: str, checkpoints: int, events: int, *, complete: bool = True, fail_every: int = 0
) -> Iterator[Spec]:
    """A run of ``checkpoints`` batches of ``events`` events each, one batch after the other."""
    for batch in range(checkpoints):
        fail = fail_every > 0 and batch % fail_every == fail_every - 1
        yield from checkpoint_specs(
            run_id, batch, checkpoints, events, complete=complete, fail=fail
        )


def interleave(rare: Iterable[Spec], common: Iterable[Spec], every: int) -> Iterator[Spec]:
    """``every - 1`` events of ``common``, then one of ``rare``, and so on; then what is left."""
    rare_it, common_it = iter(rare), iter(common)
    while True:
        chunk = list(itertools.islice(common_it, every - 1))
        yield from chunk
        nxt = next(rare_it, None)
        if nxt is None:
            yield from common_it
            return
        yield nxt
        if not chunk:
            yield from rare_it
            return


@dataclass
class _Cursor:
    """A checkpoint's row in ``ckl_view_cursor``, as ``projections/cursor.py`` keeps it."""

    checkpoint_id: str
    run_id: str
    batch_index: int
    total_batches: int | None
    status: str
    attempt: int
    step: int
    """The yield step whose cursor and results the row holds (0: none yet)."""
    items_processed: int
    yields: int
    version: int
    created_at: str
    updated_at: str
    position: int

    def row(self) -> tuple[object, ...]:
        cursor = results = None
        if self.step:  # JSON only for the row written, not for every yield folded
            value, _, accumulated = yield_payload(self.step)
            cursor, results = to_json(value), to_json(accumulated)
        return (
            self.checkpoint_id,
            self.run_id,
            self.batch_index,
            self.total_batches,
            self.status,
            self.attempt,
            cursor,
            self.items_processed,
            results,
            self.yields,
            self.version,
            self.created_at,
            self.updated_at,
            self.position,
        )


CURSOR_COLUMNS = (
    "checkpoint_id, run_id, batch_index, total_batches, status, attempt, cursor,"
    " items_processed, accumulated_results, yields, version, created_at, updated_at, position"
)
HISTORY_COLUMNS = "checkpoint_id, seq, attempt, cursor, items_processed, at, position"
TIMELINE_COLUMNS = "position, run_id, checkpoint_id, batch_index, version, topic, at"
EVENT_COLUMNS = (
    "notification_id, originator_id, originator_version, topic, state, run_id, event_hash"
)


class BulkLoader(Protocol):
    """Writes rows into a store's tables in big transactions, without the durability wait."""

    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """Add ``rows`` to ``table``."""
        ...

    def finish(self, last_position: int) -> None:
        """Point the sequence and the views' tracking at ``last_position``; tidy up."""
        ...

    def close(self) -> None:
        """Release the connection."""
        ...


@dataclass
class LogBuilder:
    """Turns specs into ``ckl_events`` rows (and, with ``views``, the views' rows) in a store."""

    loader: BulkLoader
    views: bool = True
    history_size: int = 100
    position: int = 0
    cursors: dict[str, _Cursor] = field(default_factory=dict)
    history: dict[str, deque[tuple[str, int, int, int, str, int]]] = field(default_factory=dict)
    _ids: dict[tuple[str, int], str] = field(default_factory=dict)
    _hashes: dict[str, bytes] = field(default_factory=dict)
    _second: tuple[int, str] = (-1, "")

    def write(self, specs: Iterable[Spec]) -> int:
        """Append every spec at the next positions; returns how many."""
        events: list[tuple[Any, ...]] = []
        timeline: list[tuple[Any, ...]] = []
        count = 0
        for spec in specs:
            self.position += 1
            count += 1
            events.append(self._row(spec, timeline))
            if len(events) >= _CHUNK:
                self._flush(events, timeline)
        self._flush(events, timeline)
        return count

    def finish(self) -> None:
        """Write the cursor and history rows and set the views' tracking position."""
        if self.views:
            rows = [c.row() for c in self.cursors.values()]
            for start in range(0, len(rows), _CHUNK):
                self.loader.insert("ckl_view_cursor", CURSOR_COLUMNS, rows[start : start + _CHUNK])
            hist = [
                (oid, seq, attempt, to_json(yield_payload(step)[0]), yield_payload(step)[1], at, p)
                for window in self.history.values()
                for oid, seq, attempt, step, at, p in window
            ]
            for start in range(0, len(hist), _CHUNK):
                self.loader.insert(
                    "ckl_view_history", HISTORY_COLUMNS, hist[start : start + _CHUNK]
                )
        self.loader.finish(self.position if self.views else 0)

    def _flush(self, events: list[tuple[Any, ...]], timeline: list[tuple[Any, ...]]) -> None:
        if events:
            self.loader.insert("ckl_events", EVENT_COLUMNS, events)
        if timeline:
            self.loader.insert("ckl_view_timeline", TIMELINE_COLUMNS, timeline)
        events.clear()
        timeline.clear()

    def _row(self, spec: Spec, timeline: list[tuple[Any, ...]]) -> tuple[Any, ...]:
        p = self.position
        oid = self._ids.get((spec.run_id, spec.batch_index))
        if oid is None:
            oid = self._ids[spec.run_id, spec.batch_index] = str(
                checkpoint_id_for(spec.run_id, spec.batch_index)
            )
        at = self._at(p)
        state, topic = document(spec, oid, at)
        if self.views:
            self._fold(spec, oid, at, topic, p)
            timeline.append((p, spec.run_id, oid, spec.batch_index, spec.version, topic, at))
        # Chained as the ledger chains them (the store refuses rows without a hash).
        prev = self._hashes.get(oid) if spec.version > 1 else None
        digest = self._hashes[oid] = chain_hash(prev, UUID(oid), spec.version, topic, state)
        return (p, oid, spec.version, topic, state, spec.run_id, digest)

    def _at(self, p: int) -> str:
        """``to_time`` of the event at position ``p``: one millisecond apart, micros never 0."""
        second, millis = divmod(p, 1000)
        if self._second[0] != second:
            prefix = to_time(BASE_TIME + timedelta(seconds=second))[:-8]
            self._second = (second, prefix)
        return f"{self._second[1]}.{millis * 1000 + 1:06d}Z"

    def _fold(self, spec: Spec, oid: str, at: str, topic: str, p: int) -> None:
        """``projections/cursor.py`` and ``history.py``, for Created, Yielded and Completed."""
        if spec.kind == "C":
            self.cursors[oid] = _Cursor(
                oid, spec.run_id, spec.batch_index, spec.total_batches, "open", 1, 0, 0, 0,
                1, at, at, p,
            )  # fmt: skip
            return
        row = self.cursors[oid]
        row.version, row.updated_at, row.position = spec.version, at, p
        if spec.kind == "Y":
            row.step, row.items_processed = spec.step, spec.step * ITEMS_PER_YIELD
            row.yields += 1
            window = self.history.setdefault(oid, deque(maxlen=self.history_size))
            window.append((oid, row.yields, spec.attempt, spec.step, at, p))
        elif spec.kind == "D":
            row.status = "completed"
        else:
            raise ValueError(f"view rows of {topic} are not folded here; write events only")


def document(spec: Spec, oid: str, at: str) -> tuple[bytes, str]:
    """The stored state and topic of one event, as the ledger's mapper writes them."""
    head = (oid, spec.version, at)
    if spec.kind == "Y":
        cursor, items, results = yield_payload(spec.step)
        text = _YIELDED % (
            *head, spec.attempt, cursor, items, results["rows_ok"], results["rows_skipped"],
            results["amount_cents"],
        )  # fmt: skip
        return text.encode(), Yielded.topic
    if spec.kind == "C":
        text = _CREATED % (*head, json.dumps(spec.run_id), spec.batch_index, spec.total_batches)
        return text.encode(), Created.topic
    if spec.kind == "D":
        return (_COMPLETED % (*head, spec.attempt, spec.step)).encode(), Completed.topic
    cursor, items, _ = yield_payload(spec.step)
    if spec.kind == "F":
        return (_FAILED % (*head, spec.attempt, cursor, items)).encode(), Failed.topic
    return (_RETRIED % (*head, spec.attempt)).encode(), Retried.topic


def model_of(spec: Spec, at: str) -> CheckpointEvent:
    """The same event, built with the ledger's own models (for :func:`check`)."""
    common: dict[str, Any] = {
        "originator_id": checkpoint_id_for(spec.run_id, spec.batch_index),
        "originator_version": spec.version,
        "timestamp": datetime.strptime(at, "%Y-%m-%dT%H:%M:%S.%fZ").replace(tzinfo=UTC),
    }
    cursor, items, results = yield_payload(spec.step)
    if spec.kind == "C":
        return Created(
            **common,
            run_id=spec.run_id,
            batch_index=spec.batch_index,
            total_batches=spec.total_batches,
        )
    if spec.kind == "Y":
        return Yielded(
            **common,
            attempt=spec.attempt,
            cursor=cursor,
            items_processed=items,
            accumulated_results={**results},
        )
    if spec.kind == "D":
        return Completed(**common, attempt=spec.attempt, result={"rows": spec.step})
    if spec.kind == "F":
        return Failed(
            **common,
            attempt=spec.attempt,
            error_type="TimeoutError",
            message="upstream timed out",
            transient=True,
            cursor=cursor,
            items_processed=items,
        )
    return Retried(**common, attempt=spec.attempt)


class _SQLiteLoader:
    def __init__(self, path: str) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        self.conn.execute("PRAGMA synchronous=OFF")

    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        marks = ", ".join("?" * (columns.count(",") + 1))
        self.conn.execute("BEGIN")
        self.conn.executemany(f"INSERT INTO {table} ({columns}) VALUES ({marks})", rows)
        self.conn.execute("COMMIT")

    def finish(self, last_position: int) -> None:
        if last_position:
            self.conn.execute(
                "UPDATE ckl_tracking SET position = ? WHERE name = 'views'", (last_position,)
            )
        self.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    def close(self) -> None:
        self.conn.close()


class _PostgresLoader:
    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET synchronous_commit = off")

    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        with self.conn.cursor().copy(f"COPY {table} ({columns}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)

    def finish(self, last_position: int) -> None:
        self.conn.execute(
            "SELECT setval(pg_get_serial_sequence('ckl_events', 'notification_id'),"
            " (SELECT coalesce(max(notification_id), 0) + 1 FROM ckl_events), false)"
        )
        if last_position:
            self.conn.execute(
                "UPDATE ckl_tracking SET position = %s WHERE name = 'views'", (last_position,)
            )
        # What autovacuum would do sooner or later: not in the middle of a measurement.
        self.conn.execute("VACUUM ANALYZE")
        self.conn.execute("CHECKPOINT")

    def close(self) -> None:
        self.conn.close()


class _NoLoader:
    def insert(self, table: str, columns: str, rows: list[tuple[Any, ...]]) -> None:
        """Nothing to write."""

    def finish(self, last_position: int) -> None:
        """Nothing to finish."""

    def close(self) -> None:
        """Nothing to close."""


def loader_for(store: str) -> BulkLoader:
    """A bulk loader on ``store`` (``sqlite:///path`` or ``postgresql://…``)."""
    if store.startswith("sqlite:///"):
        return _SQLiteLoader(store.removeprefix("sqlite:///"))
    return _PostgresLoader(store)


def prepare_store(store: str, history_size: int = 100) -> None:
    """Create the ledger's and the views' tables (the ledger and the views create them)."""
    with Ledger.open(settings=LedgerSettings(store=store)) as ledger:
        Projections(ledger, history_size=history_size).close()


def _view_tables(views: Projections) -> dict[str, list[tuple[Any, ...]]]:
    # Private access on purpose: the check reads the tables the views keep, whole.
    query = views._query  # noqa: SLF001
    return {
        "cursor": sorted(query(f"SELECT {CURSOR_COLUMNS} FROM ckl_view_cursor")),
        "history": sorted(query(f"SELECT {HISTORY_COLUMNS} FROM ckl_view_history")),
        "timeline": sorted(query(f"SELECT {TIMELINE_COLUMNS} FROM ckl_view_timeline")),
    }


def check(store: str) -> None:
    """Prove the bulk path on an empty ``store``: documents and view rows as the library's.

    Raises:
        AssertionError: a template or a folded view row differs from the library's.
    """
    mapper = EventMapper()
    with_failures = list(run_specs("check-f", 4, 12, fail_every=2))
    assert {s.kind for s in with_failures} == set("CYDFR")
    for number, spec in enumerate(with_failures, start=1):
        oid = str(checkpoint_id_for(spec.run_id, spec.batch_index))
        at = to_time(BASE_TIME + timedelta(milliseconds=number, microseconds=1))
        assert LogBuilder(loader=_NoLoader())._at(number) == at  # noqa: SLF001
        state, topic = document(spec, oid, at)
        expected = mapper.to_stored_event(model_of(spec, at))
        assert (state, topic) == (expected.state, expected.topic), (state, expected.state)
    keep = 5
    prepare_store(store, history_size=keep)
    loader = loader_for(store)
    try:
        builder = LogBuilder(loader, history_size=keep)
        builder.write(
            interleave(
                run_specs("check-a", 3, 12),
                run_specs("check-b", 2, 9, complete=False),
                every=3,
            )
        )
        builder.finish()
    finally:
        loader.close()
    with Ledger.open(settings=LedgerSettings(store=store)) as ledger:
        views = Projections(ledger, history_size=keep)
        assert views.position == builder.position
        bulk = _view_tables(views)
        assert views.rebuild() == builder.position
        rebuilt = _view_tables(views)
        for name, rows in rebuilt.items():
            assert bulk[name] == rows, (
                f"ckl_view_{name} differs from rebuild():\n{bulk[name]}\n{rows}"
            )
        assert len(views.timeline("check-a")) == 36
