"""The ledger behaves like its model, on every backend, under random command sequences.

Two ``Ledger`` instances share one store, so one of them often acts on a stale cache (as a
second worker process would); after every step the state read back, the state rebuilt from
the events and the state as of every past version must all agree with the model.

Many workers: three owners claim, heartbeat and release leases; writes go with no fence, with
the current or a stale attempt, or under a lease (live, expired or lost); an operator cancels;
a rule moves the ledgers' clock (``Ledger.open(..., clock=...)``) so that leases expire and are
taken over. Every command carries its own command id, and a rule re-sends one that wrote an
event with that id: it must write nothing and return the state as it is.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from ledger import (
    CheckpointState,
    CheckpointToken,
    InvalidInput,
    Lease,
    LeaseLost,
    Ledger,
    LedgerSettings,
    apply,
)
from tests._hypothesis import machine_settings
from tests.ledger.model import LedgerModel, ModelCheckpoint, ModelFence, Outcome, canon

if TYPE_CHECKING:
    from collections.abc import Callable

BATCHES = st.integers(0, 2)
json_scalars = st.none() | st.booleans() | st.integers(-(2**53), 2**53) | st.text(max_size=8)
json_values = st.recursive(
    json_scalars | st.floats(allow_nan=False, allow_infinity=False),
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=6,
)
cursors = (
    st.integers(0, 10**9)
    | st.text(min_size=0, max_size=12)
    | st.dictionaries(st.text(max_size=5), json_values, max_size=3)
    | st.lists(json_values, max_size=3)
)
# Small pools so repeats (idempotent no-ops, conflicts) happen often.
results = st.sampled_from([None, {"rows": 1}, {"rows": 2}, [1, 2], 1, 1.0, True, "done"])
messages = st.sampled_from(["timeout", "disk full", "boom"])
reasons = st.sampled_from(["input replaced", "operator retry"])
bad_cursors = st.sampled_from(
    [1.5, float("nan"), None, True, object(), {"x": float("inf")}, {1: 2}]
)
owners = st.sampled_from(["w1", "w2", "w3"])
ttls = st.sampled_from([20.0, 30.0])
# Unfenced writes stay common (the single-worker rules), fenced ones are often stale.
fences = st.sampled_from(["none", "none", "attempt", "stale", "lease", "lease"])
START = datetime(2026, 1, 1, tzinfo=UTC)


class Clock:
    """The ledgers' clock, moved only by the machine's ``advance_clock`` rule."""

    def __init__(self) -> None:
        self.seconds = 0.0
        self._lock = threading.Lock()

    def __call__(self) -> datetime:
        with self._lock:
            return START + timedelta(seconds=self.seconds)

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.seconds += seconds


@dataclass(frozen=True)
class Held:
    """A lease the machine was given: its checkpoint, the real lease, the model's attempt."""

    batch: int
    lease: Lease
    attempt: int


@dataclass(frozen=True)
class Sent:
    """A command that wrote an event, to re-send with its id: ``call(command_id)``."""

    batch: int
    kind: str
    call: Callable[[str], Any]
    command_id: str
    owner: str | None = None
    lease: int | None = None


def assert_matches(real: CheckpointState, model: ModelCheckpoint) -> None:
    """The real state says what the model says."""
    assert real.status == model.status
    assert real.attempt == model.attempt
    assert canon(real.cursor) == canon(model.cursor)
    assert real.items_processed == model.items
    assert canon(real.accumulated_results) == canon(model.results)
    assert canon(real.result) == canon(model.result)
    error = (
        None if real.error is None else (real.error.type, real.error.message, real.error.transient)
    )
    assert error == model.error
    assert real.version == model.version
    assert real.yields == model.yields
    assert real.has_checkpoint() == (model.cursor is not None)
    assert real.checkpoint_cursor == real.cursor
    assert real.checkpoint_items_processed == model.items
    assert real.owner == model.owner
    expires = None if model.expires is None else START + timedelta(seconds=model.expires)
    assert real.lease_expires_at == expires
    assert real.cancel_reason == model.cancel_reason
    assert real.taken_over_from == model.taken_over_from
    assert set(model.commands) <= set(real.recent_commands)


