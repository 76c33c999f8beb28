"""A store that lost acknowledged commits: the writer recovers by reloading, and says so.

A failover to an asynchronous standby that had not received the last commits leaves every
writer's cache ahead of the store (the replica tests do it for real, in ``tests/faults``).
Here the loss is made directly, on both backends: the checkpoint's newest events are deleted
past the append-only guard with a purge permit, as only the store's owner can.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import pytest

from ledger import CheckpointNotFound, Ledger, LedgerSettings, verify_chains
from tests._loss import lose_events_after

if TYPE_CHECKING:
    from collections.abc import Iterator

    from ledger import CheckpointToken


@pytest.fixture
def ledger(store_url: str) -> Iterator[Ledger]:
    with Ledger.open(settings=LedgerSettings(store=store_url, snapshot_interval=3)) as opened:
        yield opened


def _commands(ledger: Ledger, token: CheckpointToken) -> list[str | None]:
    return [e.command_id for e in ledger.checkpoint_events(token)]


def test_a_writer_whose_cache_is_ahead_of_the_store_reloads_and_warns(
    ledger: Ledger, caplog: pytest.LogCaptureFixture
) -> None:
    token = ledger.create_checkpoint("run-lost", 0)
    for n in range(1, 6):
        ledger.checkpoint_yield(token, cursor=n * 10, items_processed=n * 10)
    assert ledger.get_checkpoint(token).version == 6
    lose_events_after(ledger, token, 3)  # yields 3, 4 and 5 are gone

    with caplog.at_level(logging.WARNING, logger="ledger"):
        state = ledger.checkpoint_yield(token, cursor=40, items_processed=40)

    # Resumed from the store's cursor (yield 2's): version 4, no gap, the chain intact.
    assert state.version == 4
    assert state.cursor == 40
    assert [e.originator_version for e in ledger.checkpoint_events(token)] == [1, 2, 3, 4]
    lost = [r for r in caplog.records if "acknowledged and then lost" in r.getMessage()]
    assert len(lost) == 1, caplog.text
    message = lost[0].getMessage()
    assert "saw version 6" in message
    assert "holds version 3" in message
    assert "cursor 50" in message
    assert "cursor 20" in message
    # Nothing else was lost: the next command is the plain fast path again.
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="ledger"):
        ledger.checkpoint_yield(token, cursor=50, items_processed=50)
    assert not caplog.records
    assert verify_chains(ledger).ok


def test_a_repeated_command_that_was_lost_applies_once(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-lost", 1)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1, command_id="yield-1")
    ledger.checkpoint_yield(token, cursor=2, items_processed=2, command_id="yield-2")
    lose_events_after(ledger, token, 2)  # yield-2 acknowledged, then lost

    # The worker repeats the command whose acknowledgement it is unsure of: the cache knows
    # the id, the store does not; it is applied (once), not answered from the cache.
    again = ledger.checkpoint_yield(token, cursor=2, items_processed=2, command_id="yield-2")
    assert again.version == 3
    assert again.cursor == 2
    twice = ledger.checkpoint_yield(token, cursor=2, items_processed=2, command_id="yield-2")
    assert twice.version == 3
    assert _commands(ledger, token).count("yield-2") == 1


def test_a_completion_that_was_lost_can_be_completed_again(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-lost", 2)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    ledger.complete_checkpoint(token, result={"rows": 1})
    lose_events_after(ledger, token, 2)

    done = ledger.complete_checkpoint(token, result={"rows": 1})
    assert done.status == "completed"
    assert done.version == 3


def test_a_checkpoint_lost_entirely_is_not_found(ledger: Ledger) -> None:
    token = ledger.create_checkpoint("run-lost", 3)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    lose_events_after(ledger, token, 0)

    with pytest.raises(CheckpointNotFound):
        ledger.checkpoint_yield(token, cursor=2, items_processed=2)
    assert ledger.count_events(token) == 0


def test_a_reader_resumes_from_the_last_position_the_store_still_holds(ledger: Ledger) -> None:
    kept = ledger.create_checkpoint("run-lost", 4)
    token = ledger.create_checkpoint("run-lost", 5)
    ledger.checkpoint_yield(token, cursor=1, items_processed=1)
    ledger.checkpoint_yield(kept, cursor=1, items_processed=1)
    ledger.checkpoint_yield(token, cursor=2, items_processed=2)
    positions = [p for p, _ in ledger.read_log()]
    assert len(positions) == 5
    lose_events_after(ledger, token, 1)  # its yields, positions[2] and positions[4], are gone

    assert ledger.resume_position(0) == 0
    assert ledger.resume_position(positions[3]) == positions[3]  # still there
    assert ledger.resume_position(positions[4]) == positions[3]  # lost: the one below
    assert ledger.resume_position(positions[2]) == positions[1]
    assert ledger.resume_position(positions[4] + 10**6) == positions[3]
