"""Typed payloads: a worker's own cursor and results types, validated on the way out.

A pydantic model, a TypedDict or a plain ``int`` goes in as JSON (checked as any payload) and
comes back as the declared type; a stored value of another shape raises ``PayloadMismatch``
(naming the field and the problem), never a half-converted value.
"""

from __future__ import annotations

import pickle
import typing
from typing import TYPE_CHECKING, Any

import pytest
from pydantic import BaseModel
from typing_extensions import TypedDict

from ledger import (
    CheckpointFailedError,
    Completed,
    InvalidInput,
    Ledger,
    PayloadMismatch,
    PayloadTooLarge,
    read_as,
    to_json,
)
from streams import BatchContext, BatchProgress, Coordinator, run_batches

if TYPE_CHECKING:
    from collections.abc import Iterator
    from pathlib import Path


class Offset(BaseModel):
    row: int
    page: str = "p0"


class Totals(TypedDict):
    sum: int
    items: int


ITEMS, CHUNK = 20, 5


@pytest.fixture
def coord(tmp_path: Path) -> Iterator[Coordinator]:
    with Ledger.open(f"sqlite:///{tmp_path / 'typed.db'}") as ledger, Coordinator(ledger) as c:
        yield c


class Flaky:
    """Sums its batch in chunks, typed; the first attempt of batch 1 fails after one yield."""

    def __init__(self) -> None:
        self.resumed_from: list[Offset | None] = []

    def __call__(self, ctx: BatchContext[range, Offset, Totals]) -> Totals:
        cursor = ctx.checkpoint_cursor
        self.resumed_from.append(cursor)
        start = cursor.row if cursor is not None else 0
        totals = ctx.accumulated_results or Totals(sum=0, items=0)
        for offset in range(start, len(ctx.batch), CHUNK):
            chunk = ctx.batch[offset : offset + CHUNK]
            totals = Totals(sum=totals["sum"] + sum(chunk), items=totals["items"] + len(chunk))
            ctx.checkpoint_yield(Offset(row=offset + CHUNK), offset + CHUNK, totals)
            if ctx.batch_index == 1 and ctx.attempt == 1:
                msg = "upstream went away"
                raise ConnectionError(msg)
        return totals


def test_a_typed_run_resumes_from_its_typed_cursor_and_reports_typed_results(
    store_url: str,
) -> None:
    batches = [range(b * ITEMS, (b + 1) * ITEMS) for b in range(3)]
    process = Flaky()
    progress: list[BatchProgress[Totals]] = []
    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coord:
        report = run_batches(
            coord,
            "typed-run",
            batches,
            process,
            cursor_type=Offset,
            results_type=Totals,
            result_type=Totals,
            retry_delay=0.0,
            on_progress=progress.append,
        )
        assert report.results == [Totals(sum=sum(b), items=ITEMS) for b in batches]
        assert [p.result for p in progress] == report.results
        # Batch 1's second attempt resumed from the model it yielded, not from scratch.
        assert process.resumed_from == [None, None, Offset(row=CHUNK), None]
        state = ledger.get_checkpoint(ledger.run_states("typed-run")[1].token)
        # Stored as plain JSON: the model's fields, the TypedDict as it is.
        assert state.cursor == {"row": ITEMS, "page": "p0"}
        assert state.cursor_as(Offset) == Offset(row=ITEMS)
        assert state.results_as(Totals) == {"sum": sum(batches[1]), "items": ITEMS}
        assert state.result_as(Totals) == state.accumulated_results
        token = state.token
        assert coord.await_checkpoint(token, result_type=Totals)["items"] == ITEMS


def test_a_stored_cursor_of_another_shape_fails_the_batch_with_a_payload_mismatch(
    coord: Coordinator,
) -> None:
    token = coord.create_checkpoint("reshaped", 0, total_batches=1)
    coord.checkpoint_yield(token, {"offset": 5}, 5)  # an older worker's cursor shape

    def process(ctx: BatchContext[range, Offset, Totals]) -> Totals:
        assert ctx.checkpoint_cursor is None, "never reached: the cursor does not fit"
        return Totals(sum=0, items=0)

    with pytest.raises(CheckpointFailedError) as failed:
        run_batches(coord, "reshaped", [range(10)], process, cursor_type=Offset)
    assert failed.value.error_type == "PayloadMismatch"
    assert not failed.value.transient
    cause = failed.value.__cause__
    assert isinstance(cause, PayloadMismatch)
    assert isinstance(cause, InvalidInput)
    assert cause.field == "cursor"
    assert cause.expected == "Offset"
    assert cause.problem == "row: Field required"
    assert "does not fit Offset (row: Field required)" in str(cause)
    # Nothing was completed, and the stored cursor is untouched.
    state = coord.get_checkpoint(token)
    assert (state.status, state.cursor) == ("failed", {"offset": 5})


