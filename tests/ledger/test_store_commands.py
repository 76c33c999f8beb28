"""The store's side of idempotent commands and of the one clock, on both backends.

Command ids: the ``command_id`` column, its partial unique index (``COMMAND_INDEX``), the
``CommandAlreadyRecorded`` refusal, ``find_command``, and the migrations that bring stores of
the previous schema up to it. The clock: ``database_now`` is the machine's on SQLite and the
server's on PostgreSQL, checked from a process whose clock really is wrong (``faketime``).
"""

from __future__ import annotations

import json
import os
import pickle
import shutil
import sqlite3
import subprocess
import sys
import threading
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent, Tracking

from ledger import CheckpointToken, Created, Ledger, Yielded
from ledger.errors import InvalidInput
from ledger.settings import LedgerSettings
from ledger.store import COMMAND_INDEX, CommandAlreadyRecorded
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.url import parse_store_url

if TYPE_CHECKING:
    from collections.abc import Iterator

ROOT = Path(__file__).resolve().parents[2]
SKEW = 60.0  # seconds the child process's clock is ahead of the real one
CLOSE = 2.0  # seconds within which the child's database_now() must match the server's clock


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as opened:
        yield opened


def _created(ledger: Ledger, run_id: str, batch: int = 0) -> StoredEvent:
    token = CheckpointToken.for_batch(run_id, batch)
    event = Created(
        originator_id=token.checkpoint_id,
        originator_version=1,
        timestamp=datetime.now(UTC),
        run_id=run_id,
        batch_index=batch,
    )
    return ledger.mapper.to_stored_event(event)


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


def _oid(event: StoredEvent) -> UUID:
    return UUID(str(event.originator_id))


# ------------------------------------------------------------ command ids


def test_a_command_id_is_stored_with_its_event_and_found_by_it(ledger: Ledger) -> None:
    recorder = ledger.recorder
    created = _created(ledger, "found")
    oid = _oid(created)
    recorder.insert_events([created], run_id="found", command_ids=["create-1"])
    recorder.insert_events([_yielded(ledger, oid, 2)], run_id="found", command_ids=["yield-2"])
    recorder.insert_events([_yielded(ledger, oid, 3)], run_id="found")  # no command id: NULL
    assert recorder.find_command(oid, "create-1") == (1, created.topic)
    assert recorder.find_command(oid, "yield-2") == (2, _yielded(ledger, oid, 2).topic)
    assert recorder.find_command(oid, "yield-3") is None
    assert recorder.find_command(uuid4(), "create-1") is None  # per checkpoint
    assert ledger.get_checkpoint(CheckpointToken.for_batch("found", 0)).cursor == 3


def test_a_command_recorded_twice_on_a_checkpoint_is_refused_and_nothing_is_written(
    ledger: Ledger,
) -> None:
    recorder = ledger.recorder
    created = _created(ledger, "twice")
    oid = _oid(created)
    recorder.insert_events([created], run_id="twice", command_ids=["c-1"])
    before = recorder.count_events()
    with pytest.raises(CommandAlreadyRecorded) as refused:
        recorder.insert_events([_yielded(ledger, oid, 2)], run_id="twice", command_ids=["c-1"])
    assert (refused.value.originator_id, refused.value.command_id) == (oid, "c-1")
    assert isinstance(refused.value, IntegrityError)  # what eventsourcing's callers catch
    assert recorder.count_events() == before
    # Another checkpoint may use the same id, and events without one never clash.
    other = _created(ledger, "twice", 1)
    recorder.insert_events([other], run_id="twice", command_ids=["c-1"])
    recorder.insert_events([_yielded(ledger, oid, 2)], run_id="twice")
    recorder.insert_events([_yielded(ledger, oid, 3)], run_id="twice", command_ids=[None])
    assert recorder.count_events() == before + 3


