"""``ckl_events`` partitioned by position range, so that retention costs a ``DETACH``.

Positions are ``xid * 65536 + n`` (``positions``), so a range of positions is a range of
transactions: partition ``ckl_events_xid_<first>`` holds the events of the transactions
``first`` to ``end`` (exclusive), ``size`` transactions each (``ckl_partitioning.size``). Every
later transaction has a higher id, so the oldest partitions fill first and stop being written
once the visible horizon (``pg_snapshot_xmin``) passes their end: from then on nothing can
commit into them, and a partition whose events all belong to archived runs can be detached.

The statements, in the order each operation runs them; why each is as it is (uniqueness across
partitions through ``ckl_heads``, the archive guard, who creates partitions, the migration by
attaching the table as it is, what a detach refuses and removes) is written once, in
``docs/architecture.md``, "PostgreSQL: a partitioned log, so retention is a ``DETACH``". In
short: per-partition unique indexes catch clashes inside a partition; the statement trigger
``ckl_partitioned_insert`` (an upsert of each checkpoint's head, then a command probe pruned to
the checkpoint's partitions) catches those across partitions, raising the plain table's
constraint names; a ``DEFAULT`` partition catches positions no range covers; ``enable``
renames the table to ``ckl_events_xid_0`` and attaches it, copying nothing.
"""

from __future__ import annotations

import logging
import re
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any
from uuid import UUID

import psycopg

from ledger.errors import InvalidInput, PartitionNotDetachable
from ledger.store.base import (
    ARCHIVES_TABLE,
    COMMAND_INDEX,
    EVENTS_TABLE,
    PARTITIONING_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    quote_identifier,
)
from ledger.store.partitioning import (
    DetachReport,
    EnableReport,
    PartitionInfo,
    PartitionsStatus,
    check_partition_size,
)
from ledger.store.postgres._codes import ARCHIVED_SQLSTATE, lock_key
from ledger.store.postgres.positions import POSITIONS_PER_TRANSACTION

if TYPE_CHECKING:
    from collections.abc import Sequence

    from ledger.store.base import SQLTransaction

__all__ = [
    "DEFAULT_PARTITION",
    "FIRST_PARTITION",
    "HEADS_TABLE",
    "PARTITIONS_AHEAD",
    "PostgresPartitioning",
    "partition_name",
    "prepare_partitions",
]

_log = logging.getLogger("ledger.postgres")

PARTITIONS_AHEAD = 1
"""Whole partitions kept ready beyond the one the next transaction writes into."""
DEFAULT_PARTITION = f"{EVENTS_TABLE}_default"
FIRST_PARTITION = f"{EVENTS_TABLE}_xid_0"
"""The migrated table: every position below the migration's transaction."""
_P = POSITIONS_PER_TRANSACTION
_MAX_AHEAD = 1000
_CATCH_UP = 100
_RUNS_SHOWN = 5
_BOUND = re.compile(r"FROM \((MINVALUE|'?(-?\d+)'?)\) TO \((MAXVALUE|'?(-?\d+)'?)\)")
HEADS_TABLE = "ckl_heads"
"""Partitioned stores only: each checkpoint's head version and first position."""
_VIEW_TABLE_NAME = re.compile(r"ckl_view_[a-z0-9_]{1,50}")

_IS_PARTITIONED = "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)"
_PARTITIONS = (
    "SELECT c.relname, pg_get_expr(c.relpartbound, c.oid), c.reltuples::bigint "
    "FROM pg_inherits AS i JOIN pg_class AS c ON c.oid = i.inhrelid "
    "WHERE i.inhparent = to_regclass(%s)"
)
_SIZE = f"SELECT size FROM {PARTITIONING_TABLE}"
_NEXT_XID = "SELECT pg_snapshot_xmax(pg_current_snapshot())::text::bigint"
_HORIZON_XID = "SELECT pg_snapshot_xmin(pg_current_snapshot())::text::bigint"
_VIEW_TABLES = (
    "SELECT table_name FROM information_schema.columns "
    "WHERE table_schema = current_schema() AND column_name = 'checkpoint_id' "
    "AND table_name LIKE 'ckl\\_view\\_%%' ORDER BY table_name"
)
_ARCHIVED_CHECKPOINTS = (
    f"SELECT DISTINCT jsonb_object_keys(heads::jsonb) FROM {ARCHIVES_TABLE} "
    "WHERE restored_at IS NULL"
)
_RUN_CHECKPOINTS = (
    f"SELECT DISTINCT jsonb_object_keys(heads::jsonb) FROM {ARCHIVES_TABLE} "
    "WHERE restored_at IS NULL AND run_id = ANY(%s)"
)

