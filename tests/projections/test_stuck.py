"""The stuck view and the audit's new rows, on a clock the test moves."""

from __future__ import annotations

import math
import os
import socket
from datetime import UTC, datetime, timedelta

import pytest

from ledger import InvalidInput, Ledger
from projections import STUCK_IDLE_SECONDS, Projections

START = datetime(2031, 5, 1, tzinfo=UTC)


def test_expired_leases_and_idle_batches_are_stuck_longest_idle_first(store_url: str) -> None:
    now = [START]
    with Ledger.open(store_url, clock=lambda: now[0]) as ledger, Projections(ledger) as views:
        dead = ledger.create_checkpoint("s", 0)
        ledger.create_checkpoint("s", 1)  # never claimed: idle
        busy = ledger.create_checkpoint("s", 2)
        done = ledger.create_checkpoint("s", 3)
        ledger.complete_checkpoint(done, 1)
        now[0] += timedelta(seconds=1)
        lease = ledger.claim_checkpoint(dead, "w-dead", 10.0)
        now[0] += timedelta(seconds=1)
        live = ledger.claim_checkpoint(busy, "w-live", 1000.0)
        views.sync()
        assert views.stuck("s") == []
        now[0] += timedelta(seconds=60)
        views.sync()
        found = views.stuck("s", idle=30)
        assert [(s.batch_index, s.reason, s.owner, s.idle_seconds) for s in found] == [
            (1, "idle", None, 62.0),
            (0, "lease expired", "w-dead", 61.0),
            (2, "idle", "w-live", 60.0),
        ]
        assert found[1].lease_expires_at == lease.expires_at
        assert found[1].last_activity == START + timedelta(seconds=1)
        # The default threshold: only the expired lease is stuck after a minute.
        assert [s.batch_index for s in views.stuck("s")] == [0]
        assert [s.batch_index for s in views.stuck()] == [0]
        now[0] += timedelta(seconds=STUCK_IDLE_SECONDS)
        ledger.heartbeat(live)
        views.sync()
        assert [s.batch_index for s in views.stuck("s")] == [1, 0]
        # Judged at another moment: before the lease ran out nothing is stuck.
        assert views.stuck("s", idle=1000, now=START + timedelta(seconds=5)) == []
        # A takeover ends it, and shows in the audit.
        ledger.claim_checkpoint(dead, "w-new", 10.0)
        views.sync()
        assert [s.batch_index for s in views.stuck("s")] == [1]
        (takeover,) = views.failures(run_id="s", kind="takeover")
        assert (takeover.error_type, takeover.attempt, takeover.transient) == (
            "LeaseExpired",
            1,
            True,
        )
        assert takeover.message == "lease of 'w-dead' expired; taken over by 'w-new'"
        assert views.checkpoint_counts() == {"open": 3, "completed": 1, "failed": 0, "cancelled": 0}


def test_failures_carry_traceback_host_and_pid_and_claims_retry_them(store_url: str) -> None:
    with Ledger.open(store_url) as ledger, Projections(ledger) as views:
        token = ledger.create_checkpoint("f", 0)
        try:
            raise ValueError("bad row")  # noqa: TRY301  (a real traceback to record)
        except ValueError as exc:
            ledger.fail_checkpoint(token, exc, transient=True)
        ledger.claim_checkpoint(token, "w", 10.0)  # retries it
        ledger.cancel_checkpoint(token, "no longer needed")
        views.sync()
        failure, cancel = views.failures(run_id="f")
        assert (failure.kind, failure.error_type, failure.resolution) == (
            "failure",
            "ValueError",
            "retried",
        )
        assert failure.traceback is not None
        assert "bad row" in failure.traceback
        assert (failure.host, failure.pid) == (socket.gethostname(), os.getpid())
        assert (cancel.kind, cancel.error_type, cancel.message, cancel.transient) == (
            "cancel",
            "Cancelled",
            "no longer needed",
            False,
        )
        assert (cancel.attempt, cancel.resolution, cancel.traceback) == (2, None, None)
        assert views.progress("f").cancelled == 1
        assert views.pending_checkpoints("f") == []


@pytest.mark.parametrize(
    ("call", "field"),
    [
        (lambda v: v.stuck(idle=-1), "idle"),
        (lambda v: v.stuck(idle=math.nan), "idle"),
        (lambda v: v.stuck(idle=math.inf), "idle"),
        (lambda v: v.stuck(idle="5"), "idle"),
        (lambda v: v.stuck(now=datetime(2030, 1, 1)), "now"),  # noqa: DTZ001  (naive on purpose)
        (lambda v: v.stuck(""), "run_id"),
        (lambda v: v.stuck(7), "run_id"),
        (lambda v: v.failures(kind="crash"), "kind"),
        (lambda v: v.failures(kind=1), "kind"),
    ],
)
def test_bad_input_is_refused_and_writes_nothing(call: object, field: str) -> None:
    with Ledger.open("memory://") as ledger, Projections(ledger) as views:
        ledger.create_checkpoint("b", 0)
        views.sync()
        before = (ledger.recorder.max_notification_id(), views.tracked_position())
        with pytest.raises(InvalidInput) as raised:
            call(views)  # type: ignore[operator]
        assert raised.value.field == field
        assert (ledger.recorder.max_notification_id(), views.tracked_position()) == before
