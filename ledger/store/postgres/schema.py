"""PostgreSQL schema: the DDL, its version, and the migrations from older versions.

Version 2: positions are ``xid * 65536 + ordinal`` (version 1: a bigserial, handed out under an
advisory lock; ``_migrate_from_1``). Version 3: hash chains (``event_hash``), purge permits
and archive markers (``ledger.chain``, ``ledger.archive``). Version 4: the run id is a column
(the insert guard parsed the state as JSON before; ``_migrate_to_4`` backfills it), and
eventsourcing's tracking table, which takes over the projections' ``ckl_view_tracking`` rows.
Version 5: the command id is a column with a partial unique index, ``COMMAND_INDEX``
(idempotent commands; ``_migrate_to_5``). Version 6: the insert trigger refuses a row without
a hash (a writer of an older schema, still running after an upgrade). Version 7: the
partitioning table, ``ckl_partitioning`` (empty: ``ckl_events`` is one plain table; one row:
it is partitioned by position range, ``ledger.store.postgres.partitions``), so that code which
does not know partitions refuses a store that may be partitioned. The schema is created
once, under an advisory lock (:func:`create_schema`), so many processes may open a new store
together.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from eventsourcing.persistence import ProgrammingError

from ledger.store.base import (
    ARCHIVES_TABLE,
    COMMAND_INDEX,
    EVENTS_TABLE,
    PARTITIONING_TABLE,
    PURGE_PERMITS_TABLE,
    SNAPSHOTS_TABLE,
    TRACKING_TABLE,
)
from ledger.store.postgres._codes import (
    ARCHIVED_SQLSTATE,
    GAP_SQLSTATE,
    OLD_WRITER_MESSAGE,
    OLD_WRITER_SQLSTATE,
    lock_key,
)
from ledger.store.postgres.partitions import prepare_partitions
from ledger.store.postgres.positions import POSITIONS_PER_TRANSACTION, XID

if TYPE_CHECKING:
    from collections.abc import Callable

    import psycopg

__all__ = [
    "ARCHIVED_SQLSTATE",
    "GAP_SQLSTATE",
    "OLD_WRITER_MESSAGE",
    "OLD_WRITER_SQLSTATE",
    "SCHEMA",
    "SCHEMA_VERSION",
    "create_schema",
    "lock_key",
    "schema_version",
]

SCHEMA_VERSION = 7

SCHEMA = [
    f"""CREATE TABLE IF NOT EXISTS {EVENTS_TABLE} (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        notification_id bigint NOT NULL,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        command_id text,
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
    # Schema 4. The run an event belongs to, as the Ledger says (NULL: not the Ledger's).
    f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS run_id text",
    # A run's checkpoints (archive, audit) by index; only Created events are indexed, so a
    # yield's append updates no more indexes than before.
    f"""CREATE INDEX IF NOT EXISTS {EVENTS_TABLE}_run_idx ON {EVENTS_TABLE} (run_id)
        WHERE originator_version = 1""",
    f"""CREATE TABLE IF NOT EXISTS {TRACKING_TABLE} (
        name text PRIMARY KEY,
        position bigint NOT NULL
    )""",
    # Runs for Created events (version 1) and for rows whose hash came out NULL (no previous
    # version): an archived run stays archived, and a version never skips its predecessor.
    # The run is the row's run_id column: the state is opaque to the store.
    f"""CREATE OR REPLACE FUNCTION ckl_guard_insert() RETURNS trigger
        LANGUAGE plpgsql AS $$
        DECLARE archived text;
        BEGIN
            IF NEW.originator_version = 1 THEN
                SELECT a.run_id INTO archived FROM {ARCHIVES_TABLE} AS a
                WHERE a.restored_at IS NULL AND a.run_id = NEW.run_id
                LIMIT 1;
            ELSE
                SELECT a.run_id INTO archived FROM {ARCHIVES_TABLE} AS a
                WHERE a.restored_at IS NULL AND strpos(a.heads, NEW.originator_id::text) > 0
                LIMIT 1;
            END IF;
            IF archived IS NOT NULL THEN
                RAISE EXCEPTION 'run % is archived', archived
                    USING ERRCODE = '{ARCHIVED_SQLSTATE}', DETAIL = archived;
            END IF;
            IF NEW.event_hash IS NULL AND NEW.originator_version > 1 AND NOT EXISTS (
                SELECT 1 FROM {EVENTS_TABLE} WHERE originator_id = NEW.originator_id
                   AND originator_version = NEW.originator_version - 1
            ) THEN
                RAISE EXCEPTION 'checkpoint % has no version %; version % refused',
                    NEW.originator_id, NEW.originator_version - 1, NEW.originator_version
                    USING ERRCODE = '{GAP_SQLSTATE}';
            END IF;
            -- Schema 6: every writer since schema 3 hashes its rows (version 0, eventsourcing's
            -- own, aside); a row without one comes from a writer older than the store.
            IF NEW.event_hash IS NULL AND NEW.originator_version > 0 THEN
                RAISE EXCEPTION '{OLD_WRITER_MESSAGE}' USING ERRCODE = '{OLD_WRITER_SQLSTATE}';
            END IF;
            RETURN NEW;
        END $$""",
    f"""CREATE OR REPLACE TRIGGER {EVENTS_TABLE}_guard_insert
        BEFORE INSERT ON {EVENTS_TABLE} FOR EACH ROW
        WHEN (NEW.originator_version = 1 OR NEW.event_hash IS NULL)
        EXECUTE FUNCTION ckl_guard_insert()""",
    # Schema 7. One row once `ckl partitions enable` partitioned the event table: the size of
    # each new partition, in transactions (ledger.store.postgres.partitions).
    f"""CREATE TABLE IF NOT EXISTS {PARTITIONING_TABLE} (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        size bigint NOT NULL CHECK (size > 0),
        enabled_at text NOT NULL
    )""",
]


