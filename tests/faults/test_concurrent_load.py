"""Concurrent load: 8 writer processes, a tail and the projection runner on one store.

Each writer (``_fault_worker writer --events N``) creates 5 checkpoints of its own run, yields
to them in turn and completes them: ``N`` events per writer, all released together by a start
barrier. Meanwhile a ``run_stream`` tail over all runs and a running ``Projections`` follower
work in the test's process. Afterwards: every event was seen by the tail exactly once, in the
log's order; the log is prefix-consistent and holds each writer's events exactly once; the
views equal a rebuild from the log.

Quick mode: 8 x 500 events per backend; long mode (``CKL_FAULTS=long``): 8 x 10,000.
"""

from __future__ import annotations

import threading
import time

from ledger import Ledger, LedgerSettings
from projections import Projections
from streams import StreamEvent, run_stream
from tests.faults._support import (
    check_writers_in_log,
    dump_views,
    fault_workers,
    pick,
    record_figures,
)

WRITERS, BATCHES = 8, 5
EVENTS = pick(500, 10_000)  # per writer
TIMEOUT = pick(300.0, 3600.0)


def test_eight_writers_a_tail_and_the_views_see_every_event_once_in_order(store_url: str) -> None:
    config = LedgerSettings(store=store_url, poll_interval=0.1)
    seen: list[StreamEvent] = []
    total = WRITERS * EVENTS
    all_seen = threading.Event()

    def on_tail(event: StreamEvent) -> None:
        seen.append(event)
        if len(seen) >= total:
            all_seen.set()

    argvs = [
        ["writer", store_url, f"load-{k}", str(BATCHES), "--events", str(EVENTS)]
        for k in range(WRITERS)
    ]
    with (
        Ledger.open(settings=config) as ledger,
        Ledger.open(settings=config) as view_ledger,
        Projections(view_ledger) as views,
    ):
        views.start()
        subscription = run_stream(ledger, None, batch_size=200).subscribe(on_next=on_tail)
        try:
            with fault_workers(*argvs) as writers:
                for writer in writers:
                    writer.wait_for("ready", TIMEOUT)
                started = time.monotonic()
                for writer in writers:
                    writer.say("go")
                done = {}
                for k, writer in enumerate(writers):
                    assert writer.finish(TIMEOUT) == 0, writer.stderr
                    done[f"load-{k}"] = writer.reports[-1]["done"]
                written = time.monotonic() - started
            assert all_seen.wait(TIMEOUT), f"the tail saw {len(seen)} of {total}"
            log = check_writers_in_log(ledger, done)
            assert len(log) == total
            assert [(e.position, e.event) for e in seen] == log
        finally:
            subscription.dispose()
        views.sync(timeout=TIMEOUT)
        rows = dump_views(views)
        assert len(rows["ckl_view_timeline"]) == total
        views.rebuild()
        assert dump_views(views) == rows
    record_figures(
        f"concurrent_load[{store_url.split(':', 1)[0]}]",
        writers=WRITERS,
        events=total,
        write_seconds=round(written, 1),
    )