# After each INSERT statement: the archive guard for events after a checkpoint's first, and
# uniqueness across partitions through the heads table (see the module docstring). SECURITY
# DEFINER: it runs as the owner, so writers get no privilege on the heads table. Run with
# parameters (an empty tuple), so psycopg reads its placeholders: %% is a literal %.
_CHECKS_FUNCTION = f"""CREATE OR REPLACE FUNCTION ckl_partitioned_insert() RETURNS trigger
    LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $$
    DECLARE clash record; archived text; first_position bigint;
    BEGIN
        SELECT a.run_id INTO archived FROM {ARCHIVES_TABLE} AS a
        WHERE a.restored_at IS NULL AND a.run_id IN (
            SELECT n.run_id FROM ckl_new AS n WHERE n.originator_version > 1)
        LIMIT 1;
        IF archived IS NOT NULL THEN
            RAISE EXCEPTION 'run %% is archived', archived
                USING ERRCODE = '{ARCHIVED_SQLSTATE}', DETAIL = archived;
        END IF;
        -- One row per checkpoint: a second writer of the checkpoint waits for the first's row
        -- lock (in checkpoint order: two batches cannot deadlock), then finds the head moved.
        WITH n AS (
            SELECT originator_id, min(originator_version) AS lo, max(originator_version) AS hi,
                   min(notification_id) AS pos
            FROM ckl_new GROUP BY originator_id
        ), moved AS (
            INSERT INTO {HEADS_TABLE} AS h (originator_id, version, first_version,
                                           first_position)
            SELECT originator_id, hi, lo, pos FROM n ORDER BY originator_id
            ON CONFLICT (originator_id) DO UPDATE SET version = EXCLUDED.version
            WHERE h.version < EXCLUDED.first_version
            RETURNING h.originator_id
        )
        SELECT n.originator_id, n.lo INTO clash FROM n
        WHERE n.originator_id NOT IN (SELECT originator_id FROM moved)
        LIMIT 1;
        IF FOUND THEN
            RAISE EXCEPTION 'duplicate key value violates unique constraint "{EVENTS_TABLE}_pkey"'
                USING ERRCODE = 'unique_violation', CONSTRAINT = '{EVENTS_TABLE}_pkey',
                DETAIL = format('Key (originator_id, originator_version)=(%%s, %%s) '
                                'already exists.', clash.originator_id, clash.lo);
        END IF;
        -- A command is recorded at or after its checkpoint's first position: the probe skips
        -- the partitions before it (the position is a parameter, so they are pruned).
        FOR clash IN SELECT c.originator_id, c.command_id FROM ckl_new AS c
                     WHERE c.command_id IS NOT NULL LOOP
            SELECT h.first_position INTO first_position FROM {HEADS_TABLE} AS h
            WHERE h.originator_id = clash.originator_id;
            IF (SELECT count(*) FROM {EVENTS_TABLE} AS e
                WHERE e.originator_id = clash.originator_id AND e.command_id = clash.command_id
                AND e.notification_id >= first_position) > 1 THEN
                RAISE EXCEPTION 'duplicate key value violates unique constraint "{COMMAND_INDEX}"'
                    USING ERRCODE = 'unique_violation', CONSTRAINT = '{COMMAND_INDEX}',
                    DETAIL = format('Key (originator_id, command_id)=(%%s, %%s) already exists.',
                                    clash.originator_id, clash.command_id);
            END IF;
        END LOOP;
        RETURN NULL;
    END $$"""

_HEADS_DDL = f"""CREATE TABLE {HEADS_TABLE} (
    originator_id uuid PRIMARY KEY,
    version bigint NOT NULL,
    first_version bigint NOT NULL,
    first_position bigint NOT NULL
)"""
# Under the migration's exclusive lock: the heads of the events already stored.
_HEADS_FILL = (
    f"INSERT INTO {HEADS_TABLE} (originator_id, version, first_version, first_position) "
    "SELECT originator_id, max(originator_version), min(originator_version), "
    f"min(notification_id) FROM {EVENTS_TABLE} GROUP BY originator_id"
)