def schema_version(conn: psycopg.Connection[Any]) -> int | None:
    """The store's schema version, ``None`` if it has no schema table yet."""
    row = conn.execute("SELECT to_regclass('ckl_schema') IS NOT NULL").fetchone()
    if not (row and row[0]):
        return None
    current = conn.execute("SELECT max(version) FROM ckl_schema").fetchone()
    return None if current is None or current[0] is None else int(current[0])


def _partitioned(conn: psycopg.Connection[Any]) -> bool:
    row = conn.execute(
        "SELECT relkind = 'p' FROM pg_class WHERE oid = to_regclass(%s)", (EVENTS_TABLE,)
    ).fetchone()
    return bool(row and row[0])


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
        f"SELECT max(notification_id), {XID} * {POSITIONS_PER_TRANSACTION} FROM {EVENTS_TABLE}"
    ).fetchone()
    if row is not None and row[0] is not None and int(row[0]) >= int(row[1]):
        msg = (
            f"cannot migrate {EVENTS_TABLE}: its highest position {row[0]} is not below the "
            f"first transaction-based position {row[1]}"
        )
        raise ProgrammingError(msg)


_LEGACY_TRACKING = "ckl_view_tracking"
# Schema 5, after SCHEMA and the migrations (a store made before has no column to index until
# _migrate_to_5 added it). Partial: events without a command id (old rows, eventsourcing's own
# writes) add no index entry.
_COMMAND_INDEX_DDL = (
    f"CREATE UNIQUE INDEX IF NOT EXISTS {COMMAND_INDEX} ON {EVENTS_TABLE} "
    "(originator_id, command_id) WHERE command_id IS NOT NULL"
)


