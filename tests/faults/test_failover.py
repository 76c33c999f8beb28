"""Failover with a real primary and a real hot standby: the primary SIGKILLed, the standby promoted.

Writers are subprocesses (``tests/faults/_failover_worker.py``) on a libpq multi-host URL with
``target_session_attrs=read-write`` (half the netloc form, half the query form): when the
primary dies their commands raise ``StoreUnavailable``, they repeat the same command with the
same command id, and once the standby is promoted the same URL reaches it. Each reports every
acknowledged command, so the test knows exactly what was acknowledged.

* Synchronous standby: no acknowledged event is lost. Every acknowledged command id is in the
  new primary exactly once (and nothing else is), the chains verify, every writer exits 0, and
  a tail on the standby delivers the new primary's whole log once, in order.
* Asynchronous standby cut off before the kill: the primary acknowledged commits the standby
  never received. What is lost is exactly those: the last commits acknowledged after the
  standby's last replayed WAL (here, after the cut), nothing acknowledged before it. The
  writers recover (reload, warn "acknowledged and then lost", go on: no "too many writers"),
  no command is stored twice, the chains verify, and a tail that read the old primary through
  the multi-host URL resumes on the new primary from the newest event it handled that the
  new primary still holds, delivering exactly the new primary's log above that point and
  missing none of it (``tail_missed_below_resume`` is 0): the new primary hands the lost
  transactions' ids out again, so new events written before the tail resumes may sit below
  its old position, and positions alone could not tell them from events both servers hold.
* A tail reading on the standby keeps delivering across the standby's own promotion, its
  listener switching from watching WAL replay to ``LISTEN`` (within a poll interval of 5 s
  that it would otherwise wait out), with no gap or duplicate.
* Regression: a tail whose read reconnects, within its retries, to a promoted standby that
  lost the last events it delivered resumes from the last event both hold (its read used to
  go on after the lost position, skipping every new event at the lost transactions' ids).
* A ``read_only`` ledger opens on a ``target_session_attrs=read-write`` multi-host URL (its
  sessions are made read-only after libpq picked the primary), and ``resume_position`` of a
  lost position, once the new primary wrote events at the lost transactions' ids, is the last
  event both servers hold when given the events the reader handled (by position alone it is
  not: the gap above, made deterministic).

Quick mode (CI): 8 writers x 30 yields. Long mode (``CKL_LONG=1`` or ``CKL_FAULTS=long``, by
hand): more writers and yields, several rounds (a fresh pair each); figures are printed
(``FIGURES …``) and appended to ``$CKL_FAULTS_REPORT``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import re
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from typing import TYPE_CHECKING, Any, ClassVar, Literal, TypeVar
from uuid import uuid4

import psycopg
import pytest

from ledger import Ledger, LedgerSettings, StoreUnavailable, verify_chains
from ledger.follow import seen
from streams import StreamEvent, run_stream
from tests.faults._support import LONG as FAULTS_LONG
from tests.faults._support import percentile, record_figures, whole_log
from tests.streams._support import Worker, processes_of

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    from ledger import CheckpointEvent
    from tests.fix_replica import ReplicaPair, ReplicaPairMaker

pytestmark = pytest.mark.postgres

LONG = os.environ.get("CKL_LONG", "").strip() == "1" or FAULTS_LONG
WRITERS = 16 if LONG else 8
YIELDS = 150 if LONG else 30
CHECKPOINTS = 3
ROUNDS = 3 if LONG else 1
MODE = "long" if LONG else "quick"  # for the figures (CKL_LONG=1 is this file's own switch)
PACE = 0.02  # seconds between a writer's yields: the kill lands mid-run, not after it
TIMEOUT = 120.0
SETTLE = 0.2  # seconds after the kill before the promotion: reads in flight are handed out
LOST_WARNING = "acknowledged and then lost"
RESUMED = re.compile(r"no longer in the store .*going on after position (\d+)")
YIELD_ID = re.compile(r"^w\d+-\d+$")
T = TypeVar("T")


class FailoverWorker(Worker):
    """One ``python -m tests.faults._failover_worker`` writer process."""

    module: ClassVar[str] = "tests.faults._failover_worker"

    @property
    def name(self) -> str:
        """The worker's name (its run id and its command ids' prefix)."""
        return self.argv[1]

    def acks(self) -> list[dict[str, Any]]:
        """The acknowledgements it reported so far, in order."""
        return [r["ack"] for r in self.reports if "ack" in r]

    def yields_acked(self) -> int:
        """How many of its yields were acknowledged so far."""
        return sum(1 for a in self.acks() if YIELD_ID.match(a["cid"]))


def pump(workers: list[FailoverWorker], until: Callable[[], bool], what: str) -> None:
    """Collect the workers' reports as they come until ``until()`` holds (or fail)."""
    deadline = time.monotonic() + TIMEOUT
    while not until():
        if time.monotonic() > deadline:
            msg = f"timed out waiting for {what}"
            raise AssertionError(msg)
        idle = True
        for worker in workers:
            try:
                report = worker.lines.get_nowait()
            except queue.Empty:
                continue
            if report is None:  # exited: leave the end marker for finish()
                worker.lines.put(None)
                continue
            idle = False
            worker.reports.append(report)
        if idle:
            time.sleep(0.002)


