"""PostgreSQL positions: ``xid * 65536 + ordinal``, read only below the visible horizon.

The deterministic cases hold a transaction open on a connection of the test's own (appending
through the recorder's own statement, or only holding a transaction id) while a later one
commits, and check that no reader — ``read_log``, the watcher's head, ``run_stream``,
``Projections`` — delivers the later event before the earlier transaction ends, and that both
then arrive in position order. A hypothesis test drives random interleavings of appends,
commits, aborts and reads over three connections against a model.
"""

from __future__ import annotations

import threading
import time
from contextlib import closing, suppress
from dataclasses import dataclass, field
from datetime import UTC, datetime
from itertools import count
from typing import TYPE_CHECKING, Any, Literal
from uuid import UUID, uuid4

import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger import (
    AwaitTimeout,
    CheckpointToken,
    Created,
    InvalidInput,
    Ledger,
    LedgerSettings,
    StoreUnavailable,
    Yielded,
)
from ledger.store.postgres import (
    MAX_EVENTS_PER_TRANSACTION,
    POSITIONS_PER_TRANSACTION,
    PostgresLedgerRecorder,
)
from ledger.store.postgres.append import chained_params
from projections import Projections
from streams import run_stream
from tests.streams._support import subscribed

if TYPE_CHECKING:
    from collections.abc import Iterator, Sequence

    from eventsourcing.persistence import StoredEvent

pytestmark = pytest.mark.postgres

P = POSITIONS_PER_TRANSACTION


def _yielded(ledger: Ledger, oid: UUID, version: int) -> StoredEvent:
    event = Yielded(
        originator_id=oid,
        originator_version=version,
        timestamp=datetime.now(UTC),
        attempt=1,
        cursor=version,
        items_processed=version,
    )
    return ledger.mapper.to_stored_event(event)


def _created(ledger: Ledger, run_id: str, batch_index: int) -> StoredEvent:
    token = CheckpointToken.for_batch(run_id, batch_index)
    event = Created(
        originator_id=token.checkpoint_id,
        originator_version=1,
        timestamp=datetime.now(UTC),
        run_id=run_id,
        batch_index=batch_index,
    )
    return ledger.mapper.to_stored_event(event)


def _recorder(ledger: Ledger) -> PostgresLedgerRecorder:
    assert isinstance(ledger.recorder, PostgresLedgerRecorder)
    return ledger.recorder


class OpenTransaction:
    """A connection of the test's own, in a transaction it commits or aborts when told."""

    def __init__(self, ledger: Ledger, url: str) -> None:
        self.ledger = ledger
        self.conn = psycopg.connect(url, connect_timeout=10)  # not autocommit: BEGIN implied

    def append(self, *events: StoredEvent) -> list[int]:
        """Append through the recorder's own statement, inside the open transaction."""
        return _append_in(self.conn, _recorder(self.ledger), events)

    def take_xid(self) -> int:
        """Hold a transaction id without writing anything (as any other writer might)."""
        row = self.conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
        assert row is not None
        return int(row[0])

    def commit(self) -> None:
        self.conn.commit()

    def abort(self) -> None:
        self.conn.rollback()

    def close(self) -> None:
        self.conn.close()


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[Ledger]:
    with Ledger.open(settings=LedgerSettings(store=postgres_url, poll_interval=0.2)) as opened:
        yield opened


def _append_in(
    conn: psycopg.Connection[Any], recorder: PostgresLedgerRecorder, events: Sequence[StoredEvent]
) -> list[int]:
    """The recorder's one-event statement, once per event, in ``conn``'s transaction."""
    ids = []
    for e in events:
        row = conn.execute(
            recorder._appender.insert_one,
            (
                e.originator_id,
                e.originator_version,
                e.topic,
                e.state,
                None,
                None,
            ),  # no run, no command
        ).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


def _positions(ledger: Ledger, after: int = 0) -> list[int]:
    return [position for position, _ in ledger.read_log(after=after, limit=10_000)]


def _all_rows(url: str) -> list[int]:
    with psycopg.connect(url, autocommit=True) as conn:
        rows = conn.execute("SELECT notification_id FROM ckl_events ORDER BY 1").fetchall()
    return [int(r[0]) for r in rows]


# ---------------------------------------------------------------- the position itself


def test_a_position_is_the_transaction_id_times_65536_plus_the_ordinal(
    ledger: Ledger, postgres_url: str
) -> None:
    token = ledger.create_checkpoint("pos", 0)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        rows = conn.execute(
            "SELECT notification_id, transaction_id::text::bigint FROM ckl_events"
        ).fetchall()
    assert len(rows) == 2
    for position, xid in rows:
        assert position == xid * P + 1
    events = [_yielded(ledger, token.checkpoint_id, v) for v in (3, 4, 5)]
    ids = ledger.recorder.insert_events(events)
    assert ids is not None
    base = ids[0] - 1
    assert base % P == 0
    assert list(ids) == [base + 1, base + 2, base + 3]


