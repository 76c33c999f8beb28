"""What the ledger is measured against: raw inserts, the tasker seed's JSONB, eventsourcing."""

from __future__ import annotations

import sqlite3
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from uuid import UUID, uuid4

import psycopg
from eventsourcing.application import Application
from eventsourcing.domain import Aggregate, event
from psycopg.types.json import Jsonb

from bench._harness import measure
from bench._workload import yield_payload
from ledger.store import EVENTS_TABLE
from ledger.store import sqlite as sqlite_schema
from ledger.store.postgres import schema as postgres_schema

if TYPE_CHECKING:
    from pathlib import Path

    from psycopg import sql

    from bench._harness import Op, Timing

__all__ = [
    "EventsourcingBaseline",
    "PostgresRaw",
    "SQLiteRaw",
    "TaskerJsonb",
]

_TOPIC = "checkpoint.Yielded"

# The columns, keys and indexes of ckl_events, taken from the ledger's own DDL so the row shape
# cannot drift, without its triggers: the append-only guards are part of what the ledger costs
# (on SQLite that includes a BEFORE INSERT guard against INSERT OR REPLACE).
_SQLITE_TABLE = sqlite_schema.SCHEMA_TABLE.replace(EVENTS_TABLE, "raw_events")
_SQLITE_INSERT = (
    "INSERT INTO raw_events (originator_id, originator_version, topic, state) VALUES (?, ?, ?, ?)"
)

# Likewise for ledger/store/postgres/schema.py: the table and its notification_id index.
_POSTGRES_TABLE = [
    statement.replace(EVENTS_TABLE, "raw_events") for statement in postgres_schema.SCHEMA[:2]
]
# A plain insert takes its position from a sequence, whatever way the ledger draws its own (a
# bigserial in schema 1, an xid-based position in schema 2): the column gets that default.
_POSTGRES_TABLE += [
    "CREATE SEQUENCE IF NOT EXISTS raw_events_position",
    (
        "ALTER TABLE raw_events ALTER COLUMN notification_id "
        "SET DEFAULT nextval('raw_events_position')"
    ),
]
_POSTGRES_INSERT = (
    "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "VALUES (%s, %s, %s, %s) RETURNING notification_id"
)
# What the ledger's append statements (ledger/store/postgres/append.py) have added to the plain
# insert, each alone on the raw table: the advisory lock (every append while schema 1
# serialised appends), the notify (every append), and the unnest form (an append of several
# events).
_POSTGRES_PARTS = {
    "+lock": "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "SELECT %s, %s, %s, %s FROM (SELECT pg_advisory_xact_lock(1234567)) AS serialise "
    "RETURNING notification_id",
    "+notify": "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "SELECT %s, %s, %s, %s FROM (SELECT pg_notify('ckl_events', '')) AS serialise "
    "RETURNING notification_id",
    "+lock+notify": "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "SELECT %s, %s, %s, %s "
    "FROM (SELECT pg_advisory_xact_lock(1234567), pg_notify('ckl_events', '')) AS serialise "
    "RETURNING notification_id",
    "+unnest": "INSERT INTO raw_events (originator_id, originator_version, topic, state) "
    "SELECT * FROM unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[]) "
    "RETURNING notification_id",
}