# The parent's triggers: the same functions as the unpartitioned table's (schema.py).
_PARENT_TRIGGERS = (
    f"""CREATE TRIGGER {EVENTS_TABLE}_append_only
        BEFORE UPDATE OR DELETE ON {EVENTS_TABLE}
        FOR EACH ROW EXECUTE FUNCTION ckl_guard_events()""",
    f"""CREATE TRIGGER {EVENTS_TABLE}_no_truncate
        BEFORE TRUNCATE ON {EVENTS_TABLE}
        FOR EACH STATEMENT EXECUTE FUNCTION ckl_refuse_change()""",
    f"""CREATE TRIGGER {EVENTS_TABLE}_guard_insert
        BEFORE INSERT ON {EVENTS_TABLE} FOR EACH ROW
        WHEN (NEW.originator_version = 1 OR NEW.event_hash IS NULL)
        EXECUTE FUNCTION ckl_guard_insert()""",
    _CHECKS_FUNCTION,
    f"""CREATE TRIGGER {EVENTS_TABLE}_partitioned_insert
        AFTER INSERT ON {EVENTS_TABLE} REFERENCING NEW TABLE AS ckl_new
        FOR EACH STATEMENT EXECUTE FUNCTION ckl_partitioned_insert()""",
)


def partition_name(first_xid: int) -> str:
    """The table name of the partition that starts at transaction ``first_xid``."""
    return f"{EVENTS_TABLE}_xid_{first_xid}"