def start_writers(workers: list[FailoverWorker]) -> None:
    """Wait until every writer has created its checkpoints, then open the start barrier."""
    for worker in workers:
        worker.wait_for("ready", TIMEOUT)


def go(workers: list[FailoverWorker]) -> None:
    """Let every writer start yielding."""
    for worker in workers:
        worker.go()


def finish_writers(workers: list[FailoverWorker]) -> None:
    """Let the writers complete; every one exits 0 (any other outcome it reports as an error).

    Each writer held before its completions (``--hold``): under load a writer may have written
    all its yields before the kill, and its last commands must still come after it.
    """
    for worker in workers:
        worker.go()
    for worker in workers:
        code = worker.finish(TIMEOUT)
        assert code == 0, f"{worker.name} exited {code}:\n{worker.stderr}"
        assert "too many writers" not in worker.stderr, worker.stderr
        assert "done" in worker.reports[-1], worker.reports[-1]


def writer_argvs(pair: ReplicaPair, db: str, yields: int) -> list[list[str]]:
    """One writer per argv; half on the netloc form of the multi-host URL, half on the query one."""
    forms: tuple[Literal["netloc"], Literal["query"]] = ("netloc", "query")
    return [
        [
            pair.multi_host_url(db, form=forms[k % 2]),
            f"w{k}",
            str(CHECKPOINTS),
            str(yields),
            "--pace",
            str(PACE),
            "--hold",
        ]
        for k in range(WRITERS)
    ]


def new_store(pair: ReplicaPair) -> str:
    """A database with the ledger's schema on the primary, replayed on the standby; its name."""
    db = f"ckl_failover_{uuid4().hex[:8]}"
    url = pair.create_database(db)
    with Ledger.open(url):
        pass
    pair.wait_replayed()
    return db


def stored_commands(url: str) -> Counter[str]:
    """How many events of each command id the store holds, read by SQL."""
    with psycopg.connect(url) as conn:
        rows = conn.execute("SELECT command_id FROM ckl_events").fetchall()
    return Counter(str(cid) for (cid,) in rows)