def _migrate_to_4(conn: psycopg.Connection[Any]) -> None:
    """Schema 3 (or older) → 4, inside the schema transaction, after ``SCHEMA`` ran.

    Old rows get their run id from their checkpoint's Created event, parsed once here (the
    Ledger wrote every old row as JSON, and the old insert guard parsed every Created event),
    past the append-only trigger, which is disabled for this transaction's UPDATE only
    (``ALTER TABLE`` holds appends off until the migration commits). The projections' former
    tracking table hands its rows to the tracking table and goes, so that a projections process
    of older code fails rather than tracking in a table nobody reads (stop them first).
    """
    conn.execute(f"ALTER TABLE {EVENTS_TABLE} DISABLE TRIGGER {EVENTS_TABLE}_append_only")
    conn.execute(
        f"UPDATE {EVENTS_TABLE} AS e SET run_id = c.run_id FROM ("
        f"SELECT originator_id, convert_from(state, 'UTF8')::jsonb ->> 'run_id' AS run_id"
        f" FROM {EVENTS_TABLE} WHERE originator_version = 1) AS c"
        " WHERE e.originator_id = c.originator_id AND e.run_id IS NULL"
    )
    conn.execute(f"ALTER TABLE {EVENTS_TABLE} ENABLE TRIGGER {EVENTS_TABLE}_append_only")
    row = conn.execute("SELECT to_regclass(%s) IS NOT NULL", (_LEGACY_TRACKING,)).fetchone()
    if row and row[0]:
        conn.execute(
            f"INSERT INTO {TRACKING_TABLE} (name, position) SELECT name, position"
            f" FROM {_LEGACY_TRACKING} ON CONFLICT (name) DO NOTHING"
        )
        conn.execute(f"DROP TABLE {_LEGACY_TRACKING}")


def _migrate_to_5(conn: psycopg.Connection[Any]) -> None:
    """Schema 4 (or older) → 5, inside the schema transaction: the command id column.

    Nullable without a default, so adding it rewrites no row; old rows keep ``NULL`` (no
    command id), which the partial index built afterwards (``_COMMAND_INDEX_DDL``) leaves out.
    ``ALTER TABLE`` waits for appends in flight and holds new ones off until the migration
    commits; appends of older code keep working afterwards (they leave the column ``NULL``).
    """
    conn.execute(f"ALTER TABLE {EVENTS_TABLE} ADD COLUMN IF NOT EXISTS command_id text")


# Each migration, in order, with the version it brings a store up to (a store older than it).
_MIGRATIONS: tuple[tuple[int, Callable[[psycopg.Connection[Any]], None]], ...] = (
    (2, _migrate_from_1),
    (4, _migrate_to_4),
    (5, _migrate_to_5),
)


def create_schema(conn: psycopg.Connection[Any], display: str) -> None:
    """Create (or migrate) the schema once: a cheap check, then DDL under an advisory lock.

    ``conn`` is in autocommit mode; ``display`` names the store in errors. On a partitioned
    store, the partitions the next transactions will need are also created here if they are
    due (``partitions.prepare_partitions``: one query when none is).

    Raises:
        eventsourcing.persistence.ProgrammingError: the store was made by a newer
            checkpoint-ledger, or cannot be migrated (see ``_migrate_from_1``).
    """
    if schema_version(conn) != SCHEMA_VERSION:
        _create_or_migrate(conn, display)
    prepare_partitions(conn)


def _create_or_migrate(conn: psycopg.Connection[Any], display: str) -> None:
    with conn.transaction():
        # Concurrent openers wait here instead of racing CREATE statements.
        conn.execute("SELECT pg_advisory_xact_lock(%s)", (lock_key("schema"),))
        found = schema_version(conn)  # again, under the lock: another may have done it
        if found == SCHEMA_VERSION:
            return
        if found is not None and found > SCHEMA_VERSION:
            msg = (
                f"the store {display} has schema version {found}; this "
                f"checkpoint-ledger knows versions up to {SCHEMA_VERSION}: upgrade it"
            )
            raise ProgrammingError(msg)
        for statement in SCHEMA:
            conn.execute(statement)
        for version, migrate in _MIGRATIONS:
            if found is not None and found < version:
                migrate(conn)
        if not _partitioned(conn):  # a partitioned store has one per partition instead
            conn.execute(_COMMAND_INDEX_DDL)
        conn.execute(
            "INSERT INTO ckl_schema (version) VALUES (%s) "
            "ON CONFLICT (singleton) DO UPDATE SET version = EXCLUDED.version",
            (SCHEMA_VERSION,),
        )
