"""PostgreSQL restarted under 4 writer processes, a tail and the projection runner.

The writers (``_fault_worker writer --until-stop``) yield as fast as they can and repeat a
command that raised ``StoreUnavailable``; a ``run_stream`` tail and a running ``Projections``
follower live in the test's process, each on its own ``Ledger``. The private server is
restarted (alternately a clean ``fast`` stop and an ``immediate`` one, which is a crash
followed by recovery) while they all work; between restarts the test waits until every writer
has written again after the server came back. Nobody is told about the restart.

Then: the log is prefix-consistent, every writer's yields are in it exactly once (its repeats
were no-ops), the tail saw exactly the log (nothing skipped, nothing twice, in order) and the
views equal a rebuild. Recovery time after each restart (from the server accepting connections
again to the first success) is recorded for writers, tail and views.
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import pytest

from ledger import Ledger, LedgerSettings
from projections import Projections
from streams import StreamEvent, run_stream
from tests.faults._support import (
    check_writers_in_log,
    dump_views,
    fault_workers,
    percentile,
    pick,
    record_figures,
)

if TYPE_CHECKING:
    from tests.faults._support import FaultWorker
    from tests.fix_postgres import PostgresServer

pytestmark = pytest.mark.postgres

WRITERS = 4
RESTARTS = pick(2, 8)
TIMEOUT = 120.0


class Arrivals:
    """What a follower saw, with the wall-clock time it saw it."""

    def __init__(self) -> None:
        self.seen: list[tuple[float, int]] = []
        self.changed = threading.Condition()

    def add(self, position: int) -> None:
        with self.changed:
            self.seen.append((time.time(), position))
            self.changed.notify_all()

    def wait_count(self, count: int, timeout: float) -> None:
        with self.changed:
            if not self.changed.wait_for(lambda: len(self.seen) >= count, timeout):
                msg = f"saw {len(self.seen)} of {count} within {timeout}s"
                raise AssertionError(msg)

    def recovered(self, moment: float, position: int, timeout: float) -> float:
        """Seconds from ``moment`` to the first arrival past ``position`` after it (waiting)."""

        def times() -> list[float]:
            return [t for t, p in self.seen if t >= moment and p > position]

        with self.changed:
            if not self.changed.wait_for(times, timeout):
                msg = f"nothing past position {position} within {timeout}s (at {self.seen[-1:]})"
                raise AssertionError(msg)
            return min(times()) - moment


def log_head(ledger: Ledger, head: int) -> int:
    """The log's last position, read on from a known one (through the ledger's retries)."""
    while rows := ledger.read_log(after=head, limit=1000):
        head = rows[-1][0]
    return head


def stall_recovery(reports: list[dict[str, Any]], backs: list[float]) -> list[float]:
    """For each outage a writer waited out: seconds from the server's return to its success."""
    recovered = []
    for start, end in (r["stalled"] for r in reports if "stalled" in r):
        during = [b for b in backs if start <= b <= end]
        if during:
            recovered.append(end - during[-1])
    return recovered


def follow_views(views: Projections, arrivals: Arrivals, stop: threading.Event) -> None:
    """Record every position the views reach (sleeping on the views' own signal)."""
    while not stop.is_set():
        position = views.position
        try:
            reached = views.wait_for(position + 1, timeout=0.5)
        except Exception:  # noqa: S112  (AwaitTimeout: nothing new yet, look again)
            continue
        arrivals.add(reached)


@dataclass
class Recovery:
    """Seconds from the server accepting connections again to each part's first success."""

    backs: list[float] = field(default_factory=list)
    tail: list[float] = field(default_factory=list)
    views: list[float] = field(default_factory=list)
    writers: list[float] = field(default_factory=list)


def wait_written_since(writers: list[FaultWorker], moment: float) -> None:
    for writer in writers:
        while writer.wait_for("written", TIMEOUT)[1] <= moment:
            pass


def restart_while_working(  # noqa: PLR0917
    server: PostgresServer,
    ledger: Ledger,
    writers: list[FaultWorker],
    tail: Arrivals,
    views: Arrivals,
    recovery: Recovery,
) -> None:
    """Restart the server ``RESTARTS`` times, each once every writer wrote since the last."""
    back, head = 0.0, 0
    for restart in range(RESTARTS):
        wait_written_since(writers, back)
        head = log_head(ledger, head)
        server.stop("immediate" if restart % 2 else "fast")
        server.start()
        back = time.time()
        recovery.backs.append(back)
        wait_written_since(writers, back)
        recovery.tail.append(tail.recovered(back, head, TIMEOUT))
        recovery.views.append(views.recovered(back, head, TIMEOUT))


def test_writers_a_tail_and_the_views_recover_from_postgres_restarts_on_their_own(
    private_postgres: PostgresServer, private_postgres_url: str
) -> None:
    url = private_postgres_url
    config = LedgerSettings(store=url, poll_interval=0.2)
    tail_seen: list[StreamEvent] = []
    tail_arrivals, view_arrivals = Arrivals(), Arrivals()
    stop_following = threading.Event()
    recovery = Recovery()

    def on_tail(event: StreamEvent) -> None:
        tail_seen.append(event)
        tail_arrivals.add(event.position)

    with (
        Ledger.open(settings=config) as ledger,
        Ledger.open(settings=config) as tail_ledger,
        Ledger.open(settings=config) as view_ledger,
        Projections(view_ledger) as views,
    ):
        views.start()
        follower = threading.Thread(
            target=follow_views, args=(views, view_arrivals, stop_following), daemon=True
        )
        follower.start()
        subscription = run_stream(tail_ledger, None, batch_size=100).subscribe(on_next=on_tail)
        argvs = [["writer", url, f"writer-{k}", "3", "--until-stop"] for k in range(WRITERS)]
        try:
            with fault_workers(*argvs) as writers:
                for writer in writers:
                    writer.wait_for("ready", TIMEOUT)
                for writer in writers:
                    writer.say("go")
                restart_while_working(
                    private_postgres, ledger, writers, tail_arrivals, view_arrivals, recovery
                )
                for writer in writers:
                    writer.say("stop")
                done = {}
                for k, writer in enumerate(writers):
                    assert writer.finish(TIMEOUT) == 0, writer.stderr
                    done[f"writer-{k}"] = writer.reports[-1]["done"]
                    recovery.writers += stall_recovery(writer.reports, recovery.backs)
            log = check_writers_in_log(ledger, done)
            tail_arrivals.wait_count(len(log), TIMEOUT)
            assert [(e.position, e.event) for e in tail_seen] == log
        finally:
            subscription.dispose()
            stop_following.set()
            follower.join(timeout=10)
        views.sync(timeout=TIMEOUT)
        rows = dump_views(views)
        views.rebuild()
        assert dump_views(views) == rows
    record_figures(
        "postgres_restart",
        restarts=RESTARTS,
        writers=WRITERS,
        events=len(log),
        **spread("tail_recovery", recovery.tail),
        **spread("view_recovery", recovery.views),
        writer_outages=len(recovery.writers),
        **spread("writer_recovery", recovery.writers),
    )


def spread(name: str, values: list[float]) -> dict[str, float | None]:
    """``name_p50`` and ``name_max`` of ``values``, in seconds (None when empty)."""
    if not values:
        return {f"{name}_p50": None, f"{name}_max": None}
    return {f"{name}_p50": round(percentile(values, 0.5), 3), f"{name}_max": round(max(values), 3)}