def test_a_version_clash_stays_a_plain_integrity_error(ledger: Ledger) -> None:
    recorder = ledger.recorder
    created = _created(ledger, "clash")
    oid = _oid(created)
    recorder.insert_events([created, _yielded(ledger, oid, 2)], command_ids=["a", "b"])
    with pytest.raises(IntegrityError) as refused:  # version 2 is taken; "c" is new
        recorder.insert_events([_yielded(ledger, oid, 2)], command_ids=["c"])
    assert not isinstance(refused.value, CommandAlreadyRecorded)
    with pytest.raises(IntegrityError) as batch:
        recorder.insert_events([_yielded(ledger, oid, 3), _yielded(ledger, oid, 2)])
    assert not isinstance(batch.value, CommandAlreadyRecorded)
    assert recorder.count_events(oid) == 2


def test_a_batch_names_the_command_that_was_refused(ledger: Ledger) -> None:
    recorder = ledger.recorder
    created = _created(ledger, "batch")
    oid = _oid(created)
    recorder.insert_events([created], command_ids=["first"])
    stored = [_yielded(ledger, oid, 2), _yielded(ledger, oid, 3)]
    with pytest.raises(CommandAlreadyRecorded) as refused:
        recorder.insert_events(stored, command_ids=["new", "first"])
    assert (refused.value.originator_id, refused.value.command_id) == (oid, "first")
    with pytest.raises(CommandAlreadyRecorded) as twice:  # one command twice in one batch
        recorder.insert_events(stored, command_ids=["same", "same"])
    assert (twice.value.originator_id, twice.value.command_id) == (oid, "same")
    assert recorder.count_events(oid) == 1
    positions = recorder.insert_events(stored, command_ids=["new", None])
    assert len(positions) == 2
    assert recorder.find_command(oid, "new") == (2, stored[0].topic)


def test_a_tracked_append_refuses_a_recorded_command_and_records_no_position(
    ledger: Ledger,
) -> None:
    recorder = ledger.recorder
    created = _created(ledger, "tracked")
    oid = _oid(created)
    recorder.insert_events([created], command_ids=["c"], tracking=Tracking("app", 1))
    with pytest.raises(CommandAlreadyRecorded):
        recorder.insert_events(
            [_yielded(ledger, oid, 2)], command_ids=["c"], tracking=Tracking("app", 2)
        )
    assert recorder.max_tracking_id("app") == 1
    assert recorder.count_events(oid) == 1


def test_the_refusal_pickles_with_its_attributes() -> None:
    oid = uuid4()
    copy = pickle.loads(pickle.dumps(CommandAlreadyRecorded(oid, "c-9")))  # noqa: S301  (ours)
    assert isinstance(copy, CommandAlreadyRecorded)
    assert (copy.originator_id, copy.command_id) == (oid, "c-9")
    assert "c-9" in str(copy)
    assert str(oid) in str(copy)


@pytest.mark.parametrize(
    ("command_ids", "says"),
    [
        (["a"], "2 events"),
        (["a", "b", "c"], "2 events"),
        (["a", ""], "non-empty"),
        ([7, None], "non-empty"),
    ],
)
def test_command_ids_that_do_not_match_the_events_are_refused_before_anything_is_written(
    ledger: Ledger, command_ids: list[Any], says: str
) -> None:
    created = _created(ledger, "bad")
    events = [created, _yielded(ledger, _oid(created), 2)]
    with pytest.raises(InvalidInput, match=says):
        ledger.recorder.insert_events(events, command_ids=command_ids)
    assert ledger.recorder.count_events() == 0


# ------------------------------------------------------------ append-only with the new key


def _raw(store_url: str, statement: str) -> None:
    if store_url.startswith("sqlite:///"):
        conn = sqlite3.connect(store_url.removeprefix("sqlite:///"))
        try:
            with conn:
                conn.execute(statement)
        finally:
            conn.close()
    else:
        with psycopg.connect(store_url, autocommit=True) as pg:
            pg.execute(statement)


