"""Readers on a streaming replica: a real primary and standby, writes on one, reads on the other.

One asynchronous pair (``tests/fix_replica.py``) serves the module; each test has a database of
its own on it. What is shown:

1. Eight writer processes on the primary and a tail on the standby (``run_stream`` over
   ``reader_store``, and ``ckl tail`` with ``CKL_READER_STORE``): every event exactly once, in
   the primary's order, with its position, checkpoint and version.
2. The visible horizon holds on the standby: a transaction held open on the primary (appending,
   or only holding a transaction id) keeps a younger, committed and replayed event from every
   reader there, until it ends; then both arrive in position order.
3. A standby refuses, with typed errors and nothing written: a writer (``StoreIsStandby``), a
   read-only open before the schema replicated (``StoreSchemaMismatch(standby=True)``), a write
   through a read-only ledger (``StoreReadOnly``); the CLI likewise.
4. A watcher on the standby wakes on replay (``poll_interval`` far longer than the wait), warns
   nothing, and holds exactly one listening connection while watching, none after 20
   subscribe/unsubscribe rounds.
5. An await on the reader neither reports a checkpoint the standby has not replayed yet as
   missing nor answers before the standby has its outcome (replication is cut to be sure).
6. ``ckl serve`` with ``CKL_READER_STORE``: commands land on the primary, reads come from the
   standby (shown by cutting replication) except for a checkpoint or run it has not replayed
   yet (read on the primary, not a 404), a long-poll await and the views work there, and
   ``/v1/stream`` delivers the log in order.
7. Multi-host URLs on the pair: ``read-write`` finds the primary listed second, in both forms.
8. ``ckl metrics`` with ``CKL_READER_STORE`` counts the primary's writes from the standby
   alone, its views included, with no connection to the primary.
"""

from __future__ import annotations

import contextlib
import json
import logging
import queue
import subprocess
import sys
import threading
import time
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, ClassVar, Literal
from uuid import UUID, uuid4

import psycopg
import pytest

