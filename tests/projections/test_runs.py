"""``Projections.runs``: every run's counts and status; and a remote worker's failure context."""

from __future__ import annotations

import pytest

from ledger import InvalidInput, Ledger
from projections import Projections


def test_runs_count_and_classify_every_run(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        done = ledger.create_checkpoint("done", 0, total_batches=1)
        ledger.checkpoint_yield(done, 5, 5)
        ledger.complete_checkpoint(done, 5)
        # Running: one batch of two created, completed (the second is not created yet).
        half = ledger.create_checkpoint("half", 0, total_batches=2)
        ledger.complete_checkpoint(half, 1)
        broken = ledger.create_checkpoint("broken", 0)
        ledger.checkpoint_yield(broken, 3, 3)
        ledger.fail_checkpoint(broken, "boom", transient=True)
        gone = ledger.create_checkpoint("gone", 0)
        ledger.cancel_checkpoint(gone, "not needed")
        views.sync()

        runs = {run.run_id: run for run in views.runs()}
        assert set(runs) == {"done", "half", "broken", "gone"}
        assert (runs["done"].status, runs["done"].completed, runs["done"].items_processed) == (
            "completed",
            1,
            5,
        )
        assert (runs["half"].status, runs["half"].created, runs["half"].total_batches) == (
            "running",
            1,
            2,
        )
        assert (runs["broken"].status, runs["broken"].failed) == ("failed", 1)
        assert (runs["gone"].status, runs["gone"].cancelled) == ("completed", 1)
        # Latest activity first.
        assert [run.run_id for run in views.runs()] == ["gone", "broken", "half", "done"]
        assert [run.run_id for run in views.runs(status="failed")] == ["broken"]
        assert {run.run_id for run in views.runs(contains="o")} == {"done", "broken", "gone"}
        assert len(views.runs(limit=2)) == 2

        for kwargs, field in (
            ({"status": "open"}, "status"),
            ({"contains": 3}, "contains"),
            ({"limit": 0}, "limit"),
        ):
            with pytest.raises(InvalidInput) as caught:
                views.runs(**kwargs)
            assert caught.value.field == field


def test_a_remote_workers_failure_context_is_recorded_and_checked(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        token = ledger.create_checkpoint("remote", 0)
        before = ledger.count_events(token)
        for kwargs, field in (
            ({"host": ""}, "host"),
            ({"host": "x" * 256}, "host"),
            ({"host": 7}, "host"),
            ({"pid": -1}, "pid"),
            ({"pid": "12"}, "pid"),
            ({"traceback_text": b"tb"}, "traceback_text"),
            ({"traceback_text": "a\x00b"}, "traceback_text"),
        ):
            with pytest.raises(InvalidInput) as caught:
                ledger.fail_checkpoint(token, "boom", **kwargs)
            assert caught.value.field == field
        assert ledger.count_events(token) == before

        ledger.fail_checkpoint(
            token,
            "upstream timed out",
            transient=True,
            error_type="TimeoutError",
            traceback_text="Traceback (most recent call last):\n  at fetch (worker.mjs:12)",
            host="worker-7.example",
            pid=4242,
        )
        views.sync()
        (row,) = views.failures(run_id="remote")
        assert (row.host, row.pid, row.error_type) == ("worker-7.example", 4242, "TimeoutError")
        assert row.traceback is not None
        assert row.traceback.endswith("at fetch (worker.mjs:12)")