@dataclass
class Tail:
    """What a ``run_stream`` subscriber received, with the wall-clock time of each event."""

    seen: list[tuple[float, StreamEvent]] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def on_next(self, event: StreamEvent) -> None:
        with self.changed:
            self.seen.append((time.time(), event))
            self.changed.notify_all()

    def on_error(self, error: Exception) -> None:
        with self.changed:
            self.errors.append(error)
            self.changed.notify_all()

    def last_position(self) -> int:
        with self.changed:
            return self.seen[-1][1].position if self.seen else 0

    def wait_position(self, position: int) -> None:
        """Wait until the tail delivered an event at ``position`` or later (or fail)."""
        with self.changed:
            reached = self.changed.wait_for(
                lambda: self.errors or (self.seen and self.seen[-1][1].position >= position),
                TIMEOUT,
            )
            assert not self.errors, self.errors
            assert reached, f"the tail reached {self.seen[-1:]} not {position} in {TIMEOUT}s"

    def wait_delivered(self, last: tuple[int, CheckpointEvent]) -> None:
        """Wait until the tail delivered ``last`` (a position and its event), or fail.

        After a failover the tail may have delivered lost events at higher positions than the
        new primary's: waiting for a position alone could return before it resumed.
        """
        with self.changed:
            reached = self.changed.wait_for(
                lambda: self.errors or any((e.position, e.event) == last for _, e in self.seen),
                TIMEOUT,
            )
            assert not self.errors, self.errors
            assert reached, f"the tail never delivered {last} in {TIMEOUT}s: {self.seen[-3:]}"

    def events(self, start: int = 0) -> list[tuple[int, CheckpointEvent]]:
        with self.changed:
            return [(e.position, e.event) for _, e in self.seen[start:]]


@contextlib.contextmanager
def tailing(ledger: Ledger) -> Iterator[Tail]:
    """A ``run_stream`` of every run on ``ledger`` for the ``with`` block."""
    tail = Tail()
    subscription = run_stream(ledger, None, batch_size=100).subscribe(
        on_next=tail.on_next, on_error=tail.on_error
    )
    try:
        yield tail
    finally:
        subscription.dispose()


@dataclass
class Failover:
    """When the primary was killed and died, when its standby's promotion began and ended.

    An acknowledgement a writer timestamps before ``promoting`` came from the old primary (the
    standby takes no write before its promotion); one timestamped between ``dead`` and
    ``promoting`` did too, reported late by a writer the scheduler held up.
    """

    killed: float
    dead: float
    promoting: float
    promoted: float
    promote_seconds: float


def fail_over(pair: ReplicaPair, before_promote: Callable[[], None] | None = None) -> Failover:
    """SIGKILL the primary, wait `SETTLE`, promote the standby."""
    killed = time.time()
    pair.kill_primary()
    dead = time.time()
    time.sleep(SETTLE)
    if before_promote is not None:
        before_promote()
    promoting = time.time()
    seconds = pair.promote()
    return Failover(killed, dead, promoting, time.time(), seconds)


def recovery(workers: list[FailoverWorker], failover: Failover) -> list[float]:
    """Per writer: its first acknowledgement on the new primary minus the kill (seconds)."""
    assert all(a["t"] > failover.promoting for w in workers for a in w.acks()[-1:]), "done"
    return [
        min(a["t"] for a in worker.acks() if a["t"] > failover.promoting) - failover.killed
        for worker in workers
    ]


def spread(name: str, values: list[float]) -> dict[str, float | None]:
    """``name_p50`` and ``name_max`` of ``values``, rounded to the millisecond."""
    if not values:
        return {f"{name}_p50": None, f"{name}_max": None}
    return {f"{name}_p50": round(percentile(values, 0.5), 3), f"{name}_max": round(max(values), 3)}


def yields_acked(workers: list[FailoverWorker]) -> int:
    return sum(worker.yields_acked() for worker in workers)


# ------------------------------------------------------------------------------ the tests


