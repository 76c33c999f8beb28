"""completion, await_checkpoint and await_checkpoint_async: one checkpoint's outcome.

The observable emits the result once and completes, or errors; the blocking and asyncio
awaits are thin over it. asyncio runs through ``asyncio.run`` inside plain tests (no plugin).
"""

from __future__ import annotations

import asyncio
import threading
from typing import TYPE_CHECKING

import pytest

from ledger import (
    AwaitTimeout,
    CheckpointFailedError,
    CheckpointNotFound,
    CheckpointToken,
    InvalidInput,
    JSONValue,
    Ledger,
    LedgerError,
)
from streams import Coordinator, await_checkpoint, completion
from tests.streams._support import OnCompleted, OnError, OnNext, subscribed

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 10.0


@pytest.fixture
def coord(store_url: str) -> Iterator[Coordinator]:
    with Ledger.open(store_url) as ledger, Coordinator(ledger) as coordinator:
        yield coordinator


def assert_failed(
    error: BaseException, token: CheckpointToken, error_type: str, transient: bool, attempt: int
) -> None:
    assert isinstance(error, CheckpointFailedError)
    assert isinstance(error, LedgerError)
    assert (error.checkpoint, error.error_type, error.transient, error.attempt) == (
        str(token),
        error_type,
        transient,
        attempt,
    )


# ------------------------------------------------------------------------------ blocking


def test_awaiting_a_completed_checkpoint_returns_its_result_at_once(coord: Coordinator) -> None:
    token = coord.create_checkpoint("done", 0)
    coord.complete_checkpoint(token, {"rows": 3})
    assert coord.await_checkpoint(token, timeout=TIMEOUT) == {"rows": 3}
    assert coord.await_checkpoint(token) == {"rows": 3}  # no timeout: nothing to wait for


def test_awaiting_a_completed_checkpoint_with_no_time_to_wait_still_returns_its_result(
    coord: Coordinator,
) -> None:
    token = coord.create_checkpoint("done-now", 0)
    coord.complete_checkpoint(token, {"rows": 3})
    # timeout=0 asks "settled yet?": the first read answers it, with no waiting at all.
    for _ in range(5):
        assert coord.await_checkpoint(token, timeout=0) == {"rows": 3}
        assert asyncio.run(coord.await_checkpoint_async(token, timeout=0)) == {"rows": 3}


def test_awaiting_a_failed_checkpoint_raises_its_failure(coord: Coordinator) -> None:
    token = coord.create_checkpoint("broken", 0)
    coord.fail_checkpoint(token, KeyError("column"), transient=False)

    with pytest.raises(CheckpointFailedError) as raised:
        coord.await_checkpoint(token, timeout=TIMEOUT)

    assert_failed(raised.value, token, "KeyError", transient=False, attempt=1)
    assert raised.value.message == "'column'"


def test_awaiting_a_transient_failure_raises_it_with_the_attempt(coord: Coordinator) -> None:
    token = coord.create_checkpoint("flaky", 0)
    coord.fail_checkpoint(token, "timed out", transient=True)
    coord.retry_checkpoint(token)
    coord.fail_checkpoint(token, TimeoutError("again"), transient=True)

    with pytest.raises(CheckpointFailedError) as raised:
        coord.await_checkpoint(token, timeout=TIMEOUT)

    assert_failed(raised.value, token, "TimeoutError", transient=True, attempt=2)


def test_an_await_is_woken_by_a_completion_from_another_thread(coord: Coordinator) -> None:
    token = coord.create_checkpoint("later", 0)
    result: list[JSONValue] = []
    awaiter = threading.Thread(
        target=lambda: result.append(coord.await_checkpoint(token, timeout=TIMEOUT))
    )
    awaiter.start()
    coord.checkpoint_yield(token, 1, 1)  # progress is not an outcome: the await goes on
    coord.complete_checkpoint(token, [1, 2])
    awaiter.join(timeout=TIMEOUT + 5)
    assert not awaiter.is_alive()
    assert result == [[1, 2]]


def test_an_await_that_times_out_raises_await_timeout(coord: Coordinator) -> None:
    token = coord.create_checkpoint("never", 0)

    with pytest.raises(AwaitTimeout) as raised:
        coord.await_checkpoint(token, timeout=0.2)

    assert isinstance(raised.value, TimeoutError)
    assert isinstance(raised.value, LedgerError)
    assert (raised.value.checkpoint, raised.value.timeout) == (str(token), 0.2)
    assert coord.get_checkpoint(token).status == "open"  # it may still settle later
    coord.complete_checkpoint(token, "late")
    assert coord.await_checkpoint(token, timeout=TIMEOUT) == "late"


def test_awaiting_a_checkpoint_that_does_not_exist_raises_checkpoint_not_found(
    coord: Coordinator,
) -> None:
    token = CheckpointToken.for_batch("nowhere", 0)
    with pytest.raises(CheckpointNotFound):
        coord.await_checkpoint(token, timeout=TIMEOUT)
    with pytest.raises(CheckpointNotFound):
        await_checkpoint(coord.ledger, token)  # no timeout: must not wait either