# Each would replace the event that recorded command "c" by another row (version 3, which would
# pass the version guards), or change the column.
_OVERWRITES = {
    "sqlite": [
        # REPLACE resolves a clash on any unique key by deleting the old row, without firing
        # the DELETE trigger: the command index is one more such key.
        (
            "INSERT OR REPLACE INTO ckl_events (originator_id, originator_version, topic, state,"
            " command_id) SELECT originator_id, 3, 'x', state, command_id FROM ckl_events"
            " WHERE command_id = 'c'"
        ),
        "UPDATE ckl_events SET command_id = NULL WHERE command_id = 'c'",
        "UPDATE ckl_events SET command_id = 'c' WHERE command_id IS NULL",
    ],
    "postgres": [
        (
            "INSERT INTO ckl_events (notification_id, originator_id, originator_version, topic,"
            " state, command_id) SELECT notification_id + 7, originator_id, 3, 'x', state,"
            " command_id FROM ckl_events WHERE command_id = 'c' ON CONFLICT (originator_id,"
            " command_id) WHERE command_id IS NOT NULL DO UPDATE SET topic = EXCLUDED.topic"
        ),
        "UPDATE ckl_events SET command_id = NULL WHERE command_id = 'c'",
        "UPDATE ckl_events SET command_id = 'c' WHERE command_id IS NULL",
    ],
}


@pytest.mark.parametrize("which", [0, 1, 2])
def test_the_command_column_opens_no_way_to_change_history(
    store_url: str, ledger: Ledger, which: int
) -> None:
    created = _created(ledger, "history")
    oid = _oid(created)
    ledger.recorder.insert_events([created], command_ids=["c"])
    ledger.recorder.insert_events([_yielded(ledger, oid, 2)])
    before = ledger.recorder.select_events(oid)
    backend = "sqlite" if store_url.startswith("sqlite:///") else "postgres"
    refusal = sqlite3.IntegrityError if backend == "sqlite" else psycopg.errors.IntegrityError
    with pytest.raises(refusal):
        _raw(store_url, _OVERWRITES[backend][which])
    assert ledger.recorder.select_events(oid) == before
    assert ledger.recorder.find_command(oid, "c") == (1, created.topic)


# ------------------------------------------------------------ migrations


def _write_old_history(ledger: Ledger, run_id: str) -> CheckpointToken:
    token = ledger.create_checkpoint(run_id, 0)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    ledger.checkpoint_yield(token, cursor=2, items_processed=2)
    return token


def _check_migrated(url: str, token: CheckpointToken, old_events: list[StoredEvent]) -> None:
    """Open the store from several threads at once (racing the migration), then use it."""
    opened: list[Ledger] = []
    errors: list[BaseException] = []

    def open_one() -> None:
        try:
            opened.append(Ledger.open(url))
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=open_one) for _ in range(3)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    try:
        assert errors == []
        ledger = opened[0]
        recorder = ledger.recorder
        oid = token.checkpoint_id
        assert recorder.select_events(oid) == old_events
        assert ledger.get_checkpoint(token).cursor == 2
        assert recorder.find_command(oid, "anything") is None  # old rows have no command id
        recorder.insert_events([_yielded(ledger, oid, 4)], run_id="old", command_ids=["new-4"])
        assert recorder.find_command(oid, "new-4") == (4, old_events[-1].topic)
        with pytest.raises(CommandAlreadyRecorded):
            recorder.insert_events([_yielded(ledger, oid, 5)], command_ids=["new-4"])
        assert ledger.get_checkpoint(token).cursor == 4
    finally:
        for one in opened:
            one.close()


def test_a_sqlite_store_of_schema_3_gets_the_command_column_when_a_writer_opens_it(
    tmp_path: Path,
) -> None:
    path = tmp_path / "old.db"
    url = f"sqlite:///{path}"
    with Ledger.open(url) as ledger:
        token = _write_old_history(ledger, "old")
        old_events = list(ledger.recorder.select_events(token.checkpoint_id))
    conn = sqlite3.connect(path)  # back to what schema 3 wrote: no command column
    with conn:
        conn.execute(f"DROP INDEX {COMMAND_INDEX}")
        conn.execute("DROP TRIGGER ckl_events_no_replace_command")
        conn.execute("ALTER TABLE ckl_events DROP COLUMN command_id")
        conn.execute("PRAGMA user_version = 3")
    conn.close()
    _check_migrated(url, token, old_events)
    conn = sqlite3.connect(path)
    try:
        assert conn.execute("PRAGMA user_version").fetchone() == (7,)
        index = "SELECT sql FROM sqlite_master WHERE type = 'index' AND name = ?"
        (ddl,) = conn.execute(index, (COMMAND_INDEX,)).fetchone()
        assert "UNIQUE" in ddl
        assert "WHERE command_id IS NOT NULL" in ddl
        rows = conn.execute("SELECT originator_version, command_id FROM ckl_events").fetchall()
        assert sorted(rows) == [(1, None), (2, None), (3, None), (4, "new-4")]
    finally:
        conn.close()