def test_two_appends_in_one_transaction_keep_their_positions_unique(
    ledger: Ledger, postgres_url: str
) -> None:
    token = ledger.create_checkpoint("two", 0)
    oid = token.checkpoint_id
    tx = OpenTransaction(ledger, postgres_url)
    try:
        first = tx.append(_yielded(ledger, oid, 2), _yielded(ledger, oid, 3))
        second = tx.append(_yielded(ledger, oid, 4))
        # The many-event statement after single ones: its ordinals continue the range too.
        third = list(
            tx.conn.execute(
                _recorder(ledger)._appender.insert_many,
                # The run id first (none here), then the chained arrays, then the command ids.
                (
                    None,
                    *chained_params(tx.conn, [_yielded(ledger, oid, v) for v in (5, 6)]),
                    [None, None],
                ),
            ).fetchall()
        )
        tx.commit()
    finally:
        tx.close()
    ids = first + second + sorted(int(r[0]) for r in third)
    assert ids == list(range(ids[0], ids[0] + 5))
    assert (ids[0] - 1) % P == 0
    assert _positions(ledger)[-5:] == ids
    assert ledger.get_checkpoint(token).version == 6


def test_more_events_than_one_transaction_has_positions_for_is_refused_before_writing(
    ledger: Ledger,
) -> None:
    token = ledger.create_checkpoint("big", 0)
    before = ledger.count_events()
    event = _yielded(ledger, token.checkpoint_id, 2)
    with pytest.raises(InvalidInput, match="at most 65535") as caught:
        ledger.recorder.insert_events([event] * (MAX_EVENTS_PER_TRANSACTION + 1))
    assert caught.value.field == "stored_events"
    assert ledger.count_events() == before


def test_the_database_refuses_a_position_past_its_transactions_range(
    ledger: Ledger, postgres_url: str
) -> None:
    token = ledger.create_checkpoint("full", 0)
    tx = OpenTransaction(ledger, postgres_url)
    try:
        xid = tx.take_xid()
        # Version 2 at the last position of the range, copied by hand from version 1 (every
        # column, whatever the schema adds, but not its command: one event per command); the
        # recorder's next position is past the range.
        tx.conn.execute("CREATE TEMP TABLE copy ON COMMIT DROP AS SELECT * FROM ckl_events")
        tx.conn.execute(
            "UPDATE copy SET originator_version = 2, notification_id = %s,"
            " transaction_id = pg_current_xact_id(), command_id = NULL",
            ((xid + 1) * P - 1,),
        )
        tx.conn.execute("INSERT INTO ckl_events SELECT * FROM copy")
        with pytest.raises(psycopg.errors.CheckViolation):
            tx.append(_yielded(ledger, token.checkpoint_id, 3))
        tx.abort()
    finally:
        tx.close()
    assert ledger.get_checkpoint(token).version == 1


# ---------------------------------------------------------------- the visible horizon


@pytest.mark.parametrize("holder", ["append", "xid-only"])
@pytest.mark.parametrize("outcome", ["commit", "abort"])
def test_no_reader_passes_a_transaction_in_flight(
    ledger: Ledger,
    postgres_url: str,
    holder: Literal["append", "xid-only"],
    outcome: Literal["commit", "abort"],
) -> None:
    early_token = ledger.create_checkpoint("held", 0)
    token = ledger.create_checkpoint("held", 1)
    views = Projections(ledger).start()
    with views, subscribed(run_stream(ledger, "held")) as tail:
        assert [e.position for e in tail.take(2, timeout=10)] == _positions(ledger)
        views.sync(timeout=10)
        head = ledger.recorder.max_notification_id()
        assert head is not None

        early = OpenTransaction(ledger, postgres_url)
        try:
            if holder == "append":
                (early_id,) = early.append(_yielded(ledger, early_token.checkpoint_id, 2))
            else:
                early_id = early.take_xid() * P  # no row: only the transaction id
            # A later transaction commits first, through the Ledger (its own notify wakes all).
            later_state = ledger.checkpoint_yield(token, cursor="later", items_processed=5)
            later_id = _all_rows(postgres_url)[-1]
            assert early_id < later_id

            # Nobody may deliver the later event while the earlier transaction is open.
            time.sleep(0.5)  # two poll intervals: every reader has looked again
            assert _positions(ledger, after=head) == []
            assert ledger.recorder.log_head() == (head, True)
            # The committed head is a target to wait for: sync() includes this process's write
            # and so waits for the earlier transaction.
            assert ledger.recorder.max_notification_id() == later_id
            with pytest.raises(AwaitTimeout):
                views.sync(timeout=0.3)
            assert views.position == head
            assert views.catch_up() == head
            assert tail.pending() == 0

            if outcome == "commit":
                early.commit()
            else:
                early.abort()
        finally:
            early.close()

        expected = [i for i in _all_rows(postgres_url) if i > head]
        if holder == "append" and outcome == "commit":
            assert expected == [early_id, later_id]
        else:
            assert expected == [later_id]
        # Both now arrive, in position order, through every reader: the watcher notices the
        # horizon moving even when the earlier transaction ends without a notification.
        assert [e.position for e in tail.take(len(expected), timeout=10)] == expected
        assert _positions(ledger, after=head) == expected
        assert views.sync(timeout=10) == later_id
        assert views.position == later_id
        assert ledger.recorder.log_head() == (later_id, False)
    assert later_state.version == 2
    assert ledger.get_checkpoint(early_token).version == (
        2 if holder == "append" and outcome == "commit" else 1
    )


