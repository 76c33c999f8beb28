"""The views equal what the log says, equal a rebuild, and survive crashes mid-batch.

A hypothesis state machine writes random histories (failures, retries, resets, repeats and
rejected commands included) through a real ledger, and at random points catches the views up,
crashes a follower in the middle of a batch, or restarts it. After every step, the views it has
caught up must equal a model computed from the ledger's own state and events, and a rebuild
from the log must give exactly the same rows.
"""

from __future__ import annotations

import contextlib
from typing import Any
from uuid import uuid4

from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule, run_state_machine_as_test

from ledger import CheckpointToken, Failed, Ledger, LedgerError, Reset, Retried, Yielded
from projections import Projections
from projections.runner import TRACKING

HISTORY = 3
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


class ViewsMachine(RuleBasedStateMachine):
    """Random commands, catch-ups, crashes and restarts; views checked against the log."""

    store_url = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.ledger = Ledger.open(self.store_url)
        self.views = Projections(self.ledger, history_size=HISTORY, batch_size=4)
        self.run_id = f"run-{uuid4().hex}"
        self.created: set[int] = set()

    def token(self, batch: int) -> CheckpointToken:
        return CheckpointToken.for_batch(self.run_id, batch)

    def attempt(self, call: Any) -> None:
        # Rejected commands write nothing; the views must not notice them either.
        with contextlib.suppress(LedgerError):
            call()

    @rule(batch=st.integers(0, 2))
    def create(self, batch: int) -> None:
        self.ledger.create_checkpoint(self.run_id, batch, total_batches=3)
        self.created.add(batch)

    @rule(
        batch=st.integers(0, 2), step=st.integers(0, 3), cursor=st.sampled_from([1, "k", {"p": 1}])
    )
    def checkpoint_yield(self, batch: int, step: int, cursor: Any) -> None:
        self.attempt(lambda: self.ledger.checkpoint_yield(self.token(batch), cursor, step))

    @rule(batch=st.integers(0, 2), result=st.sampled_from([1, 2]))
    def complete(self, batch: int, result: int) -> None:
        self.attempt(lambda: self.ledger.complete_checkpoint(self.token(batch), result))

    @rule(batch=st.integers(0, 2), transient=st.booleans(), kind=st.sampled_from(["A", "B"]))
    def fail(self, batch: int, transient: bool, kind: str) -> None:
        self.attempt(
            lambda: self.ledger.fail_checkpoint(
                self.token(batch), "boom", transient=transient, error_type=kind
            )
        )

    @rule(batch=st.integers(0, 2))
    def retry(self, batch: int) -> None:
        self.attempt(lambda: self.ledger.retry_checkpoint(self.token(batch)))

    @rule(batch=st.integers(0, 2))
    def reset(self, batch: int) -> None:
        self.attempt(lambda: self.ledger.reset_checkpoint(self.token(batch), "operator"))

    @rule()
    def catch_up(self) -> None:
        self.views.catch_up()

    @rule(after=st.integers(0, 5))
    def crash_mid_batch(self, after: int) -> None:
        """A view raises after ``after`` events: the whole batch must roll back."""
        views = self.views.views
        calls = {"n": 0}
        original = views[2].apply

        def flaky(tx: Any, position: int, event: Any) -> None:
            calls["n"] += 1
            if calls["n"] > after:
                raise Crash
            original(tx, position, event)

        views[2].apply = flaky  # type: ignore[method-assign]
        before = self.views._tracked_position()
        with contextlib.suppress(Crash):  # with fewer events than `after`, nothing crashes
            self.views.catch_up()
        views[2].apply = original  # type: ignore[method-assign]
        # Whatever committed before the crash is whole batches; restart from the tracking row.
        self.restart()
        assert self.views.position >= before

    @rule()
    def restart(self) -> None:
        self.views.close()
        self.views = Projections(self.ledger, history_size=HISTORY, batch_size=4)

    @invariant()
    def views_match_the_log_and_a_rebuild(self) -> None:
        self.views.catch_up()
        progress = self.views.progress(self.run_id)
        states = {b: self.ledger.get_checkpoint(self.token(b)) for b in self.created}
        assert progress.created == len(self.created)
        assert progress.completed == sum(s.status == "completed" for s in states.values())
        assert progress.failed == sum(s.status == "failed" for s in states.values())
        assert [t.batch_index for t in self.views.pending_checkpoints(self.run_id)] == sorted(
            b for b, s in states.items() if s.status == "open"
        )
        failures = self.views.failures(run_id=self.run_id)
        all_failed = []
        timeline_len = 0
        for batch, state in states.items():
            summary = self.views.current(self.token(batch))
            assert summary is not None
            assert (summary.status, summary.attempt, summary.version) == (
                state.status,
                state.attempt,
                state.version,
            )
            assert (summary.cursor, summary.items_processed) == (
                state.cursor,
                state.items_processed,
            )
            assert summary.yields == state.yields
            events = self.ledger.checkpoint_events(self.token(batch))
            timeline_len += len(events)
            yields = [e for e in events if isinstance(e, Yielded)]
            history = self.views.history(self.token(batch))
            assert history.total_yields == len(yields)
            assert [h.cursor for h in history.entries] == [y.cursor for y in yields[-HISTORY:]]
            for i, event in enumerate(events):
                if isinstance(event, Failed):
                    later = [e for e in events[i + 1 :] if isinstance(e, Retried | Reset)]
                    resolution = (
                        None
                        if not later
                        else ("retried" if isinstance(later[0], Retried) else "reset")
                    )
                    all_failed.append((batch, event.attempt, event.error_type, resolution))
        assert sorted((f.batch_index, f.attempt, f.error_type, f.resolution) for f in failures) == (
            sorted(all_failed)
        )
        timeline = self.views.timeline(self.run_id)
        assert len(timeline) == timeline_len
        assert [e.position for e in timeline] == sorted(e.position for e in timeline)
        before = dump(self.views)
        self.views.rebuild()
        assert dump(self.views) == before

    def teardown(self) -> None:
        self.views.close()
        self.ledger.close()


def test_views_match_the_log_in_memory() -> None:
    run_state_machine_as_test(
        ViewsMachine, settings=settings(deadline=None, stateful_step_count=30)
    )


def test_views_match_the_log_on_each_backend(store_url: str) -> None:
    class OnStore(ViewsMachine):
        pass

    OnStore.store_url = store_url
    run_state_machine_as_test(
        OnStore, settings=settings(deadline=None, stateful_step_count=25, max_examples=25)
    )


def test_tracking_table_exists_beside_the_views() -> None:
    with Ledger.open("memory://") as ledger, Projections(ledger) as views:
        assert views._query(f"SELECT position FROM {TRACKING}") == [(0,)]
