"""Disposing releases what a subscription opened: its threads, its connection, its LISTEN.

Threads are counted against a baseline taken in the test itself (other tests may still be
winding down theirs), and waited for with a bounded join, never a sleep. checkpoint-ledger
names every thread it starts ``ckl-…``: ``ckl-stream-<run>``, ``ckl-await-<token>`` and the
per-ledger ``ckl-watch``. The PostgreSQL recorder's ``ckl-notify`` (it announces appends to
other processes) starts with the first stream of appends and lives until the ledger closes,
so it is not counted as a subscription's thread here.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from pathlib import Path
from typing import TYPE_CHECKING

import pytest

from ledger import AwaitTimeout, JSONValue, Ledger, LedgerSettings
from streams import Coordinator, await_checkpoint, run_stream
from tests.streams._support import ckl_threads as all_ckl_threads
from tests.streams._support import still_alive, subscribed

if TYPE_CHECKING:
    from collections.abc import Iterator

TIMEOUT = 10.0


@pytest.fixture
def coord(store_url: str) -> Iterator[Coordinator]:
    config = LedgerSettings(store=store_url, poll_interval=0.1)
    with Ledger.open(settings=config) as ledger, Coordinator(ledger) as coordinator:
        yield coordinator


def ckl_threads() -> set[threading.Thread]:
    """The live ``ckl-`` threads but the recorder's notifier (it lives as long as the ledger)."""
    return {t for t in all_ckl_threads() if t.name != "ckl-notify"}


def kinds(threads: set[threading.Thread]) -> set[str]:
    """``{"stream", "await", "watch"}``-style names of ``ckl-`` threads."""
    return {t.name.split("-")[1] for t in threads}


def test_disposing_a_stream_releases_its_threads(coord: Coordinator) -> None:
    token = coord.create_checkpoint("threads", 0)
    baseline = ckl_threads()

    with subscribed(run_stream(coord.ledger, "threads")) as got:
        got.take(1, TIMEOUT)
        started = ckl_threads() - baseline
        assert kinds(started) == {"stream", "watch"}
        coord.checkpoint_yield(token, 1, 1)
        got.take(1, TIMEOUT)

    assert still_alive(started, TIMEOUT) == []
    assert ckl_threads() - baseline == set()


def test_streams_subscribed_and_disposed_in_turn_leave_no_thread(coord: Coordinator) -> None:
    coord.create_checkpoint("churn", 0)
    baseline = ckl_threads()
    seen: set[threading.Thread] = set()

    for _ in range(10):
        with subscribed(run_stream(coord.ledger, "churn")) as got:
            got.take(1, TIMEOUT)
            seen |= ckl_threads() - baseline

    assert kinds(seen) == {"stream", "watch"}
    assert still_alive(seen, TIMEOUT) == []


def test_an_await_releases_its_threads_when_it_returns(coord: Coordinator) -> None:
    token = coord.create_checkpoint("await-threads", 0)
    baseline = ckl_threads()
    started: set[threading.Thread] = set()
    result: list[JSONValue] = []

    def wait() -> None:
        result.append(coord.await_checkpoint(token, timeout=TIMEOUT))

    awaiter = threading.Thread(target=wait)
    awaiter.start()
    coord.checkpoint_yield(token, 1, 1)  # written while the await is (most likely) waiting
    started |= ckl_threads() - baseline
    coord.complete_checkpoint(token, "done")
    awaiter.join(timeout=TIMEOUT + 5)
    assert result == ["done"]

    # An await of a settled checkpoint and an asyncio await, for good measure.
    assert coord.await_checkpoint(token, timeout=TIMEOUT) == "done"
    assert asyncio.run(coord.await_checkpoint_async(token, timeout=TIMEOUT)) == "done"

    started |= ckl_threads() - baseline
    assert still_alive(started, TIMEOUT) == []
    assert still_alive(ckl_threads() - baseline, TIMEOUT) == []


def test_an_await_that_times_out_releases_its_threads(coord: Coordinator) -> None:
    token = coord.create_checkpoint("await-timeout", 0)
    baseline = ckl_threads()

    with pytest.raises(AwaitTimeout):
        coord.await_checkpoint(token, timeout=0.2)
    with pytest.raises(AwaitTimeout):
        asyncio.run(coord.await_checkpoint_async(token, timeout=0.2))

    assert still_alive(ckl_threads() - baseline, TIMEOUT) == []


def test_an_await_with_a_timeout_leaves_no_thread_behind_when_it_returns(
    coord: Coordinator,
) -> None:
    token = coord.create_checkpoint("await-leftovers", 0)
    coord.complete_checkpoint(token, 1)
    baseline = set(threading.enumerate())

    assert coord.await_checkpoint(token, timeout=20) == 1

    left = set(threading.enumerate()) - baseline
    assert still_alive(left, 3.0) == []


def open_files(path: Path) -> int:
    """File descriptors of this process open on ``path`` (or its -wal and -shm files)."""
    count = 0
    for fd in Path("/proc/self/fd").iterdir():
        with contextlib.suppress(OSError):  # an fd closed while we look
            if str(fd.readlink()).startswith(str(path)):
                count += 1
    return count


def test_streams_and_awaits_on_sqlite_release_their_connections(tmp_path: Path) -> None:
    path = tmp_path / "ledger.db"
    config = LedgerSettings(store=f"sqlite:///{path}", poll_interval=0.1)
    with Ledger.open(settings=config) as ledger:
        token = ledger.create_checkpoint("files", 0)
        ledger.complete_checkpoint(token, 1)
        baseline_threads = ckl_threads()
        baseline = open_files(path)
        assert baseline > 0

        for _ in range(10):
            assert await_checkpoint(ledger, token, timeout=TIMEOUT) == 1
        for _ in range(5):
            with subscribed(run_stream(ledger, "files")) as got:
                got.take(1, TIMEOUT)
        assert still_alive(ckl_threads() - baseline_threads, TIMEOUT) == []

        # SQLite itself may keep a closed connection's descriptor for reuse (it defers closing
        # while other connections of the process hold POSIX locks on the file), so allow one
        # connection's worth; a leak is 15 connections here.
        assert open_files(path) <= 2 * baseline


@pytest.mark.postgres
def test_an_await_followed_at_once_by_a_stream_leaves_one_watcher_and_no_stuck_thread(
    postgres_url: str,
) -> None:
    # The race needs the await's own thread to drop the last watch subscription just before
    # the stream takes a new one; it does about every other time, so try up to 30 times.
    config = LedgerSettings(store=postgres_url, poll_interval=0.2)
    with Ledger.open(settings=config) as ledger:
        for i in range(30):
            token = ledger.create_checkpoint("race", i)
            ledger.complete_checkpoint(token, i)
            before = ckl_threads()
            assert await_checkpoint(ledger, token, timeout=TIMEOUT) == i
            with subscribed(run_stream(ledger, "race", after=2**40)):
                awaiting = {t for t in ckl_threads() - before if t.name.startswith("ckl-await")}
                # A finished await's thread ends within a poll interval or two...
                stuck = still_alive(awaiting, 2.0)
                # ...and one thread watches the log for the stream.
                watchers = [t.name for t in ckl_threads() - before if t.name == "ckl-watch"]
                assert (stuck, len(watchers)) == ([], 1), f"on try {i}"
