"""The follower keeps views current: same process at once, other processes, restarts."""

from __future__ import annotations

import subprocess
import sys
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger import AwaitTimeout, CheckpointToken, Ledger, LedgerSettings
from projections import Projections
from tests.projections.test_views_state_machine import dump

if TYPE_CHECKING:
    from tests.fix_postgres import PostgresServer

ROOT = Path(__file__).resolve().parents[2]

WRITER = """
import sys
from ledger import Ledger
with Ledger.open(sys.argv[1]) as ledger:
    token = ledger.create_checkpoint(sys.argv[2], 0)
    for i in range(int(sys.argv[3])):
        ledger.checkpoint_yield(token, i, i)
    ledger.complete_checkpoint(token, {"n": int(sys.argv[3])})
"""


def write_in_another_process(store_url: str, run_id: str, yields: int) -> None:
    subprocess.run(
        [sys.executable, "-c", WRITER, store_url, run_id, str(yields)],
        check=True,
        cwd=ROOT,
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"},
        timeout=120,
    )


def test_same_process_writes_are_in_the_views_after_sync(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger).start() as views:
        token = ledger.create_checkpoint("rw", 0, total_batches=1)
        for i in range(20):
            ledger.checkpoint_yield(token, i, i)
            views.sync(timeout=5)
            current = views.current(token)
            assert current is not None
            assert current.cursor == i
        ledger.complete_checkpoint(token, "ok")
        views.sync(timeout=5)
        assert views.progress("rw").completed == 1
        assert views.pending_checkpoints("rw") == []


def test_other_processes_writes_reach_a_running_follower(store_url: str) -> None:
    config = LedgerSettings(store=store_url, poll_interval=0.05)
    with Ledger.open(settings=config) as ledger, Projections(ledger) as views:
        views.start()
        write_in_another_process(store_url, "elsewhere", 30)
        head = ledger.recorder.max_notification_id()
        assert head is not None
        views.wait_for(head, timeout=10)
        assert views.progress("elsewhere").completed == 1
        assert views.history(CheckpointToken.for_batch("elsewhere", 0)).total_yields == 30


def test_wait_for_a_position_that_never_comes_times_out(store_url: str) -> None:
    with (
        Ledger.open(store_url) as ledger,
        Projections(ledger).start() as views,
        pytest.raises(AwaitTimeout),
    ):
        views.wait_for(10**9, timeout=0.2)


def test_two_followers_at_once_apply_each_event_exactly_once(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        first, second = Projections(ledger, batch_size=3), Projections(ledger, batch_size=3)
        token = ledger.create_checkpoint("twice", 0)
        for i in range(60):
            ledger.checkpoint_yield(token, i, i)
        ledger.fail_checkpoint(token, "boom", transient=True)
        ledger.retry_checkpoint(token)
        threads = [threading.Thread(target=v.catch_up) for v in (first, second)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert first.catch_up() == second.catch_up()
        rows = dump(first)
        assert first.history(token).total_yields == 60
        assert len(first.failures(run_id="twice")) == 1
        first.rebuild()
        assert dump(first) == rows
        first.close()
        second.close()


@pytest.mark.postgres
def test_the_follower_resumes_after_a_postgres_restart(
    postgres_server: PostgresServer, postgres_url: str
) -> None:
    config = LedgerSettings(store=postgres_url, poll_interval=0.1)
    with Ledger.open(settings=config) as ledger, Projections(ledger) as views:
        views.start()
        token = ledger.create_checkpoint("restart", 0)
        ledger.checkpoint_yield(token, 1, 1)
        views.sync(timeout=5)
        postgres_server.restart()
        # Written by another process after the restart: only NOTIFY (after reconnecting)
        # or the poll can bring it in.
        write_in_another_process(postgres_url, "after-restart", 10)
        head = ledger.recorder.max_notification_id()
        assert head is not None
        views.wait_for(head, timeout=30)
        assert views.progress("after-restart").completed == 1
        rows = dump(views)
        views.rebuild()
        assert dump(views) == rows
