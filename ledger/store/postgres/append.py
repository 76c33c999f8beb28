"""PostgreSQL appends: the append statements, chained parameters, and the libpq fast path.

An append is one statement in autocommit mode, so one round trip, commit included, and takes
no lock (``ledger.store.postgres.positions`` says why no reader can skip an event anyway).
Each row's ``event_hash`` chains it to the previous version of its checkpoint
(``ledger.chain``): computed in SQL for one event, in Python for several. The ``command_id``
column is not hashed: the ``Ledger`` puts the id in the event's state too, which the chain
covers, so the column is an index of what the chain already protects.
"""

from __future__ import annotations

import weakref
from contextlib import suppress
from typing import TYPE_CHECKING, Any

import psycopg
from eventsourcing.persistence import IntegrityError
from psycopg import pq
from psycopg.generators import execute as _pq_execute

from ledger.chain import chain_hash
from ledger.errors import RunArchived
from ledger.store.base import COMMAND_INDEX, EVENTS_TABLE, CommandAlreadyRecorded, as_uuid
from ledger.store.postgres._driver import results_check, translate
from ledger.store.postgres.positions import POSITIONS_PER_TRANSACTION, XID
from ledger.store.postgres.schema import ARCHIVED_SQLSTATE, GAP_SQLSTATE

if TYPE_CHECKING:
    from collections.abc import Sequence
    from uuid import UUID

    from eventsourcing.persistence import StoredEvent

__all__ = [
    "PostgresAppender",
    "append_error",
    "append_sql",
    "chained_params",
    "clashing_command",
    "is_command_clash",
]

_PARTITION_PREFIX = f"{EVENTS_TABLE}_xid_"
_COMMAND_SUFFIX = "_command_idx"
_APPEND_ONE = b"ckl_append_one"
"""Name of the one-event append, prepared once on each pooled connection."""
# uuid and bytea binary, bigint binary (8 bytes, big-endian), topic, run id and command id
# as text.
_APPEND_ONE_FORMATS = (
    pq.Format.BINARY,
    pq.Format.BINARY,
    pq.Format.TEXT,
    pq.Format.BINARY,
    pq.Format.TEXT,
    pq.Format.TEXT,
)


def numbered(query: str) -> bytes:
    """The query with its ``%s`` placeholders numbered for libpq (``$1``, ``$2`` and so on)."""
    parts = query.split("%s")
    out = parts[0]
    for n, part in enumerate(parts[1:], start=1):
        out += f"${n}{part}"
    return out.encode()


def append_sql() -> tuple[str, str]:
    """The two append statements: one event (scalars), several (``unnest`` of arrays).

    Each row's position is ``block.last + ordinal``: ``block.base`` is the transaction's own
    range (``xid * 65536``), and ``block.last`` the highest position the transaction already
    used in it (an index probe, normally empty: an append is one autocommit statement, but a
    transaction that appended before keeps its positions unique). Ordinals follow the input
    order. The ``CHECK`` on the table refuses a position past the transaction's range. One
    event binds scalars, because adapting and unnesting one-element arrays measured ~90 µs per
    append. No ``NOTIFY`` here: PostgreSQL serialises the commits of every transaction that
    notifies (one lock held through the commit's WAL flush), which would undo what dropping
    the append lock gains; ``ledger.store.postgres.notify`` sends it afterwards instead.
    """
    block = (
        "(SELECT coalesce((SELECT max(notification_id) FROM "
        f"{EVENTS_TABLE} WHERE notification_id > x.base "
        f"AND notification_id < x.base + {POSITIONS_PER_TRANSACTION}), x.base) AS last "
        f"FROM (SELECT {XID} * {POSITIONS_PER_TRANSACTION} AS base) AS x) AS block"
    )
    columns = (
        "notification_id, originator_id, originator_version, topic, state, event_hash, run_id,"
        " command_id"
    )
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
        "|| convert_to(e.topic, 'UTF8') || '\\x00'::bytea || e.state), e.run_id, e.command_id "
        f"FROM {block}, (SELECT %s::uuid AS oid, %s::bigint AS v, %s::text AS topic, "
        "%s::bytea AS state, %s::text AS run_id, %s::text AS command_id) AS e "
        "RETURNING notification_id"
    )
    # Several events: their hashes are computed in Python (chained_params), from the previous
    # hashes read in the same transaction, and bound as one more array; the run id, one for
    # all, is the first parameter, the command ids the last array.
    many = (
        f"INSERT INTO {EVENTS_TABLE} ({columns}) "
        "SELECT block.last + e.ordinal, e.originator_id, e.originator_version, e.topic, e.state, "
        f"e.event_hash, %s::text, e.command_id FROM {block}, "
        "unnest(%s::uuid[], %s::bigint[], %s::text[], %s::bytea[], %s::bytea[], %s::text[]) "
        "WITH ORDINALITY AS e(originator_id, originator_version, topic, state, event_hash, "
        "command_id, ordinal) RETURNING notification_id"
    )
    return one, many


_STORED_COMMANDS = (
    f"SELECT e.originator_id, e.command_id FROM {EVENTS_TABLE} AS e "
    "JOIN unnest(%s::uuid[], %s::text[]) AS w(oid, command_id) "
    "ON e.originator_id = w.oid AND e.command_id = w.command_id"
)
_PREVIOUS_HASHES = (
    f"SELECT p.originator_id, p.originator_version, p.event_hash FROM {EVENTS_TABLE} AS p "
    "JOIN unnest(%s::uuid[], %s::bigint[]) AS w(oid, v) "
    "ON p.originator_id = w.oid AND p.originator_version = w.v"
)


