"""``rebuild`` beside a follower in another process while a third process appends.

The issue's finding: a follower still at its old position applied its next batch on top of
the rebuild's reset, and the rebuild's catch-up then skipped what the follower had recorded,
leaving the views wrong while reporting success. Here the follower runs ``Projections(...)
.start()`` in a real subprocess on the same store, an appender writes in another, and this
process rebuilds several times meanwhile. Afterwards the follower's views must be exactly what
a rebuild from scratch gives, and the tracked position the log's head.
"""

from __future__ import annotations

import subprocess
import sys
import time
from pathlib import Path

from ledger import Ledger, LedgerSettings
from projections import Projections
from tests.projections.test_views_state_machine import dump

ROOT = Path(__file__).resolve().parents[2]
ENV = {"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}

FOLLOWER = """
import sys
from ledger import Ledger, LedgerSettings
from projections import Projections
settings = LedgerSettings(store=sys.argv[1], poll_interval=0.02)
with Ledger.open(settings=settings) as ledger, Projections(ledger, batch_size=40) as views:
    views.start()
    print("following", flush=True)
    sys.stdin.read()  # until the test closes it
"""

APPENDER = """
import sys
from ledger import Ledger
run, batches, yields = sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
with Ledger.open(sys.argv[1]) as ledger:
    for batch in range(batches):
        token = ledger.create_checkpoint(run, batch, total_batches=batches)
        lease = ledger.claim_checkpoint(token, "appender", 60.0)
        for i in range(yields):
            ledger.checkpoint_yield(token, i, i, lease=lease)
        if batch % 3 == 0:
            ledger.fail_checkpoint(token, "boom", transient=True, lease=lease)
            lease = ledger.claim_checkpoint(token, "appender", 60.0)
        if batch % 4 == 0:
            ledger.cancel_checkpoint(token, "enough")
        else:
            ledger.heartbeat(lease)
            ledger.complete_checkpoint(token, {"n": yields}, lease=lease)
"""


def seed(ledger: Ledger, run_id: str, batches: int, yields: int) -> None:
    for batch in range(batches):
        token = ledger.create_checkpoint(run_id, batch)
        for i in range(yields):
            ledger.checkpoint_yield(token, i, i)


def test_rebuild_while_another_process_follows_and_a_third_appends(store_url: str) -> None:
    with Ledger.open(settings=LedgerSettings(store=store_url, poll_interval=0.02)) as ledger:
        seed(ledger, "before", 4, 60)
        views = Projections(ledger, batch_size=40)
        views.catch_up()
        follower = subprocess.Popen(
            [sys.executable, "-c", FOLLOWER, store_url],
            cwd=ROOT,
            env=ENV,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        try:
            assert follower.stdout is not None
            assert follower.stdout.readline().strip() == "following"
            appender = subprocess.Popen(
                [sys.executable, "-c", APPENDER, store_url, "during", "8", "30"],
                cwd=ROOT,
                env=ENV,
            )
            rebuilds: list[int] = []
            # Rebuilds while the follower is ahead of the reset and the log keeps growing.
            while len(rebuilds) < 2 or (appender.poll() is None and len(rebuilds) < 4):
                rebuilds.append(views.rebuild())
                time.sleep(0.2)
            assert appender.wait(timeout=60) == 0
            head = ledger.recorder.max_notification_id()
            assert head is not None
            # The follower in the other process brings the views to the head by itself.
            deadline = time.monotonic() + 30
            while views.tracked_position() != head and time.monotonic() < deadline:
                time.sleep(0.05)
            assert views.tracked_position() == head
        finally:
            assert follower.stdin is not None
            follower.stdin.close()
            follower.wait(timeout=30)
            assert follower.stdout is not None
            follower.stdout.close()
        assert follower.returncode == 0
        assert len(rebuilds) >= 2
        followed = dump(views)
        assert views.rebuild() == head  # from scratch, with nobody else applying
        assert dump(views) == followed
        assert views.tracked_position() == head
        progress = views.progress("during")
        assert (progress.completed, progress.cancelled) == (6, 2)
        views.close()