@pytest.mark.postgres
def test_a_postgres_store_of_schema_4_gets_the_command_column_when_a_writer_opens_it(
    postgres_url: str,
) -> None:
    with Ledger.open(postgres_url) as ledger:
        token = _write_old_history(ledger, "old")
        old_events = list(ledger.recorder.select_events(token.checkpoint_id))
        # A row of something other than the Ledger, whose state is not JSON: schema 4's
        # backfill, which parses Created events, must not run again for a schema 4 store.
        foreign = StoredEvent(uuid4(), 1, "someone.Else", b"\x00 not JSON")
        ledger.recorder.insert_events([foreign])
    with psycopg.connect(postgres_url, autocommit=True) as conn:  # back to what schema 4 wrote
        conn.execute(f"DROP INDEX {COMMAND_INDEX}")
        conn.execute("ALTER TABLE ckl_events DROP COLUMN command_id")
        conn.execute("UPDATE ckl_schema SET version = 4")
    _check_migrated(postgres_url, token, old_events)
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        assert conn.execute("SELECT version FROM ckl_schema").fetchone() == (7,)
        row = conn.execute(
            "SELECT indexdef FROM pg_indexes WHERE indexname = %s", (COMMAND_INDEX,)
        ).fetchone()
        assert row is not None
        assert "UNIQUE" in row[0]
        assert "WHERE (command_id IS NOT NULL)" in row[0]
        rows = conn.execute(
            "SELECT originator_version, command_id FROM ckl_events WHERE originator_id = %s",
            (token.checkpoint_id,),
        ).fetchall()
        assert sorted(rows) == [(1, None), (2, None), (3, None), (4, "new-4")]
        assert conn.execute(
            "SELECT run_id FROM ckl_events WHERE originator_id = %s", (foreign.originator_id,)
        ).fetchone() == (None,)


# ------------------------------------------------------------ the clock


def test_the_sqlite_clock_is_the_machines(sqlite_url: str) -> None:
    with Ledger.open(sqlite_url) as ledger:
        before = datetime.now(UTC)
        now = ledger.recorder.database_now()
        after = datetime.now(UTC)
    assert now.tzinfo is not None
    assert now.utcoffset() == timedelta(0)
    assert before <= now <= after


def _server_now(url: str) -> datetime:
    with psycopg.connect(url, autocommit=True) as conn:
        row = conn.execute("SELECT clock_timestamp()").fetchone()
    assert row is not None
    found: datetime = row[0]
    return found


