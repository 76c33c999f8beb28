"""A partitioned ``ckl_events`` (PostgreSQL): migration, uniqueness across partitions, detach.

Partitions here are tiny (one or two transactions each) so that boundaries fall between the
events of one test; which partition a row landed in is read from ``tableoid``. Two writers
straddle a boundary deterministically: each holds an open transaction whose id is known before
either inserts, and the partitions are created afterwards with one size-1 partition each.
"""

from __future__ import annotations

import threading
from typing import TYPE_CHECKING, Any
from uuid import UUID, uuid4

import psycopg
import pytest
from eventsourcing.persistence import IntegrityError, StoredEvent

from ledger import (
    CheckpointNotFound,
    InvalidInput,
    Ledger,
    PartitionNotDetachable,
    RunArchived,
    archive_run,
    export_run,
    verify_chains,
)
from ledger.partitions import (
    create_partitions,
    detach_partition,
    enable_partitions,
    partitions_status,
)
from ledger.store import COMMAND_INDEX, CommandAlreadyRecorded
from ledger.store.postgres.append import append_sql
from ledger.store.postgres.schema import SCHEMA_VERSION
from projections import Projections

if TYPE_CHECKING:
    from collections.abc import Callable
    from pathlib import Path

    from ledger import CheckpointToken

pytestmark = pytest.mark.postgres

_ROWS = (
    "SELECT notification_id, originator_id, originator_version, event_hash, command_id, run_id"
    " FROM ckl_events ORDER BY notification_id"
)


