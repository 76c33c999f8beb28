"""``ckl`` run as a user runs it: a subprocess, its output and its exit code."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from ledger import Ledger
from projections import Projections

ROOT = Path(__file__).resolve().parents[2]


def ckl(
    *args: str, store: str | None = None, cwd: Path | None = None
) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = str(ROOT)
    env["COLUMNS"] = "200"
    if store is not None:
        env["CKL_STORE"] = store
    return subprocess.run(
        [sys.executable, "-m", "streams.cli", *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=cwd or ROOT,
        timeout=120,
        check=False,
    )


def test_demo_runs_three_batches_with_a_transient_failure_and_a_resume(store_url: str) -> None:
    done = ckl("demo", "--run-id", "demo-test", store=store_url)
    assert done.returncode == 0, done.stderr
    out = done.stdout
    assert out.count("completed result=") == 3
    assert "failed    transient SimulatedOutage" in out
    assert "attempt 2 resumes from cursor=500 items=500" in out
    assert "progress 3/3 batches" in out
    shown = ckl("show", "demo-test", "1", "--json", store=store_url)
    assert shown.returncode == 0, shown.stderr
    state = json.loads(shown.stdout)
    assert state["status"] == "completed"
    assert state["attempt"] == 2
    assert state["result"] == {"sum": 499500, "items": 1000}
    # Run again: everything is already done, nothing is redone.
    again = ckl("demo", "--run-id", "demo-test", store=store_url)
    assert again.returncode == 0, again.stderr
    assert "yield" not in again.stdout
    assert "0 events appended" in again.stdout


def test_demo_uses_the_embedded_default_store_in_the_working_directory(tmp_path: Path) -> None:
    done = ckl("demo", cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert (tmp_path / "checkpoints.db").exists()


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--store", "mysql://nope", "show", "r", "0"], "error: cannot use store"),
        (["--store", "postgresql://u:s3cret@127.0.0.1:1/db", "show", "r", "0"], "unavailable"),
    ],
)
def test_store_errors_are_one_line_without_traceback(args: list[str], message: str) -> None:
    done = ckl(*args)
    assert done.returncode == 1
    assert message in done.stderr
    assert "Traceback" not in done.stderr
    assert "s3cret" not in done.stderr
    assert len(done.stderr.strip().splitlines()) == 1


def test_unknown_checkpoint_exits_1_with_one_line(tmp_path: Path) -> None:
    done = ckl("show", "no-such-run", "0", store=f"sqlite:///{tmp_path}/x.db")
    assert done.returncode == 1
    assert done.stderr.startswith("error: checkpoint no-such-run/0 does not exist")


def test_usage_errors_exit_2() -> None:
    done = ckl("show", "run-without-batch")
    assert done.returncode == 2
    assert "Usage" in done.stderr


def test_project_follows_the_log_and_stops_cleanly_on_sigterm(store_url: str) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("CKL_")}
    env["PYTHONPATH"] = str(ROOT)
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "streams.cli",
            "--store",
            store_url,
            "project",
            "--poll-interval",
            "0.05",
        ],
        stderr=subprocess.PIPE,
        text=True,
        env=env,
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