def test_read_your_writes_without_a_follower_waits_for_an_older_transaction(
    ledger: Ledger, postgres_url: str
) -> None:
    token = ledger.create_checkpoint("ryw", 0)
    views = Projections(ledger)  # not started: wait_for applies events itself
    holder = OpenTransaction(ledger, postgres_url)
    try:
        holder.take_xid()
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
        target = _all_rows(postgres_url)[-1]
        timer = threading.Timer(0.3, holder.commit)
        timer.start()
        assert views.wait_for(target, timeout=10) == target
        timer.join()
    finally:
        holder.close()
    current = views.current(token)
    assert current is not None
    assert current.cursor == 1


# ---------------------------------------------------------------- migration from schema 1

_V1_SCHEMA = [
    """CREATE TABLE ckl_events (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        notification_id bigserial NOT NULL,
        transaction_id xid8 NOT NULL DEFAULT pg_current_xact_id(),
        PRIMARY KEY (originator_id, originator_version)
    )""",
    "CREATE UNIQUE INDEX ckl_events_notification_id_idx ON ckl_events (notification_id)",
    """CREATE TABLE ckl_snapshots (
        originator_id uuid NOT NULL,
        originator_version bigint NOT NULL,
        topic text NOT NULL,
        state bytea NOT NULL,
        PRIMARY KEY (originator_id, originator_version)
    )""",
    """CREATE TABLE ckl_schema (
        singleton boolean PRIMARY KEY DEFAULT true CHECK (singleton),
        version integer NOT NULL
    )""",
    "INSERT INTO ckl_schema (version) VALUES (1)",
]


def _make_v1_store(url: str, events: list[StoredEvent], first_id: int | None = None) -> None:
    """A store as schema 1 left it: positions from a bigserial."""
    with psycopg.connect(url, autocommit=True) as conn:
        for statement in _V1_SCHEMA:
            conn.execute(statement)
        if first_id is not None:
            conn.execute("SELECT setval('ckl_events_notification_id_seq', %s)", (first_id,))
        for e in events:
            conn.execute(
                "INSERT INTO ckl_events (originator_id, originator_version, topic, state)"
                " VALUES (%s, %s, %s, %s)",
                (e.originator_id, e.originator_version, e.topic, e.state),
            )


def _stored_events(run_id: str, yields: int) -> list[StoredEvent]:
    with Ledger.open("memory://") as scratch:
        token = scratch.create_checkpoint(run_id, 0)
        for i in range(yields):
            scratch.checkpoint_yield(token, cursor=i + 1, items_processed=i + 1)
        return [scratch.mapper.to_stored_event(e) for e in scratch.checkpoint_events(token)]


def test_a_schema_1_store_is_migrated_once_keeping_its_order(postgres_url: str) -> None:
    old = _stored_events("old", 5)
    _make_v1_store(postgres_url, old)
    opened: list[Ledger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Ledger.open(postgres_url))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(4)]  # race the migration
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    try:
        ledger = opened[0]
        assert _positions(ledger) == [1, 2, 3, 4, 5, 6]
        token = CheckpointToken.for_batch("old", 0)
        new_state = ledger.checkpoint_yield(token, cursor=6, items_processed=6)
        assert new_state.version == 7
        positions = _positions(ledger)
        assert positions[:6] == [1, 2, 3, 4, 5, 6]
        assert positions[6] > 6
        assert (positions[6] - 1) % P == 0
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            default = conn.execute(
                "SELECT column_default FROM information_schema.columns"
                " WHERE table_name = 'ckl_events' AND column_name = 'notification_id'"
            ).fetchone()
            assert default == (None,)
            sequence = "SELECT to_regclass('ckl_events_notification_id_seq')"
            assert conn.execute(sequence).fetchone() == (None,)
            assert conn.execute("SELECT count(*) FROM ckl_schema").fetchone() == (1,)
            (version,) = conn.execute("SELECT version FROM ckl_schema").fetchone() or (0,)
            assert version >= 2
            # A writer of schema 1 (no position of its own) is refused, not silently ordered.
            e = _yielded(ledger, token.checkpoint_id, 8)
            with pytest.raises(psycopg.errors.DatabaseError):
                conn.execute(
                    "INSERT INTO ckl_events (originator_id, originator_version, topic, state)"
                    " VALUES (%s, %s, %s, %s)",
                    (e.originator_id, e.originator_version, e.topic, e.state),
                )
        assert len(_positions(ledger)) == 7
    finally:
        for one in opened:
            one.close()
    with Ledger.open(postgres_url) as again:  # already migrated: nothing to do
        assert len(_positions(again)) == 7