class SQLiteRaw:
    """sqlite3: ``BEGIN IMMEDIATE; INSERT; COMMIT`` of one row, WAL, ``synchronous=FULL``."""

    def __init__(self, path: Path, state: bytes) -> None:
        self.conn = sqlite3.connect(path, isolation_level=None)
        mode = self.conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        self.conn.execute("PRAGMA synchronous=FULL")
        synchronous = self.conn.execute("PRAGMA synchronous").fetchone()[0]
        assert (mode, synchronous) == ("wal", 2), (mode, synchronous)
        self.conn.execute(_SQLITE_TABLE)
        self.state = state
        self.originator_id = str(uuid4())
        self.version = 0

    def insert(self) -> None:
        """Append one row, durably."""
        self.version += 1
        self.conn.execute("BEGIN IMMEDIATE")
        self.conn.execute(_SQLITE_INSERT, (self.originator_id, self.version, _TOPIC, self.state))
        self.conn.execute("COMMIT")

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class PostgresRaw:
    """psycopg: one autocommit ``INSERT`` of one row, ``synchronous_commit=on``, own connection."""

    def __init__(self, url: str, state: bytes, *, create: bool = True) -> None:
        """Connect; ``create``: make the table first (else another process already did)."""
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET synchronous_commit = on")
        for statement in _POSTGRES_TABLE if create else []:
            self.conn.execute(statement)
        self.state = state
        self.originator_id = uuid4()
        self.version = 0

    def setting(self, name: str) -> str:
        """A server setting as this connection sees it."""
        row = self.conn.execute("SELECT current_setting(%s)", (name,)).fetchone()
        assert row is not None
        return str(row[0])

    def insert(self) -> None:
        """Append one row, durably."""
        self.version += 1
        params = (self.originator_id, self.version, _TOPIC, self.state)
        self.conn.execute(_POSTGRES_INSERT, params, prepare=True).fetchone()

    def statement_op(
        self, statement: sql.Composed | str, *, arrays: bool = True, run_id: str | None = None
    ) -> Op:
        """Append one row with ``statement`` on this connection (``arrays``: ``unnest`` form).

        ``run_id``, if given, is bound after the row, and a new command id after it (the
        ledger's own append takes both, and the ledger gives every command an id).
        """
        originator_id = uuid4()
        version = 0

        def op() -> Timing:
            nonlocal version
            version += 1
            row = (originator_id, version, _TOPIC, self.state)
            extra = () if run_id is None else (run_id, uuid4().hex)
            params = tuple([value] for value in row) if arrays else (*row, *extra)
            return measure(lambda: self.conn.execute(statement, params, prepare=True).fetchall())

        return op

    def part_ops(self) -> dict[str, Op]:
        """The raw insert plus one of the ledger statement's extras each, by name."""
        return {
            name: self.statement_op(statement, arrays=name == "+unnest")
            for name, statement in _POSTGRES_PARTS.items()
        }

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


# The tasker seed's CheckpointService (TAS-125): the new checkpoint document, with the old
# history carried over and one entry appended, all inside the database.
_TASKER_TABLE = """CREATE TABLE IF NOT EXISTS tasker_workflow_steps (
    workflow_step_uuid uuid PRIMARY KEY,
    checkpoint jsonb
)"""
_TASKER_SEED = """INSERT INTO tasker_workflow_steps (workflow_step_uuid, checkpoint)
SELECT %(step)s, jsonb_build_object(
    'cursor', %(size)s::bigint * 500, 'items_processed', %(size)s::bigint * 500,
    'timestamp', to_jsonb(now()),
    'history', COALESCE(jsonb_agg(
        jsonb_build_object('cursor', to_jsonb(g * 500), 'timestamp', to_jsonb(now()))
        ORDER BY g), '[]'::jsonb))
FROM generate_series(1, %(size)s::bigint) AS g"""
_TASKER_UPDATE = """UPDATE tasker_workflow_steps
SET checkpoint = jsonb_set(%s::jsonb, '{history}',
    COALESCE(checkpoint->'history', '[]'::jsonb)
    || jsonb_build_array(jsonb_build_object('cursor', %s::jsonb, 'timestamp', to_jsonb(now()))))
WHERE workflow_step_uuid = %s"""


