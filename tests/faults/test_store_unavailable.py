"""The store is unavailable: typed ``StoreUnavailable`` after a bounded retry, nothing half-written.

PostgreSQL: the private server is stopped. Every command raises ``StoreUnavailable`` after
``store_retries`` retries spaced by ``store_retry_delay`` (doubling), so the time it takes is
bounded below by the sum of the delays and above by the retries' connect timeouts plus the
delays (asserted loosely: the bound, not the speed). Nothing is written; an awaiter and a tail
started before the outage wait it out and resume once the server is back.

SQLite: "unavailable" means another process holds the write lock longer than the busy timeout
(``connect_timeout``): a write raises ``StoreUnavailable`` after its retries, nothing is written,
reads keep working (WAL), and the same command succeeds once the lock is released. A read-only
directory is not tested: the suite runs as root in CI, and root ignores file permissions.
"""

from __future__ import annotations

import sqlite3
import threading
import time
from typing import TYPE_CHECKING
from uuid import uuid4

import pytest

from ledger import Completed, Created, Ledger, LedgerSettings, StoreUnavailable, Yielded
from streams import StreamEvent, await_checkpoint, run_stream
from tests.faults._support import record_figures

if TYPE_CHECKING:
    from collections.abc import Callable

    from ledger import CheckpointToken, JSONValue
    from tests.fix_postgres import PostgresServer

RETRIES, DELAY, CONNECT = 2, 0.1, 1.0
# The delays slept between attempts: 0.1 + 0.2.
SLEPT: float = sum(DELAY * 2**k for k in range(RETRIES))
TIMEOUT = 60.0


def upper_bound(connect_timeout: float) -> float:
    """Each attempt may wait out its connect timeout; plus the delays; plus slack for a busy CI."""
    return (RETRIES + 1) * connect_timeout + SLEPT + 10.0


def timed_failure(call: Callable[[], object]) -> float:
    """Run ``call``, which must raise ``StoreUnavailable``; the seconds it took."""
    started = time.monotonic()
    with pytest.raises(StoreUnavailable) as caught:
        call()
    assert caught.value.__cause__ is not None
    assert "repeat the command" in str(caught.value)
    return time.monotonic() - started


class Awaiter:
    """``await_checkpoint`` in a thread of its own, on a ledger of its own."""

    def __init__(self, ledger: Ledger, token: CheckpointToken) -> None:
        self.result: list[JSONValue | BaseException] = []
        self.thread = threading.Thread(target=self._run, args=(ledger, token), daemon=True)
        self.thread.start()

    def _run(self, ledger: Ledger, token: CheckpointToken) -> None:
        try:
            self.result.append(await_checkpoint(ledger, token, timeout=TIMEOUT))
        except BaseException as exc:
            self.result.append(exc)

    def outcome(self) -> JSONValue | BaseException:
        self.thread.join(timeout=TIMEOUT)
        assert self.result, "the awaiter did not finish"
        return self.result[0]


def commands(
    ledger: Ledger, token: CheckpointToken, run_id: str
) -> dict[str, Callable[[], object]]:
    return {
        "create": lambda: ledger.create_checkpoint(run_id, 1),
        "yield": lambda: ledger.checkpoint_yield(token, 2, 2),
        "complete": lambda: ledger.complete_checkpoint(token, {"done": True}),
        "fail": lambda: ledger.fail_checkpoint(token, "outage", transient=True),
        "reset": lambda: ledger.reset_checkpoint(token, "operator"),
    }


