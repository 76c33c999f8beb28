"""The store as an eventsourcing persistence module: run ids, subscriptions, tracking.

eventsourcing's own test cases are in ``test_eventsourcing_recorders.py``; these are the parts
of our design they do not cover: the run id column and its migration, the archive guard on it,
the tracked position the projections keep across the migration, and the signal-driven wake-ups
of ``subscribe()`` and ``TrackingRecorder.wait``.
"""

from __future__ import annotations

import sqlite3
import threading
from typing import TYPE_CHECKING
from uuid import uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from ledger import Ledger, LedgerSettings, RunArchived
from ledger.archive import archive_run
from projections import Projections

if TYPE_CHECKING:
    from pathlib import Path

    from eventsourcing.persistence import Notification

    from ledger.store import LedgerRecorder

_SLOW_POLL = 30.0  # seconds: longer than any wait below, so only a signal can end it in time


def _slow_polling(url: str) -> Ledger:
    return Ledger.open(url, settings=LedgerSettings(store=url, poll_interval=_SLOW_POLL))


def _run_ids(ledger: Ledger) -> list[tuple[int, str | None]]:
    with ledger.recorder.transaction(readonly=True) as tx:
        rows = tx.query("SELECT originator_version, run_id FROM ckl_events ORDER BY 1, 2")
    return [(int(v), r) for v, r in rows]


def _write_run(ledger: Ledger, run_id: str) -> None:
    token = ledger.create_checkpoint(run_id, 0)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    ledger.complete_checkpoint(token, result=1)


