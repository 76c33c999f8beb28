"""Streams and awaits across processes: writers in one, subscribers and awaiters in another.

The workers (``tests/streams/_worker.py``) are real processes; the test's own process holds the
subscriber or the writer. Nothing waits on the clock: the test waits on a worker's report line
(``ready``, ``waiting``…) or on the stream's queue, each with a deadline.
"""

from __future__ import annotations

from collections import Counter
from uuid import uuid4

from ledger import Created, Ledger, LedgerSettings, Yielded
from streams import Coordinator, run_stream
from tests.streams._support import log_of, subscribed, workers
from tests.streams._worker import EXIT_FAILED

WRITERS, YIELDS = 8, 50
TIMEOUT = 60.0  # seconds for one group of workers or one wait; a hang fails the test


def test_a_subscriber_sees_every_event_of_eight_writer_processes_once_in_global_order(
    store_url: str,
) -> None:
    run_id = f"run-{uuid4().hex}"
    # The subscriber's own poll interval: on SQLite, polling is how other processes' appends
    # reach it; on PostgreSQL NOTIFY does and the poll is a safety net.
    config = LedgerSettings(store=store_url, poll_interval=0.05)
    with (
        Ledger.open(settings=config) as ledger,
        subscribed(run_stream(ledger, run_id)) as got,
        workers(
            *(
                ["yield-many", store_url, run_id, str(batch), str(YIELDS)]
                for batch in range(WRITERS)
            )
        ) as writers,
    ):
        for writer in writers:
            writer.wait_for("ready", TIMEOUT)
        for writer in writers:  # the barrier opens: all eight write at once
            writer.go()
        for writer in writers:
            assert writer.finish(TIMEOUT) == 0, writer.stderr
        events = got.take(WRITERS * (1 + YIELDS), TIMEOUT)

        # Nothing else may be queued: the next event is the one written now.
        ledger.create_checkpoint(run_id, WRITERS)
        [sentinel] = got.take(1, TIMEOUT)
        assert got.pending() == 0

        log = log_of(ledger, run_id)
    assert [(e.position, e.event) for e in [*events, sentinel]] == log
    assert len(log) == WRITERS * (1 + YIELDS) + 1
    positions = [e.position for e in events]
    assert positions == sorted(set(positions))
    seen = Counter((e.checkpoint_id, e.event.originator_version) for e in events)
    assert set(seen.values()) == {1}
    for batch in range(WRITERS):
        mine = [e.event for e in events if e.batch_index == batch]
        assert [type(e) for e in mine] == [Created] + [Yielded] * YIELDS
        assert [e.cursor for e in mine if isinstance(e, Yielded)] == [
            f"b{batch}-{i}" for i in range(YIELDS)
        ]


def test_an_awaiter_in_another_process_gets_the_result_completed_here(store_url: str) -> None:
    run_id = f"run-{uuid4().hex}"
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint(run_id, 0)
        with workers(["await", store_url, run_id, "0", "30"]) as (awaiter,):
            assert awaiter.wait_for("waiting", TIMEOUT) == str(token)
            ledger.complete_checkpoint(token, {"rows": 10})
            assert awaiter.finish(TIMEOUT) == 0, awaiter.stderr
    assert awaiter.reports[-1] == {"result": {"rows": 10}}


def test_an_awaiter_in_another_process_gets_a_permanent_failure_with_its_facts(
    store_url: str,
) -> None:
    run_id = f"run-{uuid4().hex}"
    with Ledger.open(store_url) as ledger:
        token = ledger.create_checkpoint(run_id, 0)
        ledger.fail_checkpoint(token, ConnectionError("flaky upstream"), transient=True)
        ledger.retry_checkpoint(token)  # attempt 2 is open when the awaiter starts
        with workers(["await", store_url, run_id, "0", "30"]) as (awaiter,):
            awaiter.wait_for("waiting", TIMEOUT)
            ledger.fail_checkpoint(token, ValueError("row 7 is not a number"), transient=False)
            assert awaiter.finish(TIMEOUT) == EXIT_FAILED, awaiter.stderr
    assert awaiter.reports[-1] == {
        "failed": {
            "checkpoint": str(token),
            "error_type": "ValueError",
            "message": "row 7 is not a number",
            "transient": False,
            "attempt": 2,
        }
    }


def test_an_await_here_gets_the_result_completed_in_another_process(store_url: str) -> None:
    run_id = f"run-{uuid4().hex}"
    config = LedgerSettings(store=store_url, poll_interval=0.05)
    with Ledger.open(settings=config) as ledger, Coordinator(ledger) as coord:
        token = coord.create_checkpoint(run_id, 0)
        with workers(["yield-many", store_url, run_id, "0", "3", "--complete"]) as (writer,):
            writer.wait_for("ready", TIMEOUT)
            writer.go()
            assert coord.await_checkpoint(token, timeout=TIMEOUT) == {"yields": 3}
            assert writer.finish(TIMEOUT) == 0, writer.stderr
