"""run_batches(owner=...): workers share a run through leases, on both backends.

Each worker here is a thread with a Ledger of its own on the same store, as a process would have
(the real-process version, with a SIGKILL, is ``tests/faults/test_shared_run.py``). Every run
processes :class:`tests.streams._worker.SumBatch`, so a run that neither skips nor repeats a
chunk gives :func:`expected`.
"""

from __future__ import annotations

import threading
import time
from collections import Counter
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest

from ledger import (
    CheckpointEvent,
    CheckpointFailedError,
    CheckpointToken,
    Claimed,
    Completed,
    Failed,
    InvalidInput,
    LeaseLost,
    LeaseRenewed,
    Ledger,
    Reset,
    Yielded,
)
from streams import BatchContext, BatchProgress, Coordinator, RunReport, run_batches
from tests.streams._support import log_of
from tests.streams._worker import SumBatch

if TYPE_CHECKING:
    from collections.abc import Iterator

ITEMS, CHUNK = 20, 5  # four yields per batch: cursors 5, 10, 15, 20


def expected(batches: int) -> list[Any]:
    return [
        {"batch": b, "sum": sum(range(b * ITEMS, (b + 1) * ITEMS)), "items": ITEMS}
        for b in range(batches)
    ]


@pytest.fixture
def coord(store_url: str) -> Iterator[Coordinator]:
    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coordinator:
        yield coordinator


def run_workers(
    store_url: str, run_id: str, owners: list[str], job: SumBatch, batches: int, **options: Any
) -> dict[str, tuple[RunReport | BaseException, list[BatchProgress]]]:
    """Run one shared worker per owner, each in a thread with its own Ledger; their outcomes."""
    outcomes: dict[str, tuple[RunReport | BaseException, list[BatchProgress]]] = {}

    def work(owner: str) -> None:
        progress: list[BatchProgress] = []
        outcome: RunReport | BaseException
        with Ledger.open(store_url) as ledger, Coordinator(ledger) as coordinator:
            try:
                outcome = run_batches(
                    coordinator,
                    run_id,
                    list(range(batches)),
                    job,
                    owner=owner,
                    on_progress=progress.append,
                    **options,
                )
            except Exception as exc:
                outcome = exc
        outcomes[owner] = (outcome, progress)

    threads = [threading.Thread(target=work, args=(owner,)) for owner in owners]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert sorted(outcomes) == sorted(owners), "a worker did not finish"
    return outcomes


def events_of(ledger: Ledger, run_id: str, batch: int) -> list[CheckpointEvent]:
    return ledger.checkpoint_events(CheckpointToken.for_batch(run_id, batch))


def test_two_workers_share_a_run_and_each_reports_all_of_it(
    coord: Coordinator, store_url: str
) -> None:
    run_id, batches = f"run-{uuid4().hex}", 8

    def slow(_ctx: BatchContext[int], _cursor: int) -> None:
        time.sleep(0.01)  # long enough for the two workers to interleave

    outcomes = run_workers(
        store_url, run_id, ["a", "b"], SumBatch(ITEMS, CHUNK, after_yield=slow), batches
    )

    done_here: dict[str, set[int]] = {}
    for owner, (report, progress) in outcomes.items():
        assert isinstance(report, RunReport), report
        assert report.results == expected(batches)
        # Progress for every batch of the run, once each, whoever completed it.
        assert sorted(p.batch_index for p in progress) == list(range(batches))
        assert [p.completed for p in progress] == list(range(1, batches + 1))
        assert all(p.result == expected(batches)[p.batch_index] for p in progress)
        assert not any(p.resumed for p in progress)
        done_here[owner] = {p.batch_index for p in progress if p.completed_here}
        assert done_here[owner] == set(report.completed_here)
    # The two workers split the batches between them: none done by both, none by nobody.
    assert not done_here["a"] & done_here["b"]
    assert done_here["a"] | done_here["b"] == set(range(batches))
    for batch in range(batches):
        events = events_of(coord.ledger, run_id, batch)
        claims = [e for e in events if isinstance(e, Claimed)]
        assert len(claims) == 1, claims
        assert not claims[0].taken_over
        assert claims[0].owner in done_here
        assert batch in done_here[claims[0].owner]
        assert [type(e) for e in events if not isinstance(e, LeaseRenewed)] == [
            type(events[0]),
            Claimed,
            Yielded,
            Yielded,
            Yielded,
            Yielded,
            Completed,
        ]

    # A third worker on the settled run does nothing and reports every batch as resumed.
    before = coord.ledger.count_events()
    (late, progress) = run_workers(store_url, run_id, ["c"], SumBatch(ITEMS, CHUNK), batches)["c"]
    assert isinstance(late, RunReport)
    assert (late.results, late.completed_here) == (expected(batches), ())
    assert all(p.resumed and not p.completed_here for p in progress)
    assert coord.ledger.count_events() == before