@pytest.mark.parametrize("timeout", [-1.0, float("nan"), True])
def test_an_await_with_a_bad_timeout_is_refused(coord: Coordinator, timeout: float) -> None:
    token = coord.create_checkpoint("bad-timeout", 0)
    with pytest.raises(InvalidInput):
        coord.await_checkpoint(token, timeout=timeout)


# ------------------------------------------------------------------------------ observable


def test_completion_emits_the_result_once_then_completes(coord: Coordinator) -> None:
    token = coord.create_checkpoint("observed", 0)
    with subscribed(completion(coord.ledger, token)) as got:
        coord.checkpoint_yield(token, "half", 5)
        coord.complete_checkpoint(token, {"rows": 10})
        first = got.next_notification(TIMEOUT)
        second = got.next_notification(TIMEOUT)
    # The Rx grammar: nothing after a terminal notification, so these two are all there is.
    assert first == OnNext({"rows": 10})
    assert second == OnCompleted()
    assert got.pending() == 0


def test_completion_of_an_already_completed_checkpoint_emits_at_once(coord: Coordinator) -> None:
    token = coord.create_checkpoint("observed-late", 0)
    coord.complete_checkpoint(token, None)
    with subscribed(completion(coord.ledger, token)) as got:
        notes = [got.next_notification(TIMEOUT), got.next_notification(TIMEOUT)]
    assert notes == [OnNext(None), OnCompleted()]
    assert got.pending() == 0


def test_completion_of_a_failed_checkpoint_errors_without_a_value(coord: Coordinator) -> None:
    token = coord.create_checkpoint("observed-failure", 0)
    with subscribed(completion(coord.ledger, token)) as got:
        coord.fail_checkpoint(token, "disk full", transient=False)
        note = got.next_notification(TIMEOUT)
    assert isinstance(note, OnError)
    assert_failed(note.error, token, "Error", transient=False, attempt=1)
    assert got.pending() == 0


def test_completion_of_a_missing_checkpoint_errors_with_checkpoint_not_found(
    coord: Coordinator,
) -> None:
    with subscribed(completion(coord.ledger, CheckpointToken.for_batch("missing", 3))) as got:
        note = got.next_notification(TIMEOUT)
    assert isinstance(note, OnError)
    assert isinstance(note.error, CheckpointNotFound)
    assert got.pending() == 0


# ------------------------------------------------------------------------------ asyncio


def test_an_async_await_is_woken_by_a_completion_from_another_thread(
    coord: Coordinator,
) -> None:
    token = coord.create_checkpoint("async", 0)

    async def scenario() -> JSONValue:
        waiting = asyncio.create_task(coord.await_checkpoint_async(token, timeout=5))
        await asyncio.sleep(0)  # one turn of the loop: the task subscribes, then awaits
        # Still waiting, and the loop is ours again: the await does not block the loop.
        assert not waiting.done()
        await asyncio.to_thread(coord.complete_checkpoint, token, {"async": True})
        return await waiting

    assert asyncio.run(scenario()) == {"async": True}


def test_an_async_await_of_a_completed_checkpoint_returns_at_once(coord: Coordinator) -> None:
    token = coord.create_checkpoint("async-done", 0)
    coord.complete_checkpoint(token, 42)
    assert asyncio.run(coord.await_checkpoint_async(token, timeout=5)) == 42


def test_an_async_await_that_times_out_raises_await_timeout(coord: Coordinator) -> None:
    token = coord.create_checkpoint("async-never", 0)

    with pytest.raises(AwaitTimeout) as raised:
        asyncio.run(coord.await_checkpoint_async(token, timeout=0.2))

    assert isinstance(raised.value, TimeoutError)
    assert (raised.value.checkpoint, raised.value.timeout) == (str(token), 0.2)


def test_an_async_await_of_a_failure_raises_it(coord: Coordinator) -> None:
    token = coord.create_checkpoint("async-failure", 0)

    async def scenario() -> JSONValue:
        waiting = asyncio.create_task(coord.await_checkpoint_async(token, timeout=5))
        await asyncio.sleep(0)
        await asyncio.to_thread(coord.fail_checkpoint, token, OSError("gone"), transient=True)
        return await waiting

    with pytest.raises(CheckpointFailedError) as raised:
        asyncio.run(scenario())
    assert_failed(raised.value, token, "OSError", transient=True, attempt=1)


def test_an_async_await_of_a_missing_checkpoint_raises_checkpoint_not_found(
    coord: Coordinator,
) -> None:
    token = CheckpointToken.for_batch("async-missing", 0)
    with pytest.raises(CheckpointNotFound):
        asyncio.run(coord.await_checkpoint_async(token, timeout=5))
