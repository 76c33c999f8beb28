"""Applying a page of the log to every view at once: decode, fold per checkpoint, bulk write.

The per-event way (one or more statements per event per view) spent its time in pydantic and
in statement round trips. Here a page of notifications is applied in a few set-based
statements per view, inside the follower's transaction (the tracking row still moves in it):

1. **Decode** each row's JSON document with ``json.loads`` (:func:`decode`). The documents
   are our own mapper's (``ledger._mapper``: pydantic's JSON of the event, every field
   present, defaults included, except fields newer than the event): the views need a few
   fields as stored text, so the values are taken straight from the document, with the
   model's default where an older document lacks a field. A row the light decode cannot read
   (unknown topic, a missing field, ids that disagree with the row) goes through the mapper,
   which raises its usual ``MapperDeserialisationError``. ``tests/projections/test_fold.py``
   checks the decode against the mapper.
2. **Fold** in Python: the cursor row of each checkpoint the page touches (read once from the
   view, or made by its ``Created``) takes every event in order; only its last state is
   written. The history keeps the yields that stay in the window; failures, takeovers,
   cancels and timeline entries are collected as rows.
3. **Write**: one upsert of the cursor rows, one insert per other view, a range delete of the
   yields that left the history window, and an update per checkpoint whose earlier failures
   a retry or reset resolves. On PostgreSQL each bulk statement takes one array per column
   (``unnest``), on SQLite one JSON array of rows (``json_each``): one statement text
   whatever the page size, so it is prepared once.

The result is the same rows the per-event statements gave (``tests/projections`` compares a
page-at-a-time rebuild with one-event-at-a-time following on a mixed log, and both with a
model).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

from projections import cursor as cursor_view
from projections import failures as failure_view
from projections import history as history_view
from projections import timeline as timeline_view
from projections._common import to_time

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from eventsourcing.persistence import Notification

    from ledger import SQLTransaction

__all__ = ["Decoded", "PageWriter", "decode"]

_TIME_LENGTH = len("2026-01-01T00:00:00.000000Z")

# The cursor row, as a list in the view's column order.
_CURSOR_COLUMNS: tuple[tuple[str, str], ...] = (
    ("checkpoint_id", "text"),
    ("run_id", "text"),
    ("batch_index", "bigint"),
    ("total_batches", "bigint"),
    ("status", "text"),
    ("attempt", "bigint"),
    ("cursor", "text"),
    ("items_processed", "bigint"),
    ("accumulated_results", "text"),
    ("yields", "bigint"),
    ("version", "bigint"),
    ("created_at", "text"),
    ("updated_at", "text"),
    ("position", "bigint"),
    ("owner", "text"),
    ("lease_expires_at", "text"),
)
(
    _ID,
    _RUN,
    _BATCH,
    _TOTAL,
    _STATUS,
    _ATTEMPT,
    _CURSOR,
    _ITEMS,
    _RESULTS,
    _YIELDS,
    _VERSION,
    _CREATED,
    _UPDATED,
    _POSITION,
    _OWNER,
    _LEASE,
) = range(len(_CURSOR_COLUMNS))

_HISTORY_COLUMNS: tuple[tuple[str, str], ...] = (
    ("checkpoint_id", "text"),
    ("seq", "bigint"),
    ("attempt", "bigint"),
    ("cursor", "text"),
    ("items_processed", "bigint"),
    ("at", "text"),
    ("position", "bigint"),
)
_FAILURE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("position", "bigint"),
    ("checkpoint_id", "text"),
    ("run_id", "text"),
    ("batch_index", "bigint"),
    ("attempt", "bigint"),
    ("error_type", "text"),
    ("message", "text"),
    ("transient", "integer"),
    ("cursor", "text"),
    ("items_processed", "bigint"),
    ("failed_at", "text"),
    ("resolution", "text"),
    ("resolved_at", "text"),
    ("kind", "text"),
    ("traceback", "text"),
    ("host", "text"),
    ("pid", "bigint"),
)
_F_RESOLUTION, _F_RESOLVED_AT = 11, 12
_TIMELINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("position", "bigint"),
    ("run_id", "text"),
    ("checkpoint_id", "text"),
    ("batch_index", "bigint"),
    ("version", "bigint"),
    ("topic", "text"),
    ("at", "text"),
)

_CREATED_TOPIC = "checkpoint.Created"
_ENDS = {
    "checkpoint.Completed": "completed",
    "checkpoint.Failed": "failed",
    "checkpoint.Cancelled": "cancelled",
}
_KNOWN = frozenset(
    {
        _CREATED_TOPIC,
        *_ENDS,
        "checkpoint.Yielded",
        "checkpoint.Retried",
        "checkpoint.Reset",
        "checkpoint.Claimed",
        "checkpoint.LeaseRenewed",
        "checkpoint.Released",
    }
)


class _Unencoded:
    """A document's JSON value not yet stored as text: most are overwritten before a write."""

    __slots__ = ("value",)

    def __init__(self, value: object) -> None:
        self.value = value


