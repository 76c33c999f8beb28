"""Pins the public types: mypy --strict checks this file (it is not a test module)."""

from __future__ import annotations

import logging
from typing import assert_type

from pydantic import BaseModel
from typing_extensions import TypedDict

from ledger import (
    CheckpointEvent,
    CheckpointFailedError,
    CheckpointState,
    CheckpointToken,
    Cursor,
    JSONObject,
    JSONValue,
    Ledger,
    LogFollower,
    failure_of,
    run_is_settled,
)
from streams import BatchContext, Coordinator, RunReport, run_batches

log = logging.getLogger("example")


def pinned(ledger: Ledger) -> None:
    """Every public call's return type, as users' type checkers see it."""
    token = ledger.create_checkpoint("run-42", 0, total_batches=3, metadata={"source": "x.csv"})
    assert_type(token, CheckpointToken)
    assert_type(ledger.find_checkpoint("run-42", 0), CheckpointToken | None)
    state = ledger.checkpoint_yield(
        token, cursor=500, items_processed=500, accumulated_results={"n": 1}
    )
    assert_type(state, CheckpointState)
    assert_type(state.checkpoint_cursor, Cursor | None)
    assert_type(state.accumulated_results, JSONObject | None)
    assert_type(state.has_checkpoint(), bool)
    assert_type(state.checkpoint_items_processed, int)
    assert_type(ledger.complete_checkpoint(token, {"rows": 1000}), CheckpointState)
    assert_type(ledger.fail_checkpoint(token, TimeoutError("x"), transient=True), CheckpointState)
    assert_type(ledger.retry_checkpoint(token), CheckpointState)
    assert_type(ledger.reset_checkpoint(token, reason="input replaced"), CheckpointState)
    assert_type(ledger.get_checkpoint(token, as_of=3), CheckpointState)
    assert_type(ledger.checkpoint_events(token), list[CheckpointEvent])
    # A cursor may be an int, a str, or a JSON object/array; dicts of narrower types type-check.
    ledger.checkpoint_yield(token, cursor={"page": 2, "key": "k"}, items_processed=600)
    ledger.checkpoint_yield(token, cursor=["a", 1], items_processed=700)
    # One meaning of settled: completed or failed permanently; a run: every declared batch too.
    assert_type(state.is_settled, bool)
    assert_type(run_is_settled({0: state}), bool)
    assert_type(failure_of(state), CheckpointFailedError | None)


def follower(ledger: Ledger) -> None:
    """The one log follower, as the layers above build theirs."""

    def step(follower: LogFollower) -> bool:
        rows = ledger.read_log(after=follower.position, limit=100)
        if rows:
            follower.advance(rows[-1][0])
        return len(rows) == 100

    running = LogFollower(ledger, step, name="ckl-example", what="example", log=log).start()
    assert_type(running.wait_for(running.position, 5.0), int)
    running.stop()


class Offset(BaseModel):
    """A worker's own cursor type."""

    row: int


class Totals(TypedDict):
    """A worker's own results type (typing_extensions': pydantic needs it on Python 3.11)."""

    sum: int


def typed(coordinator: Coordinator, state: CheckpointState) -> None:
    """Declared payload types come back as themselves; undeclared ones stay JSON."""
    assert_type(state.cursor_as(Offset), Offset | None)
    assert_type(state.results_as(Totals), Totals | None)
    assert_type(state.result_as(int), int)

    def process(ctx: BatchContext[range, Offset, Totals]) -> Totals:
        assert_type(ctx.checkpoint_cursor, Offset | None)
        assert_type(ctx.accumulated_results, Totals | None)
        ctx.checkpoint_yield(Offset(row=1), 1, Totals(sum=1))
        return Totals(sum=1)

    report = run_batches(
        coordinator,
        "typed",
        [range(3)],
        process,
        cursor_type=Offset,
        results_type=Totals,
        result_type=Totals,
    )
    assert_type(report, RunReport[Totals])
    assert_type(report.results, list[Totals | None])

    def untyped(ctx: BatchContext[range]) -> object:
        assert_type(ctx.checkpoint_cursor, Cursor | None)
        assert_type(ctx.accumulated_results, JSONObject | None)
        return None

    assert_type(run_batches(coordinator, "json", [range(3)], untyped), RunReport[JSONValue])
    token = state.token
    assert_type(coordinator.await_checkpoint(token), JSONValue)
    assert_type(coordinator.await_checkpoint(token, result_type=Offset), Offset)
