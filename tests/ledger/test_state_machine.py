"""The ledger behaves like its model, on every backend, under random command sequences.

Two ``Ledger`` instances share one store, so one of them often acts on a stale cache (as a
second worker process would); after every step the state read back, the state rebuilt from
the events and the state as of every past version must all agree with the model.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any
from uuid import uuid4

import pytest
from hypothesis import settings
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
    Ledger,
    LedgerSettings,
    apply,
)
from tests.ledger.model import LedgerModel, ModelCheckpoint, Outcome, canon

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


class LedgerMachine(RuleBasedStateMachine):
    """Random commands against two ledgers on one store, checked against ``LedgerModel``."""

    def __init__(self, store_url: str) -> None:
        super().__init__()
        config = LedgerSettings(store=store_url, snapshot_interval=3)
        self.ledgers = [Ledger.open(settings=config), Ledger.open(settings=config)]
        self.model = LedgerModel()
        self.run_id = f"run-{uuid4().hex}"  # many machines share one store: keep runs apart
        self.events_before = self.ledgers[0].count_events()
        self.last: tuple[int, Callable[[], Outcome], Callable[[], Any]] | None = None

    def token(self, batch: int) -> CheckpointToken:
        return CheckpointToken.for_batch(self.run_id, batch)

    def run(self, batch: int, expect: Callable[[], Outcome], call: Callable[[], Any]) -> None:
        """Run a command and remember it, so ``repeat_last_command`` can replay it."""
        self.last = (batch, expect, call)
        self.check(batch, expect(), call)

    def check(self, batch: int, expected: Outcome, call: Callable[[], Any]) -> None:
        """Run the command; it must fail as the model says, or succeed with the model's state."""
        if expected.error is not None:
            with pytest.raises(expected.error):
                call()
            return
        state = call()
        if isinstance(state, CheckpointState):
            assert expected.state is not None
            assert_matches(state, expected.state)
        self.model.commit(batch, expected)

    @initialize()
    def start(self) -> None:
        """Nothing exists yet."""
        assert self.ledgers[0].find_checkpoint(self.run_id, 0) is None

    @rule(batch=BATCHES, via=st.integers(0, 1))
    def create(self, batch: int, via: int) -> None:
        expected = self.model.create(batch)
        token = self.ledgers[via].create_checkpoint(self.run_id, batch, total_batches=3)
        assert token == self.token(batch)
        self.model.commit(batch, expected)

    @precondition(lambda self: self.model.checkpoints)
    @rule(
        data=st.data(),
        via=st.integers(0, 1),
        cursor=cursors,
        items=st.integers(0, 6),
        acc=st.none() | st.dictionaries(st.sampled_from("ab"), json_values, max_size=2),
    )
    def checkpoint_yield(
        self, data: st.DataObject, via: int, cursor: Any, items: int, acc: Any
    ) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        self.run(
            batch,
            lambda: self.model.checkpoint_yield(batch, cursor, items, acc),
            lambda: self.ledgers[via].checkpoint_yield(self.token(batch), cursor, items, acc),
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), result=results)
    def complete(self, data: st.DataObject, via: int, result: Any) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        self.run(
            batch,
            lambda: self.model.complete(batch, result),
            lambda: self.ledgers[via].complete_checkpoint(self.token(batch), result),
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), message=messages, transient=st.booleans())
    def fail(self, data: st.DataObject, via: int, message: str, transient: bool) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        self.run(
            batch,
            lambda: self.model.fail(batch, message, transient),
            lambda: self.ledgers[via].fail_checkpoint(
                self.token(batch), message, transient=transient
            ),
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1))
    def retry(self, data: st.DataObject, via: int) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        self.run(
            batch,
            lambda: self.model.retry(batch),
            lambda: self.ledgers[via].retry_checkpoint(self.token(batch)),
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), via=st.integers(0, 1), reason=reasons)
    def reset(self, data: st.DataObject, via: int, reason: str) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        self.run(
            batch,
            lambda: self.model.reset(batch, reason),
            lambda: self.ledgers[via].reset_checkpoint(self.token(batch), reason),
        )

    @precondition(lambda self: self.model.checkpoints)
    @rule(data=st.data(), cursor=bad_cursors)
    def bad_yield_is_rejected(self, data: st.DataObject, cursor: Any) -> None:
        batch = data.draw(st.sampled_from(sorted(self.model.checkpoints)))
        try:
            self.ledgers[0].checkpoint_yield(self.token(batch), cursor, 1)
        except InvalidInput:
            pass
        else:
            raise AssertionError(f"cursor {cursor!r} was accepted")

    @precondition(lambda self: self.last is not None)
    @rule()
    def repeat_last_command(self) -> None:
        """Any command repeated at once is a no-op, or fails again the same way."""
        assert self.last is not None
        batch, expect, call = self.last
        self.check(batch, expect(), call)

    @rule(via=st.integers(0, 1))
    def reopen(self, via: int) -> None:
        """A fresh process: empty cache, state from snapshot plus later events."""
        old = self.ledgers[via]
        self.ledgers[via] = Ledger.open(settings=old.settings)
        old.close()

    @invariant()
    def state_matches_model_rebuild_and_history(self) -> None:
        ledger = self.ledgers[0]
        assert ledger.count_events() - self.events_before == self.model.events
        for batch, expected in self.model.checkpoints.items():
            token = self.token(batch)
            assert_matches(ledger.get_checkpoint(token), expected)
            assert_matches(self.ledgers[1].get_checkpoint(token), expected)
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


def test_ledger_behaves_like_its_model(store_url: str) -> None:
    run_state_machine_as_test(
        machine_on(store_url),
        settings=settings(deadline=None, stateful_step_count=30),
    )


def test_ledger_behaves_like_its_model_in_memory() -> None:
    run_state_machine_as_test(
        machine_on(f"memory://{uuid4().hex}"),
        settings=settings(deadline=None, stateful_step_count=40),
    )
