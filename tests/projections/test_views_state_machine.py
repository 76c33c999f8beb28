"""The views equal a model of the commands, equal a rebuild, and survive crashes mid-batch.

A hypothesis state machine writes random histories (failures, retries, resets, cancels,
claims by several owners, heartbeats, releases, lease expiries and takeovers on a clock it
moves itself, repeats and rejected commands included) through a real ledger, and at random
points catches the views up, crashes a follower in the middle of a batch, or restarts it.
After every step the views must equal a model kept here, written from the commands' documented
effects and not from ``ledger.checkpoint`` (the ledger only says whether a command wrote an
event), and a rebuild from the log must give exactly the same rows.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ledger import CheckpointToken, Lease, Ledger, LedgerError
from projections import Projections
from projections.runner import TRACKING
from tests._hypothesis import machine_settings

if TYPE_CHECKING:
    from collections.abc import Callable

HISTORY = 3
TTL = 10.0
IDLE = 5.0
OWNERS = ("w1", "w2", "w3")
VIEW_TABLES = {
    "ckl_view_cursor": "checkpoint_id",
    "ckl_view_history": "checkpoint_id, seq",
    "ckl_view_failures": "position",
    "ckl_view_timeline": "position",
}


class Crash(Exception):
    """Raised inside a view's apply: the follower dies mid-transaction."""


def dump(projections: Projections) -> dict[str, list[tuple[Any, ...]]]:
    """Every row of every view, in key order."""
    return {
        table: projections._query(f"SELECT * FROM {table} ORDER BY {key}")
        for table, key in VIEW_TABLES.items()
    }


@dataclass
class Batch:
    """What the views should say of one checkpoint."""

    last: datetime
    status: str = "open"
    attempt: int = 1
    owner: str | None = None
    expires: datetime | None = None
    cursor: Any = None
    items: int = 0
    cursors: list[Any] = field(default_factory=list)
    events: int = 1


@dataclass
class AuditRow:
    """One row the failure audit should have."""

    batch: int
    kind: str
    attempt: int
    error_type: str
    message: str
    transient: bool
    resolution: str | None = None