def test_a_synchronous_standby_promoted_mid_run_loses_no_acknowledged_event(
    replica_pairs: ReplicaPairMaker,
) -> None:
    acked_total, recoveries, promotes, tail_events = 0, [], [], 0
    for _ in range(ROUNDS):
        pair = replica_pairs(synchronous=True)
        db = new_store(pair)
        with (
            Ledger.open(pair.standby_url(db), read_only=True) as on_standby,
            tailing(on_standby) as tail,
            processes_of(FailoverWorker, *writer_argvs(pair, db, YIELDS)) as workers,
        ):
            start_writers(workers)
            go(workers)
            pump(
                workers,
                lambda: yields_acked(workers) >= WRITERS * YIELDS // 3,
                "a third of the yields",
            )
            failover = fail_over(pair)
            finish_writers(workers)
            new_url = pair.standby_url(db)
            with Ledger.open(new_url) as new:
                log = whole_log(new)
                chains = verify_chains(new)
            tail.wait_delivered(log[-1])
            delivered = tail.events()
        # The kill landed mid-run: every writer had yields left to write on the new primary.
        for worker in workers:
            acks = worker.acks()
            assert any(a["t"] > failover.promoting and YIELD_ID.match(a["cid"]) for a in acks)
        acked = Counter(a["cid"] for worker in workers for a in worker.acks())
        assert all(n == 1 for n in acked.values())
        # Every acknowledged command is in the new primary once, and nothing else is: each
        # command interrupted by the kill was repeated with its id until acknowledged.
        assert stored_commands(new_url) == acked
        assert chains.ok, chains.problems
        assert chains.events == len(log)
        assert not [w.name for w in workers if LOST_WARNING in w.stderr]  # nothing was lost
        # The tail on the standby: the new primary's whole log, once each, in order.
        assert delivered == log
        assert [p for p, _ in delivered] == sorted({p for p, _ in delivered})
        acked_total += len(acked)
        recoveries += recovery(workers, failover)
        promotes.append(failover.promote_seconds)
        tail_events += len(delivered)
        pair.destroy()
    record_figures(
        "failover_synchronous",
        mode=MODE,
        rounds=ROUNDS,
        writers=WRITERS,
        yields=YIELDS,
        acknowledged=acked_total,
        lost=0,
        tail_events=tail_events,
        **spread("promote_seconds", promotes),
        **spread("writer_recovery", recoveries),
    )


@dataclass
class AsyncRound:
    """What one asynchronous failover round measured."""

    acknowledged: int
    lost: int
    tail_delivered_then_lost: int
    recoveries: list[float]
    promote_seconds: float
    missed: list[tuple[int, str | None]]


def check_lost_commits(
    workers: list[FailoverWorker], stored: Counter[str], synced: float, failover: Failover
) -> set[str]:
    """The acknowledged commands the new primary lacks are the last unreplicated ones; them.

    What an asynchronous standby loses in a failover: the commits the primary acknowledged
    that the standby had not received when the primary died (here: those acknowledged after
    the cut). Per writer they are a suffix of what it had acknowledged before the kill (WAL
    is replayed in order); nothing acknowledged before the standby's last confirmed replay,
    nothing acknowledged by the new primary, no checkpoint's creation. A writer that lost
    acknowledged events says so ("acknowledged and then lost"), and only then.
    """
    acks = {a["cid"]: a for worker in workers for a in worker.acks()}
    assert len(acks) == sum(len(w.acks()) for w in workers)  # each acknowledged once
    assert all(n == 1 for n in stored.values())  # no command applied twice
    assert set(stored) <= set(acks)  # nothing stored that no writer had acknowledged
    lost = {cid for cid in acks if cid not in stored}
    assert lost, "the standby received every acknowledged commit: nothing was tested"
    for worker in workers:
        on_old = [a["cid"] for a in worker.acks() if a["t"] <= failover.promoting]
        gone = [cid in lost for cid in on_old]
        first = gone.index(True) if True in gone else len(gone)
        assert gone == [False] * first + [True] * (len(gone) - first), worker.name
        assert all(acks[cid]["t"] >= synced for cid in on_old[first:])
        assert all(YIELD_ID.match(cid) for cid in on_old[first:])
        assert (LOST_WARNING in worker.stderr) == (first < len(gone)), worker.stderr
    assert not {cid for cid in lost if acks[cid]["t"] > failover.promoting}
    return lost