def test_a_result_that_does_not_fit_its_type_is_never_completed(coord: Coordinator) -> None:
    def process(ctx: BatchContext[range]) -> object:
        return {"sum": sum(ctx.batch)}  # no "items"

    with pytest.raises(CheckpointFailedError) as failed:
        run_batches(coord, "wrong-result", [range(4)], process, result_type=Totals)
    assert failed.value.error_type == "PayloadMismatch"
    assert "items: Field required" in failed.value.message
    state = coord.run_states("wrong-result")[0]
    assert state.status == "failed"
    events = coord.ledger.checkpoint_events(state.token)
    assert not any(isinstance(event, Completed) for event in events)


def test_a_type_pydantic_cannot_check_is_refused_before_anything_is_written(
    coord: Coordinator,
) -> None:
    class OldStyle(typing.TypedDict):  # pydantic needs typing_extensions' on Python 3.11
        n: int

    def process(ctx: BatchContext[range]) -> None:
        del ctx

    for keyword in ("cursor_type", "results_type", "result_type"):
        declared: dict[str, Any] = {keyword: OldStyle}
        with pytest.raises(InvalidInput) as refused:
            run_batches(coord, "untyped", [range(3)], process, **declared)
        assert refused.value.field == keyword
        assert "OldStyle is not a type pydantic can check" in str(refused.value)
    assert coord.ledger.count_events() == 0


def test_state_views_read_plain_types_and_name_the_problem(coord: Coordinator) -> None:
    token = coord.create_checkpoint("plain", 0)
    state = coord.get_checkpoint(token)
    assert state.cursor_as(int) is None
    assert state.results_as(Totals) is None
    assert state.result_as(type(None)) is None
    state = coord.checkpoint_yield(token, 7, 7, {"sum": 1, "items": "many"})
    assert state.cursor_as(int) == 7
    with pytest.raises(PayloadMismatch) as mismatch:
        state.cursor_as(Offset)
    assert mismatch.value.field == "cursor"
    with pytest.raises(PayloadMismatch) as mismatch:
        state.results_as(Totals)
    assert mismatch.value.field == "accumulated_results"
    assert mismatch.value.problem.startswith("items: Input should be a valid integer")
    with pytest.raises(PayloadMismatch) as mismatch:
        state.result_as(Totals)  # not completed: no result, and None is not a Totals
    assert mismatch.value.field == "result"
    # The error crosses processes like every ledger error.
    again = pickle.loads(pickle.dumps(mismatch.value))  # noqa: S301  (our own error, round trip)
    assert (again.field, again.expected, str(again)) == (
        "result",
        "Totals",
        str(mismatch.value),
    )
    assert read_as(int, 3.0, "cursor") == 3  # JSON numbers as JSON reads them: lax, not lossy
    with pytest.raises(PayloadMismatch):
        read_as(int, 3.5, "cursor")


def test_models_go_in_as_json_with_the_same_checks(coord: Coordinator) -> None:
    token = coord.create_checkpoint("models", 0)
    state = coord.checkpoint_yield(token, Offset(row=3, page="b"), 3, Offset(row=3))
    assert state.cursor == {"row": 3, "page": "b"}
    assert state.accumulated_results == {"row": 3, "page": "p0"}
    assert to_json(Offset(row=1)) == {"row": 1, "page": "p0"}
    limit = coord.ledger.settings.max_cursor_bytes
    events = coord.ledger.count_events()
    with pytest.raises(PayloadTooLarge) as too_large:
        coord.checkpoint_yield(token, Offset(row=4, page="x" * limit), 4)
    assert too_large.value.field == "cursor"
    assert coord.ledger.count_events() == events
    done = coord.complete_checkpoint(token, Offset(row=4))
    assert done.result_as(Offset) == Offset(row=4)


class Summary(BaseModel):
    rows: int


def test_the_ledger_takes_models_as_they_are(tmp_path: Path) -> None:
    with Ledger.open(f"sqlite:///{tmp_path / 'models.db'}") as ledger:
        token = ledger.create_checkpoint("run-models", 0)
        state = ledger.checkpoint_yield(
            token,
            cursor=Offset(row=7, page="p2"),
            items_processed=7,
            accumulated_results=Summary(rows=7),
        )
        assert state.cursor == {"row": 7, "page": "p2"}
        assert state.cursor_as(Offset) == Offset(row=7, page="p2")
        assert state.results_as(Summary) == Summary(rows=7)
        done = ledger.complete_checkpoint(token, Summary(rows=9))
        assert done.result == {"rows": 9}
        assert done.result_as(Summary) == Summary(rows=9)
        events = ledger.count_events(token)
        with pytest.raises(InvalidInput, match="cursor"):
            ledger.checkpoint_yield(token, cursor=object(), items_processed=9)  # type: ignore[arg-type]
        assert ledger.count_events(token) == events
