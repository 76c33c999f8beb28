"""The public API of ``ledger`` as the issues and seeds describe it, on every backend."""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING

import pytest

from ledger import (
    CheckpointNotFound,
    CheckpointToken,
    Completed,
    ConflictingCommand,
    Created,
    Failed,
    InvalidTransition,
    Ledger,
    LedgerSettings,
    Reset,
    Retried,
    Yielded,
    checkpoint_id_for,
)

if TYPE_CHECKING:
    from collections.abc import Iterator


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(store_url) as opened:
        yield opened


def test_the_seed_sequence_create_yield_complete_reads_back(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-42", 0, total_batches=3, metadata={"source": "o.csv"})
    state = ledger.checkpoint_yield(
        token, cursor=500, items_processed=500, accumulated_results={"sum": 12}
    )
    assert (state.status, state.cursor, state.items_processed) == ("open", 500, 500)
    assert state.has_checkpoint()
    assert state.checkpoint_cursor == 500
    assert state.checkpoint_items_processed == 500
    assert state.accumulated_results == {"sum": 12}
    done = ledger.complete_checkpoint(token, result={"rows": 1000})
    assert done.status == "completed"
    assert done.result == {"rows": 1000}
    assert ledger.get_checkpoint(token) == done
    assert [type(e) for e in ledger.checkpoint_events(token)] == [Created, Yielded, Completed]
    assert ledger.get_checkpoint(token).metadata == {"source": "o.csv"}
    assert ledger.get_checkpoint(token).total_batches == 3


def test_token_is_deterministic_and_create_again_writes_nothing(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-a", 7)
    assert token == CheckpointToken.for_batch("run-a", 7)
    assert token.checkpoint_id == checkpoint_id_for("run-a", 7)
    before = ledger.count_events()
    assert ledger.create_checkpoint("run-a", 7) == token
    assert ledger.count_events() == before


def test_find_checkpoint_returns_the_token_or_none(ledger: Ledger) -> None:
    assert ledger.find_checkpoint("run-f", 0) is None
    token = ledger.create_checkpoint("run-f", 0)
    assert ledger.find_checkpoint("run-f", 0) == token
    with Ledger.open(settings=ledger.settings) as cold:  # no cache: a real lookup
        assert cold.find_checkpoint("run-f", 0) == token
        assert cold.find_checkpoint("run-f", 1) is None


def test_transient_failure_then_retry_resumes_from_the_last_cursor(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-t", 0)
    ledger.checkpoint_yield(token, cursor="key-0499", items_processed=500)
    failed = ledger.fail_checkpoint(token, TimeoutError("upstream slow"), transient=True)
    assert failed.status == "failed"
    assert failed.error is not None
    assert (failed.error.type, failed.error.message, failed.error.transient) == (
        "TimeoutError",
        "upstream slow",
        True,
    )
    retried = ledger.retry_checkpoint(token)
    assert (retried.status, retried.attempt) == ("open", 2)
    assert retried.checkpoint_cursor == "key-0499"
    assert retried.checkpoint_items_processed == 500
    events = ledger.checkpoint_events(token)
    assert isinstance(events[2], Failed)
    assert events[2].cursor == "key-0499"
    assert isinstance(events[3], Retried)


def test_permanent_failure_cannot_be_retried_only_reset(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-p", 0)
    ledger.checkpoint_yield(token, cursor={"page": 3}, items_processed=30)
    ledger.fail_checkpoint(token, "schema mismatch", transient=False)
    before = ledger.count_events()
    with pytest.raises(InvalidTransition, match="reset"):
        ledger.retry_checkpoint(token)
    with pytest.raises(InvalidTransition):
        ledger.checkpoint_yield(token, cursor={"page": 4}, items_processed=40)
    assert ledger.count_events() == before
    reset = ledger.reset_checkpoint(token, reason="input file replaced")
    assert (reset.status, reset.attempt, reset.cursor, reset.items_processed) == (
        "open",
        2,
        None,
        0,
    )
    assert not reset.has_checkpoint()
    assert isinstance(ledger.checkpoint_events(token)[-1], Reset)


def test_repeated_identical_complete_is_a_no_op_and_a_different_one_is_refused(
    ledger: Ledger,
) -> None:
    token = ledger.create_checkpoint("run-c", 0)
    ledger.complete_checkpoint(token, {"rows": 1})
    before = ledger.count_events()
    assert ledger.complete_checkpoint(token, {"rows": 1}).version == 2
    with pytest.raises(ConflictingCommand):
        ledger.complete_checkpoint(token, {"rows": 2})
    with pytest.raises(InvalidTransition):
        ledger.fail_checkpoint(token, "late failure")
    assert ledger.count_events() == before


def test_repeated_identical_fail_is_a_no_op_and_a_different_one_is_refused(
    ledger: Ledger,
) -> None:
    token = ledger.create_checkpoint("run-ff", 0)
    ledger.fail_checkpoint(token, "boom", transient=True)
    before = ledger.count_events()
    ledger.fail_checkpoint(token, "boom", transient=True)
    with pytest.raises(ConflictingCommand):
        ledger.fail_checkpoint(token, "boom", transient=False)
    with pytest.raises(InvalidTransition):
        ledger.complete_checkpoint(token, {"rows": 1})
    assert ledger.count_events() == before


def test_yields_never_change_status_and_repeating_the_last_yield_is_a_no_op(
    ledger: Ledger,
) -> None:
    token = ledger.create_checkpoint("run-y", 0)
    for i in range(1, 4):
        assert ledger.checkpoint_yield(token, cursor=i, items_processed=i).status == "open"
    before = ledger.count_events()
    assert ledger.checkpoint_yield(token, cursor=3, items_processed=3).version == 4
    assert ledger.count_events() == before
    # 3 and 3.0 and "3" are different cursors: each is a real yield.
    ledger.checkpoint_yield(token, cursor="3", items_processed=3)
    assert ledger.count_events() == before + 1


def test_get_checkpoint_as_of_a_version_or_a_moment(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-h", 0)
    for i in range(1, 6):
        ledger.checkpoint_yield(token, cursor=i * 10, items_processed=i * 10)
    events = ledger.checkpoint_events(token)
    assert ledger.get_checkpoint(token, as_of=3).cursor == 20
    assert ledger.get_checkpoint(token, as_of=events[3].timestamp).cursor == 30
    with pytest.raises(CheckpointNotFound):
        ledger.get_checkpoint(token, as_of=events[0].timestamp - timedelta(seconds=1))
    assert ledger.get_checkpoint(token, as_of=ledger.now()).cursor == 50


def test_unknown_token_is_not_found_and_nothing_is_written(ledger: Ledger) -> None:
    token = CheckpointToken.for_batch("never-created", 0)
    before = ledger.count_events()
    with pytest.raises(CheckpointNotFound, match="create_checkpoint"):
        ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    with pytest.raises(CheckpointNotFound):
        ledger.get_checkpoint(token)
    with pytest.raises(CheckpointNotFound):
        ledger.checkpoint_events(token)
    assert ledger.count_events() == before


def test_a_stale_cache_in_another_ledger_never_gives_a_wrong_answer(store_url: str) -> None:
    with Ledger.open(store_url) as a, Ledger.open(store_url) as b:
        token = a.create_checkpoint("run-s", 0)
        b.checkpoint_yield(token, cursor=1, items_processed=1)  # b caches v2
        a.fail_checkpoint(token, "boom", transient=True)  # a appends v3
        a.retry_checkpoint(token)  # v4: open again
        # b's cache says open at v2; its append collides, it reloads and carries on.
        state = b.checkpoint_yield(token, cursor=2, items_processed=2)
        assert (state.version, state.attempt) == (5, 2)
        a.complete_checkpoint(token, {"ok": True})
        # b's cache says open: completing with another result must still be refused.
        with pytest.raises(ConflictingCommand):
            b.complete_checkpoint(token, {"ok": False})
        assert b.complete_checkpoint(token, {"ok": True}).status == "completed"


def test_loading_cold_from_snapshots_gives_the_same_state(store_url: str) -> None:
    config = LedgerSettings(store=store_url, snapshot_interval=5)
    with Ledger.open(settings=config) as warm:
        token = warm.create_checkpoint("run-snap", 0)
        for i in range(23):
            warm.checkpoint_yield(token, cursor=i, items_processed=i, accumulated_results={"n": i})
        expected = warm.get_checkpoint(token)
    with Ledger.open(settings=config) as cold:
        assert cold.get_checkpoint(token) == expected
        assert cold.get_checkpoint(token, as_of=12).cursor == 10
        assert cold.checkpoint_yield(token, cursor=99, items_processed=99).version == 25