@pytest.mark.postgres
def test_with_postgres_stopped_commands_fail_typed_within_bounds_and_everyone_resumes(
    private_postgres: PostgresServer, private_postgres_url: str
) -> None:
    run_id = f"down-{uuid4().hex[:8]}"
    config = LedgerSettings(
        store=private_postgres_url,
        store_retries=RETRIES,
        store_retry_delay=DELAY,
        connect_timeout=CONNECT,
        poll_interval=0.2,
    )
    seen: list[StreamEvent] = []
    arrived = threading.Semaphore(0)

    def on_tail(event: StreamEvent) -> None:
        seen.append(event)
        arrived.release()

    with Ledger.open(settings=config) as ledger, Ledger.open(settings=config) as other:
        token = ledger.create_checkpoint(run_id, 0)
        ledger.checkpoint_yield(token, 1, 1)
        before, events_before = ledger.get_checkpoint(token), ledger.count_events()
        awaiter = Awaiter(other, token)
        subscription = run_stream(other, run_id).subscribe(on_next=on_tail)
        try:
            for _ in range(2):
                assert arrived.acquire(timeout=TIMEOUT)

            private_postgres.stop()
            elapsed = {
                name: timed_failure(call) for name, call in commands(ledger, token, run_id).items()
            }
            # An await begun while the store is down says so (typed), it does not hang.
            elapsed["await"] = timed_failure(lambda: await_checkpoint(ledger, token, timeout=5))
            private_postgres.start()

            for name, seconds in elapsed.items():
                assert SLEPT <= seconds <= upper_bound(CONNECT), (name, seconds)
            assert ledger.count_events() == events_before  # nothing half-written
            assert ledger.get_checkpoint(token) == before
            # The same commands, repeated once it is back, just work.
            ledger.checkpoint_yield(token, 2, 2)
            ledger.complete_checkpoint(token, {"done": True})
            assert awaiter.outcome() == {"done": True}
            for _ in range(2):
                assert arrived.acquire(timeout=TIMEOUT)
        finally:
            subscription.dispose()
        assert [type(e.event) for e in seen] == [Created, Yielded, Yielded, Completed]
        assert [e.position for e in seen] == sorted({e.position for e in seen})
    record_figures(
        "store_unavailable[postgres]",
        store_retries=RETRIES,
        store_retry_delay=DELAY,
        connect_timeout=CONNECT,
        seconds_min=round(min(elapsed.values()), 3),
        seconds_max=round(max(elapsed.values()), 3),
        bound=[round(SLEPT, 3), round(upper_bound(CONNECT), 3)],
    )


def test_a_sqlite_store_locked_past_the_busy_timeout_fails_typed_and_writes_after_release(
    tmp_path: object,
) -> None:
    path = f"{tmp_path}/ledger.db"
    busy = 0.3
    config = LedgerSettings(
        store=f"sqlite:///{path}",
        store_retries=RETRIES,
        store_retry_delay=DELAY,
        connect_timeout=busy,
        poll_interval=0.05,
    )
    run_id = f"locked-{uuid4().hex[:8]}"
    with Ledger.open(settings=config) as ledger, Ledger.open(settings=config) as other:
        token = ledger.create_checkpoint(run_id, 0)
        ledger.checkpoint_yield(token, 1, 1)
        before, events_before = ledger.get_checkpoint(token), ledger.count_events()
        awaiter = Awaiter(other, token)

        # Another process's writer holding the write lock: a plain sqlite3 connection.
        holder = sqlite3.connect(path, isolation_level=None)
        try:
            holder.execute("BEGIN IMMEDIATE")
            elapsed = {
                name: timed_failure(call) for name, call in commands(ledger, token, run_id).items()
            }
            assert ledger.count_events() == events_before  # reads still work, nothing written
            assert ledger.get_checkpoint(token) == before
        finally:
            holder.rollback()
            holder.close()

        for name, seconds in elapsed.items():
            # Each attempt waits the busy timeout out, so the floor includes it too.
            floor = SLEPT + (RETRIES + 1) * busy
            assert floor * 0.9 <= seconds <= upper_bound(busy), (name, seconds)
        ledger.checkpoint_yield(token, 2, 2)
        ledger.complete_checkpoint(token, {"done": True})
        assert awaiter.outcome() == {"done": True}
        assert [type(e) for e in ledger.checkpoint_events(token)] == [
            Created,
            Yielded,
            Yielded,
            Completed,
        ]
    record_figures(
        "store_unavailable[sqlite-locked]",
        store_retries=RETRIES,
        store_retry_delay=DELAY,
        busy_timeout=busy,
        seconds_min=round(min(elapsed.values()), 3),
        seconds_max=round(max(elapsed.values()), 3),
    )