def test_a_schema_1_store_whose_positions_are_too_high_is_refused_unchanged(
    postgres_url: str,
) -> None:
    _make_v1_store(postgres_url, _stored_events("high", 1), first_id=2**46)
    with pytest.raises(StoreUnavailable, match="cannot migrate ckl_events"):
        Ledger.open(postgres_url)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM ckl_schema").fetchone() == (1,)
        sequence = "SELECT to_regclass('ckl_events_notification_id_seq')"
        assert conn.execute(sequence).fetchone() != (None,)
        assert conn.execute("SELECT count(*) FROM ckl_events").fetchone() == (2,)


def test_a_store_of_a_newer_schema_is_refused(postgres_url: str) -> None:
    with Ledger.open(postgres_url):
        pass
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute("UPDATE ckl_schema SET version = 99")
    with pytest.raises(StoreUnavailable, match="schema version 99"):
        Ledger.open(postgres_url)


# ---------------------------------------------------------------- random interleavings


@dataclass
class _Tx:
    conn: psycopg.Connection[Any]
    order: int | None = None  # when it took its transaction id (at its first append)
    ids: list[int] = field(default_factory=list)


class _Interleaving:
    """Three writer connections, one reader by position, and the model both must match.

    The model: a committed event is readable exactly when every transaction that took its id
    before the event's transaction has ended (transaction ids are handed out in order).
    """

    def __init__(self, ledger: Ledger, url: str) -> None:
        self.ledger = ledger
        self.recorder = _recorder(ledger)
        self.txs = [_Tx(psycopg.connect(url, connect_timeout=10)) for _ in range(3)]
        self.run = f"hyp-{uuid4().hex[:8]}"
        self.position = ledger.recorder.max_notification_id() or 0
        self.delivered: list[int] = []
        self.committed: dict[int, int] = {}  # position -> order of its transaction
        self._orders = count()
        self._batches = count()

    def append(self, which: int, size: int) -> None:
        tx = self.txs[which]
        if tx.order is None:
            tx.order = next(self._orders)
        events = [_created(self.ledger, self.run, next(self._batches)) for _ in range(size)]
        tx.ids.extend(_append_in(tx.conn, self.recorder, events))

    def end(self, which: int, *, commit: bool) -> None:
        tx = self.txs[which]
        if commit:
            tx.conn.commit()
            self.committed.update(dict.fromkeys(tx.ids, tx.order or 0))
        else:
            tx.conn.rollback()
        tx.order, tx.ids = None, []

    def read(self) -> None:
        while notes := self.recorder.select_notifications(
            self.position, 2, inclusive_of_start=False
        ):
            self.delivered.extend(n.id for n in notes)
            self.position = notes[-1].id

    def readable(self) -> list[int]:
        horizon = min((t.order for t in self.txs if t.order is not None), default=None)
        return sorted(i for i, o in self.committed.items() if horizon is None or o < horizon)

    def close(self) -> None:
        for tx in self.txs:
            with suppress(psycopg.Error):
                tx.conn.rollback()
            tx.conn.close()


_Op = tuple[Literal["append", "commit", "abort", "read"], int, int]
_ops = st.lists(
    st.tuples(
        st.sampled_from(["append", "append", "commit", "abort", "read"]),
        st.integers(0, 2),
        st.integers(1, 3),
    ),
    max_size=40,
)


# Each example is independent of the database's earlier content: its own run, reading from the
# head as it found it, and every transaction ended at the end.
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(ops=_ops)
def test_random_interleavings_of_three_writers_never_skip_or_repeat(
    postgres_url: str, ops: list[_Op]
) -> None:
    with Ledger.open(postgres_url) as ledger, closing(_Interleaving(ledger, postgres_url)) as it:
        for op, which, size in ops:
            if op == "append":
                it.append(which, size)
            elif op == "read":
                it.read()
                assert it.delivered == it.readable()
            else:
                it.end(which, commit=op == "commit")
        for which in range(3):
            it.end(which, commit=True)
        it.read()
        assert it.delivered == sorted(it.committed)
        assert len(set(it.delivered)) == len(it.delivered)
