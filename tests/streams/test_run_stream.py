"""run_stream in one process: catch-up then live with no seam, filters, a slow subscriber.

Every stream is checked against the log itself (``ledger.read_log``): the same positions and the
same events, in the same order, nothing more. A stream never completes, so each test ends by
writing one more event (a sentinel) and checking that it is the very next thing received: any
duplicate or stray event would have been queued before it.
"""

from __future__ import annotations

import queue
import threading
from typing import TYPE_CHECKING

import pytest

from ledger import Completed, Created, InvalidInput, Ledger, LedgerSettings, Yielded
from streams import StreamEvent, run_stream
from tests.streams._support import log_of, subscribed

if TYPE_CHECKING:
    from ledger import CheckpointEvent

TIMEOUT = 20.0  # seconds for any one wait; generous, but a hang fails the test


def write(ledger: Ledger, run_id: str, batch_index: int, yields: int, start: int = 0) -> None:
    """Create (idempotently) and yield ``yields`` times to one checkpoint."""
    token = ledger.create_checkpoint(run_id, batch_index)
    for i in range(start, start + yields):
        ledger.checkpoint_yield(token, i, i)


def as_rows(events: list[StreamEvent]) -> list[tuple[int, CheckpointEvent]]:
    return [(e.position, e.event) for e in events]


def assert_well_formed(events: list[StreamEvent], ledger: Ledger) -> None:
    """Positions strictly increase; each event's envelope agrees with the event and its run."""
    positions = [e.position for e in events]
    assert positions == sorted(set(positions))
    for e in events:
        token = ledger.token_for(e.event.originator_id)
        assert token is not None
        assert (e.run_id, e.batch_index, e.checkpoint_id) == (
            token.run_id,
            token.batch_index,
            token.checkpoint_id,
        )
        assert (e.topic, e.at) == (e.event.topic, e.event.timestamp)


def test_catch_up_then_live_has_no_gap_and_no_duplicate_at_the_seam(store_url: str) -> None:
    config = LedgerSettings(store=store_url, poll_interval=0.05)
    with Ledger.open(settings=config) as ledger:
        write(ledger, "seam", 0, 20)
        write(ledger, "other", 0, 10)
        # A small batch_size makes the catch-up take several reads, so the writer below lands
        # while the stream is still catching up as well as after it went live.
        with subscribed(run_stream(ledger, "seam", after=0, batch_size=7)) as got:

            def interleave() -> None:
                for i in range(40):
                    for run_id in ("seam", "other"):
                        write(ledger, run_id, 1, 1, start=i)

            writer = threading.Thread(target=interleave)
            writer.start()
            writer.join(timeout=60)
            assert not writer.is_alive()
            expected = log_of(ledger, "seam")
            assert len(expected) == 21 + 41
            events = got.take(len(expected), TIMEOUT)

            ledger.complete_checkpoint(ledger.create_checkpoint("seam", 0), "sentinel")
            [sentinel] = got.take(1, TIMEOUT)
            assert got.pending() == 0

        assert as_rows(events) == expected
        assert isinstance(sentinel.event, Completed)
        assert sentinel.event.result == "sentinel"
        assert as_rows([*events, sentinel]) == log_of(ledger, "seam")
        assert_well_formed([*events, sentinel], ledger)
        assert {e.run_id for e in events} == {"seam"}


