"""How appends are announced to other processes on PostgreSQL (``NOTIFY`` after the commit).

A quiet append is announced by the writing thread itself before the call returns (no
hand-off); a stream of appends is merged by the recorder's notifier thread, and the last
append of a stream is still announced. Every test listens on a connection of its own with no
polling, so a missing notify shows up as a timeout, not as a late wake-up by a poll.
"""

from __future__ import annotations

import time
from contextlib import closing
from typing import TYPE_CHECKING

import pytest

from ledger import Ledger, LedgerSettings
from ledger.store.postgres import PostgresLedgerRecorder

if TYPE_CHECKING:
    from ledger.store.postgres import PostgresListener

pytestmark = pytest.mark.postgres


def _drain(listener: PostgresListener) -> int:
    """Wait out the notifies in flight; how many wake-ups there were."""
    woken = 0
    while listener.wait(0.3):
        woken += 1
    return woken


def _open(url: str) -> tuple[Ledger, PostgresLedgerRecorder]:
    ledger = Ledger.open(settings=LedgerSettings(store=url))
    assert isinstance(ledger.recorder, PostgresLedgerRecorder)
    return ledger, ledger.recorder


def test_a_quiet_append_is_announced_by_the_writer_before_it_returns(postgres_url: str) -> None:
    ledger, recorder = _open(postgres_url)
    with ledger, closing(recorder.listener()) as listener:
        token = ledger.create_checkpoint("notify-quiet", 0)
        assert listener.wait(5.0)
        _drain(listener)
        for n in range(1, 4):
            time.sleep(0.05)  # longer than the quiet threshold: each append is a lone one
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
            assert listener.wait(5.0), f"append {n} was not announced"
            assert not listener.wait(0.1), "one append, one notify"
        # Sent by the writing thread: the notifier thread was never needed.
        assert recorder._notifier._thread is None


def test_a_stream_of_appends_is_merged_and_its_last_append_announced(postgres_url: str) -> None:
    ledger, recorder = _open(postgres_url)
    with ledger, closing(recorder.listener()) as listener:
        token = ledger.create_checkpoint("notify-stream", 0)
        _drain(listener)
        appends = 300
        for n in range(1, appends + 1):
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
        last = ledger.get_checkpoint(token).version
        assert recorder._notifier._thread is not None  # the stream went through the thread
        # A wake-up after the stream whose read of the head sees its last event: the last
        # append was announced (a reader woken earlier might have read before its commit).
        deadline = time.monotonic() + 5.0
        seen_last = False
        wakes = 0
        while time.monotonic() < deadline and listener.wait(0.5):
            wakes += 1
            events = ledger.checkpoint_events(token)
            seen_last = seen_last or events[-1].originator_version == last
        assert seen_last
        assert wakes < appends  # merged: far fewer notifies than appends


def test_close_stops_the_notifier_and_closes_its_connection(postgres_url: str) -> None:
    ledger, recorder = _open(postgres_url)
    with closing(recorder.listener()) as listener:
        token = ledger.create_checkpoint("notify-close", 0)
        for n in range(1, 50):  # a stream: notifies are owed to the thread when close() starts
            ledger.checkpoint_yield(token, cursor=n, items_processed=n)
        ledger.close()
        thread = recorder._notifier._thread
        assert thread is not None
        assert not thread.is_alive()
        assert recorder._notifier._conn is None
        assert listener.wait(5.0)  # what was owed went out before the thread stopped