def test_every_event_the_ledger_writes_carries_its_run_id(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        _write_run(ledger, "run-a")
        assert _run_ids(ledger) == [(1, "run-a"), (2, "run-a"), (3, "run-a")]


def test_states_are_opaque_and_events_of_no_run_have_none(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        oid = uuid4()
        not_json = StoredEvent(oid, 1, "compressed", b"\x78\x9c\x00\xff")
        ledger.recorder.insert_events([not_json])
        assert ledger.recorder.select_events(oid) == [not_json]
        assert _run_ids(ledger) == [(1, None)]


def test_the_archive_guard_reads_the_run_id_column(store_url: str, tmp_path: Path) -> None:
    with Ledger.open(store_url) as ledger:
        _write_run(ledger, "run-old")
        archive_run(ledger, "run-old", tmp_path / "run-old.jsonl")
        with pytest.raises(RunArchived):
            ledger.create_checkpoint("run-old", 0)
        with pytest.raises(RunArchived):
            ledger.create_checkpoint("run-old", 1)  # a new batch of the archived run too
        ledger.create_checkpoint("run-new", 0)  # other runs go on


# ------------------------------------------------------------------------- migrations


def _open_together(url: str, count: int = 4) -> list[Ledger]:
    """Open ``count`` ledgers at once (racing the migration); all must succeed."""
    opened: list[Ledger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Ledger.open(url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert errors == []
    return opened


def _check_migrated(url: str, position: int, tmp_path: Path) -> None:
    opened = _open_together(url)
    try:
        ledger = opened[0]
        assert _run_ids(ledger) == [(1, "run-a"), (2, "run-a"), (3, "run-a")]
        assert ledger.recorder.max_tracking_id("views") == position
        with Projections(ledger) as views:
            assert views.position == position  # kept: no replay
            assert views.progress("run-a").completed == 1
        archive_run(ledger, "run-a", tmp_path / "run-a.jsonl")
        with pytest.raises(RunArchived):
            ledger.create_checkpoint("run-a", 0)
        _write_run(ledger, "run-b")  # rows for the caller's check that UPDATE is refused again
    finally:
        for one in opened:
            one.close()


def test_a_sqlite_store_of_schema_2_gets_run_ids_and_keeps_its_tracked_position(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/old.db"
    with Ledger.open(url) as ledger, Projections(ledger) as views:
        _write_run(ledger, "run-a")
        position = views.sync()
    # Back to what schema 2 wrote: no run_id column, the projections' own tracking table.
    conn = sqlite3.connect(tmp_path / "old.db")
    with conn:
        conn.execute("DROP INDEX ckl_events_run_idx")
        conn.execute("DROP TRIGGER ckl_events_not_archived")
        conn.execute("ALTER TABLE ckl_events DROP COLUMN run_id")
        conn.execute("CREATE TABLE ckl_view_tracking (name TEXT PRIMARY KEY, position BIGINT)")
        conn.execute("INSERT INTO ckl_view_tracking SELECT name, position FROM ckl_tracking")
        conn.execute("DROP TABLE ckl_tracking")
        conn.execute("PRAGMA user_version = 2")
    conn.close()
    _check_migrated(url, position, tmp_path)
    conn = sqlite3.connect(tmp_path / "old.db")
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        legacy = "SELECT count(*) FROM sqlite_master WHERE name = 'ckl_view_tracking'"
        assert conn.execute(legacy).fetchone() == (0,)
        with pytest.raises(sqlite3.IntegrityError, match="append-only"), conn:
            conn.execute("UPDATE ckl_events SET run_id = 'x'")  # the trigger is back
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_postgres_store_of_schema_3_gets_run_ids_and_keeps_its_tracked_position(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger, Projections(ledger) as views:
        _write_run(ledger, "run-a")
        position = views.sync()
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to what schema 3 wrote
        conn.execute("ALTER TABLE ckl_events DROP COLUMN run_id")
        conn.execute("CREATE TABLE ckl_view_tracking (name text PRIMARY KEY, position bigint)")
        conn.execute("INSERT INTO ckl_view_tracking SELECT name, position FROM ckl_tracking")
        conn.execute("DROP TABLE ckl_tracking")
        conn.execute("UPDATE ckl_schema SET version = 3")
    _check_migrated(postgres_url, position, tmp_path)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM ckl_schema").fetchone() == (7,)
        legacy = conn.execute("SELECT to_regclass('ckl_view_tracking')").fetchone()
        assert legacy == (None,)
        with pytest.raises(psycopg.errors.RestrictViolation):
            conn.execute("UPDATE ckl_events SET run_id = 'x'")  # the trigger is back on


# ------------------------------------------------------------- subscriptions and waits


def _next_in_thread(subscription: object) -> tuple[threading.Event, list[Notification]]:
    got: list[Notification] = []
    done = threading.Event()

    def run() -> None:
        for notification in subscription:  # type: ignore[attr-defined]
            got.append(notification)
            break
        done.set()

    threading.Thread(target=run, daemon=True).start()
    return done, got


def test_a_subscription_is_woken_by_an_append_not_by_its_poll(store_url: str) -> None:
    with _slow_polling(store_url) as ledger:
        recorder: LedgerRecorder = ledger.recorder
        with recorder.subscribe(gt=recorder.max_notification_id()) as subscription:
            done, got = _next_in_thread(subscription)
            token = ledger.create_checkpoint("run-live", 0)
            assert done.wait(10)
            assert [n.originator_id for n in got] == [token.checkpoint_id]


def test_stopping_a_subscription_from_another_thread_ends_its_iteration(store_url: str) -> None:
    with _slow_polling(store_url) as ledger:
        subscription = ledger.recorder.subscribe()
        with subscription:
            done, got = _next_in_thread(subscription)
            subscription.stop()
            assert done.wait(10)
            assert got == []


def test_wait_is_woken_by_the_views_tracking_not_by_a_back_off(store_url: str) -> None:
    with _slow_polling(store_url) as ledger, Projections(ledger) as views:
        token = ledger.create_checkpoint("run-wait", 0)
        target = ledger.recorder.max_notification_id()
        assert target is not None
        woke = threading.Event()

        def wait() -> None:
            ledger.recorder.wait("views", target, timeout=20)
            woke.set()

        waiter = threading.Thread(target=wait, daemon=True)
        waiter.start()
        # The waiter backs off to the slow poll; the views' commit must wake it anyway.
        assert not woke.wait(0.2)
        views.catch_up()
        assert woke.wait(10)
        waiter.join(timeout=10)
        assert views.current(token) is not None


def test_tracking_in_an_append_is_atomic_with_its_events(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        recorder = ledger.recorder
        first = StoredEvent(uuid4(), 1, "t", b"1")
        recorder.insert_events([first], tracking=Tracking("upstream", 5))
        taken = StoredEvent(first.originator_id, 1, "t", b"again")
        with pytest.raises(IntegrityError):
            recorder.insert_events([taken], tracking=Tracking("upstream", 6))
        assert recorder.max_tracking_id("upstream") == 5