def chained_params(
    conn: psycopg.Connection[Any], events: Sequence[StoredEvent]
) -> tuple[list[Any], ...]:
    """The arrays the multi-row append binds, hashes included, read and computed in ``conn``.

    Previous hashes read here belong to committed rows, which never change; a predecessor
    that is neither stored nor earlier in ``events`` gets no hash, which the insert trigger
    refuses.
    """
    oids = [as_uuid(e.originator_id) for e in events]
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


def is_command_clash(exc: psycopg.Error) -> bool:
    """True if the command index refused the row (by its name: not a version clash).

    On a partitioned store, a clash inside one partition is refused by that partition's own
    command index (``ckl_events_xid_<n>_command_idx``), one across partitions by the insert
    trigger under the unpartitioned index's name (``ledger.store.postgres.partitions``).
    """
    if not isinstance(exc, psycopg.errors.UniqueViolation):
        return False
    name = exc.diag.constraint_name
    return name == COMMAND_INDEX or (
        name is not None and name.startswith(_PARTITION_PREFIX) and name.endswith(_COMMAND_SUFFIX)
    )


def clashing_command(
    conn: psycopg.Connection[Any], events: Sequence[StoredEvent], command_ids: Sequence[str | None]
) -> CommandAlreadyRecorded:
    """Which of a refused batch's commands the command index refused, asked on ``conn``.

    Called once the failed append rolled back: the first event whose command is stored, or
    the second of two events of the batch that name one command for one checkpoint. (Not
    parsed from the error's detail, which the server's ``lc_messages`` translates.)
    """
    wanted = [
        (as_uuid(e.originator_id), command_id)
        for e, command_id in zip(events, command_ids, strict=True)
        if command_id is not None
    ]
    params = ([oid for oid, _ in wanted], [command_id for _, command_id in wanted])
    stored = {(r[0], str(r[1])) for r in conn.execute(_STORED_COMMANDS, params)}
    seen: set[tuple[UUID, str]] = set()
    for key in wanted:
        if key in stored or key in seen:
            return CommandAlreadyRecorded(*key)
        seen.add(key)
    # The stored row went in the meantime (a purge): the first command stands for the batch.
    return CommandAlreadyRecorded(*wanted[0])


def append_error(exc: psycopg.Error) -> Exception:
    """What a failed append raises: our errors for our SQLSTATEs, else the store's."""
    if exc.sqlstate == ARCHIVED_SQLSTATE:
        return RunArchived(exc.diag.message_detail or "?")
    if exc.sqlstate == GAP_SQLSTATE:
        return IntegrityError(exc.diag.message_primary or str(exc))
    return translate(exc)


class PostgresAppender:
    """The two append statements, built once, and the one-event statement prepared per connection.

    Plain strings built once (our own identifiers and constants): no SQL composition per call.
    Both statements raise psycopg's errors (:func:`append_error` translates them).
    """

    def __init__(self) -> None:
        self.insert_one, self.insert_many = append_sql()
        self._insert_one_pq = numbered(self.insert_one)
        self._prepared: weakref.WeakSet[psycopg.Connection[Any]] = weakref.WeakSet()

    def one(
        self,
        conn: psycopg.Connection[Any],
        e: StoredEvent,
        run_id: str | None,
        command_id: str | None = None,
    ) -> int:
        """The one-event append, sent to libpq directly; its position.

        The hot path of every yield: psycopg's cursor (query conversion, adapters, its
        prepared-statement cache, result wrapping) measured ~70 µs of client CPU per durable
        append, this ~25 µs. The statement is prepared once per connection under our own name;
        waiting goes through ``Connection.wait`` as ``execute()`` does, so Ctrl-C still cancels
        the query in the server, and errors are psycopg's own exceptions, as before.
        """
        pgconn = conn.pgconn
        params = (
            as_uuid(e.originator_id).bytes,
            e.originator_version.to_bytes(8, "big", signed=True),
            e.topic.encode(),
            e.state,
            None if run_id is None else run_id.encode(),
            None if command_id is None else command_id.encode(),
        )
        if conn not in self._prepared:
            self._prepare_one(conn)
        pgconn.send_query_prepared(_APPEND_ONE, params, _APPEND_ONE_FORMATS)
        try:
            result = results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.TUPLES_OK)
        except psycopg.errors.InvalidSqlStatementName:
            # psycopg runs DEALLOCATE ALL after a ROLLBACK, DROP or ALTER on the connection
            # (its own prepared statements may be stale then), which drops ours too. Nothing
            # was executed: prepare again and send once more.
            self._prepare_one(conn)
            pgconn.send_query_prepared(_APPEND_ONE, params, _APPEND_ONE_FORMATS)
            result = results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.TUPLES_OK)
        return int(result.get_value(0, 0) or b"")

    def _prepare_one(self, conn: psycopg.Connection[Any]) -> None:
        pgconn = conn.pgconn
        pgconn.send_prepare(_APPEND_ONE, self._insert_one_pq)
        with suppress(psycopg.errors.DuplicatePreparedStatement):  # still prepared here
            results_check(conn, conn.wait(_pq_execute(pgconn)), pq.ExecStatus.COMMAND_OK)
        self._prepared.add(conn)

    def many(
        self,
        conn: psycopg.Connection[Any],
        events: Sequence[StoredEvent],
        run_id: str | None,
        command_ids: Sequence[str | None],
    ) -> list[tuple[Any, ...]]:
        """The multi-row append, each event chained in Python (inside the caller's transaction)."""
        params = (run_id, *chained_params(conn, events), list(command_ids))
        return conn.execute(self.insert_many, params, prepare=True).fetchall()