def test_a_dead_workers_batch_is_taken_over_from_its_last_cursor(
    coord: Coordinator, store_url: str
) -> None:
    run_id, batches, ttl = f"run-{uuid4().hex}", 3, 0.5
    tokens = [coord.create_checkpoint(run_id, b, total_batches=batches) for b in range(batches)]
    # A worker claims batch 0, yields twice, and dies (it simply stops: no release).
    dead = coord.claim_checkpoint(tokens[0], "dead", ttl)
    coord.checkpoint_yield(tokens[0], 5, 5, {"sum": sum(range(5))}, lease=dead)
    coord.checkpoint_yield(tokens[0], 10, 10, {"sum": sum(range(10))}, lease=dead)

    outcomes = run_workers(store_url, run_id, ["alive"], SumBatch(ITEMS, CHUNK), batches)
    report, _ = outcomes["alive"]

    assert isinstance(report, RunReport), report
    assert report.results == expected(batches)
    events = events_of(coord.ledger, run_id, 0)
    takeover = next(e for e in events if isinstance(e, Claimed) and e.taken_over)
    assert (takeover.owner, takeover.previous_owner, takeover.attempt) == ("alive", "dead", 2)
    later = [e for e in events if e.originator_version > takeover.originator_version]
    # Resumed from cursor 10: the two chunks left, under the new attempt only.
    assert [(e.attempt, e.cursor) for e in later if isinstance(e, Yielded)] == [(2, 15), (2, 20)]
    assert isinstance(later[-1], Completed)
    # The dead worker, had it only been slow, is fenced off.
    with pytest.raises(LeaseLost):
        coord.checkpoint_yield(tokens[0], 15, 15, lease=dead)