class TaskerJsonb:
    """The tasker seed's yield: one ``UPDATE`` of a JSONB ``checkpoint`` column with its history."""

    def __init__(self, url: str) -> None:
        self.conn = psycopg.connect(url, autocommit=True)
        self.conn.execute("SET synchronous_commit = on")
        self.conn.execute(_TASKER_TABLE)
        self.steps: dict[int, UUID] = {}

    def add_step(self, history: int) -> Op:
        """A step whose checkpoint already holds ``history`` entries; its yield operation."""
        step = self.steps[history] = uuid4()
        self.conn.execute(_TASKER_SEED, {"step": step, "size": history})
        count = history

        def op() -> Timing:
            nonlocal count
            count += 1
            cursor, items, results = yield_payload(count)
            document = {
                "cursor": cursor,
                "items_processed": items,
                "timestamp": datetime.now(UTC).isoformat(),
                "accumulated_results": results,
            }
            params = (Jsonb(document), Jsonb(cursor), step)
            return measure(lambda: self.conn.execute(_TASKER_UPDATE, params, prepare=True))

        return op

    def history_bytes(self) -> dict[int, tuple[int, int]]:
        """Each step, by its initial history: its history length now, its stored bytes."""
        sizes: dict[int, tuple[int, int]] = {}
        for history, step in self.steps.items():
            row = self.conn.execute(
                "SELECT jsonb_array_length(checkpoint->'history'), pg_column_size(checkpoint) "
                "FROM tasker_workflow_steps WHERE workflow_step_uuid = %s",
                (step,),
            ).fetchone()
            assert row is not None
            sizes[history] = (int(row[0]), int(row[1]))
        return sizes

    def close(self) -> None:
        """Close the connection."""
        self.conn.close()


class BenchCheckpoint(Aggregate):
    """The checkpoint as a plain eventsourcing aggregate: one event per yield."""

    @event("Created")
    def __init__(self, run_id: str, batch_index: int) -> None:
        self.run_id = run_id
        self.batch_index = batch_index
        self.cursor: int | None = None
        self.items_processed = 0
        self.accumulated_results: dict[str, int] | None = None

    @event("Yielded")
    def checkpoint_yield(
        self, cursor: int, items_processed: int, accumulated_results: dict[str, int]
    ) -> None:
        """Record progress."""
        self.cursor = cursor
        self.items_processed = items_processed
        self.accumulated_results = accumulated_results


class BenchCheckpoints(Application[UUID]):
    """An eventsourcing application with nothing changed from its defaults."""


class EventsourcingBaseline:
    """eventsourcing's default PostgreSQL recorder: ``save()`` of one new event each time."""

    def __init__(self, url: str) -> None:
        parts = urlsplit(url)
        env = {
            "PERSISTENCE_MODULE": "eventsourcing.postgres",
            "POSTGRES_DBNAME": parts.path.lstrip("/"),
            "POSTGRES_HOST": parts.hostname or "127.0.0.1",
            "POSTGRES_PORT": str(parts.port or 5432),
            "POSTGRES_USER": parts.username or "",
            "POSTGRES_PASSWORD": parts.password or "",
            # The default, stated: with it a tailing reader misses events (ARCHITECTURE.md).
            "POSTGRES_ENABLE_DB_FUNCTIONS": "n",
        }
        self.app = BenchCheckpoints(env=env)
        self.checkpoints: list[BenchCheckpoint] = []

    def save_op(self, *, count_command: bool = True) -> Op:
        """Trigger one Yielded event and ``save()`` it; ``count_command``: time both, else save."""
        checkpoint = BenchCheckpoint("bench-eventsourcing", len(self.checkpoints))
        self.app.save(checkpoint)
        self.checkpoints.append(checkpoint)
        step = 0

        def op() -> Timing:
            nonlocal step
            step += 1
            cursor, items, results = yield_payload(step)
            if count_command:

                def command_and_save() -> None:
                    checkpoint.checkpoint_yield(cursor, items, results)
                    self.app.save(checkpoint)

                return measure(command_and_save)
            checkpoint.checkpoint_yield(cursor, items, results)
            return measure(lambda: self.app.save(checkpoint))

        return op

    def state_bytes(self) -> int:
        """Size of the stored state of the latest event."""
        latest = self.checkpoints[0].id
        recorded: Any = self.app.recorder.select_events(latest, desc=True, limit=1)
        return len(recorded[0].state)

    def close(self) -> None:
        """Close the application's connections."""
        self.app.close()