class LedgerMachine(RuleBasedStateMachine):
    """Random commands against two ledgers on one store, checked against ``LedgerModel``."""

    def __init__(self, store_url: str) -> None:
        super().__init__()
        config = LedgerSettings(store=store_url, snapshot_interval=3)
        self.clock = Clock()
        self.ledgers = [self.open(config), self.open(config)]
        self.model = LedgerModel()
        self.run_id = f"run-{uuid4().hex}"  # many machines share one store: keep runs apart
        self.events_before = self.ledgers[0].count_events()
        self.last: tuple[int, Callable[[], Outcome], Callable[[str], Any]] | None = None
        self.held: dict[int, Held] = {}  # by the model's lease number
        self.sent: list[Sent] = []

    def open(self, config: LedgerSettings) -> Ledger:
        return Ledger.open(settings=config, clock=self.clock)

    def token(self, batch: int) -> CheckpointToken:
        return CheckpointToken.for_batch(self.run_id, batch)

    def run(
        self,
        batch: int,
        expect: Callable[[], Outcome],
        call: Callable[[str], Any],
        kind: str = "",
        **sent: Any,
    ) -> Outcome:
        """Run a command under a new command id and remember it for the repeating rules."""
        self.last = (batch, expect, call)
        expected = expect()
        cid = uuid4().hex
        self.check(batch, expected, lambda: call(cid), cid)
        if expected.error is None and expected.wrote and kind:
            self.sent.append(Sent(batch, kind, call, cid, **sent))
        return expected

    def check(
        self, batch: int, expected: Outcome, call: Callable[[], Any], cid: str | None = None
    ) -> Any:
        """Run the command; it must fail as the model says, or succeed with the model's state."""
        if expected.error is not None:
            with pytest.raises(expected.error) as caught:
                call()
            assert type(caught.value) is expected.error
            return None
        result = call()
        if isinstance(result, CheckpointState):
            assert expected.state is not None
            assert_matches(result, expected.state)
        self.model.command = cid
        self.model.commit(batch, expected)
        self.model.command = None
        if isinstance(result, Lease):
            self.took(batch, expected, result)
        return result

    def fence(
        self, data: st.DataObject, batch: int, kind: str
    ) -> tuple[ModelFence, dict[str, Any]]:
        """A write's fence of the given kind, for the model and as the ledger's arguments."""
        cp = self.model.checkpoints[batch]
        mine = sorted(n for n, held in self.held.items() if held.batch == batch)
        if kind == "attempt":
            return ModelFence(attempt=cp.attempt), {"attempt": cp.attempt}
        if kind == "stale":
            stale = cp.attempt - 1 if cp.attempt > 1 else cp.attempt + 1
            return ModelFence(attempt=stale), {"attempt": stale}
        if kind == "lease" and mine:
            number = data.draw(st.sampled_from(mine))
            held = self.held[number]
            fence = ModelFence(attempt=held.attempt, lease=number, owner=held.lease.owner)
            return fence, {"lease": held.lease}
        return ModelFence(), {}

    def took(self, batch: int, expected: Outcome, lease: Lease) -> None:
        """Check and keep the lease a claim or heartbeat returned."""
        if expected.lease is None:
            return
        cp = self.model.checkpoints[batch]
        assert (lease.owner, lease.attempt) == (cp.owner, cp.attempt)
        assert lease.expires_at == START + timedelta(seconds=cp.expires or 0.0)
        known = self.held.get(expected.lease)
        if known is not None:
            assert lease.lease_id == known.lease.lease_id  # renewed: the same lease
        self.held[expected.lease] = Held(batch, lease, cp.attempt)

    @initialize()
    def start(self) -> None:
        """Nothing exists yet."""
        assert self.ledgers[0].find_checkpoint(self.run_id, 0) is None

    @rule(batch=BATCHES, via=st.integers(0, 1))
    def create(self, batch: int, via: int) -> None:
        def call(cid: str) -> CheckpointToken:
            made = self.ledgers[via].create_checkpoint(
                self.run_id, batch, total_batches=3, command_id=cid
            )
            assert made == self.token(batch)
            return made

        self.run(batch, lambda: self.model.create(batch), call, "create")

    def pick(self, data: st.DataObject) -> int:
        return data.draw(st.sampled_from(sorted(self.model.checkpoints)))

    @precondition(lambda self: self.model.checkpoints)
    @rule(
        data=st.data(),
        via=st.integers(0, 1),
        cursor=cursors,
        items=st.integers(0, 6),
        acc=st.none() | st.dictionaries(st.sampled_from("ab"), json_values, max_size=2),
        fenced=fences,
    )
    def checkpoint_yield(  # noqa: PLR0917  (hypothesis passes the rule's draws)
        self, data: st.DataObject, via: int, cursor: Any, items: int, acc: Any, fenced: str
    ) -> None:
        batch = self.pick(data)
        fence, kwargs = self.fence(data, batch, fenced)
        self.run(
            batch,
            lambda: self.model.checkpoint_yield(batch, cursor, items, acc, fence),
            lambda cid: self.ledgers[via].checkpoint_yield(
                self.token(batch), cursor, items, acc, command_id=cid, **kwargs
            ),
            "yield",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), result=results, fenced=fences)
    def complete(self, data: st.DataObject, via: int, result: Any, fenced: str) -> None:
        batch = self.pick(data)
        fence, kwargs = self.fence(data, batch, fenced)
        self.run(
            batch,
            lambda: self.model.complete(batch, result, fence),
            lambda cid: self.ledgers[via].complete_checkpoint(
                self.token(batch), result, command_id=cid, **kwargs
            ),
            "complete",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(
        data=st.data(),
        via=st.integers(0, 1),
        message=messages,
        transient=st.booleans(),
        fenced=fences,
    )
    def fail(
        self, data: st.DataObject, via: int, message: str, transient: bool, fenced: str
    ) -> None:
        batch = self.pick(data)
        fence, kwargs = self.fence(data, batch, fenced)
        self.run(
            batch,
            lambda: self.model.fail(batch, message, transient, fence),
            lambda cid: self.ledgers[via].fail_checkpoint(
                self.token(batch), message, transient=transient, command_id=cid, **kwargs
            ),
            "fail",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1))
    def retry(self, data: st.DataObject, via: int) -> None:
        batch = self.pick(data)
        self.run(
            batch,
            lambda: self.model.retry(batch),
            lambda cid: self.ledgers[via].retry_checkpoint(self.token(batch), command_id=cid),
            "retry",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), reason=reasons)
    def reset(self, data: st.DataObject, via: int, reason: str) -> None:
        batch = self.pick(data)
        self.run(
            batch,
            lambda: self.model.reset(batch, reason),
            lambda cid: self.ledgers[via].reset_checkpoint(
                self.token(batch), reason, command_id=cid
            ),
            "reset",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), reason=st.sampled_from(["dropped", "moved"]))
    def cancel(self, data: st.DataObject, via: int, reason: str) -> None:
        batch = self.pick(data)
        self.run(
            batch,
            lambda: self.model.cancel(batch, reason),
            lambda cid: self.ledgers[via].cancel_checkpoint(
                self.token(batch), reason, command_id=cid
            ),
            "cancel",
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), owner=owners, ttl=ttls)
    def claim(
        self, data: st.DataObject, via: int, owner: str, ttl: float, batch: int | None = None
    ) -> None:
        batch = self.pick(data) if batch is None else batch
        self.run(
            batch,
            lambda: self.model.claim(batch, owner, ttl),
            lambda cid: self.ledgers[via].claim_checkpoint(
                self.token(batch), owner, ttl, command_id=cid
            ),
            "claim",
            owner=owner,
        )

    def lease_of(self, batch: int) -> Lease:
        """The lease the checkpoint records now, read from the store."""
        return Lease.of(self.ledgers[0].get_checkpoint(self.token(batch)))

    @precondition(lambda self: self.held)
    @rule(data=st.data(), via=st.integers(0, 1))
    def heartbeat(self, data: st.DataObject, via: int) -> None:
        number = data.draw(st.sampled_from(sorted(self.held)))
        held = self.held[number]
        self.run(
            held.batch,
            lambda: self.model.heartbeat(held.batch, number),
            lambda cid: self.ledgers[via].heartbeat(held.lease, command_id=cid),
            "heartbeat",
            lease=number,
        )

    @precondition(lambda self: self.held)
    @rule(data=st.data(), via=st.integers(0, 1))
    def release(self, data: st.DataObject, via: int) -> None:
        number = data.draw(st.sampled_from(sorted(self.held)))
        held = self.held[number]
        self.run(
            held.batch,
            lambda: self.model.release(held.batch, number),
            lambda cid: self.ledgers[via].release(held.lease, command_id=cid),
            "release",
        )

    @rule(seconds=st.sampled_from([5.0, 15.0, 40.0]))
    def advance_clock(self, seconds: float) -> None:
        """Time passes: leases run out unless renewed."""
        self.clock.advance(seconds)
        self.model.now += seconds

    @precondition(lambda self: any(cp.owner for cp in self.model.checkpoints.values()))
    @rule(data=st.data(), via=st.integers(0, 1), owner=owners)
    def a_worker_dies_and_another_takes_over(
        self, data: st.DataObject, via: int, owner: str
    ) -> None:
        """The owner stops renewing: time passes beyond its lease and another worker claims."""
        leased = sorted(b for b, cp in self.model.checkpoints.items() if cp.owner)
        batch = data.draw(st.sampled_from(leased))
        self.advance_clock(31.0)
        self.claim(data, via, owner, 30.0, batch=batch)

    @precondition(lambda self: self.sent)
    @rule(data=st.data())
    def resend_a_command(self, data: st.DataObject) -> None:
        """A command re-sent with the id of one that wrote: nothing written, the state as it is."""
        sent = data.draw(st.sampled_from(self.sent))
        cp = self.model.checkpoints[sent.batch]
        if (sent.kind == "heartbeat" and cp.lease != sent.lease) or (
            sent.kind == "claim" and cp.owner != sent.owner
        ):
            self.check(sent.batch, Outcome(error=LeaseLost), lambda: sent.call(sent.command_id))
            return
        result = self.check(
            sent.batch, self.model.resent(sent.batch), lambda: sent.call(sent.command_id)
        )
        if isinstance(result, Lease):
            assert result == self.lease_of(sent.batch)

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), cursor=bad_cursors)
    def bad_yield_is_rejected(self, data: st.DataObject, cursor: Any) -> None:
        batch = self.pick(data)
        try:
            self.ledgers[0].checkpoint_yield(self.token(batch), cursor, 1)
        except InvalidInput:
            pass
        else:
            raise AssertionError(f"cursor {cursor!r} was accepted")

    @precondition(lambda self: self.last is not None)
    @rule()
    def repeat_last_command(self) -> None:
        """Any command repeated at once (a new id) is a no-op, or fails again the same way."""
        assert self.last is not None
        batch, expect, call = self.last
        expected = expect()
        self.check(batch, expected, lambda: call(uuid4().hex))

    @rule(via=st.integers(0, 1))
    def reopen(self, via: int) -> None:
        """A fresh process: empty cache, state from snapshot plus later events."""
        old = self.ledgers[via]
        self.ledgers[via] = self.open(old.settings)
        old.close()

    @invariant()
    def state_matches_model_rebuild_and_history(self) -> None:
        ledger = self.ledgers[0]
        assert ledger.count_events() - self.events_before == self.model.events
        for batch, expected in self.model.checkpoints.items():
            token = self.token(batch)
            assert_matches(ledger.get_checkpoint(token), expected)
            real = self.ledgers[1].get_checkpoint(token)
            assert_matches(real, expected)
            held = None if expected.lease is None else self.held[expected.lease].lease.lease_id
            assert real.lease_id == held
            rebuilt: CheckpointState | None = None
            events = ledger.checkpoint_events(token)
            assert [e.originator_version for e in events] == list(range(1, len(events) + 1))
            for event in events:
                rebuilt = apply(rebuilt, event)
            assert rebuilt is not None
            assert_matches(rebuilt, expected)
            for version, past in self.model.history[batch].items():
                assert_matches(ledger.get_checkpoint(token, as_of=version), past)
            for event in events:
                as_of = ledger.get_checkpoint(token, as_of=event.timestamp)
                assert as_of.updated_at <= event.timestamp

    def teardown(self) -> None:
        for ledger in self.ledgers:
            ledger.close()


def machine_on(store_url: str) -> type[LedgerMachine]:
    """The machine bound to one store (hypothesis builds machines from a class)."""

    class BoundLedgerMachine(LedgerMachine):
        def __init__(self) -> None:
            super().__init__(store_url)

    return BoundLedgerMachine


# The same machine in memory runs twice as many examples and longer ones: the backends' share is
# their SQL and their connections, which a few dozen examples of 30 steps cross many times.
@pytest.mark.slow
def test_ledger_behaves_like_its_model(store_url: str) -> None:
    run_state_machine_as_test(
        machine_on(store_url), settings=machine_settings(examples=50, steps=30)
    )


@pytest.mark.slow
def test_ledger_behaves_like_its_model_in_memory() -> None:
    run_state_machine_as_test(
        machine_on(f"memory://{uuid4().hex}"), settings=machine_settings(examples=100, steps=40)
    )