def test_a_slow_batch_keeps_its_lease_through_the_heartbeat(
    coord: Coordinator, store_url: str
) -> None:
    run_id, batches, ttl = f"run-{uuid4().hex}", 3, 0.6

    def slow_first_batch(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 0 and cursor == CHUNK:
            time.sleep(4 * ttl)  # no yield for four lease lifetimes

    job = SumBatch(ITEMS, CHUNK, after_yield=slow_first_batch)
    outcomes = run_workers(store_url, run_id, ["a", "b"], job, batches, lease_ttl=ttl)

    for report, _ in outcomes.values():
        assert isinstance(report, RunReport), report
        assert report.results == expected(batches)
    log = [event for _, event in log_of(coord.ledger, run_id)]
    assert not [e for e in log if isinstance(e, Claimed) and e.taken_over]
    events = events_of(coord.ledger, run_id, 0)
    assert sum(isinstance(e, LeaseRenewed) for e in events) >= 3
    # The heartbeat stopped with the batch: nothing renews it after its completion.
    assert isinstance(events[-1], Completed)


def test_a_permanent_failure_stops_every_worker(coord: Coordinator, store_url: str) -> None:
    run_id, batches = f"run-{uuid4().hex}", 8

    def bad_data(ctx: BatchContext[int], cursor: int) -> None:
        time.sleep(0.01)
        if ctx.batch == 2 and cursor == CHUNK:
            raise ValueError("row 7 is not a number")

    outcomes = run_workers(
        store_url, run_id, ["a", "b"], SumBatch(ITEMS, CHUNK, after_yield=bad_data), batches
    )

    causes = []
    for outcome, _ in outcomes.values():
        assert isinstance(outcome, CheckpointFailedError), outcome
        assert (outcome.checkpoint, outcome.error_type, outcome.transient) == (
            f"{run_id}/2",
            "ValueError",
            False,
        )
        causes.append(type(outcome.__cause__))
    assert sorted(map(str, causes)) == sorted(map(str, [ValueError, type(None)]))
    log = log_of(coord.ledger, run_id)
    failed_at = next(pos for pos, e in log if isinstance(e, Failed))
    # No new claim after the failure but, at most, one from a read made just before it.
    assert sum(1 for pos, e in log if isinstance(e, Claimed) and pos > failed_at) <= 1
    assert coord.get_checkpoint(CheckpointToken.for_batch(run_id, batches - 1)).owner is None


def test_a_transient_failure_without_progress_gives_up_after_max_attempts(
    coord: Coordinator, store_url: str
) -> None:
    run_id = f"run-{uuid4().hex}"

    def down(ctx: BatchContext[int]) -> None:
        raise ConnectionError(f"attempt {ctx.attempt}: upstream down")

    job = SumBatch(ITEMS, CHUNK, on_start=down)
    outcomes = run_workers(
        store_url, run_id, ["a"], job, 1, max_attempts=2, retry_delay=0.05, max_retry_delay=0.1
    )

    error, _ = outcomes["a"]
    assert isinstance(error, CheckpointFailedError), error
    assert (error.error_type, error.transient, error.attempt) == ("ConnectionError", False, 2)
    assert error.message.startswith("gave up after 2 attempts without progress")
    events = events_of(coord.ledger, run_id, 0)
    kinds = [(type(e).__name__, getattr(e, "retried", None)) for e in events]
    assert kinds == [
        ("Created", None),
        ("Claimed", False),
        ("Failed", None),
        ("Claimed", True),  # claim_next retried it after its back-off
        ("Failed", None),
    ]
    assert [e.transient for e in events if isinstance(e, Failed)] == [True, False]


def test_a_reset_while_a_shared_worker_runs_restarts_the_batch(
    coord: Coordinator, store_url: str
) -> None:
    run_id, batches = f"run-{uuid4().hex}", 2

    def operator_resets(ctx: BatchContext[int], cursor: int) -> None:
        if ctx.batch == 1 and ctx.attempt == 1 and cursor == 2 * CHUNK:
            with Ledger.open(store_url) as operator:
                operator.reset_checkpoint(ctx.token, "redo it")

    job = SumBatch(ITEMS, CHUNK, after_yield=operator_resets)
    report, _ = run_workers(store_url, run_id, ["a"], job, batches)["a"]

    assert isinstance(report, RunReport), report
    assert report.results == expected(batches)
    events = events_of(coord.ledger, run_id, 1)
    reset_at = next(i for i, e in enumerate(events) if isinstance(e, Reset))
    after = [e for e in events[reset_at + 1 :] if not isinstance(e, LeaseRenewed)]
    # The reset ended the lease; the next claim starts attempt 2 from no cursor.
    assert isinstance(after[0], Claimed)
    assert (after[0].attempt, after[0].taken_over) == (2, False)
    assert [(e.attempt, e.cursor) for e in after if isinstance(e, Yielded)] == [
        (2, c) for c in range(CHUNK, ITEMS + 1, CHUNK)
    ]
    assert Counter(type(e) for e in events)[Completed] == 1


def test_a_run_of_another_size_is_refused_before_anything_is_written(
    coord: Coordinator,
) -> None:
    run_id = f"run-{uuid4().hex}"
    for batch in range(3):
        coord.create_checkpoint(run_id, batch, total_batches=3)
    before = coord.ledger.count_events()
    with pytest.raises(InvalidInput) as raised:
        run_batches(coord, run_id, list(range(4)), SumBatch(ITEMS, CHUNK), owner="w")
    assert raised.value.field == "batches"
    assert coord.ledger.count_events() == before
