"""run_batches: in order, resumable from the last cursor, stopped by a permanent failure.

Every run processes :class:`tests.streams._worker.SumBatch` (batch ``b`` sums its numbers in
chunks, yielding the running sum), so any run that neither skips nor repeats a chunk gives the
uninterrupted run's results, which :func:`reference_results` computes on a fresh run id.
"""

from __future__ import annotations

import math
import os
import signal
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from ledger import (
    CheckpointEvent,
    CheckpointFailedError,
    CheckpointToken,
    Completed,
    Created,
    Failed,
    InvalidInput,
    JSONValue,
    Ledger,
    Retried,
    Yielded,
    retry_due_at,
)
from streams import BatchContext, BatchProgress, Coordinator, run_batches
from tests.streams._support import log_of, workers
from tests.streams._worker import SumBatch

if TYPE_CHECKING:
    from collections.abc import Iterator

ITEMS, CHUNK = 20, 5  # four yields per batch: cursors 5, 10, 15, 20
TIMEOUT = 60.0


@pytest.fixture
def coord(store_url: str) -> Iterator[Coordinator]:
    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coordinator:
        yield coordinator


def reference_results(coord: Coordinator, batches: int) -> list[JSONValue]:
    """The results of an uninterrupted run of ``batches`` batches (on a run id of its own)."""
    report = run_batches(coord, f"ref-{uuid4().hex}", list(range(batches)), SumBatch(ITEMS, CHUNK))
    return report.results


def expected_result(batch: int) -> JSONValue:
    return {"batch": batch, "sum": sum(range(batch * ITEMS, (batch + 1) * ITEMS)), "items": ITEMS}


def events_of(ledger: Ledger, run_id: str, batch: int) -> list[CheckpointEvent]:
    return ledger.checkpoint_events(CheckpointToken.for_batch(run_id, batch))


def assert_progress_never_ran_ahead(ledger: Ledger, run_id: str, batches: int) -> None:
    """Each batch's Completed is in the log before the next batch's Created."""
    position: dict[tuple[int, type[CheckpointEvent]], int] = {}
    for pos, event in log_of(ledger, run_id):
        token = ledger.token_for(event.originator_id)
        assert token is not None
        position.setdefault((token.batch_index, type(event)), pos)
    for batch in range(batches - 1):
        assert position[batch, Completed] < position[batch + 1, Created]