def async_round(pair: ReplicaPair, caplog: pytest.LogCaptureFixture) -> AsyncRound:
    """Cut the standby off, let the primary acknowledge more, kill it, promote, check."""
    caplog.clear()
    db = new_store(pair)
    with (
        # The tail reads the old primary through the multi-host URL: after the failover the
        # same URL (target_session_attrs=read-write) reaches the new primary. (Not a
        # read_only ledger: its sessions are read-only, which read-write refuses.)
        Ledger.open(pair.multi_host_url(db, form="netloc")) as on_primary,
        tailing(on_primary) as tail,
        processes_of(FailoverWorker, *writer_argvs(pair, db, YIELDS)) as workers,
    ):
        start_writers(workers)
        pair.wait_replayed()  # every checkpoint's creation is on the standby
        go(workers)
        pump(workers, lambda: yields_acked(workers) >= WRITERS * YIELDS // 5, "a fifth")
        # Everything acknowledged before `synced` is on the standby; then it is cut off.
        synced = time.time()
        pair.wait_replayed()
        pair.cut_replication()
        cut = time.time() + 0.2  # the WAL receiver stops within a moment of the reload
        pump(workers, lambda: time.time() > cut, "the cut")
        after_cut = {w.name: w.yields_acked() for w in workers}
        pump(
            workers,
            # A writer the scheduler favoured may have written all its yields already.
            lambda: all(w.yields_acked() >= min(after_cut[w.name] + 3, YIELDS) for w in workers),
            "acknowledgements the standby does not have",
        )
        head = max(a["position"] or 0 for w in workers for a in w.acks())
        tail.wait_position(head)  # the tail has delivered commits the standby never got
        split: list[int] = []
        failover = fail_over(pair, lambda: split.append(len(tail.seen)))
        finish_writers(workers)
        new_url = pair.standby_url(db)
        with Ledger.open(new_url) as new:
            log = whole_log(new)
            chains = verify_chains(new)
        tail.wait_delivered(log[-1])
        before, after = tail.events()[: split[0]], tail.events()[split[0] :]
    lost = check_lost_commits(workers, stored_commands(new_url), synced, failover)
    assert chains.ok, chains.problems
    assert chains.events == len(log)
    # The tail: after the failover it resumed from the newest position the new primary still
    # held at or below its own (the warning says which; no warning: its own), and delivered
    # exactly the new primary's log above it, once each, in order.
    resumed = [
        int(m.group(1))
        for record in caplog.records
        if record.name == "streams" and (m := RESUMED.search(record.getMessage()))
    ]
    resume_at = resumed[-1] if resumed else before[-1][0]
    assert after == [(p, e) for p, e in log if p > resume_at]
    # Nothing twice: a command appears twice only when the tail delivered its event from the
    # old primary, that event was lost, and the writer's repeat (it never got the reply)
    # applied it on the new one: two events, both delivered once.
    stored = {repr(x) for x in log}
    lost_twins = {e.command_id for x in before if repr(x) not in stored for _, e in [x]}
    counts = Counter(e.command_id for _, e in before + after)
    assert all(n == 1 for c, n in counts.items() if c not in lost_twins), counts
    assert all(n <= 2 for n in counts.values()), counts
    # Below the resume point: what it had delivered before the failover that survived, and
    # the above, should make the new primary's whole log. New events at positions below the
    # resume point that it never delivered are counted (`tail_missed_below_resume`).
    delivered = {repr(x) for x in before + after}
    return AsyncRound(
        acknowledged=sum(len(w.acks()) for w in workers),
        lost=len(lost),
        tail_delivered_then_lost=sum(1 for _, e in before if e.command_id in lost),
        recoveries=recovery(workers, failover),
        promote_seconds=failover.promote_seconds,
        missed=[(p, e.command_id) for p, e in log if repr((p, e)) not in delivered],
    )


def test_an_asynchronous_standby_loses_only_the_unreplicated_commits_and_everyone_recovers(
    replica_pairs: ReplicaPairMaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.WARNING, logger="streams")
    rounds = []
    for _ in range(ROUNDS):
        pair = replica_pairs()
        rounds.append(async_round(pair, caplog))
        pair.destroy()
    missed = [m for r in rounds for m in r.missed]
    record_figures(
        "failover_asynchronous",
        mode=MODE,
        rounds=ROUNDS,
        writers=WRITERS,
        yields=YIELDS,
        acknowledged=sum(r.acknowledged for r in rounds),
        lost=sum(r.lost for r in rounds),
        tail_delivered_then_lost=sum(r.tail_delivered_then_lost for r in rounds),
        tail_missed_below_resume=len(missed),
        **spread("promote_seconds", [r.promote_seconds for r in rounds]),
        **spread("writer_recovery", [s for r in rounds for s in r.recoveries]),
    )
    # Resumed from the newest event the tail handled that the new primary still holds as the
    # same event (`LogFollower.remember`): none of the new primary's events is skipped, even
    # those written at the lost transactions' ids before the tail resumed.
    assert not missed, f"the tail missed {len(missed)} events below its resume point: {missed}"


def until_acked(call: Callable[[], T]) -> T:
    """``call()`` (a command with an explicit id) repeated on ``StoreUnavailable``."""
    deadline = time.monotonic() + TIMEOUT
    while True:
        try:
            return call()
        except StoreUnavailable:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.05)