@pytest.mark.postgres
def test_the_postgres_clock_is_the_servers_in_utc(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger:
        now = ledger.recorder.database_now()
        server = _server_now(postgres_url)
    assert now.utcoffset() == timedelta(0)
    assert abs((server - now).total_seconds()) < CLOSE


class _Refreshing(PostgresLedgerRecorder):
    clock_refresh = 0.0  # every call measures again


@pytest.mark.postgres
def test_a_failed_refresh_keeps_the_last_offset(
    postgres_url: str, caplog: pytest.LogCaptureFixture
) -> None:
    url = postgres_url
    with Ledger.open(url):  # the tables
        pass
    recorder = _Refreshing(parse_store_url(url), LedgerSettings(store=url))
    try:
        recorder.database_now()  # measured again (clock_refresh = 0): the refresh works
        measured = recorder._clock.offset
    finally:
        recorder.close()  # from now on every refresh fails: the pool is closed
    with caplog.at_level("DEBUG", logger="ledger.store.postgres.clock"):
        later = recorder.database_now()
    # The refresh was tried (the log says so), failed, and left the offset as it was.
    assert "keeping the last offset" in caplog.text
    assert recorder._clock.offset == measured
    assert abs((later - _server_now(url)).total_seconds()) < CLOSE


def _faketime() -> str:
    found = shutil.which("faketime")
    if found is None:
        pytest.fail("the clock tests need libfaketime: apt-get install -y faketime")
    return found


def _libfaketime() -> str:
    found = sorted(Path("/usr/lib").glob("*/faketime/libfaketime.so.1"))
    if not found:
        pytest.fail("the clock tests need libfaketime: apt-get install -y faketime")
    return str(found[0])


# Run in the child: two recorders on the store (one measuring the server's clock on every call,
# one with the default refresh), then, once per line on stdin, what each says the time is.
_CHILD = """
import json, sys
from datetime import UTC, datetime
import psycopg
from ledger.settings import LedgerSettings
from ledger.store.postgres import PostgresLedgerRecorder
from ledger.store.url import parse_store_url

class Refreshing(PostgresLedgerRecorder):
    clock_refresh = 0.0

url = sys.argv[1]
store, settings = parse_store_url(url), LedgerSettings(store=url)
fresh, default = Refreshing(store, settings), PostgresLedgerRecorder(store, settings)
with psycopg.connect(url, autocommit=True) as conn:
    for _ in sys.stdin:
        server = conn.execute("SELECT clock_timestamp()").fetchone()[0]
        print(json.dumps({
            "local": datetime.now(UTC).isoformat(),
            "fresh": fresh.database_now().isoformat(),
            "default": default.database_now().isoformat(),
            "server": server.isoformat(),
        }), flush=True)
"""


def _seconds(report: dict[str, str], key: str) -> float:
    """How far ``report[key]`` is ahead of the server's clock, in seconds."""
    delta = datetime.fromisoformat(report[key]) - datetime.fromisoformat(report["server"])
    return delta.total_seconds()


def _child_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("FAKETIME", "LD_PRELOAD"))}
    return {**env, "PYTHONPATH": str(ROOT), **extra}


@pytest.mark.postgres
def test_a_client_whose_clock_is_a_minute_ahead_still_reads_the_servers_time(
    postgres_url: str,
) -> None:
    with Ledger.open(postgres_url):  # the tables
        pass
    done = subprocess.run(
        [_faketime(), "-f", f"+{SKEW:g}s", sys.executable, "-c", _CHILD, postgres_url],
        input="\n",
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
        env=_child_env(),
    )
    (report,) = [json.loads(line) for line in done.stdout.splitlines()]
    assert abs(_seconds(report, "local") - SKEW) < CLOSE  # the child's clock really is wrong
    assert abs(_seconds(report, "fresh")) < CLOSE
    assert abs(_seconds(report, "default")) < CLOSE


@pytest.mark.postgres
def test_a_client_clock_that_jumps_is_caught_up_with_at_the_next_refresh(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url):
        pass
    skew = tmp_path / "skew"
    skew.write_text(f"+{SKEW:g}s\n")
    env = _child_env(
        LD_PRELOAD=_libfaketime(),
        FAKETIME_TIMESTAMP_FILE=str(skew),
        FAKETIME_NO_CACHE="1",  # read the file on every call: the test moves the clock
        FAKETIME_DONT_FAKE_MONOTONIC="1",  # the refresh interval is real time
    )
    with subprocess.Popen(
        [sys.executable, "-c", _CHILD, postgres_url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    ) as child:
        assert child.stdin is not None
        assert child.stdout is not None
        try:
            child.stdin.write("\n")
            child.stdin.flush()
            first = json.loads(child.stdout.readline())
            skew.write_text(f"+{2 * SKEW:g}s\n")  # the child's clock jumps another minute ahead
            child.stdin.write("\n")
            child.stdin.flush()
            second = json.loads(child.stdout.readline())
            child.stdin.close()
            assert child.wait(timeout=60) == 0
        finally:
            if child.poll() is None:
                child.kill()
    assert abs(_seconds(first, "local") - SKEW) < CLOSE
    assert abs(_seconds(first, "default")) < CLOSE
    assert abs(_seconds(second, "local") - 2 * SKEW) < CLOSE
    assert abs(_seconds(second, "fresh")) < CLOSE  # measured again: the server's time
    # The default recorder measured less than clock_refresh ago: it still adds the old
    # offset, so it is the jump ahead until its next refresh (at most 30 s away).
    assert abs(_seconds(second, "default") - SKEW) < CLOSE