def test_batches_run_in_order_and_report_progress_after_each(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"
    progress: list[BatchProgress] = []
    # What a second ledger (as another process would) sees when each progress is reported.
    seen_at_progress: list[tuple[str, bool]] = []

    def on_progress(p: BatchProgress) -> None:
        progress.append(p)
        with Ledger.open(coord.ledger.settings.store) as other:
            state = other.get_checkpoint(CheckpointToken.for_batch(run_id, p.batch_index))
            ahead = other.find_checkpoint(run_id, p.batch_index + 1) is not None
        seen_at_progress.append((state.status, ahead))

    report = run_batches(coord, run_id, [0, 1, 2], SumBatch(ITEMS, CHUNK), on_progress=on_progress)

    assert report.run_id == run_id
    assert report.results == [expected_result(b) for b in range(3)]
    assert report.results == reference_results(coord, 3)
    assert [(p.batch_index, p.completed, p.total, p.resumed) for p in progress] == [
        (0, 1, 3, False),
        (1, 2, 3, False),
        (2, 3, 3, False),
    ]
    assert [p.result for p in progress] == report.results
    # Progress is reported after the completion is durable, before the next batch exists.
    assert seen_at_progress == [("completed", False)] * 3
    for batch in range(3):
        events = events_of(coord.ledger, run_id, batch)
        assert [type(e) for e in events] == [Created] + [Yielded] * 4 + [Completed]
        created = events[0]
        assert isinstance(created, Created)
        assert created.total_batches == 3
    assert_progress_never_ran_ahead(coord.ledger, run_id, 3)


def test_a_transient_failure_mid_batch_resumes_from_the_last_cursor(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"
    starts: list[tuple[int, int, object]] = []  # (batch, attempt, cursor it resumed from)

    def on_start(ctx: BatchContext[int]) -> None:
        starts.append((ctx.batch, ctx.attempt, ctx.checkpoint_cursor))

    def after_yield(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 1 and ctx.attempt == 1 and cursor == ITEMS // 2:
            raise ConnectionError("upstream went away")

    report = run_batches(
        coord, run_id, [0, 1, 2], SumBatch(ITEMS, CHUNK, on_start=on_start, after_yield=after_yield)
    )

    assert report.results == reference_results(coord, 3)
    assert starts == [(0, 1, None), (1, 1, None), (1, 2, ITEMS // 2), (2, 1, None)]
    events = events_of(coord.ledger, run_id, 1)
    assert [type(e) for e in events] == [Created, Yielded, Yielded, Failed, Retried] + [
        Yielded
    ] * 2 + [Completed]
    failed = events[3]
    assert isinstance(failed, Failed)
    assert (failed.error_type, failed.transient, failed.attempt) == ("ConnectionError", True, 1)
    # No chunk twice: attempt 2 yielded only what attempt 1 had not.
    assert [e.cursor for e in events if isinstance(e, Yielded)] == [5, 10, 15, 20]
    assert_progress_never_ran_ahead(coord.ledger, run_id, 3)


def test_attempts_that_make_progress_are_not_counted(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"

    def down_after_each_yield(ctx: BatchContext[int], cursor: int) -> None:
        raise TimeoutError(f"attempt {ctx.attempt} at {cursor}")

    # Every attempt fails, but each one moves the cursor on: max_attempts=2 never stops it.
    job = SumBatch(ITEMS, CHUNK, after_yield=down_after_each_yield)
    report = run_batches(coord, run_id, [0], job, max_attempts=2, retry_delay=0)

    assert report.results == [expected_result(0)]
    events = events_of(coord.ledger, run_id, 0)
    yields = [(e.attempt, e.cursor) for e in events if isinstance(e, Yielded)]
    assert yields == [(1, 5), (2, 10), (3, 15), (4, 20)]
    assert [e.transient for e in events if isinstance(e, Failed)] == [True] * 4


def test_attempts_without_progress_give_up_after_max_attempts(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"

    def down(ctx: BatchContext[int]) -> None:
        if ctx.attempt > 1:  # attempt 1 makes progress; the next ones fail at once
            raise TimeoutError(f"attempt {ctx.attempt} found it down")

    def down_mid_batch(ctx: BatchContext[int], cursor: int) -> None:
        if cursor == ITEMS // 2:
            raise TimeoutError("went down")

    job = SumBatch(ITEMS, CHUNK, on_start=down, after_yield=down_mid_batch)
    with pytest.raises(CheckpointFailedError) as raised:
        run_batches(coord, run_id, [0, 1], job, max_attempts=3, retry_delay=0)

    error = raised.value
    # Attempt 1 progressed, so it is not counted: 2, 3 and 4 made none, and 4 gave up.
    assert (error.error_type, error.transient, error.attempt) == ("TimeoutError", False, 4)
    assert error.message == (
        "gave up after 3 attempts without progress; last error: attempt 4 found it down"
    )
    assert isinstance(error.__cause__, TimeoutError)
    assert coord.find_checkpoint(run_id, 1) is None
    events = events_of(coord.ledger, run_id, 0)
    failures = [(e.attempt, e.transient) for e in events if isinstance(e, Failed)]
    assert failures == [(1, True), (2, True), (3, True), (4, False)]
    last = events[-1]
    assert isinstance(last, Failed)
    assert last.traceback is not None
    assert "attempt 4 found it down" in last.traceback
    state = coord.get_checkpoint(CheckpointToken.for_batch(run_id, 0))
    assert (state.stalled_attempts, state.cursor) == (3, ITEMS // 2)

    # Run again: a permanent failure is durable; nothing is retried or written.
    before = coord.ledger.count_events()
    with pytest.raises(CheckpointFailedError):
        run_batches(coord, run_id, [0, 1], SumBatch(ITEMS, CHUNK), retry_delay=0)
    assert coord.ledger.count_events() == before


def test_attempts_back_off_with_jitter(coord: Coordinator) -> None:
    run_id, delay = f"run-{uuid4().hex}", 0.2

    def down_twice(ctx: BatchContext[int]) -> None:
        if ctx.attempt < 3:
            raise ConnectionError("not yet")

    job = SumBatch(ITEMS, CHUNK, on_start=down_twice)
    report = run_batches(coord, run_id, [0], job, retry_delay=delay, max_retry_delay=10)

    assert report.results == [expected_result(0)]
    token = CheckpointToken.for_batch(run_id, 0)
    events = events_of(coord.ledger, run_id, 0)
    retried = [e for e in events if isinstance(e, Retried)]
    assert len(retried) == 2
    gaps = []
    for retry in retried:
        failed = coord.ledger.get_checkpoint(token, as_of=retry.originator_version - 1)
        # Not before it was due, and the due time is the ledger's back-off for that state.
        assert retry.timestamp >= retry_due_at(failed, delay, 10)
        gaps.append((retry.timestamp - failed.updated_at).total_seconds())
    # The jitter keeps each pause in [0.5, 1) of the delay, which doubles without progress.
    assert delay * 0.5 <= gaps[0] < delay * 2
    assert 2 * delay * 0.5 <= gaps[1]


def test_a_permanent_failure_stops_the_run_and_starts_no_later_batch(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"
    progress: list[int] = []

    def bad_data(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 1 and cursor == ITEMS // 2:
            raise ValueError("row 12 is not a number")

    with pytest.raises(CheckpointFailedError) as raised:
        run_batches(
            coord,
            run_id,
            list(range(4)),
            SumBatch(ITEMS, CHUNK, after_yield=bad_data),
            on_progress=lambda p: progress.append(p.batch_index),
        )

    error = raised.value
    assert (error.checkpoint, error.error_type, error.message) == (
        f"{run_id}/1",
        "ValueError",
        "row 12 is not a number",
    )
    assert (error.transient, error.attempt) == (False, 1)
    assert isinstance(error.__cause__, ValueError)
    assert progress == [0]
    assert coord.get_checkpoint(CheckpointToken.for_batch(run_id, 1)).status == "failed"
    assert coord.find_checkpoint(run_id, 2) is None
    assert coord.find_checkpoint(run_id, 3) is None

    # Run again: the failure is durable, so the run stops at the same batch, redoing nothing.
    events_before = coord.ledger.count_events()
    with pytest.raises(CheckpointFailedError) as again:
        run_batches(coord, run_id, list(range(4)), SumBatch(ITEMS, CHUNK))
    assert (again.value.error_type, again.value.attempt) == ("ValueError", 1)
    assert coord.ledger.count_events() == events_before
    assert coord.find_checkpoint(run_id, 2) is None


def test_a_run_killed_mid_batch_resumes_from_its_last_cursor_and_redoes_nothing(
    store_url: str,
) -> None:
    run_id, batches, paused_at = f"run-{uuid4().hex}", 5, 10
    argv = ["batches", store_url, run_id, str(batches), str(ITEMS), str(CHUNK)]
    with workers([*argv, "--pause-in", "2", "--pause-at", str(paused_at)]) as (first,):
        # The worker says "paused" right after batch 2's yield at cursor 10, and blocks.
        assert first.wait_for("paused", TIMEOUT) == {"batch": 2, "cursor": paused_at}
        os.kill(first.proc.pid, signal.SIGKILL)
        assert first.proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
    assert [r["started"] for r in first.reports if "started" in r] == [
        {"batch": b, "cursor": None, "attempt": 1} for b in range(3)
    ]

    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coord:
        interrupted = coord.get_checkpoint(CheckpointToken.for_batch(run_id, 2))
        assert (interrupted.status, interrupted.checkpoint_cursor) == ("open", paused_at)
        assert coord.find_checkpoint(run_id, 3) is None
        done_before = {b: events_of(ledger, run_id, b) for b in (0, 1)}
        positions_before = log_of(ledger, run_id)

        with workers(argv) as (second,):
            assert second.finish(TIMEOUT) == 0, second.stderr
        reports = second.reports

        results = reports[-1]["results"]
        assert results == reference_results(coord, batches)
        assert [r["started"] for r in reports if "started" in r] == [
            {"batch": 2, "cursor": paused_at, "attempt": 1},  # resumed, not started over
            {"batch": 3, "cursor": None, "attempt": 1},
            {"batch": 4, "cursor": None, "attempt": 1},
        ]
        assert [r["progress"] for r in reports if "progress" in r] == [
            {"batch": b, "resumed": b < 2} for b in range(batches)
        ]
        # Batches 0 and 1 were not redone: their events, and where they sit, are unchanged.
        assert {b: events_of(ledger, run_id, b) for b in (0, 1)} == done_before
        assert log_of(ledger, run_id)[: len(positions_before)] == positions_before
        # Batch 2 yielded each chunk once, across the two processes.
        yielded = [e.cursor for e in events_of(ledger, run_id, 2) if isinstance(e, Yielded)]
        assert yielded == [5, 10, 15, 20]
        assert_progress_never_ran_ahead(ledger, run_id, batches)


@pytest.mark.parametrize("at", [ITEMS // 2, ITEMS], ids=["mid-batch", "before-complete"])
def test_a_reset_while_process_runs_restarts_the_batch_from_the_reset_state(
    coord: Coordinator, at: int
) -> None:
    run_id = f"run-{uuid4().hex}"
    starts: list[tuple[int, int, object]] = []

    def on_start(ctx: BatchContext[int]) -> None:
        starts.append((ctx.batch, ctx.attempt, ctx.checkpoint_cursor))

    def operator_resets(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 1 and ctx.attempt == 1 and cursor == at:
            # `ckl reset` from another process: another Ledger on the same store.
            with Ledger.open(coord.ledger.settings.store) as operator:
                operator.reset_checkpoint(ctx.token, "bad input file, replaced")

    job = SumBatch(ITEMS, CHUNK, on_start=on_start, after_yield=operator_resets)
    report = run_batches(coord, run_id, [0, 1, 2], job)

    assert report.results == [expected_result(b) for b in range(3)]
    # The reset is the operator's word: batch 1 starts over, from no cursor, as attempt 2.
    assert starts == [(0, 1, None), (1, 1, None), (1, 2, None), (2, 1, None)]
    events = events_of(coord.ledger, run_id, 1)
    kinds = [type(e).__name__ for e in events]
    reset_at = kinds.index("Reset")
    before = [(e.attempt, e.cursor) for e in events[:reset_at] if isinstance(e, Yielded)]
    assert before == [(1, c) for c in range(CHUNK, at + 1, CHUNK)]
    # Nothing of attempt 1 was recorded after the reset: no yield, no completion, no failure.
    after = events[reset_at + 1 :]
    assert [type(e) for e in after] == [Yielded] * 4 + [Completed]
    assert {getattr(e, "attempt", None) for e in after} == {2}
    assert_progress_never_ran_ahead(coord.ledger, run_id, 3)


def test_a_cancelled_batch_is_abandoned_and_skipped(coord: Coordinator) -> None:
    run_id = f"run-{uuid4().hex}"
    progress: list[int] = []

    def operator_cancels(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 1 and cursor == ITEMS // 2:
            with Ledger.open(coord.ledger.settings.store) as operator:
                operator.cancel_checkpoint(ctx.token, "not needed after all")

    job = SumBatch(ITEMS, CHUNK, after_yield=operator_cancels)
    report = run_batches(
        coord, run_id, [0, 1, 2], job, on_progress=lambda p: progress.append(p.batch_index)
    )

    assert report.results == [expected_result(0), None, expected_result(2)]
    assert (report.cancelled, report.completed_here) == ((1,), (0, 2))
    assert progress == [0, 2]
    events = events_of(coord.ledger, run_id, 1)
    assert type(events[-1]).__name__ == "Cancelled"
    assert [type(e) for e in events[:-1]] == [Created, Yielded, Yielded]
    # Run again: the cancelled batch stays settled and skipped; nothing is written.
    before = coord.ledger.count_events()
    again = run_batches(coord, run_id, [0, 1, 2], SumBatch(ITEMS, CHUNK))
    assert (again.results, again.cancelled, again.completed_here) == (report.results, (1,), ())
    assert coord.ledger.count_events() == before


@pytest.mark.parametrize(
    ("arguments", "field"),
    [
        ({"owner": ""}, "owner"),
        ({"owner": 42}, "owner"),
        ({"owner": "host\n1"}, "owner"),
        ({"owner": "w", "lease_ttl": 0}, "lease_ttl"),
        ({"owner": "w", "lease_ttl": -1.0}, "lease_ttl"),
        ({"lease_ttl": math.nan}, "lease_ttl"),
        ({"owner": "w", "retry_delay": -0.5}, "retry_delay"),
        ({"retry_delay": math.inf}, "retry_delay"),
        ({"owner": "w", "max_retry_delay": -1}, "max_retry_delay"),
        ({"max_retry_delay": "1"}, "max_retry_delay"),
    ],
)
def test_bad_arguments_are_refused_before_anything_is_written(
    coord: Coordinator, arguments: dict[str, Any], field: str
) -> None:
    before = coord.ledger.count_events()
    with pytest.raises(InvalidInput) as raised:
        run_batches(coord, f"run-{uuid4().hex}", [0, 1], SumBatch(ITEMS, CHUNK), **arguments)
    assert raised.value.field == field
    assert coord.ledger.count_events() == before