def _rows(url: str, sql: str = _ROWS, params: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        return [tuple(r) for r in conn.execute(sql, params)]


def _finished_run(ledger: Ledger, run_id: str, batches: int = 2) -> list[CheckpointToken]:
    tokens = []
    for i in range(batches):
        token = ledger.create_checkpoint(run_id, i, total_batches=batches)
        ledger.checkpoint_yield(token, cursor=i, items_processed=1)
        ledger.complete_checkpoint(token, result={"i": i})
        tokens.append(token)
    return tokens


def _partition_of(url: str, oid: UUID, version: int) -> str:
    rows = _rows(
        url,
        "SELECT tableoid::regclass::text FROM ckl_events"
        " WHERE originator_id = %s AND originator_version = %s",
        (oid, version),
    )
    return str(rows[0][0])


def test_enabling_partitions_keeps_every_row_and_appends_go_on(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger:
        done = _finished_run(ledger, "before", 3)
        open_token = ledger.create_checkpoint("busy", 0)
        ledger.checkpoint_yield(open_token, cursor="a", items_processed=1, command_id="y-1")
        anchor = tmp_path / "anchor.jsonl"
        assert verify_chains(ledger, write_anchor=anchor).ok
        before = _rows(postgres_url)
        with Ledger.open(postgres_url) as other_process:  # open across the migration
            other_process.get_checkpoint(open_token)

            report = enable_partitions(ledger, size=2)

            assert report.migrated
            assert report.first_partition == "ckl_events_xid_0"
            assert report.created  # partitions ready for what comes next
            assert _rows(postgres_url) == before  # positions, hashes, command ids, runs
            assert _rows(postgres_url, "SELECT version FROM ckl_schema") == [(SCHEMA_VERSION,)]
            kind = "SELECT relkind::text FROM pg_class WHERE relname = 'ckl_events'"
            assert _rows(postgres_url, kind) == [("p",)]
            # Both processes append on: the one open before the migration too.
            other_process.checkpoint_yield(open_token, cursor="b", items_processed=2)
            ledger.checkpoint_yield(open_token, cursor="c", items_processed=3)
            # The command index still answers across the migrated table and the new ones.
            again = ledger.checkpoint_yield(
                open_token, cursor="a", items_processed=1, command_id="y-1"
            )
            assert again.items_processed == 3
        after = verify_chains(ledger, anchor=anchor)
        assert after.ok, after.problems
        assert ledger.get_checkpoint(done[2]).status == "completed"
        assert _rows(postgres_url)[: len(before)] == before
        assert len(_rows(postgres_url)) == len(before) + 2
        # A second enable changes only the size of new partitions.
        again_report = enable_partitions(ledger, size=3)
        assert not again_report.migrated
        assert partitions_status(ledger).size == 3


def test_a_version_and_a_command_are_unique_across_partitions(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger:
        enable_partitions(ledger, size=1)
        token = ledger.create_checkpoint("uniq", 0, command_id="create-1")
        ledger.checkpoint_yield(token, cursor=1, items_processed=1, command_id="y-1")
        recorder = ledger.recorder
        oid = token.checkpoint_id
        stored = recorder.select_events(oid)
        create_partitions(ledger, ahead=5)
        # A retried command, recorded long ago in another partition: refused by the trigger.
        retry = StoredEvent(oid, 3, stored[1].topic, stored[1].state)
        with pytest.raises(CommandAlreadyRecorded) as refused:
            recorder.insert_events([retry], run_id="uniq", command_ids=["y-1"])
        assert (refused.value.originator_id, refused.value.command_id) == (oid, "y-1")
        # A version taken in another partition: a plain IntegrityError (the Ledger reloads).
        taken = StoredEvent(oid, 2, stored[1].topic, stored[1].state)
        with pytest.raises(IntegrityError) as clash:
            recorder.insert_events([taken], run_id="uniq", command_ids=["other"])
        assert not isinstance(clash.value, CommandAlreadyRecorded)
        # And inside one partition, by the partition's own indexes: same errors.
        two = [StoredEvent(oid, 3, stored[1].topic, stored[1].state)] * 2
        with pytest.raises(IntegrityError):
            recorder.insert_events(two, run_id="uniq", command_ids=["a", "b"])
        assert recorder.count_events(oid) == 2
        # The Ledger itself: a repeated command is a no-op, a new one appends.
        repeat = ledger.checkpoint_yield(token, cursor=1, items_processed=1, command_id="y-1")
        assert repeat.version == 2
        assert verify_chains(ledger).ok


def _open_with_xid(url: str) -> tuple[psycopg.Connection[Any], int]:
    conn = psycopg.connect(url)  # not autocommit: the transaction stays open
    xid = int(conn.execute("SELECT pg_current_xact_id()::text::bigint").fetchone()[0])  # type: ignore[index]
    return conn, xid


def _insert(conn: psycopg.Connection[Any], event: StoredEvent, command_id: str) -> None:
    one, _ = append_sql()
    params = (event.originator_id, event.originator_version, event.topic, event.state)
    conn.execute(one, (*params, "straddle", command_id))


@pytest.mark.parametrize("first_commits", ["lower", "higher"])
def test_two_writers_straddling_a_boundary_cannot_both_append_one_version(
    postgres_url: str, first_commits: str
) -> None:
    with Ledger.open(postgres_url) as ledger:
        enable_partitions(ledger, size=1)
        token = ledger.create_checkpoint("straddle", 0)
        oid = token.checkpoint_id
        yielded = ledger.checkpoint_yield(token, cursor=1, items_processed=1)
        template = ledger.recorder.select_events(oid)[-1]
        low, low_xid = _open_with_xid(postgres_url)
        high, high_xid = _open_with_xid(postgres_url)
        try:
            created = create_partitions(ledger, ahead=4)
            assert created
            names = {p.name for p in partitions_status(ledger).partitions}
            assert {f"ckl_events_xid_{low_xid}", f"ckl_events_xid_{high_xid}"} <= names
            event = StoredEvent(oid, yielded.version + 1, template.topic, template.state)
            first, second = (low, high) if first_commits == "lower" else (high, low)
            _insert(first, event, "cmd-first")
            errors: list[BaseException] = []
            started = threading.Event()

            def later() -> None:
                started.set()
                try:
                    _insert(second, event, "cmd-second")
                    second.commit()
                except psycopg.Error as exc:
                    errors.append(exc)
                    second.rollback()

            thread = threading.Thread(target=later)
            thread.start()
            started.wait(5)
            # The second writer's row went into its own partition, past the first's index:
            # only the checkpoint's head (locked by the first) holds it now. Wait for that.
            with psycopg.connect(postgres_url, autocommit=True) as watcher:
                for _ in range(500):
                    waiting = watcher.execute(
                        "SELECT count(*) FROM pg_locks WHERE NOT granted"
                    ).fetchone()
                    if waiting and waiting[0]:
                        break
                    threading.Event().wait(0.01)
                else:
                    pytest.fail("the second writer never waited for the first")
            first.commit()
            thread.join(10)
        finally:
            low.close()
            high.close()
        assert len(errors) == 1
        assert isinstance(errors[0], psycopg.errors.UniqueViolation)
        assert errors[0].diag.constraint_name == "ckl_events_pkey"
        rows = _rows(
            postgres_url,
            "SELECT originator_version, command_id FROM ckl_events WHERE originator_id = %s"
            " ORDER BY originator_version",
            (oid,),
        )
        assert [r[0] for r in rows] == [1, 2, 3]
        assert rows[-1][1] == "cmd-first"
        winner_xid = low_xid if first_commits == "lower" else high_xid
        assert _partition_of(postgres_url, oid, 3) == f"ckl_events_xid_{winner_xid}"
        assert verify_chains(ledger).ok


def test_a_command_clash_across_a_boundary_names_the_command_index(postgres_url: str) -> None:
    with Ledger.open(postgres_url) as ledger:
        enable_partitions(ledger, size=1)
        token = ledger.create_checkpoint("cmd", 0)
        oid = token.checkpoint_id
        ledger.checkpoint_yield(token, cursor=1, items_processed=1, command_id="once")
        template = ledger.recorder.select_events(oid)[-1]
        create_partitions(ledger, ahead=2)
        conn, _ = _open_with_xid(postgres_url)
        try:
            with pytest.raises(psycopg.errors.UniqueViolation) as refused:
                _insert(conn, StoredEvent(oid, 3, template.topic, template.state), "once")
        finally:
            conn.close()
        assert refused.value.diag.constraint_name == COMMAND_INDEX


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE {t} SET topic = 'x'",
        "DELETE FROM {t}",
        "TRUNCATE {t}",
    ],
)
def test_the_append_only_guards_hold_on_the_parent_and_on_every_partition(
    postgres_url: str, statement: str
) -> None:
    with Ledger.open(postgres_url) as ledger:
        _finished_run(ledger, "old", 1)
        enable_partitions(ledger, size=1)
        _finished_run(ledger, "new", 2)
        parts = [p.name for p in partitions_status(ledger).partitions]
        with_rows = {
            str(r[0])
            for r in _rows(postgres_url, "SELECT DISTINCT tableoid::regclass::text FROM ckl_events")
        }
        assert len(with_rows) >= 2
        count = ledger.count_events()
    # Row triggers fire on rows (an empty partition has none to refuse); TRUNCATE on any table.
    tables = parts if statement.startswith("TRUNCATE") else sorted(with_rows)
    for table in ["ckl_events", *tables]:
        with (
            psycopg.connect(postgres_url, autocommit=True) as conn,
            pytest.raises(psycopg.errors.RestrictViolation, match="append-only"),
        ):
            conn.execute(statement.format(t=table))
    assert len(_rows(postgres_url)) == count


def _run_in_own_partitions(ledger: Ledger, url: str) -> tuple[list[CheckpointToken], str]:
    """A finished run whose first partition holds none of another run's events."""
    enable_partitions(ledger, size=1)
    create_partitions(ledger, ahead=10)
    tokens = _finished_run(ledger, "gone", 2)
    first = _partition_of(url, tokens[0].checkpoint_id, 1)
    return tokens, first


def test_a_partition_of_archived_runs_detaches_and_reads_stay_right(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger, Projections(ledger) as views:
        tokens, first = _run_in_own_partitions(ledger, postgres_url)
        kept = ledger.create_checkpoint("kept", 0)
        ledger.checkpoint_yield(kept, cursor=1, items_processed=1)
        views.sync()
        assert views.progress("gone").completed == 2
        anchor = tmp_path / "anchor.jsonl"
        assert verify_chains(ledger, write_anchor=anchor).ok
        total = ledger.count_events()
        gone_events = sum(ledger.count_events(t) for t in tokens)

        summary = archive_run(ledger, "gone", tmp_path / "gone.jsonl")

        # Archived, not purged: the run reads as before, but cannot be written.
        assert not summary.purged
        assert ledger.count_events() == total
        assert type(ledger.checkpoint_events(tokens[0])[-1]).__name__ == "Completed"
        assert export_run(ledger, "gone", tmp_path / "again.jsonl").heads == summary.heads
        with pytest.raises(RunArchived):
            ledger.create_checkpoint("gone", 5)
        with pytest.raises(RunArchived):
            ledger.reset_checkpoint(tokens[0], reason="late")
        assert verify_chains(ledger, anchor=anchor).ok

        report = detach_partition(ledger, first)

        assert report.runs == ["gone"]
        assert report.events + report.purged_elsewhere == gone_events
        assert report.purged_elsewhere > 0  # the run spanned several partitions
        assert not report.dropped
        assert ledger.count_events() == total - gone_events
        assert all(ledger.find_checkpoint("gone", i) is None for i in range(2))
        with pytest.raises(CheckpointNotFound):
            export_run(ledger, "gone", tmp_path / "none.jsonl")
        views.sync()
        assert views.progress("gone").completed == 0
        assert views.progress("kept").created == 1
        checked = verify_chains(ledger, anchor=anchor)
        assert checked.ok, checked.problems
        assert sum("archived with run 'gone'" in n for n in checked.notes) == 2
        assert first not in {p.name for p in partitions_status(ledger).partitions}
        with pytest.raises(RunArchived):
            ledger.create_checkpoint("gone", 0)
        ledger.checkpoint_yield(kept, cursor=2, items_processed=2)
        # The detached table is kept for the operator, append-only still; dropping it is DDL.
        held = _rows(postgres_url, f"SELECT count(*) FROM {first}")
        assert held == [(report.events,)]
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            with pytest.raises(psycopg.errors.RestrictViolation):
                conn.execute(f"DELETE FROM {first}")
            conn.execute(f"DROP TABLE {first}")


def test_detach_is_refused_for_unarchived_live_and_default_partitions(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger:
        tokens, first = _run_in_own_partitions(ledger, postgres_url)
        create_partitions(ledger, ahead=3)  # so that "open" lands in a range partition
        mixed = ledger.create_checkpoint("open", 0)
        archive_run(ledger, "gone", tmp_path / "gone.jsonl")
        before = _rows(postgres_url)
        names = [p.name for p in partitions_status(ledger).partitions]

        with pytest.raises(PartitionNotDetachable, match=r"not archived.*'open'"):
            detach_partition(ledger, _partition_of(postgres_url, mixed.checkpoint_id, 1))
        conn, xid = _open_with_xid(postgres_url)  # an open transaction holds the horizon
        try:
            create_partitions(ledger, ahead=2)
            live = next(
                p.name
                for p in partitions_status(ledger).partitions
                if p.first_xid is not None and p.first_xid >= xid and not p.default
            )
            with pytest.raises(PartitionNotDetachable, match="may still write"):
                detach_partition(ledger, live)
        finally:
            conn.close()
        with pytest.raises(PartitionNotDetachable, match="default partition"):
            detach_partition(ledger, "ckl_events_default")
        with pytest.raises(InvalidInput, match="not a partition of ckl_events"):
            detach_partition(ledger, "ckl_snapshots")
        with pytest.raises(InvalidInput, match="not a partition name"):
            detach_partition(ledger, "x; DROP TABLE ckl_events")

        assert _rows(postgres_url) == before
        assert set(names) <= {p.name for p in partitions_status(ledger).partitions}  # none went
        assert detach_partition(ledger, first, drop=True).dropped
        assert _rows(postgres_url, "SELECT to_regclass(%s)::text", (first,)) == [(None,)]
        assert ledger.get_checkpoint(mixed).status == "open"
        assert tokens


def test_the_partitions_of_a_run_detach_together_all_or_none(
    postgres_url: str, tmp_path: Path
) -> None:
    with Ledger.open(postgres_url) as ledger:
        tokens, _ = _run_in_own_partitions(ledger, postgres_url)
        names = sorted(
            {_partition_of(postgres_url, t.checkpoint_id, v) for t in tokens for v in (1, 2, 3)}
        )
        assert len(names) == 6
        create_partitions(ledger, ahead=3)
        other = ledger.create_checkpoint("other", 0)
        archive_run(ledger, "gone", tmp_path / "gone.jsonl")
        before = _rows(postgres_url)
        unarchived = _partition_of(postgres_url, other.checkpoint_id, 1)
        with pytest.raises(PartitionNotDetachable, match="'other'"):
            detach_partition(ledger, *names, unarchived)
        assert _rows(postgres_url) == before  # all or none
        with pytest.raises(InvalidInput, match="at least one"):
            partitioning_backend(ledger)

        report = detach_partition(ledger, *names, drop=True)

        assert report.partitions == names
        assert (report.events, report.purged_elsewhere, report.checkpoints) == (6, 0, 2)
        assert ledger.count_events() == 1
        assert verify_chains(ledger).ok


def partitioning_backend(ledger: Ledger) -> object:
    """The backend's detach with no name: refused before anything is sent."""
    from ledger.store.partitioning import partitioning_for  # noqa: PLC0415

    with ledger.recorder.transaction() as tx:
        return partitioning_for(ledger.recorder).detach(tx, [], drop=False)


@pytest.mark.parametrize("size", [0, -1, True, "4", 2.0, 2**41])
def test_a_bad_size_is_a_typed_error_and_changes_nothing(postgres_url: str, size: Any) -> None:
    with Ledger.open(postgres_url) as ledger:
        ledger.create_checkpoint("r", 0)
        before = _rows(postgres_url)
        with pytest.raises(InvalidInput, match="size"):
            enable_partitions(ledger, size=size)
        assert not partitions_status(ledger).partitioned
        assert _rows(postgres_url) == before


def test_partition_calls_on_bad_input_or_the_wrong_store_are_typed_errors(
    postgres_url: str, new_sqlite_url: Callable[[], str]
) -> None:
    with Ledger.open(postgres_url) as ledger:
        with pytest.raises(InvalidInput, match="not partitioned"):
            create_partitions(ledger)
        enable_partitions(ledger, size=8)
        for ahead in (-1, 1001, True):
            with pytest.raises(InvalidInput, match="ahead"):
                create_partitions(ledger, ahead=ahead)
    with Ledger.open(new_sqlite_url()) as sqlite:
        ledger_calls: list[Callable[[], object]] = [
            lambda: enable_partitions(sqlite),
            lambda: partitions_status(sqlite),
            lambda: create_partitions(sqlite),
            lambda: detach_partition(sqlite, "ckl_events_xid_0"),
        ]
        for call in ledger_calls:
            with pytest.raises(InvalidInput, match="PostgreSQL feature"):
                call()
        assert sqlite.count_events() == 0


@pytest.fixture
def new_sqlite_url(tmp_path: Path) -> Callable[[], str]:
    return lambda: f"sqlite:///{tmp_path}/ledger-{uuid4().hex[:8]}.db"


def test_a_writer_that_is_not_the_owner_appends_and_creates_no_partition(
    postgres_url: str,
) -> None:
    from ledger.grants import grant_statements  # noqa: PLC0415

    with Ledger.open(postgres_url) as ledger:
        enable_partitions(ledger, size=1)
        token = ledger.create_checkpoint("roles", 0)
    role = f"ckl_w_{uuid4().hex[:8]}"
    with psycopg.connect(postgres_url, autocommit=True) as conn:
        conn.execute(f"CREATE ROLE {role} LOGIN")
        conn.execute(f"CREATE ROLE {role}_p")
        owner = str(conn.execute("SELECT current_user").fetchone()[0])  # type: ignore[index]
        for statement in grant_statements(owner, role, f"{role}_p"):
            conn.execute(statement)
    writer_url = postgres_url.replace("ckl@", f"{role}@", 1)
    try:
        with Ledger.open(postgres_url) as owner_ledger:
            before = {p.name for p in partitions_status(owner_ledger).partitions}
        with Ledger.open(writer_url) as writer:  # due partitions: no privilege, a warning
            writer.checkpoint_yield(token, cursor=1, items_processed=1)
            writer.complete_checkpoint(token)
        with psycopg.connect(writer_url, autocommit=True) as conn:
            for statement in ("DELETE FROM {t}", "TRUNCATE {t}", "SELECT 1 FROM {t}"):
                for table in sorted(before)[:1]:
                    with pytest.raises(psycopg.errors.InsufficientPrivilege):
                        conn.execute(statement.format(t=table))
            assert conn.execute("SELECT count(*) FROM ckl_events").fetchone() == (3,)
    finally:
        with psycopg.connect(postgres_url, autocommit=True) as conn:
            for name in (role, f"{role}_p"):
                conn.execute(f"DROP OWNED BY {name}")
                conn.execute(f"DROP ROLE {name}")