def wait_logged(
    caplog: pytest.LogCaptureFixture, logger: str, text: str, timeout: float = 30.0
) -> str:
    """Wait until ``logger`` logged a message containing ``text``; that message."""
    deadline = time.monotonic() + timeout
    while True:
        for record in caplog.records:
            if record.name == logger and text in record.getMessage():
                return record.getMessage()
        assert time.monotonic() < deadline, f"{logger} never logged {text!r}"
        time.sleep(0.01)


def test_a_tail_on_the_standby_keeps_delivering_across_its_promotion_through_listen(
    replica_pairs: ReplicaPairMaker, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="ledger.postgres")
    pair = replica_pairs(synchronous=True)
    db = new_store(pair)
    count = 20 if not LONG else 200
    acked: dict[str, float] = {}
    # A poll interval far above the lags measured: were the listener not woken by replay
    # (before) and by LISTEN (after the promotion), the tail would lag by seconds.
    standby = LedgerSettings(store=pair.standby_url(db), read_only=True, poll_interval=5.0)
    with (
        Ledger.open(pair.multi_host_url(db, form="query")) as writer,
        Ledger.open(settings=standby) as on_standby,
        tailing(on_standby) as tail,
    ):
        token = writer.create_checkpoint("promoted", 0, command_id="promoted-create")
        acked["promoted-create"] = time.time()

        def write(n: int) -> None:
            cid = f"promoted-{n}"
            until_acked(lambda: writer.checkpoint_yield(token, n, n, command_id=cid))
            acked[cid] = time.time()
            time.sleep(PACE)

        for n in range(1, count + 1):
            write(n)
        failover = fail_over(pair)
        wait_logged(caplog, "ledger.postgres", "the standby was promoted: listening")
        for n in range(count + 1, 2 * count + 1):
            write(n)
        with Ledger.open(pair.standby_url(db)) as new:
            log = whole_log(new)
        tail.wait_delivered(log[-1])
        seen = list(tail.seen)
    assert [(e.position, e.event) for _, e in seen] == log  # no gap, no duplicate, in order
    assert [e.event.command_id for _, e in seen] == list(acked)
    lags = {e.event.command_id: t - acked[str(e.event.command_id)] for t, e in seen}
    before = [lags[f"promoted-{n}"] for n in range(1, count + 1)]
    after = [lags[f"promoted-{n}"] for n in range(count + 1, 2 * count + 1)]
    assert max(after) < 1.0, after  # woken by LISTEN, not by the 5 s poll
    assert max(before) < 1.0, before  # woken by WAL replay
    record_figures(
        "failover_standby_tail",
        mode=MODE,
        events=len(log),
        promote_seconds=round(failover.promote_seconds, 3),
        **spread("lag_before_promotion", before),
        **spread("lag_after_promotion", after),
    )


