"""Four worker processes share one run; one is SIGKILLed mid-batch, one is frozen past its lease.

The run has 20 batches of 50 items, yielding every 5 items the running sum and the ids counted
so far (:class:`tests.faults._shared_worker.CountItems`). Workers ``w0`` and ``w1`` pause right
after their first batch's yield at cursor 20 and are left paused for two lease lifetimes (their
heartbeats keep the leases: nobody takes them over). Then ``w0`` is SIGKILLed and ``w1`` is
SIGSTOPped (a frozen process: a long GC pause, a suspended VM) until its batch has been taken
over, then let go on: its next write is refused (``LeaseLost``), it abandons the batch and goes on
with the run. ``w2`` and ``w3`` do the rest and take the two batches over from their cursors.

At the end, on both backends: every batch completed exactly once, each item counted exactly once
in every surviving worker's report, the takeovers are in the log and the timeline naming the
previous owner, no write of a fenced attempt landed after its takeover, and every yield in the
store belongs to the attempt of the claim it follows, by the worker that made the claim.
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from collections import Counter, defaultdict
from typing import TYPE_CHECKING, Any, ClassVar
from uuid import uuid4

import pytest

from ledger import (
    CheckpointToken,
    Claimed,
    Completed,
    Failed,
    LeaseRenewed,
    Ledger,
    Yielded,
)
from projections import Projections
from tests.faults._support import record_figures, whole_log
from tests.streams._support import Worker, processes_of

if TYPE_CHECKING:
    from collections.abc import Iterator
    from datetime import datetime

    from ledger import CheckpointEvent

BATCHES, ITEMS, EVERY = 20, 50, 5
TTL = 1.5
ITEM_DELAY = 0.004  # about 0.2 s of work per batch, so that the four workers overlap
PAUSE_AT = 20
TIMEOUT = 60.0
OWNERS = ("w0", "w1", "w2", "w3")


class SharedWorker(Worker):
    """One ``python -m tests.faults._shared_worker`` process."""

    module: ClassVar[str] = "tests.faults._shared_worker"


@contextlib.contextmanager
def shared_workers(store_url: str, run_id: str) -> Iterator[list[SharedWorker]]:
    """``w0`` … ``w3`` on the run (``w0`` and ``w1`` pause in their first batch)."""
    argvs = []
    for owner in OWNERS:
        argv = [store_url, run_id, owner, str(BATCHES), str(ITEMS), str(EVERY), str(TTL)]
        argv += ["--item-delay", str(ITEM_DELAY)]
        if owner in {"w0", "w1"}:
            argv += ["--pause-at", str(PAUSE_AT)]
        argvs.append(argv)
    with processes_of(SharedWorker, *argvs) as started:
        yield started


def expected_result(batch: int) -> dict[str, Any]:
    ids = list(range(batch * ITEMS, (batch + 1) * ITEMS))
    return {"batch": batch, "sum": sum(ids), "ids": ids}


def takeover_of(events: list[CheckpointEvent], previous: str) -> Claimed:
    found = [e for e in events if isinstance(e, Claimed) and e.taken_over]
    assert [e.previous_owner for e in found] == [previous], found
    return found[0]


def wait_for_takeover(ledger: Ledger, token: CheckpointToken, previous: str) -> float:
    """Seconds until the store shows ``token`` taken over from ``previous``."""
    started = time.monotonic()
    while time.monotonic() - started < TIMEOUT:
        state = ledger.get_checkpoint(token)
        if state.taken_over_from == previous or state.status == "completed":
            return time.monotonic() - started
        time.sleep(0.05)
    msg = f"{token} was not taken over from {previous} within {TIMEOUT}s"
    raise AssertionError(msg)


def check_claims_fence_every_write(
    ledger: Ledger, log: list[tuple[int, CheckpointEvent]], reported: dict[str, list[Any]]
) -> dict[tuple[int, int], str]:
    """Each write follows a claim of its attempt, and the claim's owner reported it.

    Returns each (batch, attempt)'s owner. Fails if a Yielded or Completed carries another
    attempt than the latest Claimed of its checkpoint, if an attempt was claimed twice, or if a
    worker reported a yield under an attempt another worker claimed.
    """
    claim: dict[object, Claimed] = {}
    owner_of: dict[tuple[int, int], str] = {}
    stored: set[tuple[int, int, int]] = set()
    for _, event in log:
        token = ledger.token_for(event.originator_id)
        assert token is not None
        batch = token.batch_index
        if isinstance(event, Claimed):
            key = (batch, event.attempt)
            assert key not in owner_of, f"attempt {key} claimed twice: {owner_of[key]}, {event}"
            owner_of[key] = event.owner
            claim[event.originator_id] = event
        elif isinstance(event, Yielded | Completed | Failed):
            current = claim.get(event.originator_id)
            assert current is not None, f"{token}: {event.topic} before any claim"
            assert event.attempt == current.attempt, f"{token}: {event} under {current}"
            if isinstance(event, Yielded):
                assert isinstance(event.cursor, int)
                stored.add((batch, event.attempt, event.cursor))
    for owner, yields in reported.items():
        for where in yields:
            key = (where["batch"], where["attempt"])
            assert owner_of[key] == owner, f"{owner} yielded {where}, claimed by {owner_of[key]}"
            assert (*key, where["cursor"]) in stored, f"{owner}'s yield {where} is not stored"
    return owner_of


def check_takeovers(
    ledger: Ledger,
    log: list[tuple[int, CheckpointEvent]],
    paused: dict[str, dict[str, Any]],
    stopped_at: datetime,
) -> Counter[int]:
    """Each batch completed once; each paused batch taken over once, fencing its old attempt.

    Returns the completions by batch.
    """
    events: dict[int, list[CheckpointEvent]] = defaultdict(list)
    for _, event in log:
        token = ledger.token_for(event.originator_id)
        assert token is not None
        events[token.batch_index].append(event)
    completions = Counter(
        batch for batch, evs in events.items() for e in evs if isinstance(e, Completed)
    )
    assert completions == dict.fromkeys(range(BATCHES), 1)
    for owner, where in paused.items():
        batch_events = events[where["batch"]]
        takeover = takeover_of(batch_events, owner)
        # Another worker took it (the frozen w1 may take w0's batch over once it goes on).
        assert takeover.owner != owner
        assert takeover.attempt == where["attempt"] + 1
        assert takeover.timestamp >= stopped_at  # not before: the heartbeat kept the lease
        # Nothing of the fenced attempt landed after the takeover.
        later = [e for e in batch_events if e.originator_version > takeover.originator_version]
        assert all(getattr(e, "attempt", takeover.attempt) == takeover.attempt for e in later)
        renewed = {e.lease_id for e in later if isinstance(e, LeaseRenewed)}
        assert renewed <= {takeover.lease_id}
        # The taker resumed from the fenced attempt's last cursor: no item redone.
        cursors = [e.cursor for e in batch_events if isinstance(e, Yielded)]
        assert cursors == list(range(EVERY, ITEMS + 1, EVERY)), cursors
    # Only the paused batches were taken over.
    assert sum(1 for _, e in log if isinstance(e, Claimed) and e.taken_over) == len(paused)
    return completions


@pytest.mark.slow
def test_four_workers_share_a_run_through_a_kill_and_a_freeze(store_url: str) -> None:
    run_id = f"shared-{uuid4().hex[:8]}"
    started_at = time.monotonic()
    with Ledger.open(store_url) as ledger, shared_workers(store_url, run_id) as workers:
        w0, w1, w2, w3 = workers
        for worker in workers:
            worker.wait_for("opened", TIMEOUT)
        for worker in workers:
            worker.go()
        killed, frozen = w0.wait_for("paused", TIMEOUT), w1.wait_for("paused", TIMEOUT)
        assert killed["cursor"] == frozen["cursor"] == PAUSE_AT
        # Two lease lifetimes paused: the heartbeats keep both leases, nobody takes them over.
        time.sleep(2 * TTL)
        victims = {}
        for owner, paused in (("w0", killed), ("w1", frozen)):
            token = CheckpointToken.for_batch(run_id, paused["batch"])
            state = ledger.get_checkpoint(token)
            assert (state.status, state.owner, state.cursor) == ("open", owner, PAUSE_AT)
            assert state.attempt == paused["attempt"]
            assert state.lease_is_live(ledger.now()), state
            assert state.taken_over_from is None
            victims[owner] = token

        os.kill(w0.proc.pid, signal.SIGKILL)
        os.kill(w1.proc.pid, signal.SIGSTOP)
        stopped_at = ledger.now()
        assert w0.proc.wait(timeout=TIMEOUT) == -signal.SIGKILL
        takeover_seconds = wait_for_takeover(ledger, victims["w1"], "w1")
        os.kill(w1.proc.pid, signal.SIGCONT)
        w1.go()  # its next write is under the lost lease
        codes = [worker.finish(TIMEOUT) for worker in (w1, w2, w3)]
        assert codes == [0, 0, 0], [w.stderr for w in (w1, w2, w3)]
        seconds = time.monotonic() - started_at

        expected = [expected_result(b) for b in range(BATCHES)]
        for worker in (w1, w2, w3):
            final = worker.reports[-1]["report"]
            # Each item counted exactly once, whoever did which part of which batch.
            assert final["results"] == expected
            assert final["cancelled"] == []
            progress = [r["progress"]["batch"] for r in worker.reports if "progress" in r]
            assert sorted(progress) == list(range(BATCHES)), progress  # each batch, once
        assert "abandoned" in w1.stderr, w1.stderr

        log = [
            (pos, event)
            for pos, event in whole_log(ledger)
            if (found := ledger.token_for(event.originator_id)) and found.run_id == run_id
        ]
        completions = check_takeovers(ledger, log, {"w0": killed, "w1": frozen}, stopped_at)
        reported = {
            owner: [r["yielded"] for r in worker.reports if "yielded" in r]
            for owner, worker in zip(OWNERS, workers, strict=True)
        }
        owner_of = check_claims_fence_every_write(ledger, log, reported)
        # Two processes never held one batch: each batch started once, the two taken over twice.
        starts = Counter(
            r["started"]["batch"] for worker in workers for r in worker.reports if "started" in r
        )
        assert starts == {
            b: 2 if b in {killed["batch"], frozen["batch"]} else 1 for b in range(BATCHES)
        }

        with Projections(ledger) as views:
            views.sync()
            timeline = views.timeline(run_id)
        shown = [
            str(entry.event.previous_owner)
            for entry in timeline
            if isinstance(entry.event, Claimed) and entry.event.taken_over
        ]
        assert sorted(shown) == ["w0", "w1"]

    shares = Counter(owner_of[b, a] for b, a in owner_of if completions[b])
    record_figures(
        f"shared_run[{store_url.split(':', 1)[0]}]",
        batches=BATCHES,
        workers=len(OWNERS),
        seconds=round(seconds, 1),
        takeover_seconds=round(takeover_seconds, 2),
        claims=dict(sorted(shares.items())),
        events=len(log),
    )
