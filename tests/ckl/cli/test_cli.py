"""``ckl`` run as a user runs it: the demo, store errors, `project` and `rebuild`."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from typing import TYPE_CHECKING

import pytest

from ledger import Ledger
from projections import Projections
from tests.ckl.cli.conftest import ROOT, ckl, ckl_env, one_error_line

if TYPE_CHECKING:
    from pathlib import Path


def test_demo_runs_three_batches_then_replays_and_audits_the_run(store_url: str) -> None:
    done = ckl("demo", "--run-id", "demo-test", store=store_url)
    assert done.returncode == 0, done.stderr
    job, _, after = done.stdout.partition("done: 3/3 batches completed, 20 events appended")
    assert after, done.stdout
    assert job.count("completed result=") == 3
    assert "failed    transient SimulatedOutage" in job
    assert "attempt 2 resumes from cursor=500 items=500" in job
    assert "progress 3/3 batches" in job
    # The replay and the audit of the run it made, read back from the projections.
    assert "replay (ckl replay demo-test): 20 events, 3 of 3 batches: 3 completed" in after
    assert after.count(" retried ") == 2  # the timeline row, and the audit's "then"
    assert "audit (ckl audit --run demo-test): 1 failure(s)" in after
    assert "transient SimulatedOutage" in after
    shown = ckl("show", "demo-test", "1", "--json", store=store_url)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert (state["status"], state["attempt"]) == ("completed", 2)
    assert state["result"] == {"sum": 499500, "items": 1000}
    assert state["metadata"] == {"source": "demo", "total_items": 1000}
    # Run again: everything is already done, nothing is redone.
    again = ckl("demo", "--run-id", "demo-test", store=store_url)
    assert again.returncode == 0, again.stderr
    job, _, _ = again.stdout.partition("done:")
    assert "yield" not in job
    assert "0 events appended" in again.stdout


def test_demo_uses_the_embedded_default_store_in_the_working_directory(tmp_path: Path) -> None:
    done = ckl("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "checkpoints.db").exists()


READ_COMMANDS = [
    ["show", "r", "0"],
    ["replay", "r"],
    ["pending", "r"],
    ["audit"],
    ["await", "r", "0"],
    ["reset", "r", "0", "--reason", "x"],
    ["rebuild"],
]


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
@pytest.mark.parametrize(
    ("store", "message"),
    [
        ("mysql://nope", "error: cannot use store 'mysql://nope': unknown scheme"),
        ("postgresql://u:s3cret@127.0.0.1:1/db", "error: store postgresql://u:***@127.0.0.1:1/db"),
    ],
    ids=["bad-url", "postgres-down"],
)
def test_store_errors_are_one_line_without_traceback(
    command: list[str], store: str, message: str
) -> None:
    done = ckl("--store", store, *command)
    assert done.returncode == 1
    line = one_error_line(done)
    assert line.startswith(message)
    assert "s3cret" not in done.stderr
    assert done.stdout == ""


def test_tail_of_a_bad_store_is_one_line_too() -> None:
    done = ckl("--store", "sqlite://host/x.db", "tail")
    assert done.returncode == 1
    assert "three slashes" in one_error_line(done)


@pytest.mark.parametrize("command", READ_COMMANDS, ids=lambda c: c[0])
def test_a_missing_sqlite_file_is_an_error_and_is_not_created(
    command: list[str], tmp_path: Path
) -> None:
    path = tmp_path / "typo.db"
    done = ckl(*command, store=f"sqlite:///{path}")
    assert done.returncode == 1
    assert f"there is no SQLite database at {path}" in one_error_line(done)
    assert not path.exists()


def test_debug_shows_the_traceback() -> None:
    done = ckl("--debug", "--store", "mysql://nope", "audit")
    assert done.returncode == 1
    assert "Traceback" in done.stderr
    assert "InvalidStoreURL" in done.stderr


def test_usage_errors_exit_2() -> None:
    done = ckl("show", "run-without-batch")
    assert done.returncode == 2
    assert "Usage" in done.stderr


def test_project_follows_the_log_and_stops_cleanly_on_sigterm(store_url: str) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "ckl", "project", "--poll-interval", "0.05"],
        stderr=subprocess.PIPE,
        text=True,
        env=ckl_env(store_url),
        cwd=ROOT,
    )
    assert proc.stderr is not None
    try:
        assert proc.stderr.readline().startswith("following ")
        with Ledger.open(store_url) as ledger:
            token = ledger.create_checkpoint("projected", 0)
            ledger.complete_checkpoint(token, 1)
            head = ledger.recorder.max_notification_id()
        line = proc.stderr.readline()  # blocks until the follower reports progress
        assert line == f"views at position {head}\n"
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=30) == 0
        assert proc.stderr.read().startswith(f"stopped at position {head}")
    finally:
        proc.kill()
        proc.wait()
        proc.stderr.close()
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        assert views.position == head
        assert views.progress("projected").completed == 1


def test_rebuild_replays_the_log_into_fresh_views(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint("rebuilt", 0)
        ledger.checkpoint_yield(token, 5, 5)
        head = ledger.recorder.max_notification_id()
    done = ckl("rebuild", "--json", store=store_url)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["position"] == head
    human = ckl("rebuild", store=store_url)
    assert human.stdout.startswith(f"rebuilt the views up to position {head} in ")