def test_a_tail_that_reconnects_to_a_promoted_standby_that_lost_its_last_events_resumes(
    replica_pairs: ReplicaPairMaker, caplog: pytest.LogCaptureFixture
) -> None:
    """Regression: a read that reconnected within its retries read on after a lost position.

    The tail's connection dies with the primary; its next read fails once and is retried,
    through the multi-host URL, on the promoted standby, which lost the last events the tail
    delivered. Reading on after the tail's position would skip every event the new primary
    writes at the lost transactions' ids (below that position): the read says the position is
    gone instead, and the stream resumes from the newest one the store still holds.
    """
    caplog.set_level(logging.WARNING, logger="streams")
    pair = replica_pairs()
    db = new_store(pair)
    with (
        Ledger.open(pair.multi_host_url(db, form="netloc")) as writer,
        Ledger.open(pair.multi_host_url(db, form="query")) as reader,
        tailing(reader) as tail,
    ):
        token = writer.create_checkpoint("resumed", 0, command_id="resumed-create")
        writer.checkpoint_yield(token, 1, 1, command_id="resumed-1")
        pair.wait_replayed()
        pair.cut_replication()
        time.sleep(0.2)  # the WAL receiver has stopped
        for n in range(2, 12):  # acknowledged by the primary, never received by the standby
            writer.checkpoint_yield(token, n, n, command_id=f"resumed-{n}")
        with Ledger.open(pair.primary_url(db)) as old:
            old_head = whole_log(old)[-1][0]
        tail.wait_position(old_head)
        fail_over(pair)
        message = wait_logged(caplog, "streams", "going on after position")
        resumed_at = int(RESUMED.search(message).group(1))  # type: ignore[union-attr]
        # Only now the new primary gets new events: at the lost transactions' ids.
        for n in range(2, 6):
            until_acked(partial(writer.checkpoint_yield, token, n, n, command_id=f"new-{n}"))
        with Ledger.open(pair.standby_url(db)) as new:
            log = whole_log(new)
        tail.wait_delivered(log[-1])
        delivered = tail.events()
    assert [e.command_id for _, e in log] == ["resumed-create", "resumed-1"] + [
        f"new-{n}" for n in range(2, 6)
    ]
    assert resumed_at == log[1][0]  # the last event both servers hold
    assert min(p for p, _ in log[2:]) < old_head  # the new events took lost positions
    assert delivered[:2] == log[:2]
    assert delivered[-4:] == log[2:]  # every new event, once, after the lost ones
    assert all(str(e.command_id).startswith("resumed-") for _, e in delivered[2:-4])


def test_a_read_only_ledger_opens_on_a_read_write_multi_host_url(
    replica_pairs: ReplicaPairMaker,
) -> None:
    pair = replica_pairs()
    db = new_store(pair)
    with Ledger.open(pair.multi_host_url(db), read_only=True) as reader:
        assert reader.read_log() == []


def test_resume_position_after_new_events_at_lost_ids_is_the_last_event_both_servers_hold(
    replica_pairs: ReplicaPairMaker,
) -> None:
    """A reader that handled up to a lost position resumes after new events were written.

    E.g. a run_stream(after=P) or an SSE client's Last-Event-ID, or a follower whose outage
    outlasted the writers' (the asynchronous test above meets it mid-run): reading on after
    `resume_position(P)` must not skip the new primary's events below P.
    """
    pair = replica_pairs()
    db = new_store(pair)
    with Ledger.open(pair.multi_host_url(db)) as writer:
        token = writer.create_checkpoint("reused", 0, command_id="reused-create")
        writer.checkpoint_yield(token, 1, 1, command_id="reused-1")
        pair.wait_replayed()
        pair.cut_replication()
        time.sleep(0.2)  # the WAL receiver has stopped
        for n in range(2, 12):  # acknowledged by the primary, never received by the standby
            writer.checkpoint_yield(token, n, n, command_id=f"reused-{n}")
        with Ledger.open(pair.primary_url(db)) as old:
            read = whole_log(old)  # what a reader had handled on the old primary
        handled = read[-1][0]
        handled_events = [seen(p, e) for p, e in read]
        fail_over(pair)
        for n in range(2, 6):
            until_acked(partial(writer.checkpoint_yield, token, n, n, command_id=f"new-{n}"))
    with Ledger.open(pair.standby_url(db)) as new:
        log = whole_log(new)
        resume_at = new.resume_position(handled, handled_events)
        by_position = new.resume_position(handled)
    assert [e.command_id for _, e in log[:2]] == ["reused-create", "reused-1"]
    assert all(p < handled for p, _ in log)  # the new events sit at the lost ids, below it
    assert resume_at == log[1][0], [(p, e.command_id) for p, e in log]
    # By position alone a new event is taken for one both servers hold: what `seen` is for.
    assert by_position == log[-1][0]
