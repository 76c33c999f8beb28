"""Retention: export, import and archive a finished run without touching the other runs.

Every test runs on SQLite and PostgreSQL; imports go into a fresh SQLite file as well, since
an archive must be readable by any store.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

import pytest

from ledger import (
    ArchiveError,
    ArchiveFileInvalid,
    CheckpointEvent,
    CheckpointNotFound,
    CheckpointToken,
    ImportConflict,
    Ledger,
    RunArchived,
    RunNotFinished,
    archive_run,
    export_run,
    import_archive,
    verify_chains,
)
from projections import Projections
from tests.security._tamper import raw_query, tamper

if TYPE_CHECKING:
    from pathlib import Path


def _finished_run(ledger: Ledger, run_id: str, batches: int = 3) -> list[CheckpointToken]:
    tokens = []
    for i in range(batches):
        token = ledger.create_checkpoint(run_id, i, total_batches=batches, metadata={"n": i})
        ledger.checkpoint_yield(token, cursor={"page": 1, "key": "ü\u2028"}, items_processed=5)
        if i == 1:
            ledger.fail_checkpoint(token, TimeoutError("slow"), transient=True)
            ledger.retry_checkpoint(token)
        if i == batches - 1 and batches > 1:
            ledger.fail_checkpoint(token, ValueError("bad input file"), transient=False)
        else:
            ledger.complete_checkpoint(token, result={"rows": 5, "pi": 3.14159, "big": 1e300})
        tokens.append(token)
    return tokens


def _events(ledger: Ledger, tokens: list[CheckpointToken]) -> list[list[CheckpointEvent]]:
    return [ledger.checkpoint_events(t) for t in tokens]


def _views(ledger: Ledger) -> dict[str, list[tuple[object, ...]]]:
    tables = ["ckl_view_cursor", "ckl_view_history", "ckl_view_failures", "ckl_view_timeline"]
    with ledger.recorder.transaction(readonly=True) as tx:
        return {
            t: sorted(
                (tuple(str(v) for v in row) for row in tx.query(f"SELECT * FROM {t}")),
            )
            for t in tables
        }


def test_an_exported_run_imports_into_a_fresh_sqlite_store_identically(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    with Ledger.open(store_url) as ledger:
        tokens = _finished_run(ledger, "run-x")
        _finished_run(ledger, "run-other", 1)
        summary = export_run(ledger, "run-x", path)
        original = _events(ledger, tokens)
        states = [ledger.get_checkpoint(t) for t in tokens]
    assert (summary.checkpoints, summary.events) == (3, sum(len(e) for e in original))
    header = json.loads(path.read_bytes().split(b"\n", 1)[0])
    assert header["format"] == "ckl-archive/1"
    assert header["run_id"] == "run-x"
    assert header["heads"] == {k: v.model_dump() for k, v in summary.heads.items()}
    with Ledger.open(f"sqlite:///{tmp_path}/fresh.db") as fresh:
        imported = import_archive(fresh, path)
        assert imported.written == summary.events
        assert _events(fresh, tokens) == original
        assert [fresh.get_checkpoint(t) for t in tokens] == states
        report = verify_chains(fresh, "run-x")
        assert report.ok
        assert report.events == summary.events
        # The same archive again writes nothing (an interrupted import can be rerun).
        assert import_archive(fresh, path).written == 0
        assert fresh.count_events() == summary.events


def test_archiving_purges_only_the_finished_run_and_guards_it(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "archive.jsonl"
    with Ledger.open(store_url) as ledger:
        tokens = _finished_run(ledger, "run-done")
        other = _finished_run(ledger, "run-kept", 2)
        kept_events = _events(ledger, other)
        ledger.create_checkpoint("run-live", 0)  # written after, to be sure chains go on
        anchor = tmp_path / "anchor.jsonl"
        assert verify_chains(ledger, write_anchor=anchor).ok
        total = ledger.count_events()
        done_events = sum(ledger.count_events(t) for t in tokens)

        summary = archive_run(ledger, "run-done", path)

        assert summary.purged
        assert ledger.count_events() == total - done_events
        assert all(ledger.find_checkpoint("run-done", i) is None for i in range(3))
        assert _events(ledger, other) == kept_events
        after = verify_chains(ledger, anchor=anchor)
        assert after.ok, after.problems
        assert sum("archived with run 'run-done'" in n for n in after.notes) == 3
        marker = raw_query(
            store_url, "SELECT run_id, events, checkpoints, file_sha256, heads FROM ckl_archives"
        )
        assert marker == [
            (
                "run-done",
                done_events,
                3,
                summary.file_sha256,
                json.dumps({k: v.model_dump() for k, v in summary.heads.items()}),
            )
        ]
        snapshots = raw_query(store_url, "SELECT count(*) FROM ckl_snapshots")
        assert snapshots == [(0,)] or ledger.settings.snapshot_interval < 10

        # The run stays archived: not created again, not imported again without --restore.
        with pytest.raises(RunArchived, match="run-done"):
            ledger.create_checkpoint("run-done", 0)
        with pytest.raises(RunArchived), Ledger.open(store_url) as other_process:
            other_process.create_checkpoint("run-done", 7)
        with pytest.raises(RunArchived):
            import_archive(ledger, path)
        assert ledger.count_events() == total - done_events

        restored = import_archive(ledger, path, restore=True)
        assert restored.restored
        assert restored.written == done_events
        assert ledger.create_checkpoint("run-done", 0) == tokens[0]
        assert ledger.get_checkpoint(tokens[0]).status == "completed"
        assert verify_chains(ledger).ok


def test_an_unfinished_run_is_not_archived_and_nothing_changes(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "no.jsonl"
    with Ledger.open(store_url) as ledger:
        tokens = _finished_run(ledger, "run-busy", 2)
        ledger.reset_checkpoint(tokens[0], "redo it")  # open again
        transient = ledger.create_checkpoint("run-busy", 2)
        ledger.fail_checkpoint(transient, "flaky", transient=True)
        total = ledger.count_events()
        with pytest.raises(RunNotFinished) as caught:
            archive_run(ledger, "run-busy", path)
        assert caught.value.unfinished == 2
        with pytest.raises(CheckpointNotFound):
            archive_run(ledger, "run-never", path)
        assert ledger.count_events() == total
        assert not path.exists()
        assert raw_query(store_url, "SELECT count(*) FROM ckl_archives") == [(0,)]


def test_the_ordinary_writer_still_cannot_delete_after_an_archive(
    store_url: str, tmp_path: Path
) -> None:
    with Ledger.open(store_url) as ledger:
        _finished_run(ledger, "run-a", 1)
        _finished_run(ledger, "run-b", 1)
        archive_run(ledger, "run-a", tmp_path / "a.jsonl")
        count = ledger.count_events()
        with ledger.recorder.transaction() as tx:
            leftover = tx.query("SELECT count(*) FROM ckl_purge_permits")
        assert leftover == [(0,)]
        with pytest.raises(Exception, match="append-only"), ledger.recorder.transaction() as tx:
            tx.execute("DELETE FROM ckl_events")
        assert ledger.count_events() == count


@pytest.mark.parametrize(
    ("edit", "reason"),
    [
        (
            lambda lines: [
                *lines[:2],
                lines[2].replace(b'"items_processed":5', b'"items_processed":6'),
                *lines[3:],
            ],
            "hash chain",
        ),
        (lambda lines: lines[:-2], "truncated"),
        (
            lambda lines: [lines[0].replace(b'"events":', b'"events":1'), *lines[1:]],
            "header counts",
        ),
        (lambda lines: [b"{}", *lines[1:]], "not a ckl-archive/1 file"),
        (lambda lines: [lines[0], lines[1][:40], *lines[2:]], "event line"),
    ],
    ids=["edited-event", "truncated", "wrong-count", "no-header", "garbled-line"],
)
def test_a_tampered_archive_is_refused_and_writes_nothing(
    sqlite_url: str, tmp_path: Path, edit: object, reason: str
) -> None:
    path = tmp_path / "run.jsonl"
    with Ledger.open(sqlite_url) as ledger:
        _finished_run(ledger, "run-t", 2)
        export_run(ledger, "run-t", path)
    lines = path.read_bytes().rstrip(b"\n").split(b"\n")
    path.write_bytes(b"\n".join(edit(lines)) + b"\n")  # type: ignore[operator]
    with Ledger.open(f"sqlite:///{tmp_path}/target.db") as target:
        with pytest.raises(ArchiveFileInvalid, match=reason):
            import_archive(target, path)
        assert target.count_events() == 0


def test_importing_over_different_events_of_the_run_is_a_conflict(
    store_url: str, tmp_path: Path
) -> None:
    path = tmp_path / "run.jsonl"
    with Ledger.open(f"sqlite:///{tmp_path}/source.db") as source:
        _finished_run(source, "run-c", 2)
        export_run(source, "run-c", path)
    with Ledger.open(store_url) as target:
        token = target.create_checkpoint("run-c", 0, total_batches=2, metadata={"n": "other"})
        before = target.count_events()
        with pytest.raises(ImportConflict, match="differs from the archive at v1"):
            import_archive(target, path)
        assert target.count_events() == before
        target.create_checkpoint("run-c", 5)
        with pytest.raises(ImportConflict, match="not in the archive"):
            import_archive(target, path)
        assert target.count_events(token) == 1


def test_a_run_with_a_broken_chain_is_not_exported(store_url: str, tmp_path: Path) -> None:
    with Ledger.open(store_url) as ledger:
        tokens = _finished_run(ledger, "run-broken", 1)
        key = (
            str(tokens[0].checkpoint_id)
            if store_url.startswith("sqlite")
            else tokens[0].checkpoint_id
        )
        tamper(
            store_url,
            "DELETE FROM ckl_events WHERE originator_id = %s AND originator_version = 2",
            (key,),
        )
        with pytest.raises(ArchiveError, match="fails its hash chains"):
            archive_run(ledger, "run-broken", tmp_path / "x.jsonl")
        assert not (tmp_path / "x.jsonl").exists()


def test_after_an_archive_the_views_equal_a_rebuild(store_url: str, tmp_path: Path) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger, history_size=2) as views:
        _finished_run(ledger, "run-old")
        _finished_run(ledger, "run-new", 2)
        views.sync()
        assert views.progress("run-old").completed == 2
        archive_run(ledger, "run-old", tmp_path / "old.jsonl")
        purged = _views(ledger)
        assert all("run-old" not in str(rows) for rows in purged.values())
        assert purged["ckl_view_cursor"]
        views.rebuild()
        assert _views(ledger) == purged


def test_a_writer_that_remembers_a_purged_head_is_refused(store_url: str, tmp_path: Path) -> None:
    # The writer's recorder committed every head of the run itself, so its next append would
    # chain to a remembered hash without reading the row back; the purge took the rows away.
    with Ledger.open(store_url) as writer, Ledger.open(store_url) as archiver:
        tokens = _finished_run(writer, "run-gone", 2)
        archive_run(archiver, "run-gone", tmp_path / "gone.jsonl")
        total = archiver.count_events()
        with pytest.raises(RunArchived):
            writer.reset_checkpoint(tokens[0], reason="after the archive")
        assert archiver.count_events() == total
        assert archiver.find_checkpoint("run-gone", 0) is None