def test_a_stream_after_a_position_starts_just_after_it(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        write(ledger, "from-here", 0, 9)
        write(ledger, "elsewhere", 0, 3)
        log = log_of(ledger, "from-here")
        after = log[4][0]

        with subscribed(run_stream(ledger, "from-here", after=after)) as got:
            events = got.take(len(log) - 5, TIMEOUT)
            write(ledger, "from-here", 0, 1, start=9)
            [live] = got.take(1, TIMEOUT)
            assert got.pending() == 0

        assert as_rows(events) == log[5:]
        assert events[0].position > after
        assert as_rows([*events, live]) == log_of(ledger, "from-here")[5:]


def test_a_stream_after_the_head_shows_only_what_comes_next(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        write(ledger, "head", 0, 5)
        head = log_of(ledger)[-1][0]

        with subscribed(run_stream(ledger, "head", after=head)) as got:
            ledger.complete_checkpoint(ledger.create_checkpoint("head", 0), 1)
            [event] = got.take(1, TIMEOUT)
            assert got.pending() == 0

        assert isinstance(event.event, Completed)
        assert event.position > head
        assert as_rows([event]) == [row for row in log_of(ledger, "head") if row[0] > head]


def test_a_stream_without_a_run_id_shows_every_run_in_global_order(store_url: str) -> None:
    with Ledger.open(store_url) as ledger:
        for run_id in ("a", "b", "c"):
            write(ledger, run_id, 0, 2)
        write(ledger, "a", 1, 2)

        with subscribed(run_stream(ledger, None)) as got:
            caught_up = got.take(len(log_of(ledger)), TIMEOUT)
            write(ledger, "d", 0, 1)
            live = got.take(2, TIMEOUT)
            assert got.pending() == 0

        events = [*caught_up, *live]
        assert as_rows(events) == log_of(ledger)
        assert [e.run_id for e in events] == ["a"] * 3 + ["b"] * 3 + ["c"] * 3 + ["a"] * 3 + [
            "d"
        ] * 2
        assert [type(e.event) for e in live] == [Created, Yielded]
        assert_well_formed(events, ledger)


@pytest.mark.parametrize(("after", "batch_size"), [(-1, 10), (0, 0), (True, 10), (0, 2.5)])
def test_a_stream_with_a_bad_position_or_batch_size_is_refused(
    store_url: str, after: int, batch_size: int
) -> None:
    with Ledger.open(store_url) as ledger, pytest.raises(InvalidInput):
        run_stream(ledger, "x", after=after, batch_size=batch_size)


def test_a_slow_subscriber_blocks_no_writer_and_still_gets_everything_in_order(
    store_url: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Policy under test (streams/tail.py): the stream is pull-based. Its reader thread reads at
    # most `batch_size` events, hands them over one by one and reads again only when the
    # subscriber has returned, so a subscriber stuck in on_next holds at most one batch in
    # memory (here 10 events, while 2,000 are written) and only falls behind in the log;
    # writers never wait for it. The read_log spy checks both halves of that.
    batch_size, writes = 10, 2_000
    with Ledger.open(store_url) as ledger:
        reads: list[tuple[int, int]] = []  # (limit asked, rows returned) per read by the stream
        read_log = ledger.read_log

        def spying_read_log(after: int = 0, limit: int = 1000) -> list[tuple[int, CheckpointEvent]]:
            rows = read_log(after=after, limit=limit)
            if threading.current_thread().name.startswith("ckl-stream"):  # not the test's reads
                reads.append((limit, len(rows)))
            return rows

        monkeypatch.setattr(ledger, "read_log", spying_read_log)
        token = ledger.create_checkpoint("slow", 0)
        received: queue.Queue[StreamEvent] = queue.Queue()
        blocked, release = threading.Event(), threading.Event()

        def slow_on_next(event: StreamEvent) -> None:
            received.put(event)
            blocked.set()
            release.wait(timeout=60)  # bounded: a broken test must not hang the suite

        errors: list[Exception] = []
        subscription = run_stream(ledger, "slow", batch_size=batch_size).subscribe(
            on_next=slow_on_next, on_error=errors.append
        )
        try:
            assert blocked.wait(TIMEOUT), "the subscriber never got the first event"
            reads_while_blocked = len(reads)
            assert reads_while_blocked >= 1  # the spy sees the stream's reads

            written = threading.Event()

            def writer() -> None:
                for i in range(writes):
                    ledger.checkpoint_yield(token, i, i)
                written.set()

            writer_thread = threading.Thread(target=writer)
            writer_thread.start()
            assert written.wait(60), "the writer was blocked by a subscriber stuck in on_next"
            writer_thread.join(timeout=10)
            assert not release.is_set()  # the subscriber was stuck the whole time
            assert received.qsize() == 1
            assert len(reads) == reads_while_blocked  # nothing read ahead while it was stuck
            assert all(limit <= batch_size and rows <= batch_size for limit, rows in reads)

            release.set()
            expected = log_of(ledger, "slow")
            assert len(expected) == 1 + writes
            events: list[StreamEvent] = []
            while len(events) < len(expected):
                events.append(received.get(timeout=TIMEOUT))
        finally:
            release.set()
            subscription.dispose()

        assert errors == []
        assert as_rows(events) == expected
        assert all(limit <= batch_size and rows <= batch_size for limit, rows in reads)