class ViewsMachine(RuleBasedStateMachine):
    """Random commands, clock moves, catch-ups, crashes and restarts; views against a model."""

    # An empty store for each example: in a shared one, the rebuild after every step would
    # replay the events of every earlier example too.
    new_store: Callable[[], str] = staticmethod(lambda: "memory://")
    # Whether the machine first writes another run (`neighbour`), which costs every rebuild its
    # events: worth it on the real stores, whose reads filter by run in SQL.
    with_neighbour = False

    def __init__(self) -> None:
        super().__init__()
        self.now = datetime(2030, 1, 1, tzinfo=UTC)
        self.ledger = Ledger.open(self.new_store(), clock=lambda: self.now)
        self.neighbour_run = f"neighbour-{uuid4().hex}"
        if self.with_neighbour:
            self.neighbour()
        self.views = Projections(self.ledger, history_size=HISTORY, batch_size=4)
        self.run_id = f"run-{uuid4().hex}"
        self.batches: dict[int, Batch] = {}
        self.audit: list[AuditRow] = []
        self.timeline: list[tuple[int, str]] = []
        self.leases: dict[tuple[int, str], Lease] = {}

    def neighbour(self) -> None:
        """Another run in the same store, in every view, which no view of this run may show.

        One batch yields and stays open (it goes idle, then stuck, as the clock moves), one
        fails, one completes.
        """
        run = self.neighbour_run
        for batch in range(3):
            self.ledger.create_checkpoint(run, batch, total_batches=3)
        self.ledger.checkpoint_yield(CheckpointToken.for_batch(run, 0), "n", 1)
        self.ledger.fail_checkpoint(CheckpointToken.for_batch(run, 1), "x", error_type="A")
        self.ledger.complete_checkpoint(CheckpointToken.for_batch(run, 2), 1)

    def token(self, batch: int) -> CheckpointToken:
        return CheckpointToken.for_batch(self.run_id, batch)

    def wrote(self, call: Any, batch: int | None = None) -> Batch | None:
        """Run a command; the model of the batch it wrote an event to (None: nothing written).

        Rejected commands and no-ops write nothing; the views must not notice them either.
        """
        before = {b: self.ledger.count_events(self.token(b)) for b in self.batches}
        with contextlib.suppress(LedgerError):
            call()
        for b, model in self.batches.items():
            after = self.ledger.count_events(self.token(b))
            assert after - before[b] in {0, 1}, "one command, at most one event"
            if after > before[b] and (batch is None or b == batch):
                model.events = after
                model.last = self.now
                return model
        return None

    def written(self, batch: int, topic: str) -> None:
        self.timeline.append((batch, f"checkpoint.{topic}"))

    def lease(self, batch: int, owner: str | None) -> Lease | None:
        return None if owner is None else self.leases.get((batch, owner))

    def resolve(self, batch: int, resolution: str) -> None:
        for row in self.audit:
            if row.batch == batch and row.kind == "failure" and row.resolution is None:
                row.resolution = resolution

    @staticmethod
    def end_lease(model: Batch) -> None:
        model.owner = model.expires = None

    # ------------------------------------------------------------ commands

    @rule(batch=st.integers(0, 2))
    def create(self, batch: int) -> None:
        if batch in self.batches:
            return
        self.ledger.create_checkpoint(self.run_id, batch, total_batches=3)
        self.batches[batch] = Batch(last=self.now)
        self.written(batch, "Created")

    @rule(
        batch=st.integers(0, 2),
        step=st.integers(0, 3),
        cursor=st.sampled_from([1, "k", {"p": 1}]),
        owner=st.sampled_from([None, *OWNERS]),
    )
    def checkpoint_yield(self, batch: int, step: int, cursor: Any, owner: str | None) -> None:
        lease = self.lease(batch, owner)
        model = self.wrote(
            lambda: self.ledger.checkpoint_yield(self.token(batch), cursor, step, lease=lease),
            batch,
        )
        if model is not None:
            model.cursor, model.items = cursor, step
            model.cursors.append(cursor)
            if lease is not None:  # a yield under a lease renews it
                model.expires = self.now + timedelta(seconds=TTL)
            self.written(batch, "Yielded")

    @rule(
        batch=st.integers(0, 2), result=st.sampled_from([1, 2]), owner=st.sampled_from([None, "w1"])
    )
    def complete(self, batch: int, result: int, owner: str | None) -> None:
        lease = self.lease(batch, owner)
        model = self.wrote(
            lambda: self.ledger.complete_checkpoint(self.token(batch), result, lease=lease),
            batch,
        )
        if model is not None:
            model.status = "completed"
            self.end_lease(model)
            self.written(batch, "Completed")

    @rule(
        batch=st.integers(0, 2),
        transient=st.booleans(),
        kind=st.sampled_from(["A", "B"]),
        owner=st.sampled_from([None, "w2"]),
    )
    def fail(self, batch: int, transient: bool, kind: str, owner: str | None) -> None:
        lease = self.lease(batch, owner)
        model = self.wrote(
            lambda: self.ledger.fail_checkpoint(
                self.token(batch), "boom", transient=transient, error_type=kind, lease=lease
            ),
            batch,
        )
        if model is not None:
            self.audit.append(AuditRow(batch, "failure", model.attempt, kind, "boom", transient))
            model.status = "failed"
            self.end_lease(model)
            self.written(batch, "Failed")

    @rule(batch=st.integers(0, 2))
    def retry(self, batch: int) -> None:
        model = self.wrote(lambda: self.ledger.retry_checkpoint(self.token(batch)), batch)
        if model is not None:
            model.status, model.attempt = "open", model.attempt + 1
            self.end_lease(model)
            self.resolve(batch, "retried")
            self.written(batch, "Retried")

    @rule(batch=st.integers(0, 2))
    def reset(self, batch: int) -> None:
        model = self.wrote(
            lambda: self.ledger.reset_checkpoint(self.token(batch), "operator"), batch
        )
        if model is not None:
            model.status, model.attempt = "open", model.attempt + 1
            model.cursor, model.items = None, 0
            self.end_lease(model)
            self.resolve(batch, "reset")
            self.written(batch, "Reset")

    @rule(batch=st.integers(0, 2), reason=st.sampled_from(["stop", "enough"]))
    def cancel(self, batch: int, reason: str) -> None:
        model = self.wrote(lambda: self.ledger.cancel_checkpoint(self.token(batch), reason), batch)
        if model is not None:
            self.audit.append(
                AuditRow(batch, "cancel", model.attempt, "Cancelled", reason, transient=False)
            )
            model.status = "cancelled"
            self.end_lease(model)
            self.written(batch, "Cancelled")

    def claimed(self, model: Batch, batch: int, owner: str) -> None:
        """The model of a claim by ``owner`` that wrote an event."""
        if model.status == "failed":  # a claim of a transiently failed batch retries it
            model.status, model.attempt = "open", model.attempt + 1
            self.resolve(batch, "retried")
            self.written(batch, "Claimed")
        elif model.owner == owner:  # its own lease again: renewed
            self.written(batch, "LeaseRenewed")
        elif model.owner is not None:  # an expired lease: taken over
            message = f"lease of {model.owner!r} expired; taken over by {owner!r}"
            self.audit.append(
                AuditRow(batch, "takeover", model.attempt, "LeaseExpired", message, transient=True)
            )
            model.attempt += 1
            self.written(batch, "Claimed")
        else:
            self.written(batch, "Claimed")
        model.owner, model.expires = owner, self.now + timedelta(seconds=TTL)

    @rule(batch=st.integers(0, 2), owner=st.sampled_from(OWNERS))
    def claim(self, batch: int, owner: str) -> None:
        got: list[Lease] = []
        model = self.wrote(
            lambda: got.append(self.ledger.claim_checkpoint(self.token(batch), owner, TTL)),
            batch,
        )
        if got:
            self.leases[batch, owner] = got[0]
        if model is not None:
            self.claimed(model, batch, owner)

    @rule(owner=st.sampled_from(OWNERS))
    def claim_next(self, owner: str) -> None:
        got: list[Lease | None] = []
        model = self.wrote(
            lambda: got.append(self.ledger.claim_next(self.run_id, owner, TTL, retry_delay=0))
        )
        lease = got[0] if got else None
        if lease is not None:
            self.leases[lease.token.batch_index, owner] = lease
        if model is not None:
            assert lease is not None
            self.claimed(model, lease.token.batch_index, owner)

    @rule(batch=st.integers(0, 2), owner=st.sampled_from(OWNERS))
    def heartbeat(self, batch: int, owner: str) -> None:
        lease = self.lease(batch, owner)
        if lease is None:
            return
        model = self.wrote(lambda: self.ledger.heartbeat(lease), batch)
        if model is not None:
            model.expires = self.now + timedelta(seconds=TTL)
            self.written(batch, "LeaseRenewed")

    @rule(batch=st.integers(0, 2), owner=st.sampled_from(OWNERS))
    def release(self, batch: int, owner: str) -> None:
        lease = self.lease(batch, owner)
        if lease is None:
            return
        model = self.wrote(lambda: self.ledger.release(lease), batch)
        if model is not None:
            self.end_lease(model)
            self.written(batch, "Released")

    @rule(seconds=st.sampled_from([0.5, 3.0, 6.0, 11.0]))
    def tick(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)

    # ------------------------------------------------------------ the follower

    @rule()
    def catch_up(self) -> None:
        self.views.catch_up()

    @rule(after=st.integers(0, 5))
    def crash_mid_batch(self, after: int) -> None:
        """The writer raises after ``after`` bulk writes: the whole batch must roll back."""
        writer = self.views._writer
        calls = {"n": 0}
        original = writer._write

        def flaky(tx: Any, sql: str, rows: Any) -> None:
            calls["n"] += 1
            if calls["n"] > after:
                raise Crash
            original(tx, sql, rows)

        writer._write = flaky  # type: ignore[method-assign]
        before = self.views._tracked_position()
        with contextlib.suppress(Crash):  # with fewer events than `after`, nothing crashes
            self.views.catch_up()
        writer._write = original  # type: ignore[method-assign]
        # Whatever committed before the crash is whole batches; restart from the tracking row.
        self.restart()
        assert self.views.position >= before

    @rule()
    def restart(self) -> None:
        self.views.close()
        self.views = Projections(self.ledger, history_size=HISTORY, batch_size=4)

    # ------------------------------------------------------------ the views

    @invariant()
    def views_match_the_model_and_a_rebuild(self) -> None:
        self.views.catch_up()
        self.check_cursor_view()
        failures = self.views.failures(run_id=self.run_id)
        assert [
            (f.batch_index, f.kind, f.attempt, f.error_type, f.message, f.transient, f.resolution)
            for f in failures
        ] == [
            (r.batch, r.kind, r.attempt, r.error_type, r.message, r.transient, r.resolution)
            for r in self.audit
        ]
        if self.with_neighbour:  # in the view, yet in no read of this run (checked above)
            others = self.views.failures(run_id=self.neighbour_run)
            assert [(f.batch_index, f.kind) for f in others] == [(1, "failure")]
        for kind in ("failure", "takeover", "cancel"):
            assert self.views.failures(run_id=self.run_id, kind=kind) == [
                f for f in failures if f.kind == kind
            ]
        timeline = self.views.timeline(self.run_id)
        assert [(e.batch_index, e.topic) for e in timeline] == self.timeline
        assert [e.position for e in timeline] == sorted(e.position for e in timeline)
        self.check_stuck()
        before = dump(self.views)
        self.views.rebuild()
        assert dump(self.views) == before

    def check_cursor_view(self) -> None:
        models = self.batches
        progress = self.views.progress(self.run_id)
        statuses = [m.status for m in models.values()]
        assert (progress.created, progress.completed, progress.failed, progress.cancelled) == (
            len(models),
            statuses.count("completed"),
            statuses.count("failed"),
            statuses.count("cancelled"),
        )
        assert progress.open == statuses.count("open")
        assert [t.batch_index for t in self.views.pending_checkpoints(self.run_id)] == sorted(
            b for b, m in models.items() if m.status == "open"
        )
        for batch, model in models.items():
            summary = self.views.current(self.token(batch))
            assert summary is not None
            assert (summary.status, summary.attempt, summary.version) == (
                model.status,
                model.attempt,
                model.events,
            )
            assert (summary.cursor, summary.items_processed, summary.yields) == (
                model.cursor,
                model.items,
                len(model.cursors),
            )
            assert (summary.owner, summary.lease_expires_at) == (model.owner, model.expires)
            assert summary.last_activity == summary.updated_at == model.last
            history = self.views.history(self.token(batch))
            assert history.total_yields == len(model.cursors)
            assert [h.cursor for h in history.entries] == model.cursors[-HISTORY:]

    def check_stuck(self) -> None:
        expected: list[tuple[int, str, str | None, float]] = []
        for batch, model in sorted(self.batches.items(), key=lambda item: (item[1].last, item[0])):
            if model.status != "open":
                continue
            idle = (self.now - model.last).total_seconds()
            if model.owner is not None and model.expires is not None and model.expires <= self.now:
                expected.append((batch, "lease expired", model.owner, idle))
            elif idle >= IDLE:
                expected.append((batch, "idle", model.owner, idle))
        # `now` defaults to the ledger's clock: the one this machine moves.
        found = self.views.stuck(self.run_id, idle=IDLE)
        assert [(s.batch_index, s.reason, s.owner, s.idle_seconds) for s in found] == expected
        assert {s.run_id for s in found} <= {self.run_id}

    def teardown(self) -> None:
        self.views.close()
        self.ledger.close()


@pytest.mark.slow
def test_views_match_the_model_in_memory() -> None:
    run_state_machine_as_test(ViewsMachine, settings=machine_settings(examples=100, steps=40))


@pytest.mark.slow
def test_views_match_the_model_on_each_backend(new_store_url: Callable[[], str]) -> None:
    class OnStore(ViewsMachine):
        new_store = staticmethod(new_store_url)
        with_neighbour = True

    # Fewer examples than in memory: on a real store the rebuild after every step (DDL, with
    # fsync on) makes one example cost seconds.
    run_state_machine_as_test(OnStore, settings=machine_settings(examples=10, steps=30))


def test_tracking_table_exists_beside_the_views() -> None:
    with Ledger.open("memory://") as ledger, Projections(ledger) as views:
        assert views._query(f"SELECT position FROM {TRACKING}") == [(0,)]