def _text(value: object) -> object:
    """A column value as stored: JSON text for an :class:`_Unencoded` value."""
    return view_json(value.value) if isinstance(value, _Unencoded) else value


@dataclass(frozen=True, slots=True)
class Decoded:
    """One notification as the views need it: its position, checkpoint, topic and document."""

    position: int
    checkpoint_id: str
    version: int
    topic: str
    at: str
    """The event's time as view text (:func:`projections._common.to_time`)."""
    doc: dict[str, Any]


def view_time(text: str) -> str:
    """The view text (:func:`~projections._common.to_time`) of a document's ISO time."""
    if len(text) == _TIME_LENGTH and text[-1] == "Z":
        return text  # pydantic's form of a UTC time with microseconds: already the view's
    return to_time(datetime.fromisoformat(text))


def view_json(value: object) -> str | None:
    """What :func:`projections._common.to_json` stores for a decoded document value."""
    if value is None:
        return None
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, allow_nan=False)


def decode(note: Notification, check: Callable[[Notification], object]) -> Decoded:
    """The view fields of one log row, read from its JSON document.

    Args:
        note: the row.
        check: the mapper's decode, called when this one cannot read the row (it raises the
            mapper's error for an unknown topic, an invalid document or disagreeing ids).

    Raises:
        MapperDeserialisationError: through ``check``, for a row the mapper rejects.
        ValueError: a row the mapper accepts that this decode cannot read (a bug).
    """
    oid = str(note.originator_id)
    try:
        doc = json.loads(note.state)
        if (
            note.topic in _KNOWN
            and doc["originator_id"] == oid
            and doc["originator_version"] == note.originator_version
        ):
            return Decoded(
                note.id,
                oid,
                note.originator_version,
                note.topic,
                view_time(doc["timestamp"]),
                doc,
            )
    except (ValueError, KeyError, TypeError):
        pass
    check(note)
    msg = f"the views cannot read event {note.topic!r} of {oid} at position {note.id}"
    raise ValueError(msg)


@dataclass(slots=True)
class _Page:
    """What one page changes, collected while folding."""

    rows: dict[str, list[Any]]
    yields_before: dict[str, int] = field(default_factory=dict)
    history: dict[str, list[list[Any]]] = field(default_factory=dict)
    failures: list[list[Any]] = field(default_factory=list)
    open_failures: dict[str, list[list[Any]]] = field(default_factory=dict)
    resolve_stored: dict[str, tuple[str, str]] = field(default_factory=dict)
    timeline: list[list[Any]] = field(default_factory=list)