from ledger import (
    AwaitTimeout,
    CheckpointNotFound,
    CheckpointState,
    CheckpointToken,
    Ledger,
    LedgerSettings,
    StoreIsStandby,
    StoreReadOnly,
    StoreSchemaMismatch,
    Yielded,
)
from ledger.store.postgres import POSITIONS_PER_TRANSACTION, PostgresLedgerRecorder
from streams import await_checkpoint, completion, run_stream
from tests.ckl.cli.conftest import ckl, ckl_env, one_error_line
from tests.ckl.cli.test_metrics import exporter, sample
from tests.ckl.server._sse import SseEvent, SseStream
from tests.ckl.server.conftest import Server
from tests.faults._support import pick
from tests.fix_postgres import PostgresServerError, in_ci
from tests.fix_replica import STANDBY_NAME, ReplicaPair
from tests.streams._support import (
    ROOT,
    OnCompleted,
    Worker,
    ckl_threads,
    processes_of,
    still_alive,
    subscribed,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator, Sequence

    import httpx
    from eventsourcing.persistence import StoredEvent


pytestmark = pytest.mark.postgres

WAIT = pick(30.0, 300.0)  # seconds any one thing may take before failing (never when passing)
WRITERS, BATCHES = 8, 2
YIELDS = pick(24, 1000)  # per writer; CKL_FAULTS=long for the long mode
WAKE = 20.0  # seconds a standby watcher may take to wake: a third of its poll interval
P = POSITIONS_PER_TRANSACTION


# ---------------------------------------------------------------- the pair and its databases


@pytest.fixture(scope="module")
def pair() -> Iterator[ReplicaPair]:
    """One asynchronous primary and standby for the module (each test has its own database)."""
    try:
        started = ReplicaPair.start()
    except PostgresServerError as exc:
        if in_ci():
            pytest.fail(f"the replica pair did not start: {exc}")
        pytest.skip(f"no replica pair: {exc}")
    with started:
        yield started


@dataclass(frozen=True)
class Stores:
    """One database on the pair: its URL on the primary and on the standby."""

    name: str
    primary: str
    standby: str


@pytest.fixture
def stores(pair: ReplicaPair) -> Iterator[Stores]:
    """A new empty database on the primary, replayed on the standby; dropped after the test."""
    name = f"ckl_rr_{uuid4().hex[:12]}"
    pair.create_database(name)
    yield Stores(name, pair.primary_url(name), pair.standby_url(name))
    with contextlib.suppress(psycopg.Error):
        pair.drop_database(name)


def with_schema(pair: ReplicaPair, stores: Stores) -> None:
    """Create the ledger's schema on the primary (a writer's open) and wait for the standby."""
    Ledger.open(stores.primary).close()
    replayed(pair)


def replayed(pair: ReplicaPair, timeout: float = WAIT) -> None:
    """Wait until the standby replayed every WAL record the primary has *inserted* so far.

    ``pair.wait_replayed`` waits for the primary's write position, which an asynchronous
    commit's record may still be past: PostgreSQL commits a transaction that holds an id but
    wrote nothing else without waiting for its flush (the WAL writer flushes it within
    ``wal_writer_delay``), and until the standby has that record it holds the transaction open.
    """
    with psycopg.connect(pair.primary.url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute("SELECT pg_current_wal_insert_lsn()::text").fetchone()
    assert row is not None
    target = str(row[0])
    with psycopg.connect(pair.standby.url, autocommit=True, connect_timeout=10) as conn:

        def caught_up() -> bool:
            got = conn.execute("SELECT pg_last_wal_replay_lsn() >= %s::pg_lsn", [target]).fetchone()
            return got == (True,)

        wait_until(f"the standby to replay up to {target}", caught_up, timeout)


def cut_off(pair: ReplicaPair) -> None:
    """Cut replication, and wait until it is cut: the primary streams to no standby.

    ``pair.cut_replication`` reloads the standby's configuration, and its WAL receiver stops a
    moment later: until then, what the primary commits may still reach the standby.
    """
    pair.cut_replication()

    def gone() -> bool:
        with psycopg.connect(pair.primary.url, autocommit=True, connect_timeout=10) as conn:
            row = conn.execute(
                "SELECT count(*) FROM pg_stat_replication WHERE application_name = %s",
                [STANDBY_NAME],
            ).fetchone()
        return row == (0,)

    wait_until("the standby's replication to stop", gone)


def log_rows(ledger: Ledger) -> list[tuple[int, UUID, int]]:
    """``ledger``'s whole log as (position, checkpoint id, version), in order."""
    return [(p, e.originator_id, e.originator_version) for p, e in ledger.iter_log()]


def watch_threads() -> set[threading.Thread]:
    """The live log watcher threads (``ckl-watch``) of this process."""
    return {t for t in ckl_threads() if t.name == "ckl-watch"}


def wait_until(what: str, check: Callable[[], bool], timeout: float = WAIT) -> None:
    """Poll ``check`` (a server state sends no signal) until true; else fail, saying ``what``."""
    deadline = time.monotonic() + timeout
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


# ---------------------------------------------------------------- 1. eight writers, a tail


class ReplicaWriter(Worker):
    """One ``python -m tests.faults._replica_writer`` process."""

    module: ClassVar[str] = "tests.faults._replica_writer"


class CliTail:
    """``ckl tail --json`` as a user runs it, its lines read into a queue by a thread."""

    def __init__(self, env: dict[str, str]) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "ckl", "tail", "--json"],
            cwd=ROOT,
            env={**env, "PYTHONUNBUFFERED": "1"},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.lines: queue.Queue[str | None] = queue.Queue()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.put(line)
        self.lines.put(None)

    def take(self, count: int, timeout: float) -> list[dict[str, Any]]:
        """The next ``count`` events it printed; fails if it exits or stalls first."""
        deadline = time.monotonic() + timeout
        events: list[dict[str, Any]] = []
        while len(events) < count:
            try:
                line = self.lines.get(timeout=max(0.0, deadline - time.monotonic()))
            except queue.Empty:
                pytest.fail(f"ckl tail printed {len(events)} of {count} events in {timeout}s")
            if line is None:
                self.proc.wait(10)
                err = self.proc.stderr.read() if self.proc.stderr else ""
                pytest.fail(f"ckl tail exited {self.proc.returncode} after {len(events)}: {err}")
            events.append(json.loads(line))
        return events

    def stop(self) -> None:
        """Kill it (it follows the log until interrupted) and reap it."""
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait(10)
        self._reader.join(10)
        for pipe in (self.proc.stdout, self.proc.stderr):
            if pipe is not None:
                pipe.close()


def test_eight_writers_on_the_primary_and_tails_on_the_standby_see_every_event_once_in_order(
    pair: ReplicaPair, stores: Stores
) -> None:
    with_schema(pair, stores)
    runs = [f"writer-{n}" for n in range(WRITERS)]
    argvs = [[stores.primary, run, str(BATCHES), str(YIELDS)] for run in runs]
    env = {**ckl_env(stores.primary), "CKL_READER_STORE": stores.standby}
    cli = CliTail(env)
    try:
        with (
            Ledger.open(stores.primary, reader_store=stores.standby) as ledger,
            subscribed(run_stream(ledger)) as tail,
            processes_of(ReplicaWriter, *argvs) as writers,
        ):
            assert ledger.reader is not ledger
            assert ledger.reader.recorder.is_standby()
            for writer in writers:
                writer.wait_for("ready", WAIT)
            for writer in writers:
                writer.go()
            for writer in writers:
                assert writer.wait_for("done", WAIT * 2) == {"commands": 2 * BATCHES + YIELDS}
                assert writer.finish(WAIT) == 0, writer.stderr
            replayed(pair)
            primary = log_rows(ledger)  # the ledger itself reads the primary
            assert len(primary) == WRITERS * (2 * BATCHES + YIELDS)
            streamed = tail.take(len(primary), timeout=WAIT)
            on_standby = log_rows(ledger.reader)
            printed = cli.take(len(primary), timeout=WAIT * 2)
            assert tail.pending() == 0
    finally:
        cli.stop()
    assert [(e.position, e.checkpoint_id, e.event.originator_version) for e in streamed] == primary
    assert {e.run_id for e in streamed} == set(runs)
    assert on_standby == primary
    assert [
        (e["position"], UUID(e["checkpoint_id"]), e["event"]["originator_version"]) for e in printed
    ] == primary


# ---------------------------------------------------------------- 2. the visible horizon


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


def _append_in(
    conn: psycopg.Connection[Any], ledger: Ledger, events: Sequence[StoredEvent]
) -> list[int]:
    """The recorder's own one-event statement, per event, in ``conn``'s open transaction."""
    recorder = ledger.recorder
    assert isinstance(recorder, PostgresLedgerRecorder)
    ids = []
    for e in events:
        params = (e.originator_id, e.originator_version, e.topic, e.state, None, None)
        row = conn.execute(recorder._appender.insert_one, params).fetchone()
        assert row is not None
        ids.append(int(row[0]))
    return ids


@pytest.mark.parametrize("holder", ["append", "xid-only"])
def test_on_the_standby_no_reader_passes_a_transaction_open_on_the_primary(
    pair: ReplicaPair, stores: Stores, holder: Literal["append", "xid-only"]
) -> None:
    with_schema(pair, stores)
    with (
        Ledger.open(stores.primary) as writer,
        Ledger.open(stores.standby, read_only=True) as reader,
    ):
        early_token = writer.create_checkpoint("held", 0)
        token = writer.create_checkpoint("held", 1)
        replayed(pair)
        with subscribed(run_stream(reader, "held")) as tail:
            before = tail.take(2, timeout=WAIT)
            head = before[-1].position
            assert reader.recorder.log_head() == (head, False)

            early = psycopg.connect(stores.primary, connect_timeout=10)  # BEGIN implied
            try:
                if holder == "append":
                    (early_id,) = _append_in(
                        early, writer, [_yielded(writer, early_token.checkpoint_id, 2)]
                    )
                else:
                    row = early.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()
                    assert row is not None
                    early_id = int(row[0]) * P  # no row: only the transaction id
                # A younger transaction commits on the primary, and the standby replays it.
                writer.checkpoint_yield(token, cursor="later", items_processed=5)
                later_id = writer.recorder.max_notification_id()
                assert later_id is not None
                assert early_id < later_id
                replayed(pair)

                # Committed and replayed there, yet no reader on the standby returns it.
                assert reader.recorder.max_notification_id() == later_id
                assert reader.read_log(after=head) == []
                assert (
                    reader.recorder.select_notifications(head, 10, inclusive_of_start=False) == []
                )
                assert reader.recorder.log_head() == (head, True)  # held back
                assert reader.resume_position(head) == head
                # The primary says the same of itself (the rule is the same on both).
                assert writer.read_log(after=head) == []
                early.commit()
            finally:
                early.close()

            replayed(pair)  # xid-only: an asynchronous commit, flushed by the WAL writer
            expected = [early_id, later_id] if holder == "append" else [later_id]
            assert [p for p, _ in reader.read_log(after=head)] == expected
            # The tail on the standby: both in position order (had it passed the held
            # transaction, the earlier position could never be delivered after the later).
            assert [e.position for e in tail.take(len(expected), timeout=WAIT)] == expected
            assert reader.recorder.log_head() == (later_id, False)
        assert reader.get_checkpoint(early_token).version == (2 if holder == "append" else 1)
        assert reader.get_checkpoint(token).cursor == "later"


# ---------------------------------------------------------------- 3. typed refusals


def _ledger_tables(url: str) -> list[str]:
    with psycopg.connect(url, autocommit=True, connect_timeout=10) as conn:
        rows = conn.execute(
            "SELECT tablename FROM pg_tables WHERE tablename LIKE 'ckl%' ORDER BY 1"
        ).fetchall()
    return [str(r[0]) for r in rows]


def test_a_standby_refuses_writers_and_writes_with_typed_errors_and_nothing_written(
    pair: ReplicaPair, stores: Stores
) -> None:
    # Before the schema exists: a writer is refused at open, a reader is told why it waits.
    with pytest.raises(StoreIsStandby, match="hot standby") as as_writer:
        Ledger.open(stores.standby)
    assert isinstance(as_writer.value, StoreReadOnly)
    assert "target_session_attrs=read-write" in str(as_writer.value)
    with pytest.raises(StoreSchemaMismatch) as early_reader:
        Ledger.open(stores.standby, read_only=True)
    assert early_reader.value.standby is True
    assert early_reader.value.found == 0
    assert "replay" in str(early_reader.value)
    assert _ledger_tables(stores.primary) == [] == _ledger_tables(stores.standby)
    for _ in range(10):  # refused opens leave no connection behind
        with pytest.raises(StoreIsStandby):
            Ledger.open(stores.standby)
        with pytest.raises(StoreSchemaMismatch):
            Ledger.open(stores.standby, read_only=True)
    wait_until("refused opens to close", lambda: _standby_backends(pair, stores.name)[0] == 0)

    with Ledger.open(stores.primary) as writer:
        token = writer.create_checkpoint("refused", 0)
        writer.checkpoint_yield(token, cursor=1, items_processed=1)
    replayed(pair)
    events = Ledger.open(stores.primary, read_only=True)
    with events, Ledger.open(stores.standby, read_only=True) as reader:
        assert reader.recorder.is_standby()
        assert reader.get_checkpoint(token).version == 2
        before = events.count_events()
        with pytest.raises(StoreReadOnly):
            reader.checkpoint_yield(token, cursor=2, items_processed=2)
        with pytest.raises(StoreReadOnly):
            reader.create_checkpoint("refused", 1)
        with pytest.raises(StoreIsStandby):  # a writer, also once the schema is there
            Ledger.open(stores.standby)
        assert events.count_events() == before
        assert reader.count_events() == before

    # The CLI: a write command on the standby fails with that message, and writes nothing.
    refused = ckl("cancel", "refused", "0", "--reason", "no", store=stores.standby)
    assert refused.returncode != 0
    assert "is a hot standby" in one_error_line(refused)
    # A read command with the standby as its reader store works (the primary as the store).
    env = {**ckl_env(stores.primary), "CKL_READER_STORE": stores.standby}
    read = subprocess.run(
        [sys.executable, "-m", "ckl", "replay", "refused"],
        capture_output=True,
        text=True,
        env=env,
        cwd=ROOT,
        timeout=120,
        check=False,
    )
    assert read.returncode == 0, read.stderr
    assert "refused" in read.stdout
    with Ledger.open(stores.primary, read_only=True) as after:
        assert after.count_events() == before


def test_a_cli_read_command_works_with_the_standby_as_its_store(
    pair: ReplicaPair, stores: Stores
) -> None:
    with Ledger.open(stores.primary) as writer:
        writer.create_checkpoint("direct", 0)
    replayed(pair)
    read = ckl("replay", "direct", store=stores.standby)
    assert read.returncode == 0, read.stderr
    assert "direct" in read.stdout


# ---------------------------------------------------------------- 4. the listener


def _standby_backends(pair: ReplicaPair, db: str) -> tuple[int, int]:
    """Client connections to ``db`` on the standby: all, and the watchers' listening ones."""
    return _client_backends(pair.standby.url, db)


def _client_backends(server_url: str, db: str) -> tuple[int, int]:
    """Client connections to ``db`` on one server of the pair: all, and the listening ones.

    A listener on a standby is the connection whose statement is the replay position's (see
    ``ledger.store.postgres.notify``); ``server_url`` is a superuser's URL of the ``postgres``
    database, so this connection is not one of ``db``'s.
    """
    with psycopg.connect(server_url, autocommit=True, connect_timeout=10) as conn:
        row = conn.execute(
            "SELECT count(*), count(*) FILTER (WHERE query LIKE '%%pg_last_wal_replay_lsn%%')"
            " FROM pg_stat_activity WHERE datname = %s AND backend_type = 'client backend'",
            [db],
        ).fetchone()
    assert row is not None
    return int(row[0]), int(row[1])


def test_a_watcher_on_the_standby_wakes_on_replay_warns_nothing_and_keeps_no_connection(
    pair: ReplicaPair, stores: Stores, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="ledger.watch")
    with_schema(pair, stores)
    # A poll interval far past the waits below: only the replay position can wake it in time.
    slow = LedgerSettings(store=stores.standby, read_only=True, poll_interval=3 * WAKE)
    with Ledger.open(stores.primary) as writer, Ledger.open(settings=slow) as reader:
        token = writer.create_checkpoint("watched", 0)
        replayed(pair)
        woke = threading.Event()
        unwatch = reader.watch(woke.set)
        try:
            assert woke.wait(WAKE)  # a new listener wakes everyone once
            for n in range(1, 6):
                woke.clear()
                writer.checkpoint_yield(token, cursor=n, items_processed=n)
                # Woken only when the readable head moved (no poll for a minute): by replay.
                # (Once, the first head it reads may be older than this yield: wait again.)
                assert woke.wait(WAKE), f"no wake-up for yield {n}"
                while reader.get_checkpoint(token).version < n + 1:
                    woke.clear()
                    assert woke.wait(WAKE), f"no wake-up for yield {n} on the standby"
            assert _standby_backends(pair, stores.name)[1] == 1
        finally:
            unwatch()
            writer.checkpoint_yield(token, cursor="bye", items_processed=6)  # replay moves
        assert still_alive(watch_threads(), WAIT) == []

    quick = LedgerSettings(store=stores.standby, read_only=True, poll_interval=0.05)
    with Ledger.open(settings=quick) as reader:
        for _ in range(20):
            listening = threading.Event()
            remove = reader.watch(listening.set)  # the new listener wakes everyone once
            assert listening.wait(WAIT)
            remove()
        assert still_alive(watch_threads(), WAIT) == []
        wait_until(
            "the listeners' connections to close",
            lambda: _standby_backends(pair, stores.name)[1] == 0,
        )
        total, _ = _standby_backends(pair, stores.name)
        assert total <= quick.pool_size  # only the reader's pool is left
    problems = [
        r for r in caplog.records if r.name == "ledger.watch" and r.levelno >= logging.WARNING
    ]
    assert problems == []


# ---------------------------------------------------------------- 5. await on the reader


def test_an_await_on_the_reader_waits_for_the_standby_and_never_calls_a_new_checkpoint_missing(
    pair: ReplicaPair, stores: Stores
) -> None:
    with_schema(pair, stores)
    settings = LedgerSettings(store=stores.primary, reader_store=stores.standby, poll_interval=0.2)
    with Ledger.open(stores.primary) as other, Ledger.open(settings=settings) as ledger:
        cut_off(pair)  # nothing written from now on reaches the standby
        try:
            with pytest.raises(CheckpointNotFound):  # on neither: the primary says so
                await_checkpoint(ledger, CheckpointToken.for_batch("never", 0), timeout=WAIT)
            token = ledger.create_checkpoint("awaited", 0)
            with pytest.raises(CheckpointNotFound):
                ledger.reader.get_checkpoint(token)  # not on the standby: it cannot be
            with pytest.raises(AwaitTimeout):  # waited for, not reported missing
                await_checkpoint(ledger, token, timeout=0.3)
            assert still_alive(watch_threads(), WAIT) == []

            outcome: list[object] = []

            def wait() -> None:
                try:
                    outcome.append(await_checkpoint(ledger, token, timeout=WAIT))
                except Exception as exc:
                    outcome.append(exc)

            awaiter = threading.Thread(target=wait, name="test-awaiter", daemon=True)
            awaiter.start()
            # Its watch is on: it read the primary (open) and now reads the standby.
            wait_until("the awaiter to watch", lambda: bool(watch_threads()))
            other.complete_checkpoint(token, {"rows": 7})  # another ledger: no hand-over
            with subscribed(completion(ledger, token)) as observed:
                # The outcome is on the primary only: neither can have it yet.
                assert ledger.reader.count_events() == ledger.count_events() - 2
                assert awaiter.is_alive()
                assert observed.pending() == 0
                pair.route_replication("127.0.0.1", pair.primary.port)
                awaiter.join(WAIT)
                assert outcome == [{"rows": 7}]
                assert observed.take(1, timeout=WAIT) == [{"rows": 7}]
                assert isinstance(observed.next_notification(WAIT), OnCompleted)
        finally:
            pair.route_replication("127.0.0.1", pair.primary.port)
    replayed(pair)


# ---------------------------------------------------------------- 6. the service


def _sse_until(stream: SseStream, last: int) -> list[SseEvent]:
    events = []
    for event in stream.events():
        assert event.event != "closing", event.data
        events.append(event)
        if event.id is not None and event.id >= last:
            return events
    pytest.fail(f"the stream ended ({stream.ended}) before id {last}")


def _state(response: httpx.Response) -> CheckpointState:
    assert response.status_code == 200, response.text
    return CheckpointState.model_validate_json(response.content)


def _unreplayed_checkpoints_are_read_on_the_primary(http: httpx.Client) -> None:
    """With replication cut: what the standby has not replayed is read on the primary."""
    # Not reported missing: read on the primary until the standby has it.
    fresh = _state(http.post("/v1/runs/served/checkpoints/1"))
    assert _state(http.get("/v1/runs/served/checkpoints/1")) == fresh
    assert _state(http.get("/v1/runs/served/checkpoints/1", params={"as_of": 1})) == fresh
    page = http.get("/v1/runs/served/checkpoints/1/events")
    assert page.status_code == 200, page.text
    assert [e["event"]["originator_version"] for e in page.json()["events"]] == [1]
    missing = http.get("/v1/runs/served/checkpoints/2")
    assert missing.status_code == 404, missing.text  # on neither
    http.post("/v1/runs/new-run/checkpoints/0")  # a run the standby has not seen
    run = http.get("/v1/runs/new-run")
    assert run.status_code == 200, run.text
    assert run.json()["progress"]["created"] == 1
    history = http.get("/v1/runs/served/checkpoints/1/history")
    assert history.status_code == 200, history.text


def test_the_service_writes_to_the_primary_and_reads_and_streams_from_the_standby(
    pair: ReplicaPair, stores: Stores
) -> None:
    with_schema(pair, stores)
    server = Server(
        stores.primary, "--poll-interval", "0.05", env={"CKL_READER_STORE": stores.standby}
    ).start()
    try:
        with (
            server.client() as http,
            Ledger.open(stores.primary, read_only=True) as primary,
            SseStream(server.url, "/v1/stream") as sse,
        ):
            assert sse.status == 200
            base = "/v1/runs/served/checkpoints/0"
            state = _state

            created = state(http.post(base))
            assert primary.get_checkpoint(created.token) == created
            last = created
            for n in range(1, 6):
                last = state(http.post(f"{base}/yield", json={"cursor": n, "items_processed": n}))
                assert primary.get_checkpoint(created.token) == last  # written on the primary
            wait_until("the standby's state", lambda: state(http.get(base)) == last)

            # Reads are the standby's: cut off, it keeps answering what it had.
            cut_off(pair)
            try:
                unseen = state(http.post(f"{base}/yield", json={"cursor": 6, "items_processed": 6}))
                assert primary.get_checkpoint(created.token) == unseen
                assert state(http.get(base)) == last
                _unreplayed_checkpoints_are_read_on_the_primary(http)
            finally:
                pair.route_replication("127.0.0.1", pair.primary.port)
            wait_until("the standby to catch up", lambda: state(http.get(base)) == unseen)

            # A long-poll on the reader, answered once the standby has the completion.
            answered: list[CheckpointState] = []
            with server.client() as other:
                poll = threading.Thread(
                    target=lambda: answered.append(
                        state(other.get(f"{base}/await", params={"timeout": WAIT}))
                    ),
                    daemon=True,
                )
                poll.start()
                done = state(http.post(f"{base}/complete", json={"result": {"ok": True}}))
                poll.join(WAIT)
            assert answered == [done]
            assert state(http.get(base)) == done  # the await saw it there: so does a read
            # The views on the standby (built there): the run, completed.
            runs = http.get("/v1/runs").json()["runs"]
            assert sorted((r["run_id"], r["completed"]) for r in runs) == [
                ("new-run", 0),
                ("served", 1),
            ]
            assert http.get("/v1/runs/served").json()["progress"]["completed"] == 1
            log = log_rows(primary)
            events = _sse_until(sse, log[-1][0])
    finally:
        server.stop()
    assert [
        (e.id, UUID(e.json()["checkpoint_id"]), e.json()["event"]["originator_version"])
        for e in events
    ] == log
    assert [e.json()["topic"] for e in events][-1] == "checkpoint.Completed"


# ---------------------------------------------------------------- 7. multi-host URLs


@pytest.mark.parametrize("form", ["netloc", "query"])
def test_a_read_write_multi_host_url_finds_the_primary_listed_after_the_standby(
    pair: ReplicaPair, stores: Stores, form: Literal["netloc", "query"]
) -> None:
    hosts = [("127.0.0.1", pair.standby.port), ("127.0.0.1", pair.primary.port)]
    if form == "netloc":
        netloc = ",".join(f"{h}:{p}" for h, p in hosts)
        url = f"postgresql://ckl@{netloc}/{stores.name}?target_session_attrs=read-write"
        prefer = f"postgresql://ckl@{netloc}/{stores.name}?target_session_attrs=prefer-standby"
    else:
        query = f"host=127.0.0.1,127.0.0.1&port={pair.standby.port},{pair.primary.port}"
        url = f"postgresql://ckl@/{stores.name}?{query}&target_session_attrs=read-write"
        prefer = f"postgresql://ckl@/{stores.name}?{query}&target_session_attrs=prefer-standby"
    with Ledger.open(url) as writer:  # the standby, first, is passed over
        assert not writer.recorder.is_standby()
        token = writer.create_checkpoint("multi", 0)
    replayed(pair)
    with Ledger.open(pair.multi_host_url(stores.name, form), reader_store=prefer) as both:
        assert not both.recorder.is_standby()
        assert both.reader.recorder.is_standby()
        assert both.reader.get_checkpoint(token).version == 1


def test_a_ledger_with_a_reader_store_opens_a_new_database_and_ckl_tail_reads_a_standby(
    pair: ReplicaPair, stores: Stores
) -> None:
    # No schema yet anywhere: the writer creates it, the reader waits for the standby to have it.
    with Ledger.open(stores.primary, reader_store=stores.standby) as ledger:
        assert ledger.reader is not ledger
        assert ledger.reader.recorder.is_standby()
        token = ledger.create_checkpoint("fresh", 0)
        ledger.complete_checkpoint(token, result=1)
        replayed(pair)
        assert ledger.reader.get_checkpoint(token).status == "completed"
    # `ckl tail` with the standby as its only store (it may be the first to open a store, so
    # it opens a writer, unless the store is a standby): reads read-only.
    cli = CliTail(ckl_env(stores.standby))
    try:
        rows = cli.take(2, WAIT)
    finally:
        cli.stop()
    assert [row["topic"] for row in rows] == ["checkpoint.Created", "checkpoint.Completed"]


# ---------------------------------------------------------------- 8. the exporter


def test_ckl_metrics_with_a_reader_store_counts_from_the_standby_alone(
    pair: ReplicaPair, stores: Stores
) -> None:
    with Ledger.open(stores.primary) as writer:
        writer.create_checkpoint("metered", 99)  # the schema, before the exporter: not counted
    replayed(pair)
    env = {"CKL_READER_STORE": stores.standby}
    with exporter(stores.primary, "--poll-interval", "0.1", env=env) as running:
        serving = "".join(running.stderr)
        assert f"127.0.0.1:{pair.standby.port}/{stores.name}" in serving, serving
        with Ledger.open(stores.primary) as writer:
            done, broken = (writer.create_checkpoint("metered", i) for i in range(2))
            for n in range(1, 4):
                writer.checkpoint_yield(done, cursor=n, items_processed=n)
            writer.complete_checkpoint(done, {"n": 3})
            writer.fail_checkpoint(broken, KeyError("id"))
        got = running.wait_until(
            lambda s: (
                s.get(sample("ckl_completions_total")) == 1
                and s.get(sample("ckl_failed_checkpoints")) == 1
                and s.get(sample("ckl_lag_events", follower="metrics")) == 0
            )
        )
        assert got[sample("ckl_yields_total")] == 3
        assert got[sample("ckl_checkpoints_created_total")] == 2
        assert got[sample("ckl_store_up")] == 1
        # Read from the standby alone: no connection of the exporter's on the primary.
        assert _client_backends(pair.primary.url, stores.name)[0] == 0
        assert _standby_backends(pair, stores.name)[0] > 0
        assert running.terminate() == 0
    assert "Traceback" not in "".join(running.stderr)
