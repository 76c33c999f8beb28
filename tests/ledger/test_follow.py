"""The one log follower: reads from its position, wakes on the watch signal, backs off, stops.

Real-time tests wait on signals with timeouts; the poll interval is set long (30 s) wherever a
test shows that something happens *because of a signal*, so a poll cannot pass for it.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from typing import TYPE_CHECKING

import pytest

from ledger import (
    HELD_BACK_FIRST_WAIT,
    AwaitTimeout,
    Backoff,
    InvalidInput,
    Ledger,
    LedgerSettings,
    LogFollower,
    StoreUnavailable,
)

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

WAIT = 10.0  # seconds a signal may take on a loaded machine before the test fails
log = logging.getLogger("tests.follow")


@pytest.fixture
def ledger() -> Iterator[Ledger]:
    with Ledger.open(settings=LedgerSettings(store="memory://", poll_interval=30)) as opened:
        yield opened


class Reader:
    """A step that reads the log like the real followers do, recording what it saw."""

    def __init__(self, ledger: Ledger, batch_size: int = 2) -> None:
        self.ledger, self.batch_size = ledger, batch_size
        self.seen: list[int] = []
        self.reads_from: list[int] = []
        self.read = threading.Event()

    def __call__(self, follower: LogFollower) -> bool:
        self.reads_from.append(follower.position)
        rows = self.ledger.read_log(after=follower.position, limit=self.batch_size)
        for position, _ in rows:
            self.seen.append(position)
            follower.advance(position)
        self.read.set()
        return len(rows) == self.batch_size


def follower_of(
    ledger: Ledger, step: Callable[[LogFollower], bool], **kwargs: object
) -> LogFollower:
    return LogFollower(ledger, step, name="ckl-test-follower", what="test", log=log, **kwargs)  # type: ignore[arg-type]


def appended(ledger: Ledger, count: int) -> list[int]:
    """Positions of ``count`` new events."""
    token = ledger.create_checkpoint("follow", 0)
    for i in range(1, count):
        ledger.checkpoint_yield(token, i, i)
    return [position for position, _ in ledger.read_log(limit=1000)]


def test_a_follower_catches_up_in_batches_then_wakes_on_the_watch_signal_not_the_poll(
    ledger: Ledger,
) -> None:
    positions = appended(ledger, 5)
    reader = Reader(ledger)
    follower = follower_of(ledger, reader).start()
    try:
        assert follower.wait_for(positions[-1], WAIT) == positions[-1]
        assert reader.seen == positions  # in order, each once
        token = ledger.create_checkpoint("follow", 1)  # an append through the same ledger
        head = ledger.read_log(after=positions[-1])[-1][0]
        assert follower.wait_for(head, WAIT) == head  # well within the 30 s poll interval
        assert ledger.find_checkpoint("follow", 1) == token
    finally:
        follower.stop()
    # Full batches are read again at once; each read starts where the last one ended.
    assert reader.reads_from[:3] == [0, positions[1], positions[3]]


def test_a_follower_starts_after_its_given_position(ledger: Ledger) -> None:
    positions = appended(ledger, 4)
    reader = Reader(ledger, batch_size=10)
    follower = follower_of(ledger, reader, position=positions[1]).start()
    try:
        follower.wait_for(positions[-1], WAIT)
    finally:
        follower.stop()
    assert reader.seen == positions[2:]


def test_stop_is_prompt_even_with_a_long_poll_interval(ledger: Ledger) -> None:
    reader = Reader(ledger)
    follower = follower_of(ledger, reader).start()
    assert reader.read.wait(WAIT)
    assert follower.running
    started = time.monotonic()
    follower.stop()
    assert time.monotonic() - started < WAIT / 2  # not the 30 s poll interval
    assert not follower.running
    assert not any(t.name == "ckl-test-follower" for t in threading.enumerate())


def test_a_step_sees_stopping_and_hands_out_nothing_more(ledger: Ledger) -> None:
    entered, release, done = threading.Event(), threading.Event(), threading.Event()
    handed: list[int] = []

    def step(follower: LogFollower) -> bool:
        entered.set()
        release.wait(WAIT)
        for item in range(3):
            if follower.stopping:
                break
            handed.append(item)
        done.set()
        return False

    follower = follower_of(ledger, step).start()
    assert entered.wait(WAIT)
    follower.stop(wait=False)  # never waits for a step in progress
    release.set()
    assert done.wait(WAIT)
    assert handed == []


def test_store_errors_are_retried_with_back_off_from_the_same_position(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="tests.follow")
    positions = appended(ledger, 2)
    reader = Reader(ledger, batch_size=10)
    failures = 2
    attempts: list[tuple[float, int]] = []

    def step(follower: LogFollower) -> bool:
        nonlocal failures
        attempts.append((time.monotonic(), follower.position))
        if failures:
            failures -= 1
            raise StoreUnavailable("memory://", "read_log", "gone")
        return reader(follower)

    follower = follower_of(ledger, step).start()
    try:
        follower.wait_for(positions[-1], WAIT)
    finally:
        follower.stop()
    assert [position for _, position in attempts[:3]] == [0, 0, 0]
    pauses = [later - earlier for (earlier, _), (later, _) in itertools.pairwise(attempts[:3])]
    assert pauses[0] >= 0.1  # the first pause of the shared back-off
    assert pauses[1] >= 0.2  # twice as long
    warnings = [r.getMessage() for r in caplog.records if r.name == "tests.follow"]
    assert len(warnings) == 2
    assert warnings[0].startswith("test paused (")
    assert "retrying in 0.1s" in warnings[0]
    assert "retrying in 0.2s" in warnings[1]
    assert reader.seen == positions


def test_an_error_that_is_not_retried_ends_the_follower_and_reaches_on_error(
    ledger: Ledger,
) -> None:
    received: list[Exception] = []
    ended = threading.Event()

    def step(_follower: LogFollower) -> bool:
        raise InvalidInput("cursor", "a programming error")

    def on_error(exc: Exception) -> None:
        received.append(exc)
        ended.set()

    follower = follower_of(ledger, step, on_error=on_error).start()
    try:
        assert ended.wait(WAIT)
    finally:
        follower.stop()
    assert len(received) == 1
    assert isinstance(received[0], InvalidInput)


def test_wait_for_is_woken_by_advance_not_by_a_timer(ledger: Ledger) -> None:
    follower = follower_of(ledger, lambda _f: False).start()
    try:
        waiting = threading.Event()
        result: list[int] = []

        def waiter() -> None:
            waiting.set()
            result.append(follower.wait_for(7, WAIT))

        thread = threading.Thread(target=waiter)
        thread.start()
        assert waiting.wait(WAIT)
        follower.advance(7)
        thread.join(WAIT)
        assert result == [7]
    finally:
        follower.stop()


def test_wait_for_a_position_that_never_comes_times_out(ledger: Ledger) -> None:
    follower = follower_of(ledger, lambda _f: False).start()
    try:
        with pytest.raises(AwaitTimeout, match="test at position 5"):
            follower.wait_for(5, 0.05)
    finally:
        follower.stop()


def test_without_its_thread_wait_for_runs_the_steps_in_the_callers_thread(
    ledger: Ledger,
) -> None:
    positions = appended(ledger, 3)
    reader = Reader(ledger)
    follower = follower_of(ledger, reader)
    assert follower.wait_for(positions[-1], WAIT) == positions[-1]
    assert reader.seen == positions
    assert not follower.running
    with pytest.raises(AwaitTimeout):
        follower.wait_for(positions[-1] + 10**6, 0.05)


@pytest.mark.parametrize(
    ("position", "timeout", "field"),
    [(-1, 1.0, "position"), (True, 1.0, "position"), (2**63, 1.0, "position"),
     (0, -1.0, "timeout"), (0, float("nan"), "timeout"), (0, float("inf"), "timeout")],
)  # fmt: skip
def test_wait_for_refuses_a_bad_position_or_timeout(
    ledger: Ledger, position: int, timeout: float, field: str
) -> None:
    follower = follower_of(ledger, lambda _f: False)
    with pytest.raises(InvalidInput) as caught:
        follower.wait_for(position, timeout)
    assert caught.value.field == field


def test_a_follower_can_be_started_again_and_keeps_its_position(ledger: Ledger) -> None:
    positions = appended(ledger, 2)
    reader = Reader(ledger, batch_size=10)
    follower = follower_of(ledger, reader).start()
    follower.wait_for(positions[-1], WAIT)
    follower.stop()
    ledger.create_checkpoint("follow", 1)
    head = ledger.read_log(after=positions[-1])[-1][0]
    follower.start()
    try:
        follower.wait_for(head, WAIT)
    finally:
        follower.stop()
    assert reader.seen == [*positions, head]


def test_backoff_doubles_up_to_its_cap_and_starts_again_after_reset() -> None:
    retry = Backoff()
    assert [retry.next() for _ in range(8)] == [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0]
    retry.reset()
    assert retry.next() == 0.1
    held = Backoff(HELD_BACK_FIRST_WAIT, 0.005)
    assert [held.next() for _ in range(5)] == [0.001, 0.002, 0.004, 0.005, 0.005]
    assert Backoff(1.0, 0.5).next() == 0.5  # never more than the cap, even the first pause