class PageWriter:
    """Applies pages of decoded events to the four views in one transaction each."""

    def __init__(self, *, postgres: bool, history_size: int) -> None:
        """Prepare the statements of one backend.

        Args:
            postgres: PostgreSQL (arrays per column) rather than SQLite (a JSON array of rows).
            history_size: yields kept per checkpoint in the history view.
        """
        self.postgres = postgres
        self.keep = history_size
        names = ", ".join(name for name, _ in _CURSOR_COLUMNS)
        self._select_rows = f"SELECT {names} FROM {cursor_view.TABLE} WHERE checkpoint_id" + (
            " = ANY(%s::text[])" if postgres else " IN (SELECT value FROM json_each(%s))"
        )
        updates = ", ".join(f"{name} = excluded.{name}" for name, _ in _CURSOR_COLUMNS[1:])
        self._upsert_cursor = self._bulk_insert(
            cursor_view.TABLE,
            _CURSOR_COLUMNS,
            f" ON CONFLICT (checkpoint_id) DO UPDATE SET {updates}",
        )
        self._insert_history = self._bulk_insert(history_view.TABLE, _HISTORY_COLUMNS)
        self._insert_failures = self._bulk_insert(failure_view.TABLE, _FAILURE_COLUMNS)
        self._insert_timeline = self._bulk_insert(timeline_view.TABLE, _TIMELINE_COLUMNS)
        self._trim_history = (
            f"DELETE FROM {history_view.TABLE} WHERE checkpoint_id = %s AND seq > %s AND seq <= %s"
        )
        self._resolve = (
            f"UPDATE {failure_view.TABLE} SET resolution = %s, resolved_at = %s"
            " WHERE checkpoint_id = %s AND kind = 'failure' AND resolution IS NULL"
        )

    def _bulk_insert(
        self, table: str, columns: Sequence[tuple[str, str]], conflict: str = ""
    ) -> str:
        names = ", ".join(name for name, _ in columns)
        if self.postgres:
            arrays = ", ".join(f"%s::{kind}[]" for _, kind in columns)
            return f"INSERT INTO {table} ({names}) SELECT * FROM unnest({arrays}){conflict}"
        values = ", ".join(f"value ->> {i}" for i in range(len(columns)))
        # `WHERE true`: SQLite's parser needs it between a SELECT and ON CONFLICT.
        return (
            f"INSERT INTO {table} ({names}) SELECT {values} FROM json_each(%s) WHERE true{conflict}"
        )

    def _rows_param(self, rows: Sequence[Sequence[Any]]) -> list[object]:
        if self.postgres:
            return [list(column) for column in zip(*rows, strict=True)]
        return [json.dumps(rows, separators=(",", ":"))]

    def _write(self, tx: SQLTransaction, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if rows:
            tx.execute(sql, self._rows_param(rows))

    def apply(self, tx: SQLTransaction, events: Sequence[Decoded]) -> None:
        """Fold ``events`` (in log order) into every view, inside ``tx``."""
        page = _Page(rows=self._read_rows(tx, events))
        for event in events:
            self._fold(page, event)
        self._store(tx, page)

    def _read_rows(self, tx: SQLTransaction, events: Sequence[Decoded]) -> dict[str, list[Any]]:
        """The stored cursor rows of the checkpoints the page touches but does not create."""
        created = {e.checkpoint_id for e in events if e.topic == _CREATED_TOPIC}
        wanted = sorted({e.checkpoint_id for e in events} - created)
        if not wanted:
            return {}
        param: object = wanted if self.postgres else json.dumps(wanted)
        return {str(row[_ID]): list(row) for row in tx.query(self._select_rows, (param,))}

    def _fold(self, page: _Page, event: Decoded) -> None:  # noqa: C901, PLR0912  (one branch per event type, as the view's columns)
        oid, doc, topic, at = event.checkpoint_id, event.doc, event.topic, event.at
        row = page.rows.get(oid)
        if topic == _CREATED_TOPIC:
            if row is not None:
                msg = f"checkpoint {oid} created twice (position {event.position})"
                raise ValueError(msg)
            row = [oid, doc["run_id"], doc["batch_index"], doc.get("total_batches"), "open", 1]
            row += [None, 0, None, 0, event.version, at, at, event.position, None, None]
            page.rows[oid] = row
        elif row is None:
            return  # no Created seen: the per-event statements matched no row either
        else:
            row[_VERSION], row[_UPDATED], row[_POSITION] = event.version, at, event.position
            if topic == "checkpoint.Yielded":
                page.yields_before.setdefault(oid, int(row[_YIELDS]))
                cursor = _Unencoded(doc["cursor"])
                row[_CURSOR], row[_ITEMS] = cursor, doc["items_processed"]
                row[_RESULTS] = _Unencoded(doc.get("accumulated_results"))
                row[_YIELDS] = int(row[_YIELDS]) + 1
                lease = doc.get("lease_expires_at")
                if lease is not None:  # a yield under a lease renews it
                    row[_LEASE] = view_time(lease)
                page.history.setdefault(oid, []).append(
                    [oid, row[_YIELDS], doc["attempt"], cursor, row[_ITEMS], at, event.position]
                )
            elif topic in _ENDS:
                row[_STATUS], row[_OWNER], row[_LEASE] = _ENDS[topic], None, None
                if topic == "checkpoint.Failed":
                    self._failure(page, row, event)
                elif topic == "checkpoint.Cancelled":
                    self._audit(
                        page,
                        row,
                        event,
                        attempt=doc["attempt"],
                        error_type="Cancelled",
                        message=doc["reason"],
                        transient=0,
                    )
            elif topic in ("checkpoint.Retried", "checkpoint.Reset"):
                row[_STATUS], row[_ATTEMPT], row[_OWNER], row[_LEASE] = (
                    "open",
                    doc["attempt"],
                    None,
                    None,
                )
                if topic == "checkpoint.Reset":
                    row[_CURSOR], row[_ITEMS], row[_RESULTS] = None, 0, None
                    self._resolve_failures(page, oid, "reset", at)
                else:
                    self._resolve_failures(page, oid, "retried", at)
            elif topic == "checkpoint.Claimed":
                if doc.get("taken_over", False):
                    message = (
                        f"lease of {doc.get('previous_owner')!r} expired;"
                        f" taken over by {doc['owner']!r}"
                    )
                    # The attempt superseded is the one before the takeover's.
                    self._audit(
                        page,
                        row,
                        event,
                        attempt=doc["attempt"] - 1,
                        error_type="LeaseExpired",
                        message=message,
                        transient=1,
                    )
                row[_STATUS], row[_ATTEMPT], row[_OWNER] = "open", doc["attempt"], doc["owner"]
                row[_LEASE] = view_time(doc["lease_expires_at"])
                if doc.get("retried", False):
                    self._resolve_failures(page, oid, "retried", at)
            elif topic == "checkpoint.LeaseRenewed":
                row[_LEASE] = view_time(doc["lease_expires_at"])
            else:  # Released
                row[_OWNER], row[_LEASE] = None, None
        page.timeline.append(
            [event.position, row[_RUN], oid, row[_BATCH], event.version, topic, at]
        )

    def _failure(self, page: _Page, row: list[Any], event: Decoded) -> None:
        doc = event.doc
        failure = [
            event.position,
            event.checkpoint_id,
            row[_RUN],
            row[_BATCH],
            doc["attempt"],
            doc["error_type"],
            doc["message"],
            int(doc["transient"]),
            view_json(doc.get("cursor")),
            doc.get("items_processed", 0),
            event.at,
            None,
            None,
            "failure",
            doc.get("traceback"),
            doc.get("host"),
            doc.get("pid"),
        ]
        page.failures.append(failure)
        page.open_failures.setdefault(event.checkpoint_id, []).append(failure)

    @staticmethod
    def _audit(
        page: _Page,
        row: list[Any],
        event: Decoded,
        *,
        attempt: int,
        error_type: str,
        message: str,
        transient: int,
    ) -> None:
        """A takeover or cancel row: the cursor and items are the checkpoint's own now."""
        page.failures.append(
            [
                event.position,
                event.checkpoint_id,
                row[_RUN],
                row[_BATCH],
                attempt,
                error_type,
                message,
                transient,
                _text(row[_CURSOR]),
                row[_ITEMS],
                event.at,
                None,
                None,
                "takeover" if error_type == "LeaseExpired" else "cancel",
                None,
                None,
                None,
            ]
        )

    @staticmethod
    def _resolve_failures(page: _Page, oid: str, resolution: str, at: str) -> None:
        """Mark the checkpoint's unresolved failures, of this page and stored ones."""
        for failure in page.open_failures.pop(oid, ()):
            failure[_F_RESOLUTION], failure[_F_RESOLVED_AT] = resolution, at
        # Stored failures are resolved by the first resolving event of the page; later ones
        # find them resolved already.
        page.resolve_stored.setdefault(oid, (resolution, at))

    def _store(self, tx: SQLTransaction, page: _Page) -> None:
        rows = list(page.rows.values())
        for row in rows:
            row[_CURSOR], row[_RESULTS] = _text(row[_CURSOR]), _text(row[_RESULTS])
        self._write(tx, self._upsert_cursor, rows)
        history: list[list[Any]] = []
        for oid, entries in page.history.items():
            total = int(page.rows[oid][_YIELDS])
            for entry in entries:
                if entry[1] > total - self.keep:
                    entry[3] = _text(entry[3])
                    history.append(entry)
            before = page.yields_before[oid]
            if total - self.keep > 0 and total > before:
                # The yields that left the window, as each yield's delete did one by one.
                tx.execute(self._trim_history, (oid, before - self.keep, total - self.keep))
        self._write(tx, self._insert_history, history)
        # Before this page's failures go in: they are resolved in Python already.
        for oid, (resolution, at) in page.resolve_stored.items():
            tx.execute(self._resolve, (resolution, at, oid))
        self._write(tx, self._insert_failures, page.failures)
        self._write(tx, self._insert_timeline, page.timeline)