def _grid_end(xid: int, size: int) -> int:
    """The first transaction id of the partition after the one ``xid`` falls in."""
    return (xid // size + 1) * size


# DDL whose names and bounds come from the catalog or the operator: built in the server with
# format()'s %I and %L, the values passed as parameters (nothing interpolated in Python).
_DDL_FUNCTIONS = (
    f"""CREATE OR REPLACE FUNCTION ckl_attach_partition(
            part text, first_position bigint, end_position bigint) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            IF first_position IS NULL AND end_position IS NULL THEN
                EXECUTE format('ALTER TABLE {EVENTS_TABLE} ATTACH PARTITION %%I DEFAULT', part);
            ELSE
                EXECUTE format('ALTER TABLE {EVENTS_TABLE} ATTACH PARTITION %%I '
                               'FOR VALUES FROM (%%s) TO (%%s)',
                               part, coalesce(first_position::text, 'MINVALUE'), end_position);
            END IF;
        END $$""",
    f"""CREATE OR REPLACE FUNCTION ckl_new_partition(
            part text, first_position bigint, end_position bigint) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format('CREATE TABLE %%I (LIKE {EVENTS_TABLE} INCLUDING DEFAULTS '
                           'INCLUDING CONSTRAINTS)', part);
            EXECUTE format('CREATE UNIQUE INDEX %%I ON %%I (originator_id, originator_version)',
                           part || '_version_idx', part);
            EXECUTE format('CREATE UNIQUE INDEX %%I ON %%I (originator_id, command_id) '
                           'WHERE command_id IS NOT NULL', part || '_command_idx', part);
            EXECUTE format('CREATE TRIGGER %%I BEFORE TRUNCATE ON %%I FOR EACH STATEMENT '
                           'EXECUTE FUNCTION ckl_refuse_change()', part || '_no_truncate', part);
            PERFORM ckl_attach_partition(part, first_position, end_position);
        END $$""",
    """CREATE OR REPLACE FUNCTION ckl_partition_checkpoints(part text)
        RETURNS TABLE (originator_id uuid, run_id text, events bigint)
        LANGUAGE plpgsql AS $$
        BEGIN
            RETURN QUERY EXECUTE format('SELECT originator_id, max(run_id), count(*) '
                                        'FROM %%I GROUP BY originator_id', part);
        END $$""",
    f"""CREATE OR REPLACE FUNCTION ckl_detach_partition(part text, keep boolean) RETURNS void
        LANGUAGE plpgsql AS $$
        BEGIN
            EXECUTE format('ALTER TABLE {EVENTS_TABLE} DETACH PARTITION %%I', part);
            IF keep THEN  -- a standalone copy for the operator, as append-only as the log was
                EXECUTE format('CREATE TRIGGER %%I BEFORE UPDATE OR DELETE ON %%I FOR EACH ROW '
                               'EXECUTE FUNCTION ckl_refuse_change()',
                               part || '_append_only', part);
            ELSE
                EXECUTE format('DROP TABLE %%I', part);
            END IF;
        END $$""",
)
_NEW_PARTITION = "SELECT ckl_new_partition(%s, %s, %s)"
_ATTACH_PARTITION = "SELECT ckl_attach_partition(%s, %s, %s)"
_PARTITION_CHECKPOINTS = "SELECT originator_id, run_id, events FROM ckl_partition_checkpoints(%s)"
_DETACH_PARTITION = "SELECT ckl_detach_partition(%s, %s)"


class _Runner:
    """``query`` and ``execute`` over a raw connection (the open path has no transaction object)."""

    def __init__(self, conn: psycopg.Connection[Any]) -> None:
        self._conn = conn

    def query(self, sql: str, params: Sequence[object] = ()) -> list[tuple[Any, ...]]:
        return [tuple(r) for r in self._conn.execute(sql.encode(), tuple(params))]

    def execute(self, sql: str, params: Sequence[object] = ()) -> int:
        return self._conn.execute(sql.encode(), tuple(params)).rowcount


def _is_partitioned(tx: SQLTransaction | _Runner) -> bool:
    rows = tx.query(_IS_PARTITIONED, (EVENTS_TABLE,))
    return bool(rows and rows[0][0])


def _partitions(tx: SQLTransaction | _Runner, horizon_xid: int) -> list[PartitionInfo]:
    found: list[PartitionInfo] = []
    for name, bound, tuples in tx.query(_PARTITIONS, (EVENTS_TABLE,)):
        estimate = None if tuples is None or int(tuples) < 0 else int(tuples)
        if bound == "DEFAULT":
            found.append(
                PartitionInfo(
                    name=name,
                    default=True,
                    first_xid=None,
                    end_xid=None,
                    rows_estimate=estimate,
                    writable=True,
                )
            )
            continue
        match = _BOUND.search(str(bound))
        if match is None:  # pragma: no cover  (only this module attaches partitions)
            msg = f"{name}: unexpected partition bound {bound!r}"
            raise InvalidInput("partition", msg)
        first = None if match.group(2) is None else int(match.group(2)) // _P
        end = None if match.group(4) is None else int(match.group(4)) // _P
        found.append(
            PartitionInfo(
                name=name,
                default=False,
                first_xid=first,
                end_xid=end,
                rows_estimate=estimate,
                writable=end is None or end > horizon_xid,
            )
        )
    found.sort(key=lambda p: (p.default, -1 if p.first_xid is None else p.first_xid))
    return found


def _plan(
    ranges_end: int, default_max_xid: int | None, next_xid: int, size: int, ahead: int
) -> list[tuple[int, int]]:
    """The ``(first, end)`` transaction ranges to create after ``ranges_end``, in order.

    New ranges start above the default partition's rows (an attach fails while the default
    holds rows of the new range). When writers ran far past the partitions (more than
    ``_CATCH_UP`` partitions' worth, into the default), one range is stretched up to the
    partition ``next_xid`` falls in rather than creating every partition in between.
    """
    first = ranges_end
    if default_max_xid is not None and default_max_xid >= first:
        first = default_max_xid + 1
    target = _grid_end(max(next_xid, first), size) + size * ahead
    planned: list[tuple[int, int]] = []
    while first < target:
        end = _grid_end(first, size)
        if next_xid - end > size * _CATCH_UP:
            end = _grid_end(next_xid, size)
        planned.append((first, end))
        first = end
    return planned


def _create_due(tx: SQLTransaction | _Runner, size: int, ahead: int) -> list[str]:
    """Create the partitions due (the caller holds the schema lock); their names."""
    horizon = int(tx.query(_HORIZON_XID)[0][0])
    parts = _partitions(tx, horizon)
    ends = [p.end_xid for p in parts if not p.default and p.end_xid is not None]
    if not ends:  # pragma: no cover  (enable attaches the first partition before this)
        return []
    default_max: int | None = None
    if any(p.default for p in parts):
        row = tx.query(f"SELECT max(notification_id) FROM {DEFAULT_PARTITION}")
        default_max = None if row[0][0] is None else int(row[0][0]) // _P
    next_xid = int(tx.query(_NEXT_XID)[0][0])
    created: list[str] = []
    for first, end in _plan(max(ends), default_max, next_xid, size, ahead):
        name = partition_name(first)
        tx.query(_NEW_PARTITION, (name, first * _P, end * _P))
        created.append(name)
    return created


def _due(tx: SQLTransaction | _Runner, size: int, ahead: int) -> bool:
    """Whether a partition must be created: a cheap look before taking any lock."""
    horizon = int(tx.query(_HORIZON_XID)[0][0])
    ends = [p.end_xid for p in _partitions(tx, horizon) if not p.default and p.end_xid]
    next_xid = int(tx.query(_NEXT_XID)[0][0])
    return not ends or max(ends) < _grid_end(next_xid, size) + size * ahead


def prepare_partitions(conn: psycopg.Connection[Any], ahead: int = PARTITIONS_AHEAD) -> list[str]:
    """At a writer's open: create the partitions the next transactions need, if any is due.

    ``conn`` is in autocommit mode. One query on an unpartitioned store, two when nothing is
    due. The DDL needs the table's owner and short locks: a writer that is not the owner, or
    that would wait (another process is creating them, or a long transaction holds the
    table), logs a warning and goes on (its appends land in the default partition if the
    partitions run out: run ``ckl partitions create`` as the owner).
    """
    runner = _Runner(conn)
    rows = runner.query(_SIZE)
    if not rows:
        return []
    size = int(rows[0][0])
    if not _due(runner, size, ahead):
        return []
    try:
        with conn.transaction():
            locked = runner.query("SELECT pg_try_advisory_xact_lock(%s)", (lock_key("schema"),))
            if not locked[0][0]:
                return []  # another process is doing the schema's DDL
            runner.execute("SET LOCAL lock_timeout = '2s'")
            return _create_due(runner, size, ahead)
    except (
        psycopg.errors.InsufficientPrivilege,  # not the owner
        psycopg.errors.LockNotAvailable,  # a long transaction holds the table
        psycopg.errors.CheckViolation,  # an append reached the default's new range meanwhile
    ) as exc:
        _log.warning(
            "could not create the next partitions of %s (%s); appends go on (into the default "
            "partition if they run out): run `ckl partitions create` as the table's owner",
            EVENTS_TABLE,
            str(exc).strip().splitlines()[0],
        )
        return []


def _archived_checkpoints(tx: SQLTransaction) -> set[UUID]:
    return {UUID(str(r[0])) for r in tx.query(_ARCHIVED_CHECKPOINTS)}


def _purge(tx: SQLTransaction, checkpoint_ids: list[UUID]) -> int:
    """Delete the checkpoints' events still in the log, snapshots and view rows; the events."""
    if not checkpoint_ids:
        return 0
    ids = [str(oid) for oid in checkpoint_ids]
    tx.execute(
        f"INSERT INTO {PURGE_PERMITS_TABLE} (originator_id) SELECT unnest(%s::uuid[])",
        (ids,),
    )
    deleted = tx.execute(
        f"DELETE FROM {EVENTS_TABLE} WHERE originator_id = ANY(%s::uuid[])",
        (ids,),
    )
    tx.execute(
        f"DELETE FROM {HEADS_TABLE} WHERE originator_id = ANY(%s::uuid[])",
        (ids,),
    )
    tx.execute(
        f"DELETE FROM {SNAPSHOTS_TABLE} WHERE originator_id = ANY(%s::uuid[])",
        (ids,),
    )
    for (table,) in tx.query(_VIEW_TABLES):
        if _VIEW_TABLE_NAME.fullmatch(str(table)):
            tx.execute(
                f"DELETE FROM {quote_identifier(str(table))} WHERE checkpoint_id = ANY(%s::text[])",
                (ids,),
            )
    tx.execute(
        f"DELETE FROM {PURGE_PERMITS_TABLE} WHERE originator_id = ANY(%s::uuid[])",
        (ids,),
    )
    return deleted


class PostgresPartitioning:
    """``ledger.store.partitioning.Partitioning`` on PostgreSQL: the statements, in order."""

    def status(self, tx: SQLTransaction) -> PartitionsStatus:
        """The partitions in position order (the default last), or none if unpartitioned."""
        horizon = int(tx.query(_HORIZON_XID)[0][0])
        if not _is_partitioned(tx):
            return PartitionsStatus(
                partitioned=False, size=None, horizon_xid=horizon, partitions=[]
            )
        rows = tx.query(_SIZE)
        return PartitionsStatus(
            partitioned=True,
            size=int(rows[0][0]) if rows else None,
            horizon_xid=horizon,
            partitions=_partitions(tx, horizon),
        )

    def enable(self, tx: SQLTransaction, size: int) -> EnableReport:
        """Partition the event table in place, under the schema lock; see the module docstring.

        Appends and reads wait for the migration (it holds the table exclusively); it copies
        nothing, so its cost is one scan of the table (the attach checks the bounds).
        """
        check_partition_size(size)
        tx.lock_for_schema("schema")
        if _is_partitioned(tx):
            for statement in _DDL_FUNCTIONS:  # those of this version
                tx.execute(statement)
            tx.execute(f"UPDATE {PARTITIONING_TABLE} SET size = %s", (size,))
            created = _create_due(tx, size, PARTITIONS_AHEAD)
            ranges = [p for p in _partitions(tx, 0) if not p.default]
            return EnableReport(
                migrated=False,
                size=size,
                first_partition=ranges[0].name if ranges else FIRST_PARTITION,
                boundary_xid=(ranges[0].end_xid or 0) if ranges else 0,
                created=created,
            )
        tx.execute(f"LOCK TABLE {EVENTS_TABLE} IN ACCESS EXCLUSIVE MODE")
        boundary = int(tx.query("SELECT pg_current_xact_id()::text::bigint")[0][0]) + 1
        highest = tx.query(f"SELECT max(notification_id) FROM {EVENTS_TABLE}")
        if highest[0][0] is not None and int(highest[0][0]) >= boundary * _P:  # pragma: no cover
            msg = f"position {highest[0][0]} is above this transaction's ({boundary - 1})"
            raise InvalidInput("store", f"cannot partition {EVENTS_TABLE}: {msg}")
        first = FIRST_PARTITION
        check = f"{EVENTS_TABLE}_position_in_transaction"
        # A constraint of schema 1's migration may be NOT VALID; a partition needs it valid.
        unchecked = tx.query(
            "SELECT 1 FROM pg_constraint WHERE conname = %s AND NOT convalidated "
            "AND conrelid = to_regclass(%s)",
            (check, EVENTS_TABLE),
        )
        if unchecked:
            tx.execute(f"ALTER TABLE {EVENTS_TABLE} VALIDATE CONSTRAINT {check}")
        for statement in (
            f"ALTER TABLE {EVENTS_TABLE} RENAME TO {first}",
            f"ALTER INDEX {EVENTS_TABLE}_pkey RENAME TO {first}_pkey",
            f"ALTER INDEX {EVENTS_TABLE}_notification_id_idx RENAME TO {first}_notification_id_idx",
            f"ALTER INDEX {COMMAND_INDEX} RENAME TO {first}_command_idx",
            f"ALTER INDEX IF EXISTS {EVENTS_TABLE}_run_idx RENAME TO {first}_run_idx",
            f"DROP TRIGGER {EVENTS_TABLE}_append_only ON {first}",
            f"DROP TRIGGER {EVENTS_TABLE}_guard_insert ON {first}",
            f"ALTER TRIGGER {EVENTS_TABLE}_no_truncate ON {first} RENAME TO {first}_no_truncate",
            (
                f"CREATE TABLE {EVENTS_TABLE} (LIKE {first} INCLUDING DEFAULTS "
                "INCLUDING CONSTRAINTS) PARTITION BY RANGE (notification_id)"
            ),
            (
                f"CREATE UNIQUE INDEX {EVENTS_TABLE}_notification_id_idx "
                f"ON {EVENTS_TABLE} (notification_id)"
            ),
            (
                f"CREATE INDEX {EVENTS_TABLE}_run_idx ON {EVENTS_TABLE} (run_id) "
                "WHERE originator_version = 1"
            ),
            *_PARENT_TRIGGERS,
            *_DDL_FUNCTIONS,
        ):
            tx.execute(statement)
        tx.query(_ATTACH_PARTITION, (first, None, boundary * _P))
        tx.query(_NEW_PARTITION, (DEFAULT_PARTITION, None, None))
        tx.execute(_HEADS_DDL)
        tx.execute(_HEADS_FILL)
        tx.execute(
            f"INSERT INTO {PARTITIONING_TABLE} (size, enabled_at) VALUES (%s, %s)",
            (size, datetime.now(UTC).isoformat()),
        )
        created = _create_due(tx, size, PARTITIONS_AHEAD)
        return EnableReport(
            migrated=True,
            size=size,
            first_partition=first,
            boundary_xid=boundary,
            created=created,
        )

    def create_ahead(self, tx: SQLTransaction, ahead: int) -> list[str]:
        """Create the partitions due, under the schema lock (waiting for it)."""
        if isinstance(ahead, bool) or not isinstance(ahead, int) or not 0 <= ahead <= _MAX_AHEAD:
            raise InvalidInput(
                "ahead", f"{ahead!r} is not a number of partitions from 0 to {_MAX_AHEAD}"
            )
        if not _is_partitioned(tx):
            raise InvalidInput(
                "store",
                "the event table is not partitioned (run ckl partitions enable)",
            )
        tx.lock_for_schema("schema")
        size = int(tx.query(_SIZE)[0][0])
        return _create_due(tx, size, ahead)

    def detach(self, tx: SQLTransaction, names: Sequence[str], *, drop: bool) -> DetachReport:
        """Detach the partitions ``names`` once every event in them belongs to an archived run.

        All or none, in one transaction: detaching the partitions a run spans together keeps
        its events from being deleted row by row from the later ones.

        Raises:
            InvalidInput: no name, or one is not a partition of the event table.
            PartitionNotDetachable: one is the default partition, may still be written into,
                or holds events of runs not archived (nothing is changed).
        """
        wanted = list(dict.fromkeys(names))
        if not wanted:
            raise InvalidInput("partition", "name at least one partition to detach")
        for name in wanted:
            if not isinstance(name, str) or not re.fullmatch(r"[a-z0-9_]{1,63}", name):
                raise InvalidInput("partition", f"{str(name)[:80]!r} is not a partition name")
        tx.lock_for_schema("schema")
        # No run is archived or restored until this commits.
        tx.execute(f"LOCK TABLE {ARCHIVES_TABLE} IN SHARE MODE")
        horizon = int(tx.query(_HORIZON_XID)[0][0])
        attached = {p.name: p for p in _partitions(tx, horizon)}
        archived = _archived_checkpoints(tx)
        held: list[tuple[Any, ...]] = []
        for name in wanted:
            part = attached.get(name)
            if part is None:
                raise InvalidInput(
                    "partition",
                    f"{name} is not a partition of {EVENTS_TABLE} (ckl partitions list shows them)",
                )
            if part.default:
                raise PartitionNotDetachable(
                    name,
                    "the default partition catches positions no range covers and stays attached "
                    "(its events of archived runs go with a purge, as on an unpartitioned store)",
                )
            if part.writable:
                raise PartitionNotDetachable(
                    name,
                    f"transactions up to {part.end_xid} may still write into it (every "
                    f"transaction below {horizon} has ended): wait until the older open "
                    "transactions end",
                )
            held.extend(tx.query(_PARTITION_CHECKPOINTS, (name,)))
            open_runs = sorted(
                {
                    str(run) if run is not None else "(no run)"
                    for oid, run, _ in held
                    if UUID(str(oid)) not in archived
                }
            )
            if open_runs:
                shown = ", ".join(repr(r) for r in open_runs[:_RUNS_SHOWN])
                more = (
                    f" and {len(open_runs) - _RUNS_SHOWN} more"
                    if len(open_runs) > _RUNS_SHOWN
                    else ""
                )
                raise PartitionNotDetachable(
                    name,
                    f"it holds events of {len(open_runs)} run(s) not archived ({shown}{more}): "
                    "archive them first (ckl archive)",
                )
        for name in wanted:
            tx.query(_DETACH_PARTITION, (name, not drop))
        runs = sorted({str(run) for _, run, _ in held if run is not None})
        # Whole runs go: every checkpoint of a run with an event here, wherever the rest is.
        checkpoints = {UUID(str(oid)) for oid, _, _ in held} | {
            UUID(str(r[0])) for r in tx.query(_RUN_CHECKPOINTS, (runs,))
        }
        elsewhere = _purge(tx, sorted(checkpoints))
        return DetachReport(
            partitions=wanted,
            events=sum(int(count) for _, _, count in held),
            checkpoints=len(checkpoints),
            runs=runs,
            purged_elsewhere=elsewhere,
            dropped=drop,
            checkpoint_ids=sorted(checkpoints),
        )
